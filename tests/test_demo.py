"""``dargah demo`` starts the sandbox and keeps the demo.json contract of platform.md."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dargah.client.consumer import GsbClient
from dargah.core.identifiers import is_legal_id, is_national_code, parse_service_id
from tests.demo_process import Demo
from tests.harness import DARGAH, free_port


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    d = Demo(tmp_path_factory.mktemp("demo") / "home", free_port())
    d.start()
    yield d
    if d.proc is not None:
        d.stop()


def _doc(demo: Demo) -> dict[str, Any]:
    return json.loads((demo.home / "demo.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_demo_json_has_every_field_of_the_contract(demo: Demo) -> None:
    doc = _doc(demo)
    assert doc["instance"] == "DEV"
    assert doc["bus_url"] == f"http://127.0.0.1:{demo.port}"
    assert doc["portal_url"] == doc["bus_url"] + "/"
    assert doc["console_url"] == doc["bus_url"] + "/console/"
    assert Path(doc["home"]).is_absolute() and Path(doc["home"]) == demo.home.resolve()
    assert set(doc["admin"]) >= {"username", "password", "api_token"}
    client = doc["clients"][0]
    assert set(client) >= {"id", "client_secret", "private_key_file", "allowed", "denied"}
    assert Path(client["private_key_file"]).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(client["allowed"]) >= 4 and client["denied"]
    for entry in client["allowed"]:
        parse_service_id(entry["service"])
        assert entry["example"]["path"].startswith("/") and entry["purposes"]
    assert len(doc["citizens"]) >= 1000
    assert all(
        is_national_code(c["national_code"]) and c["mobile"].startswith("09")
        for c in doc["citizens"]
    )
    assert len({c["national_code"] for c in doc["citizens"]}) == len(doc["citizens"])


def test_every_allowed_service_answers_for_listed_citizens_with_the_private_key(demo: Demo) -> None:
    doc = _doc(demo)
    client = doc["clients"][0]
    sample = random.Random(7).sample(doc["citizens"], 40)
    with GsbClient(
        doc["bus_url"], client["id"], private_key_file=client["private_key_file"]
    ) as gsb:
        for entry in client["allowed"]:
            for citizen in sample:
                code = citizen["national_code"]
                r = gsb.call(
                    entry["service"],
                    entry["example"]["path"].replace("{subject}", code),
                    method=entry["example"]["method"],
                    purpose=entry["purposes"][0],
                    subject=code,
                )
                assert 200 <= r.status_code < 300, (
                    entry["service"],
                    code,
                    r.status_code,
                    r.text[:300],
                )


def test_the_sandbox_shows_mutual_tls_with_the_testers_certificate_alone(demo: Demo) -> None:
    doc = _doc(demo)
    client = doc["clients"][0]
    assert doc["bus_tls_url"].startswith("https://127.0.0.1:")
    entry = client["allowed"][0]
    code = doc["citizens"][0]["national_code"]
    with GsbClient(
        doc["bus_tls_url"],
        client["id"],
        certificate_file=client["certificate_file"],
        certificate_key_file=client["certificate_key_file"],
        ca_file=doc["tls_ca_file"],
    ) as gsb:
        r = gsb.call(
            entry["service"],
            entry["example"]["path"].replace("{subject}", code),
            method=entry["example"]["method"],
            purpose=entry["purposes"][0],
            subject=code,
        )
        assert 200 <= r.status_code < 300, r.text[:300]
        token = gsb.token()
    # The token is bound to the certificate: over the plain address it is refused.
    r = httpx.get(
        f"{doc['bus_url']}/r1/{entry['service']}{entry['example']['path'].replace('{subject}', code)}",
        headers={
            "Authorization": f"Bearer {token}",
            "GSB-Purpose": entry["purposes"][0],
            "GSB-Subject": code,
        },
    )
    assert r.status_code == 401 and r.headers["gsb-error"] == "unauthenticated"


def test_every_denied_service_answers_access_denied(demo: Demo) -> None:
    doc = _doc(demo)
    client = doc["clients"][0]
    code = doc["citizens"][0]["national_code"]
    with GsbClient(doc["bus_url"], client["id"], client_secret=client["client_secret"]) as gsb:
        for service in client["denied"]:
            r = gsb.call(service, "/", purpose="identity-verification", subject=code)
            assert r.status_code == 403 and r.headers["gsb-error"] == "access-denied"


def test_sandbox_agencies_refuse_calls_that_bypass_the_bus(demo: Demo) -> None:
    doc = _doc(demo)
    entry = doc["clients"][0]["allowed"][0]
    code = doc["citizens"][0]["national_code"]
    agency_code = entry["service"].split("/")[3]
    r = httpx.get(
        f"{doc['sandbox_url']}/{agency_code}{entry['example']['path'].replace('{subject}', code)}"
    )
    assert r.status_code == 401


def test_agencies_have_checksum_valid_legal_ids(demo: Demo) -> None:
    doc = _doc(demo)
    for entry in doc["clients"][0]["allowed"]:
        assert is_legal_id(parse_service_id(entry["service"]).subsystem.member.legal_id)


def test_a_restart_keeps_the_data_and_the_credentials(demo: Demo) -> None:
    before = _doc(demo)
    assert demo.stop() == 0
    after = demo.start()
    assert after["clients"][0]["client_secret"] == before["clients"][0]["client_secret"]
    assert after["admin"]["api_token"] == before["admin"]["api_token"]
    r = httpx.get(
        f"{after['bus_url']}/api/v1/members",
        headers={"Authorization": f"Bearer {after['admin']['api_token']}"},
    )
    assert r.status_code == 200, r.text
    verify = subprocess.run(
        [DARGAH, "log", "verify", "--home", str(demo.home)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_registered_birth_opens_the_newborn_package_without_anyone_applying(demo: Demo) -> None:
    from dargah.sandbox.citizens import generate_citizens

    doc = _doc(demo)
    client = doc["clients"][0]
    people = {c.national_code: c for c in generate_citizens()}
    mother = next(
        c
        for c in people.values()
        if c.gender == "female" and c.alive and c.spouse and people[c.spouse].alive
    )
    father = people[mother.spouse]
    by_code = {e["service"].split("/")[-1]: e for e in client["allowed"]}
    with GsbClient(doc["bus_url"], client["id"], client_secret=client["client_secret"]) as gsb:
        reg, ben = by_code["birth-registration.v1"], by_code["benefit-application.v1"]
        birth = gsb.call(
            reg["service"],
            "/births",
            method="POST",
            purpose=reg["purposes"][0],
            subject=mother.national_code,
            json={
                "first_name": "آرش",
                "gender": "male",
                "father_national_code": father.national_code,
                "mother_national_code": mother.national_code,
            },
        )
        assert birth.status_code == 201, birth.text
        deadline = time.monotonic() + 20
        opened: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not opened:
            r = gsb.call(
                ben["service"],
                f"/persons/{mother.national_code}/applications",
                purpose=ben["purposes"][0],
                subject=mother.national_code,
            )
            assert r.status_code == 200, r.text
            opened = [a for a in r.json()["applications"] if a.get("channel") == "proactive"]
            time.sleep(0.3)
    assert opened, "the welfare agency did not open the newborn package from the birth event"
