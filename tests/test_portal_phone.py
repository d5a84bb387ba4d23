"""The portal on a phone, with the keyboard only, against a running sandbox in a real browser:
a whole application from search to a tracked application without a mouse, no page scrolling
sideways at 360 px (signed in or not), and a screenshot of every page at 390 px kept in
``test-artifacts/screenshots/``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.browser import Shots

SERVICE = "21100000001"  # welfare pension: pre-filled from five agencies, submitted over the bus
LATIN = str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")


def _tab_to(page: Any, test: str, most: int = 80) -> None:
    """Press Tab until ``test`` (JavaScript over ``el``, the focused element) holds."""
    check = f"(() => {{ const el = document.activeElement; return !!(el && ({test})); }})()"
    for _ in range(most):
        try:
            if page.evaluate(check):
                return
        except PlaywrightError as exc:  # the page was still navigating: ask the new one
            if "context was destroyed" not in str(exc):
                raise
            page.wait_for_load_state("load")
            continue
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached an element where {test}")


def _focused_id(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def _phone(browser: Any, width: int = 390, height: int = 844) -> Any:
    return browser.new_context(viewport={"width": width, "height": height}, locale="fa-IR")


def test_a_citizen_applies_from_search_to_tracking_with_the_keyboard_only_on_a_phone(
    browser: Any, sandbox_demo: Any, shots: Any
) -> None:
    doc = sandbox_demo.doc
    base = doc["portal_url"].rstrip("/")
    citizen = doc["citizens"][230]
    context = _phone(browser)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(base + "/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent").strip() == "رفتن به محتوا"
        _tab_to(page, "el.id === 'q'")
        page.keyboard.type("مستمری بهزیستی")
        page.keyboard.press("Enter")
        page.wait_for_url("**/search?**")
        shots(page, "kb-results")
        _tab_to(page, "el.matches('ol.results a')")
        assert (
            page.evaluate("document.activeElement.getAttribute('href')") == f"/services/{SERVICE}"
        )
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/services/{SERVICE}")
        # the first screen says what is needed, how long it takes and what it costs, then starts
        for fact in ("#needs", "#duration", "#fee", "#apply"):
            box = page.locator(fact).bounding_box()
            assert box is not None and box["y"] + box["height"] <= 844, fact
        shots(page, "kb-service")
        _tab_to(page, "el.id === 'apply'")
        page.keyboard.press("Enter")
        page.wait_for_url("**/login?next=**")
        _tab_to(page, "el.id === 'national_code'")
        page.keyboard.type(citizen["national_code"])
        page.keyboard.press("Enter")
        page.wait_for_selector("#code")
        assert "فرستاده شد" in page.locator("[role=status]").inner_text()
        box = json.loads(page.request.get(base + "/sandbox/outbox.json").text())
        code = [m for m in box if m["to"] == citizen["mobile"] and m["code"]][-1]["code"]
        _tab_to(page, "el.id === 'code'")
        page.keyboard.type(code)
        shots(page, "kb-code")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/services/{SERVICE}/apply")
        shots(page, "kb-consent")
        _tab_to(page, "el.id === 'consent-yes'")
        page.keyboard.press("Enter")
        page.wait_for_url("**/apply/form")
        _tab_to(page, "el.id === 'submit'")
        page.keyboard.press("Enter")  # nothing typed: the error summary, linked to the fields
        page.wait_for_selector(".error-summary")
        assert _focused_id(page) == "error"
        assert page.locator(".error-summary").get_attribute("role") == "alert"
        shots(page, "kb-errors")
        page.keyboard.press("Tab")
        first_field = page.evaluate("document.activeElement.getAttribute('href')")
        assert first_field and first_field.startswith("#in-")
        page.keyboard.press("Enter")
        assert "#" + _focused_id(page) == first_field
        _tab_to(page, "el.id === 'in-mobile'")
        page.keyboard.type(citizen["mobile"])
        _tab_to(page, "el.id === 'in-iban'")
        page.keyboard.type("IR" + "1" * 24)
        _tab_to(page, "el.id === 'in-programme'")
        for _ in range(6):
            if page.evaluate("document.activeElement.value") == "pension":
                break
            page.keyboard.press("ArrowDown")
        assert page.evaluate("document.activeElement.value") == "pension"
        _tab_to(page, "el.id === 'submit'")
        page.keyboard.press("Enter")
        page.wait_for_url("**/me/applications/*?new=1")
        tracking = page.locator("#tracking").inner_text().translate(LATIN)
        assert len(tracking) == 12 and tracking.isdigit()
        assert page.locator("#submitted").get_attribute("role") == "status"
        shots(page, "kb-tracked")
        _tab_to(page, "el.getAttribute('href') === '/me/applications'")
        page.keyboard.press("Enter")
        page.wait_for_url("**/me/applications")
        assert tracking in page.locator("#applications").inner_text().translate(LATIN)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
    finally:
        context.close()


PUBLIC_PAGES = [
    ("home", "/"),
    ("search", "/search?q=گذرنامه"),
    ("life-event", "/search?life_event=birth"),
    ("cluster", "/search?q=گواهینامه"),
    ("nothing-found", "/search?q=zzzzqqq"),
    ("service", f"/services/{SERVICE}"),
    ("service-passport", "/services/22400000001"),
    ("not-found", "/services/99999999999"),
    ("sign-in", "/login"),
    ("outbox", "/sandbox/outbox"),
]


@pytest.mark.parametrize("width", [360, 390, 1280])
def test_no_portal_page_scrolls_sideways_and_each_is_photographed(
    browser: Any, sandbox_demo: Any, width: int
) -> None:
    doc = sandbox_demo.doc
    base = doc["portal_url"].rstrip("/")
    citizen = doc["citizens"][{360: 231, 390: 234, 1280: 232}[width]]
    shots = Shots(f"pages-{width}")
    context = _phone(browser, width, {360: 740, 390: 844}.get(width, 900))
    page = context.new_page()
    page.set_default_timeout(15_000)
    wide: list[tuple[str, int]] = []

    def check(name: str) -> None:
        page.wait_for_load_state("load")
        seen = page.evaluate("document.documentElement.scrollWidth")
        if seen > width:
            wide.append((name, seen))
        assert page.locator("meta[name=description]").get_attribute("content"), name
        assert page.locator("main h1").count() == 1, name
        shots(page, name)

    try:
        for name, path in PUBLIC_PAGES:
            page.goto(base + path)
            check(name)
        page.goto(base + "/login")
        page.get_by_label("کد ملی").fill(citizen["national_code"])
        page.get_by_role("button", name="دریافت کد ورود").press("Enter")
        page.wait_for_selector("#code")
        check("sign-in-code")
        page.get_by_label("کد یک‌بارمصرف پیامک‌شده").fill("000000")
        page.get_by_role("button", name="ورود", exact=True).press("Enter")
        page.wait_for_selector(".error-summary")
        check("sign-in-error")
        box = json.loads(page.request.get(base + "/sandbox/outbox.json").text())
        code = [m for m in box if m["to"] == citizen["mobile"] and m["code"]][-1]["code"]
        page.get_by_label("کد یک‌بارمصرف پیامک‌شده").fill(code)
        page.get_by_role("button", name="ورود", exact=True).press("Enter")
        page.wait_for_url("**/me/applications")
        check("my-applications-empty")
        page.goto(f"{base}/services/{SERVICE}/apply")
        check("consent")
        page.get_by_role("button", name="موافقم؛ اطلاعات را بگیر").press("Enter")
        page.wait_for_url("**/apply/form")
        check("form")
        page.get_by_role("button", name="ثبت و ارسال درخواست").press("Enter")
        page.wait_for_selector(".error-summary")
        check("form-errors")
        page.get_by_label("شماره تلفن همراه").fill(citizen["mobile"])
        page.get_by_label("شماره شبا").fill("IR" + "2" * 24)
        page.get_by_label("برنامه حمایتی درخواستی").select_option("pension")
        page.get_by_role("button", name="ثبت و ارسال درخواست").press("Enter")
        page.wait_for_url("**/me/applications/*?new=1")
        check("application")
        page.goto(base + "/me/applications")
        check("my-applications")
        page.goto(base + "/me/data-use")
        check("data-use")
        region = page.locator("#data-use").locator("xpath=..")
        if width > 640:  # a table in a scroll region a keyboard can reach, and named
            assert region.get_attribute("tabindex") == "0"
            assert region.get_attribute("role") == "region" and region.get_attribute(
                "aria-labelledby"
            )
        else:  # a list of cards: each row one box, its labels shown
            display = page.evaluate(
                "getComputedStyle(document.querySelector('#data-use tbody tr')).display"
            )
            assert display == "block"
        page.goto(base + "/services/99999999999")
        check("not-found-signed-in")
    finally:
        context.close()
    assert not wide, f"pages wider than {width} px: {wide}"


def test_the_signed_in_header_fits_a_phone_on_one_line(browser: Any, sandbox_demo: Any) -> None:
    doc = sandbox_demo.doc
    base = doc["portal_url"].rstrip("/")
    citizen = doc["citizens"][233]
    context = _phone(browser, 360, 740)
    page = context.new_page()
    try:
        page.goto(base + "/login")
        page.get_by_label("کد ملی").fill(citizen["national_code"])
        page.get_by_role("button", name="دریافت کد ورود").press("Enter")
        box = json.loads(page.request.get(base + "/sandbox/outbox.json").text())
        code = [m for m in box if m["to"] == citizen["mobile"] and m["code"]][-1]["code"]
        page.get_by_label("کد یک‌بارمصرف پیامک‌شده").fill(code)
        page.get_by_role("button", name="ورود", exact=True).press("Enter")
        page.wait_for_url("**/me/applications")
        tops = page.evaluate(
            "[...document.querySelectorAll('.gov-header .brand, .gov-nav a, .gov-nav button')]"
            ".map(e => Math.round(e.getBoundingClientRect().top + e.offsetHeight / 2))"
        )
        assert len(tops) == 4 and max(tops) - min(tops) <= 6, tops
    finally:
        context.close()
