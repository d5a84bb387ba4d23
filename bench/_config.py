"""What every part of the bus benchmark shares: tools, ids, the fixed answer, the goals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
DARGAH = VENV_BIN / "dargah"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

PROVIDER_MEMBER = "10100387143"
CLIENT_MEMBER = "14003000014"
PROVIDER = f"DEV/GOV/{PROVIDER_MEMBER}/sabt"
CLIENT = f"DEV/GOV/{CLIENT_MEMBER}/tester"
SERVICE = f"{PROVIDER}/person-inquiry.v1"
PURPOSE = "identity-verification"
SUBJECT = "0499370899"
UPSTREAM_PATH = f"/api/persons/{SUBJECT}"
BUS_PATH = f"/r1/{SERVICE}/persons/{SUBJECT}"

# About 200 bytes of fixed JSON; no '$' (nginx would read it as a variable) and no "'".
BODY = json.dumps(
    {
        "national_code": SUBJECT,
        "first_name": "Sara",
        "last_name": "Ahmadi",
        "father_name": "Reza",
        "birth_date": "1368-04-12",
        "gender": "F",
        "alive": True,
        "birth_place": "Tehran",
        "issue_place": "Tehran",
        "card_serial": "1A23456789",
        "registered_at": "1368-04-20",
    },
    separators=(",", ":"),
)

GOAL_RATIO = 1 / 3
FLOOR_RATIO = 1 / 5
GOAL_ADDED_P50_MS = 1.0

INSTALL_HINT = "install them with: apt-get install -y nginx-light wrk"


NGINX_COMMON = """\
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
{body}
}}
"""

UPSTREAM_SERVER = """\
    server {{
        listen 127.0.0.1:{port} reuseport;
        location /api/persons/ {{
            default_type application/json;
            return 200 '{json}';
        }}
        location / {{ return 404; }}
    }}"""

PROXY_SERVER = """\
    upstream provider {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}"""


def call_headers(token: str) -> dict[str, str]:
    """The headers of one bus call (the benchmark's Lua script varies the subject)."""
    return {"Authorization": f"Bearer {token}", "GSB-Purpose": PURPOSE, "GSB-Subject": SUBJECT}
