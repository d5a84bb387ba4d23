"""The portal tells citizens without being asked: a status change, a service an agency opened
for the family, a source failing for a service they are using; each once, by SMS (the sandbox
outbox) with the tracking code, and on their pages. And what a slow phone needs from the
server: compressed pages, static files cached for a year by fingerprint, a favicon."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from dargah.core.settings import Settings
from dargah.portal import otp, records
from dargah.portal.app import build_portal
from dargah.registry.catalogue.importer import import_catalogue
from dargah.registry.incidents import open_cause
from dargah.registry.instance import open_instance
from dargah.sandbox.catalogue_seed import load_seed_catalogue
from dargah.sandbox.citizens import generate_citizens
from dargah.store.tables import outbox
from dargah.web.sessions import mask_token, unmask_token
from tests.portal_client import Citizen, csrf_of, register_birth

SERVICE = "21100000001"  # welfare pension, submitted to the welfare agency over the bus
LATIN = str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")


def _texts(base: str, mobile: str) -> list[str]:
    box = httpx.get(f"{base}/sandbox/outbox.json", timeout=10).json()
    return [m["text"].translate(LATIN) for m in box if m["to"] == mobile]


def _wait_for(base: str, mobile: str, *needles: str, seconds: float = 60) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [t for t in _texts(base, mobile) if all(n in t for n in needles)]
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"no SMS to {mobile} with {needles}: {_texts(base, mobile)}")


def _apply(c: Citizen) -> str:
    r = c.post(
        f"/services/{SERVICE}/apply/consent",
        {"csrf": c.form_token(f"/services/{SERVICE}/apply"), "consent": "yes"},
    )
    assert r.status_code == 303, r.text[:300]
    form = c.get(f"/services/{SERVICE}/apply/form")
    r = c.post(
        f"/services/{SERVICE}/apply/form",
        {
            "csrf": csrf_of(form.text),
            "mobile": c.mobile,
            "iban": "IR" + "3" * 24,
            "programme": "pension",
        },
    )
    assert r.status_code == 303, r.text[:1000]
    found = re.search(r"/me/applications/([0-9]+)", r.headers["location"])
    assert found
    return found.group(1)


def test_each_status_change_reaches_the_citizen_once_by_sms_and_on_the_portal_unasked(
    sandbox_demo: Any,
) -> None:
    doc = sandbox_demo.doc
    base = doc["portal_url"].rstrip("/")
    person = doc["citizens"][240]
    c = Citizen(base, person["national_code"], person["mobile"]).sign_in()
    tracking = _apply(c)  # the redirect to the application's page is not followed
    _wait_for(base, c.mobile, tracking, "ثبت شد")
    decided = ("«تأیید شد»", "«رد شد»")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # decided while nobody looks
        if any(d in t for t in _texts(base, c.mobile) if tracking in t for d in decided):
            break
        time.sleep(1)
    time.sleep(12)  # two more rounds of the watcher: nothing is told twice
    texts = [t for t in _texts(base, c.mobile) if tracking in t]
    assert sum("ثبت شد" in t for t in texts) == 1, texts
    assert sum(any(d in t for d in decided) for t in texts) == 1, texts
    assert sum("«در حال بررسی»" in t for t in texts) <= 1, texts  # a round may miss it
    page = c.get(f"/services/{SERVICE}").text
    assert re.search(r'class="count"[^>]*>[۰-۹]+<', page), "the header shows no new messages"
    mine = c.get("/me/applications").text
    shown = re.search(r'<section[^>]*id="notifications".*?</section>', mine, re.S)
    assert shown and tracking in shown.group(0).translate(LATIN)
    assert any(d in shown.group(0) for d in decided)
    assert 'class="count"' not in c.get(f"/services/{SERVICE}").text  # now read


def test_a_service_an_agency_opens_for_a_newborn_is_told_to_the_mother_unasked(
    sandbox_demo: Any,
) -> None:
    doc = sandbox_demo.doc
    base = doc["portal_url"].rstrip("/")
    listed = {c["national_code"]: c for c in doc["citizens"]}
    people = {c.national_code: c for c in generate_citizens()}
    mothers = [
        c
        for code, c in people.items()
        if code in listed
        and c.gender == "female"
        and c.alive
        and c.spouse
        and people[c.spouse].alive
        and int(c.birth_date[:4]) > 1980
    ]
    mother = mothers[-1]  # not the one of the journey test
    m = listed[mother.national_code]
    Citizen(base, m["national_code"], m["mobile"]).sign_in()  # signed in, then away
    register_birth(doc, mother.national_code, mother.spouse, "کاوه")
    told = _wait_for(base, m["mobile"], "بدون درخواست شما")
    codes = re.findall(r"[0-9]{12}", told[0])
    assert codes, told
    time.sleep(12)
    again = [t for t in _texts(base, m["mobile"]) if codes[0] in t and "بدون درخواست" in t]
    assert len(again) == 1, again


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    home = tmp_path_factory.mktemp("notices")
    engine, info, _ = open_instance(Settings(home=home))
    seed = home / "seed.json"
    seed.write_text(json.dumps(load_seed_catalogue(), ensure_ascii=False), encoding="utf-8")
    import_catalogue(engine, [seed], actor="test", instance=info.code)
    yield engine, build_portal(engine)
    engine.dispose()


def test_a_failing_source_is_told_once_to_the_citizens_with_open_applications_on_it(
    seeded: tuple[Any, Any],
) -> None:
    engine, app = seeded
    services = app.state.watcher.ctx.catalogue.get().services
    card = services[SERVICE]
    source = card["data_source_ids"][0]
    people = {"0013542419": "09120000011", "0499370899": "09120000012", "0067749828": "09120000013"}
    for code, mobile in people.items():
        otp.issue(engine, code, mobile, 120)  # how the portal knows a citizen's mobile
    with engine.begin() as conn:
        waiting = records.create_application(
            conn, national_code="0013542419", service_id=SERVICE, submit_to=card["submit_to"]
        )
        records.create_application(  # ended: nothing to hold up
            conn,
            national_code="0499370899",
            service_id=SERVICE,
            submit_to=card["submit_to"],
            status="approved",
        )
        other = next(s for s, c in services.items() if source not in c["data_source_ids"])
        records.create_application(conn, national_code="0067749828", service_id=other)
        assert open_cause(  # one cause: its host, with the source among its services
            conn,
            "http://agency.example:80",
            "test",
            ["ir.test.other/svc/unrelated", source],
            "2026-01-01T00:00:00.000000Z",
            "the source does not answer",
            "منبع پاسخ نمی‌دهد",
            3600,
        )
    assert app.state.watcher.tell_incidents() == 1
    assert app.state.watcher.tell_incidents() == 0  # once
    with engine.connect() as conn:
        sms = [
            (r.recipient, r.text.translate(LATIN))
            for r in conn.execute(outbox.select().where(outbox.c.code.is_(None)))
        ]
    assert len(sms) == 1 and sms[0][0] == "09120000011", sms
    assert waiting["tracking_code"] in sms[0][1] and "از دسترس خارج" in sms[0][1]


def test_pages_are_compressed_and_static_files_cached_for_a_year_by_fingerprint(
    seeded: tuple[Any, Any],
) -> None:
    _, app = seeded
    client = TestClient(app)
    gz = {"accept-encoding": "gzip"}
    pages = ("/", "/search?q=گذرنامه", f"/services/{SERVICE}", "/login", "/nowhere")
    for path in pages:
        r = client.get(path, headers=gz)
        assert r.headers.get("content-encoding") == "gzip", path
        html = r.text
        assert re.search(r'<meta name="description" content="[^"]{20,}">', html), path
        assert '<link rel="stylesheet"' not in html, path  # the design system is inline
        assert not re.search(r"<script src=[^>]*>", html), path  # no script to wait for
    home = client.get("/").text
    assets = set(re.findall(r'"(/static/[^"?]+\?v=[0-9a-f]{12})"', home))
    assert len(assets) >= 3  # the icon and both fonts
    for url in assets:
        r = client.get(url, headers=gz | {"cookie": "dargah_portal=x"})
        assert r.status_code == 200, url
        assert r.headers.get_list("cache-control") == ["public, max-age=31536000, immutable"]
    big = client.get("/static/vendor/bootstrap/bootstrap.rtl.min.css", headers=gz)
    assert (
        big.headers["content-encoding"] == "gzip"
        and "immutable" not in big.headers["cache-control"]
    )  # not asked by fingerprint: a short lifetime
    stale = client.get("/static/favicon.svg?v=000000000000")
    assert "immutable" not in stale.headers["cache-control"]
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"


def test_a_csrf_token_is_masked_afresh_in_every_compressed_page(seeded: tuple[Any, Any]) -> None:
    _, app = seeded
    client = TestClient(app, base_url="https://testserver")
    first = client.get("/login", headers={"accept-encoding": "gzip"})
    pre = client.cookies.get("dargah_portal_pre")
    assert pre and first.headers["content-encoding"] == "gzip"
    seen = {csrf_of(client.get("/login").text) for _ in range(3)} | {csrf_of(first.text)}
    assert len(seen) == 4 and pre not in seen  # never the token itself, never twice the same
    assert all(unmask_token(t) == pre for t in seen)
    r = client.post("/login", data={"csrf": seen.pop(), "national_code": "12"})
    assert r.status_code == 400  # past the CSRF check: the national code is what is wrong
    forged = mask_token(pre[:-1] + ("A" if pre[-1] != "A" else "B"))
    r = client.post("/login", data={"csrf": forged, "national_code": "12"})
    assert r.status_code == 403
