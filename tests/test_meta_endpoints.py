"""Protocol §5: service metadata, JWKS, health, readiness and metrics; none of them is logged.

One bus (SQLite) serves the module, so the metrics below count exactly the calls made here.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from dargah.store.tables import message_log, message_log_seal
from tests.harness import PURPOSE, World, make_world
from tests.providers import Provider
from tests.test_conformance_errors import HTTP, assert_problem, call, token

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "استعلام فرد", "version": "1.0.0"},
    "paths": {"/persons/{id}": {"get": {"responses": {"200": {"description": "ok"}}}}},
}


class MW:
    def __init__(self, w: World) -> None:
        self.w = w
        self.engine = w.engine
        self.personal = w.add_service(
            "person-inquiry.v1",
            personal_data=True,
            title="استعلام فرد",
            openapi=json.dumps(OPENAPI, ensure_ascii=False),
        )
        self.plain = w.add_service("plain.v1", "/status")
        self.hidden = w.add_service("hidden.v1", openapi='{"openapi": "3.1.0", "paths": {}}')
        w.grant("cons", self.personal, [PURPOSE, "tax-assessment"])
        w.grant("cons", self.plain)
        w.grant("other", self.hidden)
        self._tok = ""

    @property
    def tok(self) -> str:
        if not self._tok:
            self._tok = token(self.w)
        return self._tok

    def get(self, path: str, tok: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return HTTP.get(f"{self.w.url}{path}", headers=headers)

    def log_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(message_log)).scalar_one())


@pytest.fixture(scope="module")
def mw(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[MW]:
    w = make_world(tmp_path_factory.mktemp("meta") / "home", provider.url)
    try:
        m = MW(w)
        w.start()
        yield m
    finally:
        w.stop()


def test_meta_services_lists_only_the_callers_granted_services(mw: MW) -> None:
    before = mw.log_count()
    r = mw.get("/r1/meta/services", mw.tok)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    services = {s["id"]: s for s in r.json()["services"]}
    assert set(services) == {mw.personal, mw.plain}
    p = services[mw.personal]
    assert p["title"] == "استعلام فرد"
    assert p["personal_data"] is True
    assert sorted(p["purposes"]) == sorted([PURPOSE, "tax-assessment"])
    assert p["openapi"] == f"{mw.w.url}/r1/meta/services/{mw.personal}/openapi"
    q = services[mw.plain]
    assert q["personal_data"] is False and q["purposes"] == [PURPOSE] and q["title"]
    # another client sees its own
    r = mw.get("/r1/meta/services", token(mw.w, "other"))
    assert [s["id"] for s in r.json()["services"]] == [mw.hidden]
    assert mw.log_count() == before


def test_meta_openapi_returns_the_providers_document(mw: MW) -> None:
    before = mw.log_count()
    [entry] = [
        s for s in mw.get("/r1/meta/services", mw.tok).json()["services"] if s["id"] == mw.personal
    ]
    r = HTTP.get(entry["openapi"], headers={"Authorization": f"Bearer {mw.tok}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == OPENAPI
    # not for a service the caller may not call, nor one that does not exist
    for sid in (mw.hidden, mw.w.sid("no-such.v1")):
        r = mw.get(f"/r1/meta/services/{sid}/openapi", mw.tok)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["gsb-error"] == r.json()["code"]
    # a granted service that has no document
    r = mw.get(f"/r1/meta/services/{mw.plain}/openapi", mw.tok)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert mw.log_count() == before


def test_meta_endpoints_require_a_token(mw: MW) -> None:
    before = mw.log_count()
    for path in ("/r1/meta/services", f"/r1/meta/services/{mw.personal}/openapi"):
        for tok in (None, "forged", mw.tok[:-3] + "abc"):
            r = mw.get(path, tok)
            assert r.status_code == 401, (path, tok)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["gsb-error"] == "unauthenticated"
            body = r.json()
            assert body["type"] == "urn:gsb:problem:unauthenticated" and body["status"] == 401
    assert mw.log_count() == before


def test_jwks_publishes_the_assertion_and_seal_keys(mw: MW) -> None:
    r = call(mw.w, mw.personal, "/x", token=mw.tok)
    assert r.status_code == 200
    assertion = r.json()["headers"]["gsb-assertion"]
    deadline = time.monotonic() + 5  # a seal at least every second
    while time.monotonic() < deadline:
        with mw.engine.connect() as conn:
            seal = (
                conn.execute(select(message_log_seal).order_by(message_log_seal.c.id.desc()))
                .mappings()
                .first()
            )
        if seal is not None:
            break
        time.sleep(0.2)
    assert seal is not None
    before = mw.log_count()
    r = mw.get("/.well-known/jwks.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert len(r.headers.get_list("cache-control")) == 1  # one caching policy, not two
    keys = {k["kid"]: k for k in r.json()["keys"]}
    for k in keys.values():
        assert k["kty"] == "OKP" and k["crv"] == "Ed25519" and k["x"]
        assert "d" not in k
    # the assertion verifies with its key
    kid = jwt.get_unverified_header(assertion)["kid"]
    key = jwt.PyJWK(keys[kid], algorithm="EdDSA").key
    claims = jwt.decode(assertion, key, algorithms=["EdDSA"], audience=mw.personal)
    assert claims["sub"] == mw.w.clients["cons"].id
    # the seal verifies with its key
    assert seal["kid"] in keys and seal["kid"] != kid
    seal_key = jwt.PyJWK(keys[seal["kid"]], algorithm="EdDSA").key
    payload = json.dumps(
        {"hash": seal["hash"], "seq": seal["seq"], "ts": seal["ts"]},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    signature = base64.urlsafe_b64decode(seal["signature"] + "=" * (-len(seal["signature"]) % 4))
    seal_key.verify(signature, payload)  # type: ignore[union-attr]
    assert mw.log_count() == before


def test_healthz_and_readyz_answer_200_with_their_checks(mw: MW) -> None:
    before = mw.log_count()
    r = mw.get("/healthz")
    assert r.status_code == 200
    r = mw.get("/readyz")
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert checks["database"] is True and checks["registry"] is True
    assert all(checks.values())
    assert mw.log_count() == before


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|\+Inf|NaN)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of the Prometheus text format (0.0.4); fails on any line that is not one."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = _SAMPLE.fullmatch(line)
        assert m, f"not Prometheus text format: {line!r}"
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def test_metrics_count_calls_latency_and_bytes_per_client_service_and_outcome(mw: MW) -> None:
    cons = mw.w.clients["cons"].id
    for _ in range(2):
        assert (
            call(mw.w, mw.plain, "/200", token=mw.tok, method="POST", content=b"12345").status_code
            == 200
        )
    assert call(mw.w, mw.plain, "/404", token=mw.tok).status_code == 404
    assert_problem(mw.engine, call(mw.w, mw.hidden, "/x", token=mw.tok), "access-denied")
    before = mw.log_count()
    r = mw.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "version=0.0.4" in r.headers["content-type"]
    samples = parse_prometheus(r.text)
    assert mw.tok not in r.text

    def value(name: str, **labels: str) -> float:
        found = [
            v
            for n, lab, v in samples
            if n == name and all(lab.get(k) == x for k, x in labels.items())
        ]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    ok = {"client": cons, "service": mw.plain, "outcome": "ok"}
    assert value("gsb_calls_total", **ok) == 2
    assert value("gsb_calls_total", client=cons, service=mw.plain, outcome="provider-error") == 1
    assert value("gsb_calls_total", client=cons, service=mw.hidden, outcome="access-denied") == 1
    assert value("gsb_request_bytes_total", **ok) == 10
    assert value("gsb_response_bytes_total", **ok) == 2 * len(b"provider says 200")
    assert value("gsb_call_duration_seconds_count", **ok) == 2
    assert 0 < value("gsb_call_duration_seconds_sum", **ok) < 10
    buckets = sorted(
        (
            (float(lab["le"]), v)
            for n, lab, v in samples
            if n == "gsb_call_duration_seconds_bucket"
            and all(lab.get(k) == x for k, x in ok.items())
        ),
    )
    assert buckets[-1] == (float("inf"), 2)
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert mw.log_count() == before
    # scraping is not a call: the counts do not move
    again = parse_prometheus(mw.get("/metrics").text)
    assert [s for s in again if s[0] == "gsb_calls_total"] == [
        s for s in samples if s[0] == "gsb_calls_total"
    ]


def test_the_message_log_is_searchable_by_request_id_client_service_outcome_and_citizen(
    tmp_path: Path, provider: Any
) -> None:
    from tests.harness import make_world

    w = make_world(tmp_path / "home", provider.url)
    sid = w.add_service("person-inquiry.v1", personal_data=True)
    w.grant("cons", sid)
    w.start()
    try:
        token = w.token()
        ok = w.call(sid, "/persons/1", token=token)
        w.call(sid, "/persons/2", token=token, subject="1234567890")  # subject-invalid
        admin = {"Authorization": f"Bearer {w.admin_token}"}

        def search(**params: Any) -> list[dict[str, Any]]:
            r = httpx.get(f"{w.url}/api/v1/log", params=params, headers=admin)
            assert r.status_code == 200, r.text
            return list(r.json()["records"])

        by_id = search(request_id=ok.headers["gsb-request-id"])
        assert [rec["seq"] for rec in by_id] == [int(ok.headers["gsb-log-id"])]
        assert by_id[0]["seal"] is None or by_id[0]["seal"]["seq"] >= by_id[0]["seq"]
        assert len(by_id[0]["hash"]) == 64 and len(by_id[0]["prev_hash"]) == 64
        assert {r["outcome"] for r in search(client=w.clients["cons"].id)} == {
            "ok",
            "subject-invalid",
        }
        assert [r["outcome"] for r in search(service=sid, outcome="subject-invalid")] == [
            "subject-invalid"
        ]
        mine = search(national_code="0499370899")
        assert [r["seq"] for r in mine] == [int(ok.headers["gsb-log-id"])]
        assert "0499370899" not in str(mine)
        assert search(national_code="0499370899", since="2999-01-01T00:00:00Z") == []
        bad = httpx.get(
            f"{w.url}/api/v1/log", params={"national_code": "1234567890"}, headers=admin
        )
        assert bad.status_code == 400 and bad.json()["code"] == "bad-request"
        assert httpx.get(f"{w.url}/api/v1/log").status_code == 401
    finally:
        w.stop()
