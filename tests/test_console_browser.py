"""The console's main tasks in a real browser: sign in, status, log search, a grant decision,
the audit trail. Screenshots of each step go to test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.console_site import PASSWORD, grant_status, prepare, start_site
from tests.harness import SUBJECT, World, make_world
from tests.providers import Provider


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> Iterator[tuple[World, dict[str, Any]]]:
    w = make_world(tmp_path_factory.mktemp("console-browser") / "home", provider.url)
    ids = prepare(w)
    w.grant("other", ids["prov_service"])
    start_site(w)
    r = w.call(ids["prov_service"], "/x", token=w.token("other"), subject=SUBJECT)
    assert r.status_code == 200, r.text
    try:
        yield w, ids
    finally:
        w.stop()
        w.engine.dispose()


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/console/status")
    assert "/console/login" in page.url
    page.get_by_label("نام کاربری").fill(username)
    page.get_by_label("گذرواژه").fill(PASSWORD)
    page.get_by_role("button", name="ورود").click()
    page.wait_for_url("**/console/status")


def test_an_operator_signs_in_sees_the_status_finds_a_call_by_national_code_and_reads_the_audit(
    site: tuple[World, dict[str, Any]], page: Any, shots: Any
) -> None:
    w, ids = site
    page.goto(f"{w.url}/console/login")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.evaluate("document.activeElement.id") == "username"
    shots(page, "sign-in")
    _sign_in(page, w.url, "admin")
    assert page.get_by_test_id("whoami").inner_text().startswith("admin")
    row = page.locator(f'tr[data-service="{ids["prov_service"]}"]')
    assert row.count() == 1 and "۱" in row.inner_text()
    assert page.locator("#status-panel[hx-trigger]").count() == 1
    assert "رخداد" in page.locator("#open-incidents").inner_text()
    shots(page, "status")

    page.goto(f"{w.url}/console/log")
    page.get_by_label("کد ملی").fill(SUBJECT)
    page.get_by_role("button", name="جست‌وجو").click()
    found = page.locator("#log-results tbody tr[data-seq]")
    assert found.count() == 1
    assert ids["prov_service"] in found.inner_text()
    assert len(found.locator("code[title]").first.get_attribute("title") or "") == 64
    shots(page, "log-by-national-code")
    page.get_by_label("کد ملی").fill("0499370890")
    page.get_by_role("button", name="جست‌وجو").click()
    assert "کد ملی معتبر نیست" in page.content()
    shots(page, "log-bad-national-code")

    page.goto(f"{w.url}/console/audit")
    trail = page.locator("#audit-entries").inner_text()
    assert "registry:grant:request" in trail and "security:console:sign-in" in trail
    shots(page, "audit")


def test_an_agency_admin_approves_a_request_on_its_own_service(
    site: tuple[World, dict[str, Any]], page: Any, shots: Any
) -> None:
    w, ids = site
    _sign_in(page, w.url, "prov-admin")
    page.goto(f"{w.url}/console/grants?status=requested")
    mine = page.locator(f'tr[data-grant="{ids["grant_on_prov"]}"]')
    assert page.locator(f'tr[data-grant="{ids["grant_on_other"]}"]').count() == 0
    shots(page, "requests")
    mine.get_by_label(f"دلیل برای درخواست {ids['grant_on_prov']}").fill("برای احراز هویت")
    mine.get_by_role("button", name="پذیرش").click()
    page.wait_for_url("**/console/grants")
    assert grant_status(w, ids["grant_on_prov"]) == "approved"
    assert (
        "برای احراز هویت" in page.locator(f'tr[data-grant="{ids["grant_on_prov"]}"]').inner_text()
    )
    shots(page, "approved")
    page.goto(f"{w.url}/console/audit")
    assert "registry:grant:approve" in page.locator("#audit-entries").inner_text()
    page.goto(f"{w.url}/console/log")
    assert "دسترسی ندارید" in page.content()
    shots(page, "log-refused")
