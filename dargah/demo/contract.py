"""``demo.json``: the sandbox contract of platform.md, for developers, tutorials and tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dargah.demo.provision import SandboxClient
from dargah.sandbox.agencies import AGENCIES
from dargah.sandbox.citizens import Citizen


def client_entry(
    client: SandboxClient, instance: str, allowed: list[tuple[str, list[str]]], denied: list[str]
) -> dict[str, Any]:
    specs = {a.service_id(instance, s.code): s for a in AGENCIES for s in a.services}
    return {
        "id": client.id,
        "client_secret": client.client_secret,
        "private_key_file": str(client.private_key_file),
        "allowed": [
            {
                "service": sid,
                "personal_data": specs[sid].personal_data,
                "purposes": purposes,
                "example": {"method": specs[sid].example_method, "path": specs[sid].example_path},
            }
            for sid, purposes in allowed
        ],
        "denied": denied,
    }


def write_demo_json(
    home: Path,
    *,
    instance: str,
    bus_url: str,
    admin: dict[str, str],
    clients: list[dict[str, Any]],
    citizens: list[Citizen],
    extra: dict[str, Any] | None = None,
) -> Path:
    base = bus_url.rstrip("/")
    doc: dict[str, Any] = {
        "instance": instance,
        "bus_url": base,
        "portal_url": f"{base}/",
        "console_url": f"{base}/console/",
        "home": str(home.resolve()),
        "admin": admin,
        "clients": clients,
        "citizens": [
            {
                "national_code": c.national_code,
                "mobile": c.mobile,
                "name": f"{c.first_name} {c.last_name}",
            }
            for c in citizens
        ],
        **(extra or {}),
    }
    path = home / "demo.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)
    tmp.replace(path)
    return path
