"""The database going away under load: the bus fails closed (503), then recovers by itself,
and no exchange whose answer was sent is missing from the log."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from dargah.bus.log.chain import log_id
from dargah.bus.log.verify import verify_log
from tests.harness import make_world
from tests.providers import Provider
from tests.tcp_cut import Forwarder


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)
    netloc = (host[0] + "@" if len(host) == 2 else "") + f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.mark.slow
def test_the_bus_fails_closed_while_the_database_is_away_and_recovers_by_itself(
    tmp_path: Path, provider: Provider, pg_database_url: str
) -> None:
    # PostgreSQL only: the outage is made by cutting the network to the database server.
    database_url = pg_database_url
    pg_port = urlsplit(database_url).port or 5432
    fwd = Forwarder(pg_port)
    w = make_world(tmp_path / "home", provider.url, database_url)
    sid = w.add_service("person-inquiry.v1", personal_data=True)
    w.grant("cons", sid)
    w.start(DARGAH_DATABASE_URL=_through(database_url, fwd.port))
    try:
        token = w.token()
        answered: list[str] = []  # log ids
        statuses: list[int] = []
        codes: set[str] = set()
        recovered_after: float | None = None
        with httpx.Client(timeout=10) as http:

            def call() -> httpx.Response:
                return http.get(
                    f"{w.url}/r1/{sid}/persons/1",
                    headers={
                        "Authorization": f"Bearer {token}",
                        "GSB-Purpose": "identity-verification",
                        "GSB-Subject": "0499370899",
                    },
                )

            for _ in range(30):
                r = call()
                assert r.status_code == 200, r.text
                answered.append(r.headers["gsb-log-id"])
            fwd.cut()
            cut_at = time.monotonic()
            slowest = 0.0
            while time.monotonic() - cut_at < 3:
                began = time.monotonic()
                r = call()
                slowest = max(slowest, time.monotonic() - began)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    answered.append(r.headers["gsb-log-id"])
                else:
                    codes.add(r.headers.get("gsb-error", ""))
                time.sleep(0.05)
            fwd.restore()
            back_at = time.monotonic()
            while time.monotonic() - back_at < 30:
                r = call()
                if r.status_code == 200:
                    answered.append(r.headers["gsb-log-id"])
                    recovered_after = time.monotonic() - back_at
                    break
                time.sleep(0.2)
            for _ in range(20):
                r = call()
                assert r.status_code == 200, r.text
                answered.append(r.headers["gsb-log-id"])
        print(
            f"\nwhile away: {len(statuses)} calls, statuses {sorted(set(statuses))}, codes {codes}; "
            f"recovered {recovered_after:.2f} s after the database came back"
        )
        assert recovered_after is not None, "the bus did not recover within 30 s"
        assert 503 in statuses and codes <= {"log-unavailable"}, (statuses, codes)
        assert all(s in (200, 503) for s in statuses)
        assert slowest < 6, f"a call waited {slowest:.1f} s while the database was away"
    finally:
        w.stop()
        fwd.close()
    seqs = {log_id(row["chain"], row["seq"]) for row in w.log_rows()}
    assert set(answered) <= seqs, sorted(set(answered) - seqs)
    report = verify_log(w.engine)
    assert report.ok, report.failure_line()
