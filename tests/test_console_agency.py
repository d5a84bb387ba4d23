"""Agency self-service and oversight in the console, over real HTTP and in a real browser.

Agency administrators register subsystems, keys, bus services and public services for their
own member only; an upload of a catalogue file is all or nothing, with each bad row shown;
the operator decides duplicates; complaints are answered by the agency they are routed to.
One instance serves the whole module.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dargah.core.certs import pem_thumbprint, self_signed
from dargah.core.keys import generate_ed25519, generate_p256, private_pem, public_jwk
from dargah.registry import certs, members, services
from tests.console_agency_site import (
    OTHER_CARD,
    PROV_CARD,
    add_cards_and_complaints,
    audit_actions,
    card_count,
    card_row,
    complaint,
)
from tests.console_site import PASSWORD, Visitor, prepare, signed_in, start_site
from tests.harness import OTHER_LEGAL_ID, PROVIDER_LEGAL_ID, World, make_world
from tests.providers import Provider

Site = tuple[World, dict[str, Any]]


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, provider: Provider, module_database_url: str
) -> Iterator[Site]:
    w = make_world(
        tmp_path_factory.mktemp("console-agency") / "home", provider.url, module_database_url
    )
    ids = prepare(w)
    ids.update(add_cards_and_complaints(w))
    before = os.environ.get("DARGAH_SESSION_HOURS")
    os.environ["DARGAH_SESSION_HOURS"] = "2"
    try:
        start_site(w)
    finally:
        if before is None:
            os.environ.pop("DARGAH_SESSION_HOURS")
        else:
            os.environ["DARGAH_SESSION_HOURS"] = before
    try:
        yield w, ids
    finally:
        w.stop()
        w.engine.dispose()


def _jwk() -> str:
    return json.dumps(public_jwk(generate_ed25519()))


def _post(v: Visitor, path: str, form: dict[str, Any], files: Any = None) -> httpx.Response:
    data = {**form, "csrf": v.csrf}
    if files is None:
        return v.post(path, data)
    r = httpx.post(v.base + path, data=data, files=files, headers=v._headers(None), timeout=60)
    return v._keep(r)


def test_an_agency_admin_registers_and_revokes_its_systems_tls_certificate(site: Site) -> None:
    w, _ = site
    me = signed_in(w.url, "prov-admin")
    client = f"{w.member(PROVIDER_LEGAL_ID)}/prov"
    pem = self_signed(client, generate_p256()).decode()
    thumbprint = pem_thumbprint(pem)[0]
    r = _post(me, "/console/subsystem", {"action": "add-cert", "id": client, "pem": pem})
    assert r.status_code == 303, r.text[:400]
    page = me.get(f"/console/subsystem?id={client}")
    assert f'data-thumbprint="{thumbprint}"' in page.text
    r = _post(me, "/console/subsystem", {"action": "add-cert", "id": client, "pem": pem + "x"})
    assert r.status_code in (400, 409) and 'dir="rtl"' in r.text
    key_pem = pem + private_pem(generate_p256()).decode()
    r = _post(me, "/console/subsystem", {"action": "add-cert", "id": client, "pem": key_pem})
    assert r.status_code == 400 and "گواهی" in r.text
    r = _post(
        me,
        "/console/subsystem",
        {"action": "revoke-cert", "id": client, "thumbprint": thumbprint},
    )
    assert r.status_code == 303
    with w.engine.connect() as conn:
        (row,) = certs.list_certificates(conn, client)
    assert row["status"] == "revoked"


def test_console_sessions_last_the_configured_hours(site: Site) -> None:
    w, _ = site
    v = Visitor(w.url)
    v.get("/console/login")
    r = v.post("/console/login", {"csrf": v.csrf, "username": "prov-admin", "password": PASSWORD})
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("dargah_console="))
    assert "max-age=7200" in cookie.lower()


def test_an_agency_admin_registers_its_own_subsystem_keys_and_service(site: Site) -> None:
    w, _ = site
    me = signed_in(w.url, "prov-admin")
    member = w.member(PROVIDER_LEGAL_ID)
    client = f"{member}/selfreg"
    r = _post(me, "/console/subsystem", {"action": "add", "member": member, "code": "selfreg"})
    assert r.status_code == 303, r.text[:400]
    r = _post(me, "/console/subsystem", {"action": "add-key", "id": client, "jwk": _jwk()})
    assert r.status_code == 303, r.text[:400]
    with w.engine.connect() as conn:
        (first,) = members.list_keys(conn, client)
    r = _post(
        me,
        "/console/subsystem",
        {"action": "rotate-key", "id": client, "kid": first["kid"], "jwk": _jwk()},
    )
    assert r.status_code == 303
    with w.engine.connect() as conn:
        keys = {k["kid"]: k["status"] for k in members.list_keys(conn, client)}
    assert keys[first["kid"]] == "revoked" and list(keys.values()).count("active") == 1
    # a private key or junk is refused in Persian
    private = {**public_jwk(generate_ed25519()), "d": "secret"}
    r = _post(
        me, "/console/subsystem", {"action": "add-key", "id": client, "jwk": json.dumps(private)}
    )
    assert r.status_code == 400 and "کلید عمومی" in r.text
    r = _post(me, "/console/subsystem", {"action": "add-key", "id": client, "jwk": "{not json"})
    assert r.status_code == 400 and 'dir="rtl"' in r.text
    # a bus service with an uploaded OpenAPI document
    doc = json.dumps({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}})
    form = {
        "action": "add",
        "provider": client,
        "code": "records.v1",
        "title": "سوابق",
        "base_url": w.provider_url + "/echo",
        "timeout_s": "۱۰",
        "max_body": "1000",
        "personal_data": "1",
        "supplies": "person.records, person.address",
    }
    r = _post(me, "/console/service", form, files={"openapi_file": ("api.json", doc.encode())})
    assert r.status_code == 303, r.text[:600]
    sid = f"{client}/records.v1"
    with w.engine.connect() as conn:
        s = services.get_service(conn, sid)
    assert s["has_openapi"] and s["personal_data"] and s["timeout_s"] == 10.0
    assert s["supplies"] == ["person.address", "person.records"]
    update = {**form, "action": "update", "id": sid, "maintenance": "1", "timeout_s": "20"}
    assert _post(me, "/console/service", update).status_code == 303
    with w.engine.connect() as conn:
        s = services.get_service(conn, sid)
    assert s["maintenance"] and s["timeout_s"] == 20.0 and s["has_openapi"]
    bad = {**update, "base_url": "ftp://x", "timeout_s": "999"}
    r = _post(me, "/console/service", bad)
    assert r.status_code == 400 and 'dir="rtl"' in r.text
    leaked = {**update, "base_url": "http://gsb:secret@sabt.example/"}
    r = _post(me, "/console/service", leaked)
    assert r.status_code == 400 and "گذرواژه" in r.text
    with w.engine.connect() as conn:
        assert "secret" not in services.get_service(conn, sid)["base_url"]
    r = _post(
        me,
        "/console/subsystem",
        {
            "action": "revoke-key",
            "id": client,
            "kid": next(k for k, st in keys.items() if st == "active"),
        },
    )
    assert r.status_code == 303
    done = audit_actions(w, "console:prov-admin")
    for action in ("subsystem:add", "key:add", "key:revoke", "service:add", "service:update"):
        assert f"registry:{action}" in done, action
    assert sid in me.get("/console/services").text


def test_another_agency_is_refused_by_every_url_and_hidden_field(site: Site) -> None:
    w, ids = site
    other = signed_in(w.url, "other-admin")
    prov_member = w.member(PROVIDER_LEGAL_ID)
    prov_client, prov_service = ids["prov_client"], ids["prov_service"]
    for path in (
        f"/console/service?id={prov_service}",
        f"/console/service?provider={prov_client}",
        f"/console/card?id={PROV_CARD}",
        f"/console/catalogue?member={prov_member}",
        f"/console/oversight?agency={prov_member}",
    ):
        r = other.get(path)
        assert r.status_code in (403, 404), (path, r.status_code)
    posts = [
        ("/console/subsystem", {"action": "add", "member": prov_member, "code": "sneak"}),
        ("/console/subsystem", {"action": "add", "id": f"{prov_member}/sneak"}),
        ("/console/subsystem", {"action": "add-key", "id": prov_client, "jwk": _jwk()}),
        ("/console/subsystem", {"action": "revoke", "id": prov_client}),
        (
            "/console/service",
            {
                "action": "add",
                "provider": prov_client,
                "code": "x.v1",
                "base_url": "http://a",
                "timeout_s": "1",
            },
        ),
        (
            "/console/service",
            {"action": "update", "id": prov_service, "base_url": "http://evil", "timeout_s": "1"},
        ),
        ("/console/service", {"action": "remove", "id": prov_service}),
        (
            "/console/card",
            {"service_id": PROV_CARD, "member": w.member(OTHER_LEGAL_ID), "title_fa": "x"},
        ),
        ("/console/card", {"service_id": "30000000003", "member": prov_member, "title_fa": "x"}),
        ("/console/complaints", {"id": str(ids["prov_complaint"]), "status": "closed"}),
        ("/console/duplicates", {"a": PROV_CARD, "b": OTHER_CARD, "status": "dismissed"}),
    ]
    for path, form in posts:
        r = _post(other, path, form)
        assert r.status_code == 403, (path, form, r.status_code)
    upload = {"file": ("c.json", b'{"services": []}')}
    r = _post(other, "/console/catalogue", {"member": prov_member}, files=upload)
    assert r.status_code == 403
    with w.engine.connect() as conn:
        assert members.get_subsystem(conn, prov_client)["status"] == "active"
        assert services.get_service(conn, prov_service)["status"] == "active"
        assert [
            s["id"] for s in members.list_subsystems(conn, prov_member) if "sneak" in s["id"]
        ] == []
    assert complaint(w, ids["prov_complaint"])["status"] == "open"
    assert card_row(w, "30000000003") is None
    # what it sees of the catalogue, oversight, duplicates and complaints is its own
    for path in ("/console/catalogue", "/console/oversight"):
        text = other.get(path).text
        assert PROV_CARD not in text and OTHER_CARD in text, path
    text = other.get("/console/complaints").text
    assert f'data-complaint="{ids["prov_complaint"]}"' not in text
    assert f'data-complaint="{ids["other_complaint"]}"' in text


def test_the_auditor_reads_everything_and_changes_nothing(site: Site) -> None:
    w, ids = site
    auditor = signed_in(w.url, "auditor")
    for path in ("/console/catalogue", "/console/duplicates", "/console/complaints"):
        assert auditor.get(path).status_code == 200, path
    r = auditor.get(f"/console/oversight?agency={w.member(PROVIDER_LEGAL_ID)}")
    assert r.status_code == 200 and PROV_CARD in r.text
    for path, form in (
        ("/console/subsystem", {"action": "add-key", "id": ids["prov_client"], "jwk": _jwk()}),
        ("/console/service", {"action": "remove", "id": ids["prov_service"]}),
        ("/console/card", {"service_id": PROV_CARD, "member": w.member(PROVIDER_LEGAL_ID)}),
        ("/console/complaints", {"id": str(ids["prov_complaint"]), "status": "closed"}),
        ("/console/duplicates", {"a": PROV_CARD, "b": OTHER_CARD, "status": "confirmed"}),
    ):
        assert _post(auditor, path, form).status_code == 403, path
    r = _post(auditor, "/console/catalogue", {}, files={"file": ("c.json", b"{}")})
    assert r.status_code == 403


BAD_CSV = (
    "service_id,agency_legal_id,title_fa,declared_level,channels\n"
    f"40000000004,{PROVIDER_LEGAL_ID},خدمت درست,2,online\n"
    f"12345,{PROVIDER_LEGAL_ID},شناسه کوتاه,2,online\n"
    f"40000000005,{PROVIDER_LEGAL_ID},سطح نادرست,9,online\n"
    f"40000000006,{OTHER_LEGAL_ID},دستگاه دیگر,1,online\n"
    f"{OTHER_CARD},{PROVIDER_LEGAL_ID},خدمت دیگری,1,online\n"
)


def test_a_bad_catalogue_upload_shows_every_bad_row_and_writes_nothing(site: Site) -> None:
    w, _ = site
    me = signed_in(w.url, "prov-admin")
    before = card_count(w)
    r = _post(me, "/console/catalogue", {}, files={"file": ("کاتالوگ.csv", BAD_CSV.encode())})
    assert r.status_code == 400
    assert "هیچ سطری نوشته نشد" in r.text
    lines = set(re.findall(r'data-line="(\d+)"', r.text))
    assert {"3", "4", "5", "6"} <= lines and "2" not in lines, lines
    assert "شناسهٔ خدمت (۱۱ رقم) نیست" in r.text
    assert f"فقط برای دستگاه {PROVIDER_LEGAL_ID}" in r.text
    assert "پیش‌تر به نام دستگاه دیگری" in r.text
    assert card_count(w) == before and card_row(w, "40000000004") is None
    good = BAD_CSV.splitlines()[:2]
    r = _post(me, "/console/catalogue", {}, files={"file": ("c.csv", "\n".join(good).encode())})
    assert r.status_code == 200 and "وارد شد" in r.text
    row = card_row(w, "40000000004")
    assert row is not None and row["member_id"] == w.member(PROVIDER_LEGAL_ID)


def test_an_agency_admin_writes_a_card_through_the_catalogue_validation(site: Site) -> None:
    w, _ = site
    me = signed_in(w.url, "prov-admin")
    form = {
        "service_id": "50000000005",
        "member": w.member(PROVIDER_LEGAL_ID),
        "title_fa": "تمدید پروانه",
        "fee_rials": "بسیار",
        "declared_level": "2",
        "channel_online": "1",
        "step_apply_online": "1",
        "documents": "کارت ملی | person.identity",
        "life_events": "کسب و کار",
        "status": "active",
    }
    r = _post(me, "/console/card", form)
    assert r.status_code == 400 and 'data-field="fee_rials"' in r.text
    assert card_row(w, "50000000005") is None
    r = _post(me, "/console/card", {**form, "fee_rials": "۱۲۰۰۰"})
    assert r.status_code == 303, r.text[:800]
    row = card_row(w, "50000000005")
    assert row is not None and row["fee_rials"] == 12000 and row["steps_apply_online"]
    page = me.get("/console/card?id=50000000005")
    assert page.status_code == 200 and "تمدید پروانه" in page.text


def test_oversight_shows_the_agencys_levels_reasons_and_exports(site: Site) -> None:
    w, _ = site
    me = signed_in(w.url, "prov-admin")
    r = me.get("/console/oversight")
    assert r.status_code == 200
    assert f'data-card="{PROV_CARD}"' in r.text and 'data-kpi="satisfaction"' in r.text
    assert f"/dashboard/export/levels.csv?agency={PROVIDER_LEGAL_ID}" in r.text
    assert "برنامهٔ هفتم" in r.text and "<li>" in r.text


def test_complaints_are_answered_by_their_agency(site: Site) -> None:
    w, ids = site
    me = signed_in(w.url, "prov-admin")
    number = str(ids["prov_complaint"])
    r = _post(me, "/console/complaints", {"id": number, "status": "answered"})
    assert r.status_code == 400 and "متن پاسخ" in r.text
    form = {"id": number, "status": "answered", "answer": "گواهی شما صادر شد"}
    assert _post(me, "/console/complaints", form).status_code == 303
    row = complaint(w, ids["prov_complaint"])
    assert row["status"] == "answered" and row["answer"] == "گواهی شما صادر شد"
    assert "operations:complaint:answer" in me.get("/console/audit").text


def _browser_sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/console/login")
    page.get_by_label("نام کاربری").fill(username)
    page.get_by_label("گذرواژه").fill(PASSWORD)
    page.get_by_role("button", name="ورود").click()
    page.wait_for_url("**/console/status")


def test_in_a_browser_an_agency_admin_registers_a_subsystem_a_key_and_a_service(
    site: Site, page: Any, shots: Any
) -> None:
    w, _ = site
    _browser_sign_in(page, w.url, "prov-admin")
    page.goto(f"{w.url}/console/subsystems")
    page.get_by_label("کد سامانه (لاتین، مانند portal)").fill("browser")
    page.get_by_label("نام", exact=True).fill("سامانهٔ آزمایشی")
    shots(page, "subsystem-form")
    page.get_by_role("button", name="افزودن سامانه").click()
    client = f"{w.member(PROVIDER_LEGAL_ID)}/browser"
    page.wait_for_url(re.compile(r"/console/subsystem\?id="))
    page.locator("#jwk").fill(_jwk())
    page.get_by_role("button", name="ثبت کلید").click()
    page.locator("#keys tbody tr[data-kid]").wait_for()
    assert page.locator("#keys tbody tr[data-kid]").count() == 1
    shots(page, "key-registered")
    page.get_by_role("link", name="ثبت خدمت تازه برای این سامانه").click()
    page.get_by_label("کد خدمت (مانند person.v1)").fill("browser.v1")
    page.get_by_label("عنوان").fill("خدمت آزمایشی")
    page.get_by_label("نشانی پایه ارائه‌دهنده").fill(w.provider_url + "/echo")
    page.get_by_label("داده شخصی می‌دهد").check()
    shots(page, "service-form")
    page.get_by_role("button", name="ثبت خدمت").click()
    page.wait_for_url(re.compile(r"/console/service\?id="))
    assert "browser.v1" in page.content()
    shots(page, "service-registered")
    with w.engine.connect() as conn:
        assert services.get_service(conn, f"{client}/browser.v1")["personal_data"]


def test_in_a_browser_the_operator_confirms_a_duplicate(site: Site, page: Any, shots: Any) -> None:
    w, _ = site
    _browser_sign_in(page, w.url, "admin")
    page.goto(f"{w.url}/console/duplicates")
    a, b = sorted((PROV_CARD, OTHER_CARD))
    row = page.locator(f'tr[data-pair="{a}:{b}"]')
    assert row.count() == 1 and "نامزد" in row.inner_text()
    shots(page, "duplicate-candidates")
    row.get_by_label(f"دلیل برای {a} و {b}").fill("یک خدمت در دو دستگاه")
    row.get_by_role("button", name="تأیید تکرار").click()
    page.wait_for_url("**/console/duplicates")
    assert "تأیید شد" in page.locator(f'tr[data-pair="{a}:{b}"]').inner_text()
    shots(page, "duplicate-confirmed")
    page.goto(f"{w.url}/console/audit")
    assert "registry:duplicate:decide" in page.locator("#audit-entries").inner_text()
