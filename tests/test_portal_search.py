"""The portal finds a service however a citizen writes it, and its pages speak Persian."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from dargah.core.settings import Settings
from dargah.portal.app import build_portal
from dargah.registry.catalogue.importer import import_catalogue
from dargah.registry.instance import open_instance
from dargah.sandbox.catalogue_seed import load_seed_catalogue


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("portal")
    engine, info, _ = open_instance(Settings(home=home))
    seed = home / "seed.json"
    seed.write_text(json.dumps(load_seed_catalogue(), ensure_ascii=False), encoding="utf-8")
    import_catalogue(engine, [seed], actor="test", instance=info.code)
    with TestClient(build_portal(engine), raise_server_exceptions=False) as client:
        yield client
    engine.dispose()


def _first(client: TestClient, q: str) -> str:
    r = client.get("/search", params={"q": q})
    assert r.status_code == 200
    ids = re.findall(r'href="/services/([0-9]{11})"', r.text)
    assert ids, f"nothing found for {q!r}"
    return ids[0]


@pytest.mark.parametrize(
    "q",
    [
        "گواهی‌نامه رانندگی",
        "گواهی نامه رانندگی",
        "گواهينامه رانندگي",
        "گواهنامه رانندگی",
        "گواهینامهٔ رانندگی",
    ],
)
def test_a_driving_licence_is_found_however_it_is_written(portal: TestClient, q: str) -> None:
    first = _first(portal, q)
    title = re.search(r"<h1>([^<]*)</h1>", portal.get(f"/services/{first}").text)
    assert title is not None and "رانندگی" in title.group(1)


@pytest.mark.parametrize(
    "q", ["كارت ملي", "کارت ملی", "passport", "گذر نامه", "1404 آزمون", "۱۴۰۴ آزمون"]
)
def test_arabic_letters_latin_digits_and_english_all_find_services(
    portal: TestClient, q: str
) -> None:
    assert _first(portal, q)


def test_a_service_page_has_the_title_as_its_heading_and_speaks_persian(portal: TestClient) -> None:
    r = portal.get("/services/22400000001")
    assert r.status_code == 200
    assert '<html lang="fa" dir="rtl">' in r.text and "<h1>صدور گذرنامه</h1>" in r.text


def test_an_unknown_or_malformed_service_id_is_a_persian_404(portal: TestClient) -> None:
    for path in ("/services/99999999999", "/services/abc", "/nowhere"):
        r = portal.get(path)
        assert r.status_code == 404 and "یافت نشد" in r.text


def test_browsing_by_life_event_and_cluster_lists_services(portal: TestClient) -> None:
    birth = portal.get("/search", params={"life_event": "birth"})
    assert birth.status_code == 200 and len(re.findall(r'href="/services/', birth.text)) >= 3
    home = portal.get("/")
    assert home.status_code == 200 and "رویدادهای زندگی" in home.text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=300))
def test_no_query_makes_the_portal_fail(portal: TestClient, q: str) -> None:
    r = portal.get("/search", params={"q": q})
    assert r.status_code == 200


def test_the_persian_font_is_served_from_the_portal_itself(portal: TestClient) -> None:
    page = portal.get("/").text
    sheets = re.findall(r'href="(/static/[^"]+\.css(?:\?v=[0-9a-f]+)?)"', page)
    assert all(portal.get(s).status_code == 200 for s in sheets)
    inline = re.findall(r"<style>(.*?)</style>", page, re.S)
    css = "".join(inline) + "".join(portal.get(s).text for s in sheets)
    fonts = re.findall(r'url\("(/static/[^"]+\.woff2(?:\?v=[0-9a-f]+)?)"\)', css)
    assert fonts and all(portal.get(f).status_code == 200 for f in fonts)
    assert "http://" not in page and "https://" not in page  # nothing from outside


def test_browsing_by_agency_lists_only_that_agencys_services(portal: TestClient) -> None:
    home = portal.get("/").text
    links = re.findall(r'href="/search\?agency=([0-9]{11})"', home)
    assert len(links) >= 10
    page = portal.get("/search", params={"agency": links[0]}).text
    ids = re.findall(r'href="/services/([0-9]{11})"', page)
    assert ids
    for sid in ids[:5]:
        assert f"/search?agency={links[0]}" in portal.get(f"/services/{sid}").text
