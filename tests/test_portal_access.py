"""The portal's guards, against a running sandbox: a citizen sees only their own file, sign-in
limits hold, forms without a CSRF token are refused, bad input never gets a 500, every route
states its authentication, and the portal's bus calls are in the message log."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from starlette.testclient import TestClient

from dargah.portal import otp
from dargah.portal.app import build_portal
from dargah.portal.context import AUTH_LEVELS
from dargah.store.db import upgrade
from tests.portal_client import Citizen, csrf_of

SERVICE = "21100000001"  # welfare pension: pre-filled from five agencies, submitted over the bus


def _citizen(demo: Any, index: int) -> Citizen:
    c = demo.doc["citizens"][index]
    return Citizen(demo.doc["portal_url"], c["national_code"], c["mobile"])


def _apply(c: Citizen) -> str:
    r = c.post(
        f"/services/{SERVICE}/apply/consent",
        {"csrf": c.form_token(f"/services/{SERVICE}/apply"), "consent": "yes"},
    )
    assert r.status_code == 303, r.text[:300]
    form = c.get(f"/services/{SERVICE}/apply/form")
    assert form.status_code == 200
    assert re.search(r'<option value="pension"[^>]*>مستمری</option>', form.text)  # titled choices
    r = c.post(
        f"/services/{SERVICE}/apply/form",
        {
            "csrf": csrf_of(form.text),
            "mobile": c.mobile,
            "iban": "IR" + "0" * 24,
            "programme": "pension",
        },
    )
    assert r.status_code == 303, r.text[:1000]
    found = re.search(r"/me/applications/([0-9]+)", r.headers["location"])
    assert found
    return found.group(1)


@pytest.fixture(scope="module")
def two(sandbox_demo: Any) -> tuple[Citizen, Citizen, str]:
    a = _citizen(sandbox_demo, 100).sign_in()
    b = _citizen(sandbox_demo, 101).sign_in()
    return a, b, _apply(a)


def test_a_citizen_never_reaches_another_citizens_applications(
    two: tuple[Citizen, Citizen, str],
) -> None:
    a, b, tracking = two
    assert a.get(f"/me/applications/{tracking}").status_code == 200
    assert tracking in a.get("/me/applications").text
    for path in (
        f"/me/applications/{tracking}",
        f"/me/applications/{tracking}?national_code={a.national_code}",
        f"/me/applications/{tracking}/",
    ):
        r = b.get(path)
        assert r.status_code in (404, 307), (path, r.status_code)
        assert a.national_code not in r.text
    listing = b.get(f"/me/applications?national_code={a.national_code}")
    assert listing.status_code == 200 and tracking not in listing.text
    token = b.form_token("/me/applications")
    assert (
        b.post(f"/me/applications/{tracking}/rating", {"csrf": token, "score": "5"}).status_code
        == 404
    )
    r = b.post(
        "/me/complaints",
        {"csrf": token, "service_id": SERVICE, "tracking": tracking, "text": "شکایت آزمایشی"},
    )
    assert r.status_code == 404


def test_a_citizen_sees_only_their_own_data_use(two: tuple[Citizen, Citizen, str]) -> None:
    a, b, _ = two
    mine = a.get("/me/data-use").text
    theirs = b.get(f"/me/data-use?national_code={a.national_code}&subject={a.national_code}").text
    rows = lambda html: html.count("<tr>") - 1  # noqa: E731
    assert rows(mine) >= 6  # sign-in and five pre-fill sources and the submission
    # b signed in (the mobile inquiry) and the portal asked the agencies with proactive
    # services for news of b; b applied for nothing, so none of a's pre-fill calls may show
    assert 1 <= rows(theirs) < rows(mine) and "mobile-inquiry.v1" in theirs
    for source in ("person-inquiry.v1", "address-inquiry.v1", "family-inquiry.v1"):
        assert source in mine and source not in theirs


def test_anonymous_visitors_are_sent_to_sign_in(sandbox_demo: Any) -> None:
    base = sandbox_demo.doc["portal_url"].rstrip("/")
    for path in (
        "/me/applications",
        "/me/data-use",
        f"/services/{SERVICE}/apply",
        "/me/applications/123456789012",
    ):
        r = httpx.get(base + path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    r = httpx.post(base + "/me/complaints", data={"service_id": SERVICE, "text": "xxxxxx"})
    assert r.status_code == 401


def test_forms_without_the_right_csrf_token_or_from_another_site_are_refused(
    sandbox_demo: Any,
) -> None:
    c = _citizen(sandbox_demo, 102)
    c.get("/login")
    assert c.post("/login", {"national_code": c.national_code}).status_code == 403
    assert c.post("/login", {"csrf": "forged", "national_code": c.national_code}).status_code == 403
    token = c.form_token("/login")
    r = c.post(
        "/login",
        {"csrf": token, "national_code": c.national_code},
        headers={"origin": "https://evil.example"},
    )
    assert r.status_code == 403
    c.sign_in()
    r = c.post("/me/complaints", {"service_id": SERVICE, "text": "بدون توکن"})
    assert r.status_code == 403
    r = c.post(f"/services/{SERVICE}/apply/consent", {"csrf": "x" * 32, "consent": "yes"})
    assert r.status_code == 403


def test_a_code_dies_after_three_wrong_tries_and_codes_cannot_be_requested_back_to_back(
    sandbox_demo: Any,
) -> None:
    c = _citizen(sandbox_demo, 103)
    r = c.request_code()
    assert r.status_code == 200
    good = c.latest_code()
    wrong = "000000" if good != "000000" else "111111"
    for left in ("۲", "۱"):
        r = c.post(
            "/login/verify",
            {"csrf": csrf_of(r.text), "national_code": c.national_code, "code": wrong},
        )
        assert r.status_code == 400 and left in r.text
    r = c.post(
        "/login/verify", {"csrf": csrf_of(r.text), "national_code": c.national_code, "code": wrong}
    )
    assert r.status_code == 400 and "باطل" in r.text
    r = c.post(
        "/login/verify", {"csrf": csrf_of(r.text), "national_code": c.national_code, "code": good}
    )
    assert r.status_code == 400 and "dargah_portal" not in c.cookies  # the right code is dead too
    again = c.request_code()
    assert again.status_code == 429 and "صبر" in again.text


def test_sign_in_takes_persian_digits_and_refuses_a_bad_national_code(sandbox_demo: Any) -> None:
    c = _citizen(sandbox_demo, 104)
    persian = c.national_code.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    assert c.request_code(persian).status_code == 200
    bad = c.national_code[:9] + str((int(c.national_code[9]) + 1) % 10)
    r = c.request_code(bad)
    assert r.status_code == 400 and "معتبر" in r.text


def test_hourly_limits_per_national_code(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'otp.db'}")
    upgrade(engine)
    monkeypatch.setattr(otp, "RESEND_SECONDS", 0)
    code = "0013542419"
    for _ in range(otp.CODES_PER_HOUR):
        otp.issue(engine, code, "09120000000", 120)
    with pytest.raises(otp.SignInRefused, match="یک ساعت"):
        otp.issue(engine, code, "09120000000", 120)
    other = "0499370899"
    failures = 0
    while failures < otp.FAILURES_PER_HOUR:
        otp.issue(engine, other, "09120000001", 120)
        for _ in range(otp.TRIES_PER_CODE):
            with pytest.raises(otp.SignInRefused):
                otp.verify(engine, other, "999999")
            failures += 1
            if failures >= otp.FAILURES_PER_HOUR:
                break
    with pytest.raises(otp.SignInRefused, match="یک ساعت"):
        otp.verify(engine, other, "123456")
    with pytest.raises(otp.SignInRefused, match="یک ساعت"):
        otp.issue(engine, other, "09120000001", 120)


def test_an_expired_code_is_refused(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'otp.db'}")
    upgrade(engine)
    otp.issue(engine, "0013542419", "09120000000", 1)
    time.sleep(1.2)
    with pytest.raises(otp.SignInRefused, match="منقضی"):
        otp.verify(engine, "0013542419", "000000")


JUNK = [
    "/services/abc/apply",
    "/services/99999999999/apply",
    "/services/../../etc/passwd",
    "/me/applications/%3Cscript%3E",
    "/me/applications/" + "9" * 400,
    "/me/data-use?before=-1",
    "/me/data-use?before=99999999999999999999999999",
    "/me/data-use?before=%00",
    "/search?q=%00%ff",
    "/login?next=//evil.example/",
    "/login?next=https://evil.example/",
    "/sandbox/outbox.json?x=%ff",
]


def test_no_page_answers_500_to_bad_input(two: tuple[Citizen, Citizen, str]) -> None:
    a, _, _ = two
    for path in JUNK:
        r = a.get(path)
        assert r.status_code < 500, (path, r.status_code)
        assert "Traceback" not in r.text
    token = a.form_token("/me/applications")
    for data in (
        {"csrf": token, "service_id": "x" * 50, "text": "a"},
        {"csrf": token, "service_id": SERVICE, "text": "x" * 5000},
        {"csrf": token, "service_id": SERVICE, "text": "متن", "tracking": "%%%"},
    ):
        assert a.post("/me/complaints", data).status_code in (400, 404)
    form = a.get(f"/services/{SERVICE}/apply/form")
    if form.status_code == 200:
        r = a.post(
            f"/services/{SERVICE}/apply/form",
            {
                "csrf": csrf_of(form.text),
                "mobile": "not a phone",
                "iban": "IR",
                "programme": "nope",
            },
        )
        assert r.status_code == 400 and r.text.count('class="field-error"') == 3


def test_sign_in_never_sends_a_browser_to_another_site(sandbox_demo: Any) -> None:
    c = _citizen(sandbox_demo, 105)
    page = c.get("/login?next=https://evil.example/x").text
    assert "evil.example" not in page
    r = c.request_code()
    r = c.post(
        "/login/verify",
        {
            "csrf": csrf_of(r.text),
            "national_code": c.national_code,
            "code": c.latest_code(),
            "next": "//evil.example",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/me/applications"


def test_session_cookies_are_secure_http_only_and_same_site(sandbox_demo: Any) -> None:
    c = _citizen(sandbox_demo, 106)
    r = c.request_code()
    r = c.post(
        "/login/verify",
        {"csrf": csrf_of(r.text), "national_code": c.national_code, "code": c.latest_code()},
    )
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("dargah_portal="))
    low = cookie.lower()
    assert "secure" in low and "httponly" in low and "samesite=lax" in low
    r = c.post("/logout", {"csrf": c.form_token("/me/applications")})
    assert r.status_code == 303
    assert c.get("/me/applications").status_code == 303  # signed out


def test_every_portal_route_states_its_authentication(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(engine)
    app = build_portal(engine, sandbox=False)
    client = TestClient(app)
    for route in app.routes:
        path = getattr(route, "path", "")
        if path == "/static":
            continue
        auth = getattr(route, "auth", None)
        assert auth in AUTH_LEVELS, f"{path} does not state its authentication"
        url = path.replace("{service_id}", SERVICE).replace("{tracking}", "123456789012")
        for method in getattr(route, "methods", None) or ():
            if method == "HEAD":
                continue
            r = client.request(method, url, follow_redirects=False)
            if auth == "citizen":
                assert r.status_code in (303, 401), (method, path, r.status_code)
            elif auth == "sandbox":
                assert r.status_code == 404, (method, path)  # not a sandbox instance
            else:
                assert r.status_code < 500, (method, path)


def test_the_portals_bus_calls_are_logged_with_purpose_and_subject(
    sandbox_demo: Any, two: tuple[Citizen, Citizen, str]
) -> None:
    a, _, _ = two
    doc = sandbox_demo.doc
    portal_id = next(iter(doc["clients"]))["id"].rsplit("/", 2)[0]  # instance/GOV prefix
    r = httpx.get(
        f"{doc['bus_url']}/api/v1/log",
        params={"national_code": a.national_code, "limit": 100},
        headers={"authorization": f"Bearer {doc['admin']['api_token']}"},
    )
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    portal = [x for x in records if x["client"].endswith("/portal")]
    assert portal and all(x["client"].startswith(portal_id) for x in portal)
    purposes = {x["service"].split("/")[-1]: x["purpose"] for x in portal}
    assert purposes["mobile-inquiry.v1"] == "identity-verification"
    assert purposes["person-inquiry.v1"] == "service-application"
    assert purposes["benefit-application.v1"] == "service-application"
    assert all(x["subject_ref"] for x in portal)


def test_an_agency_without_its_own_application_service_receives_applications_at_its_desk(
    sandbox_demo: Any,
) -> None:
    c = _citizen(sandbox_demo, 107).sign_in()
    sid = "20700000001"  # smart national ID card: civil registration's desk
    r = c.post(
        f"/services/{sid}/apply/consent",
        {"csrf": c.form_token(f"/services/{sid}/apply"), "consent": "yes"},
    )
    assert r.status_code == 303
    form = c.get(f"/services/{sid}/apply/form")
    assert 'data-field="full_name"' in form.text and 'name="appointment_office"' in form.text
    r = c.post(
        f"/services/{sid}/apply/form",
        {"csrf": csrf_of(form.text), "mobile": c.mobile, "appointment_office": "دفتر پیشخوان ۱۲۳"},
    )
    assert r.status_code == 303, r.text[:1000]
    page_url = r.headers["location"].split("?")[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "تأیید شد" not in c.get(page_url).text:
        time.sleep(1)
    page = c.get(page_url).text
    assert "تأیید شد" in page and "دریافت شد" in page  # the timeline keeps the earlier steps


def _otp_engine(tmp_path: Any, database_url: str) -> Any:
    from dargah.core.settings import Settings
    from dargah.registry.instance import open_instance

    engine, _info, _ = open_instance(Settings(home=tmp_path / "home", database_url=database_url))
    return engine


def test_parallel_guesses_cannot_beat_the_tries_per_code(tmp_path: Any, database_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import select

    from dargah.store.people_tables import otp_codes
    from dargah.store.tables import outbox

    engine = _otp_engine(tmp_path, database_url)
    try:
        otp.issue(engine, "0013542419", "09120000000", 120)
        with engine.connect() as conn:
            good = conn.execute(select(outbox.c.code).order_by(outbox.c.id.desc())).scalar()
        wrong = [f"{(int(good) + i) % 10**6:06d}" for i in range(1, 16)]

        def guess(code: str) -> str:
            try:
                otp.verify(engine, "0013542419", code)
                return "accepted"
            except otp.SignInRefused as refused:
                return refused.message_fa

        with ThreadPoolExecutor(15) as pool:
            answers = list(pool.map(guess, wrong))
        checked = [a for a in answers if "درست نیست" in a or "باطل" in a]
        assert len(checked) == otp.TRIES_PER_CODE, answers  # the rest found the code dead
        with engine.connect() as conn:
            assert conn.execute(select(otp_codes.c.attempts)).scalar() == otp.TRIES_PER_CODE
        with pytest.raises(otp.SignInRefused):
            otp.verify(engine, "0013542419", str(good))
    finally:
        engine.dispose()


def test_parallel_requests_cannot_beat_the_codes_per_national_code(
    tmp_path: Any, database_url: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from dargah.store.tables import outbox

    engine = _otp_engine(tmp_path, database_url)
    try:

        def ask(_: int) -> bool:
            try:
                otp.issue(engine, "0013542419", "09120000000", 120)
                return True
            except otp.SignInRefused:
                return False

        with ThreadPoolExecutor(15) as pool:
            sent = sum(pool.map(ask, range(15)))
        with engine.connect() as conn:
            sms = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        assert sent == 1 and sms == 1  # one code per 30 s, however many ask at once
    finally:
        engine.dispose()


def _raw(port: int, head: bytes, chunks: int = 0) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head)
        piece = b"a" * 65536
        try:
            for _ in range(chunks):
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            if chunks:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading once it has answered
        s.settimeout(20)
        data = b""
        while b"\r\n\r\n" not in data:
            part = s.recv(65536)
            if not part:
                break
            data += part
        return data


def test_oversized_bodies_are_refused_before_they_fill_memory(sandbox_demo: Any) -> None:
    port = int(sandbox_demo.doc["portal_url"].rstrip("/").rsplit(":", 1)[1])
    announced = _raw(
        port,
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 419430402\r\n\r\nx=aaaa",
    )
    assert announced.startswith(b"HTTP/1.1 413"), announced[:200]
    for path in (b"/login", b"/console/login"):
        chunked = _raw(
            port,
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunks=160,  # 10 MiB
        )
        assert chunked.startswith(b"HTTP/1.1 413"), (path, chunked[:200])
    assert httpx.get(sandbox_demo.doc["portal_url"]).status_code == 200  # still serving


def test_a_citizens_pages_are_never_cached_or_framed(two: tuple[Citizen, Citizen, str]) -> None:
    a, _, tracking = two
    for path in ("/me/data-use", f"/me/applications/{tracking}", "/login"):
        r = a.get(path)
        assert r.headers.get("cache-control") == "no-store", path
        assert r.headers.get("x-frame-options") == "DENY", path
        assert r.headers.get("x-content-type-options") == "nosniff", path
