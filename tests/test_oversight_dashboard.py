"""The public dashboard: pages in Persian that never fail on junk, tables exported as CSV and
XLSX that read back, the agency report as a PDF with shaped Persian text, and a browser run."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from dargah.oversight.web.app import build_dashboard
from dargah.registry.catalogue.reports import put_report
from dargah.web.pages import static_files
from tests.harness import free_port
from tests.oversight_factory import (
    IDENTITY_SOURCE,
    POST,
    SABT,
    add_bus_service,
    add_rating,
    card,
    make_instance,
)

A, B, C = "20700000031", "20700000032", "20700000033"
DOC = {"name_fa": "تصویر شناسنامه", "data_item": "person.identity", "source": "citizen"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    home = tmp_path_factory.mktemp("dashboard")
    e = make_instance(home, [card(A, documents=[DOC]), card(B), card(C, agency=POST)])
    add_bus_service(e, IDENTITY_SOURCE, ["person.identity"])
    with e.begin() as conn:
        for score in (5, 5, 4, 2):
            add_rating(conn, A, score)
        put_report(conn, A, "1405", {"satisfaction_pct": 90, "started": 10, "completed": 9}, "t")
    yield e
    e.dispose()


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(build_dashboard(engine, refresh=0), raise_server_exceptions=False) as c:
        yield c


def test_the_national_page_is_persian_right_to_left_with_chart_data(client: TestClient) -> None:
    r = client.get("/dashboard")
    assert r.status_code == 200
    assert '<html lang="fa" dir="rtl">' in r.text
    assert "هدف برنامهٔ هفتم" in r.text and "سازمان ثبت احوال" in r.text
    assert "۷۵٪" in r.text and "۹۰٪" in r.text  # satisfaction measured and reported
    assert "یک‌بار پرسش" in r.text  # the once-only finding of A
    raw = re.search(r'id="dashboard-data">(.*?)</script>', r.text, re.S)
    assert raw is not None
    data = json.loads(raw.group(1))
    assert data["levels"]["verified"] == [0, 2, 0, 1, 0, 0]
    assert [t["share"] for t in data["satisfaction"]] == [0.75]


def test_an_agency_page_answers_by_legal_id_and_by_member_id(client: TestClient) -> None:
    by_legal = client.get(f"/dashboard/agencies/{SABT}")
    by_member = client.get(f"/dashboard/agencies/TEST/GOV/{SABT}")
    assert by_legal.status_code == by_member.status_code == 200
    assert '<h1 class="h3">سازمان ثبت احوال</h1>' in by_legal.text
    assert A in by_legal.text and C not in by_legal.text
    assert f"/dashboard/report.pdf?agency={SABT}" in by_legal.text


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/agencies/00000000000",
        "/dashboard/agencies/%00",
        "/dashboard/agencies/" + "x" * 3000,
        "/dashboard/agencies/../../etc/passwd",
        "/dashboard/export/agencies.pdf",
        "/dashboard/export/nothing.csv",
        "/dashboard/export/services.csv",  # an agency's table, asked of the nation
        "/dashboard/export/kpis.csv?agency=%27%3B--",
        "/dashboard/report.pdf",
        "/dashboard/report.pdf?agency=<script>",
    ],
)
def test_junk_is_a_persian_404_never_a_500(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, r.text[:300]
    assert "یافت نشد" in r.text


@pytest.mark.parametrize(
    "query", ["?period=1404", "?period=۱۴۰۵-Q3", "?period=<b>", "?period=" + "9" * 500, "?x=%ff"]
)
def test_any_period_answers_200(client: TestClient, query: str) -> None:
    r = client.get("/dashboard" + query)
    assert r.status_code == 200
    assert "<b>" not in r.text


def test_a_csv_export_reads_back_as_the_table_shown(client: TestClient) -> None:
    r = client.get("/dashboard/export/agencies.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][1] == "دستگاه" and rows[1][0] == "legal_id"
    by_legal = {row[0]: row for row in rows[2:]}
    assert by_legal[SABT][1] == "سازمان ثبت احوال" and by_legal[SABT][2] == "2"
    assert by_legal[POST][2] == "1"


def test_an_xlsx_export_reads_back_right_to_left(client: TestClient) -> None:
    r = client.get(f"/dashboard/export/kpis.xlsx?agency={SABT}")
    assert r.status_code == 200
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert sheet is not None and sheet.sheet_view.rightToLeft
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "شاخص" and values[1][4] == "kpi"
    sat = next(v for v in values[2:] if v[4] == "satisfaction")
    assert (sat[1], sat[2]) == (0.75, 0.9)


def test_the_agency_report_pdf_carries_shaped_persian_text(client: TestClient) -> None:
    r = client.get(f"/dashboard/report.pdf?agency={SABT}")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(r.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    for words in ("گزارش هوشمندی خدمات", "سازمان ثبت احوال", "رضایت کاربران", "یک‌بار پرسش"):
        assert words in text, text[:500]
    fonts = reader.pages[0]["/Resources"]["/Font"]
    assert any("Vazirmatn" in str(f.get_object()["/BaseFont"]) for f in fonts.values())


# -- in a browser -------------------------------------------------------------------------------


@pytest.fixture
def site(engine: Engine) -> Iterator[str]:
    import uvicorn

    app = Starlette(routes=[Mount("/static", static_files()), Mount("/", build_dashboard(engine))])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_a_visitor_sees_the_charts_follows_an_agency_and_downloads_a_table(
    site: str, page: Any, shots: Any, tmp_path: Path
) -> None:
    page.goto(f"{site}/dashboard")
    # Chart.js is fetched once a chart is on screen: wait until it has drawn the levels
    page.wait_for_function("typeof Chart === 'function'")
    page.wait_for_function("Chart.getChart(document.getElementById('chart-levels')) !== undefined")
    assert page.evaluate("document.querySelector('#chart-levels').width > 0")
    shots(page, "national")
    page.get_by_role("link", name="سازمان ثبت احوال").click()
    page.wait_for_url(f"**/dashboard/agencies/{SABT}")
    assert page.locator("h1").inner_text() == "سازمان ثبت احوال"
    shots(page, "agency")
    with page.expect_download() as info:
        page.locator("#services-h a", has_text="CSV").click()
    saved = tmp_path / "services.csv"
    info.value.save_as(saved)
    rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert {r[0] for r in rows[2:]} == {A, B}
    assert httpx.get(f"{site}/dashboard/static/dashboard.js").status_code == 200


def test_every_dashboard_route_states_its_authentication_and_is_public(tmp_path: Path) -> None:
    from dargah.core.settings import Settings
    from dargah.registry.instance import open_instance
    from dargah.web.routes import AUTH_LEVELS

    engine, _info, _ = open_instance(Settings(home=tmp_path / "home"))
    app = build_dashboard(engine, refresh=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        for route in app.routes:
            path = getattr(route, "path", "")
            if path == "/dashboard/static":
                continue
            auth = getattr(route, "auth", None)
            assert auth in AUTH_LEVELS, f"{path} does not state its authentication"
            assert auth == "public", path  # the public dashboard asks nobody to sign in
            url = (
                path.replace("{key:path}", "10100387143")
                .replace("{name}", "agencies")
                .replace("{fmt}", "csv")
            )
            r = client.get(url)
            assert r.status_code in (200, 404), (path, r.status_code)
    engine.dispose()


def test_exports_never_carry_a_formula_from_agency_text() -> None:
    from openpyxl import load_workbook

    from dargah.oversight.web.tables import Table

    evil = '=HYPERLINK("http://evil.example","کلیک")'
    t = Table("t", "t", [("title", "عنوان")], [{"title": evil}, {"title": "-2+3"}, {"title": 7}])
    rows = list(csv.reader(io.StringIO(t.csv_bytes().decode("utf-8-sig"))))
    assert rows[2] == ["'" + evil] and rows[3] == ["'-2+3"] and rows[4] == ["7"]
    sheet = load_workbook(io.BytesIO(t.xlsx_bytes())).active
    assert sheet is not None
    cells = [(c.value, c.data_type) for c in sheet["A"]][2:]
    assert cells == [(evil, "s"), ("-2+3", "s"), (7, "n")]  # text, never a formula


# -- on a phone, and fast ------------------------------------------------------------------------


def test_a_long_list_is_shown_a_page_at_a_time_with_links_that_keep_the_period() -> None:
    from starlette.requests import Request

    from dargah.oversight.web.app import _paged

    def ask(query: str) -> dict[str, Any]:
        scope = {
            "type": "http",
            "path": "/dashboard",
            "query_string": query.encode(),
            "headers": [],
        }
        return _paged(list(range(25)), Request(scope), "page", 10)

    third = ask("period=1404&page=3")
    assert third["rows"] == [20, 21, 22, 23, 24] and (third["page"], third["pages"]) == (3, 3)
    assert third["prev"] == "/dashboard?period=1404&page=2#violations-h" and third["next"] is None
    second = ask("page=2")
    assert second["prev"] == "/dashboard#violations-h"  # the first page has no page number
    assert second["next"] == "/dashboard?page=3#violations-h"
    for junk in ("page=999", "page=-1", "page=۲", "page=abc", "page=" + "9" * 50, "page=0"):
        shown = ask(junk)
        assert shown["rows"] in ([20, 21, 22, 23, 24], list(range(10))), junk
    assert ask("page=999")["page"] == 3 and ask("page=abc")["page"] == 1
    # only valid values are carried on: the national page is cached by period and page
    assert ask("period=%3Cb%3E&x=1&page=2")["next"] == "/dashboard?page=3#violations-h"


def test_pages_are_compressed_never_wait_for_a_script_and_assets_are_cached_for_a_year(
    client: TestClient,
) -> None:
    r = client.get("/dashboard", headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert 'name="description"' in r.text and "<style>" in r.text
    assert 'rel="stylesheet"' not in r.text  # the stylesheet is inline: nothing blocks paint
    scripts = re.findall(r"<script [^>]*src=[^>]*>", r.text)
    assert scripts and all(" defer" in s for s in scripts), scripts
    found = re.search(r'src="(/dashboard/static/dashboard\.js\?v=[0-9a-f]{12})"', r.text)
    assert found
    assert "immutable" in client.get(found.group(1)).headers["cache-control"]
    stale = client.get("/dashboard/static/dashboard.js?v=000000000000")
    assert stale.status_code == 200 and "immutable" not in stale.headers["cache-control"]
    assert "immutable" not in client.get("/dashboard/static/dashboard.js").headers["cache-control"]


def test_on_a_360_px_phone_nothing_scrolls_sideways_and_every_chart_is_drawn(
    site: str, browser: Any, shots: Any
) -> None:
    context = browser.new_context(
        locale="fa-IR", viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        for path in ("/dashboard", f"/dashboard/agencies/{SABT}"):
            page.goto(site + path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
            for chart in ("chart-plan", "chart-levels", "chart-satisfaction"):
                page.locator(f"#{chart}").scroll_into_view_if_needed()
                drawn = f"window.Chart && Chart.getChart(document.getElementById('{chart}'))"
                page.wait_for_function(f"!!({drawn})")
                # a visible mark: some bar or point of the first series stands above the axis
                marks = page.evaluate(
                    f"({drawn}).getDatasetMeta(0).data.map(e => e.height ?? (e.y > 0 ? 1 : 0))"
                )
                assert any(m and m > 0 for m in marks), (path, chart, marks)
                width = page.evaluate(f"document.getElementById('{chart}').clientWidth")
                assert 280 <= width <= 360, (path, chart, width)
            region = page.locator("[role=region][tabindex='0']").first
            region.focus()
            assert page.evaluate("document.activeElement.getAttribute('role')") == "region"
            shots(page, path.rsplit("/", 1)[-1] + "-360")
    finally:
        context.close()
