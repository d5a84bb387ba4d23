"""A citizen's whole journey on the portal in a real browser (Chromium driven by Playwright):
search with variant spellings, sign in, consent, a pre-filled application, tracking, rating,
a complaint, "who used my data", and a proactive service opened by a life event.
Screenshots of every step go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from dargah.sandbox.citizens import generate_citizens
from tests.portal_client import register_birth

SERVICE = "21100000001"


def _sign_in(page: Any, shots: Any, base: str, citizen: dict[str, str], *, persian: bool) -> None:
    page.goto(base + "/login")
    code = citizen["national_code"]
    typed = code.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")) if persian else code
    page.get_by_label("کد ملی").fill(typed)
    shots(page, "sign-in")
    page.get_by_role("button", name="دریافت کد ورود").click()
    assert "فرستاده شد" in page.locator("#info").inner_text()
    box = json.loads(page.request.get(base + "/sandbox/outbox.json").text())
    sms = [m for m in box if m["to"] == citizen["mobile"] and m["code"]][-1]
    assert sms["code"] in sms["text"]
    page.get_by_label("کد یک‌بارمصرف پیامک‌شده").fill(sms["code"])
    shots(page, "one-time-code")
    page.get_by_role("button", name="ورود", exact=True).click()
    page.wait_for_url("**/me/applications")


@pytest.mark.parametrize("q", ["گواهی‌نامه رانندگی", "گواهي نامه رانندگي", "گواهینامه رانندگی"])
def test_search_finds_a_service_however_it_is_spelt(
    page: Any, shots: Any, sandbox_demo: Any, q: str
) -> None:
    base = sandbox_demo.doc["portal_url"].rstrip("/")
    page.goto(base + "/")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "fa"
    page.locator("input[name=q]").first.fill(q)
    page.keyboard.press("Enter")
    page.wait_for_url("**/search?**")
    shots(page, "results")
    first = page.locator("ol.results a").first
    first.click()
    title = page.locator("h1").inner_text()
    assert "رانندگی" in title and "گواهی" in title


def test_apply_track_rate_complain_and_see_who_used_my_data(
    page: Any, shots: Any, sandbox_demo: Any
) -> None:
    doc = sandbox_demo.doc
    base = doc["portal_url"].rstrip("/")
    citizen = doc["citizens"][200]
    _sign_in(page, shots, base, citizen, persian=True)

    page.goto(f"{base}/services/{SERVICE}")
    shots(page, "service-page")
    page.get_by_role("link", name="شروع کنید").click()
    consent = page.locator("#consent-sources")
    assert "سازمان ثبت احوال کشور" in consent.inner_text()
    assert "شرکت ملی پست" in consent.inner_text()
    shots(page, "consent")
    page.get_by_role("button", name="موافقم؛ اطلاعات را بگیر").click()
    page.wait_for_url("**/apply/form")
    prefilled = page.locator("section.prefilled")
    assert prefilled.count() >= 3
    assert citizen["name"].split()[0] in page.locator("[data-field=full_name]").inner_text()
    assert page.locator("input[name=full_name]").count() == 0  # read-only, not asked again
    shots(page, "pre-filled-form")
    page.get_by_role("button", name="ثبت و ارسال درخواست").click()  # empty: errors in Persian
    assert "را وارد کنید" in page.locator("#error").inner_text()
    page.get_by_label("شماره تلفن همراه").fill(citizen["mobile"])
    page.get_by_label("شماره شبا").fill("IR" + "1" * 24)
    page.get_by_label("برنامه حمایتی درخواستی").select_option("pension")
    page.get_by_role("button", name="ثبت و ارسال درخواست").click()
    page.wait_for_url("**/me/applications/*?new=1")
    tracking = page.locator("#tracking").inner_text()
    assert len(tracking) == 12
    shots(page, "submitted")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page.reload()
        if page.locator("form[action$='/rating']").count():
            break
        time.sleep(1)
    timeline = page.locator("#timeline li")
    assert timeline.count() >= 2, "the agency's decision never reached the timeline"
    shots(page, "decided")
    page.get_by_label("۵").check()
    page.get_by_label("نظر شما (اختیاری)").fill("سریع و بدون مراجعه حضوری")
    page.get_by_role("button", name="ثبت امتیاز").click()
    assert "۵ از ۵" in page.locator("#rating").inner_text()
    page.get_by_label("اگر از رسیدگی ناراضی هستید", exact=False).fill("پاسخ دیر رسید")
    page.get_by_role("button", name="ثبت شکایت").click()
    page.wait_for_url("**/me/applications?complained=1*")
    assert "ثبت شد" in page.locator("#complaints + ul").inner_text()
    shots(page, "my-applications")

    page.get_by_role("link", name="چه کسی از داده‌های من استفاده کرد").click()
    table = page.locator("#data-use").inner_text()
    assert "استعلام مشخصات هویتی" in table and "service-application" in table
    assert "/portal" in table
    shots(page, "data-use")
    box = json.loads(page.request.get(base + "/sandbox/outbox.json").text())
    latin = str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")
    texts = [m["text"].translate(latin) for m in box if m["to"] == citizen["mobile"]]
    assert any(tracking.translate(latin) in t for t in texts), texts


def test_a_birth_opens_the_child_benefit_and_the_family_sees_it_without_applying(
    page: Any, shots: Any, sandbox_demo: Any
) -> None:
    doc = sandbox_demo.doc
    base = doc["portal_url"].rstrip("/")
    listed = {c["national_code"]: c for c in doc["citizens"]}
    people = {c.national_code: c for c in generate_citizens()}
    mother = next(
        c
        for code, c in people.items()
        if code in listed
        and c.gender == "female"
        and c.alive
        and c.spouse
        and people[c.spouse].alive
        and int(c.birth_date[:4]) > 1980
    )
    register_birth(doc, mother.national_code, mother.spouse, "آرش")
    _sign_in(page, shots, base, listed[mother.national_code], persian=False)
    deadline = time.monotonic() + 30
    badge = page.locator("#applications .badge")
    while time.monotonic() < deadline and not badge.count():
        time.sleep(1)
        page.reload()
    assert badge.count(), "the family never saw the proactive child benefit"
    assert "کمک‌هزینه فرزند" in page.locator("#applications").inner_text()
    shots(page, "proactive-benefit")
    page.locator("#applications a").first.click()
    assert "بدون درخواست" in page.locator("main").inner_text()
    shots(page, "proactive-detail")


def test_the_portal_works_on_a_phone_and_with_a_keyboard(
    browser: Any, sandbox_demo: Any, shots: Any
) -> None:
    base = sandbox_demo.doc["portal_url"].rstrip("/")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, locale="fa-IR"
    )
    page = context.new_page()
    try:
        page.goto(base + "/login")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the sign-in page scrolls sideways on a phone"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent").strip() == "رفتن به محتوا"
        for el in page.locator("input:not([type=hidden]), select, textarea").all():
            ident = el.get_attribute("id")
            assert ident and page.locator(f"label[for='{ident}']").count() == 1
        shots(page, "phone-sign-in")
    finally:
        context.close()
