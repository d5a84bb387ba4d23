"""Exporting the catalogue: every card as stored plus its computed levels, in JSON or in CSV that
imports back as it was; and the definition level of catalogue.md, rule by rule."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from dargah.cli.catalogue import catalogue
from dargah.core.settings import Settings
from dargah.registry import members, services
from dargah.registry.catalogue import definition_level, export_catalogue, import_catalogue
from dargah.registry.instance import open_instance

DATA = Path(__file__).resolve().parent / "data" / "catalogue"
TOPIC = "DEV/GOV/14101234563/behdasht/birth-recorded"


def _open(home: Path, database_url: str = "") -> Engine:
    engine, _info, _token = open_instance(
        Settings(home=home, database_url=database_url, instance="TEST")
    )
    return engine


@pytest.fixture
def engine(tmp_path: Path, database_url: str) -> Iterator[Engine]:
    eng = _open(tmp_path / "home", database_url)
    yield eng
    eng.dispose()


def load(engine: Engine, *files: Path) -> None:
    report = import_catalogue(engine, list(files), actor="test", instance="TEST")
    assert report.written and not report.errors, report.errors


def export_json(engine: Engine) -> dict[str, Any]:
    out = io.StringIO()
    export_catalogue(engine, "json", out)
    return dict(json.loads(out.getvalue()))


# -- the definition level, rule by rule -------------------------------------------------------

ONLINE = {
    "sign_in_online": True,
    "apply_online": True,
    "pay_online": True,
    "decision_online": True,
    "issue_online": True,
    "track_online": True,
}


def informational(**changes: Any) -> dict[str, Any]:
    """A complete card (level 1) on which nothing can be done online."""
    card: dict[str, Any] = {
        "title_fa": "گواهی",
        "description_fa": "شرح",
        "channels": ["in_person"],
        "documents": [],
        "steps": {},
        "proactive_topics": None,
    }
    return {**card, **changes}


def proactive(steps: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A level-5 card: everything online, nothing asked of the citizen, started by a life event."""
    card = informational(
        channels=["online"],
        steps={**ONLINE, **(steps or {})},
        in_person_visits=0,
        paper_required=False,
        proactive_topics=[TOPIC],
    )
    return {**card, **changes}


CITIZEN_ID = [{"name_fa": "کارت ملی", "data_item": "person.identity", "source": "citizen"}]
SUPPLIED = {"person.identity"}


@pytest.mark.parametrize(
    ("card", "level", "codes"),
    [
        (proactive(), 5, []),
        (proactive(proactive_topics=[]), 4, ["not-proactive"]),
        (proactive(documents=CITIZEN_ID), 3, ["citizen-supplies-bus-data"]),
        (proactive({"pay_online": False}), 2, ["payment-offline"]),
        (informational(), 1, ["apply-offline"]),
        (informational(description_fa=None), 0, ["no-description"]),
    ],
    ids=[
        "5-proactive",
        "4-once-only",
        "3-end-to-end",
        "2-interactive",
        "1-informational",
        "0-offline",
    ],
)
def test_each_level_of_the_definition_table(
    card: dict[str, Any], level: int, codes: list[str]
) -> None:
    got, reasons = definition_level(card, SUPPLIED)
    assert (got, [r["code"] for r in reasons]) == (level, codes)
    assert all(r["en"] and r["fa"] for r in reasons)


@pytest.mark.parametrize(
    ("card", "level", "code"),
    [
        (informational(title_fa=None), 0, "no-title"),
        (informational(description_fa=None), 0, "no-description"),
        (informational(channels=[]), 0, "no-channels"),
        (informational(documents=None), 0, "no-documents"),
        (informational(), 1, "apply-offline"),
        (proactive({"sign_in_online": False}), 2, "sign-in-offline"),
        (proactive({"pay_online": False}), 2, "payment-offline"),
        (proactive({"decision_online": False}), 2, "decision-offline"),
        (proactive({"issue_online": False}), 2, "issuance-offline"),
        (proactive({"track_online": False}), 2, "tracking-offline"),
        (proactive(in_person_visits=2), 2, "in-person-visit"),
        (proactive(paper_required=True), 2, "paper-required"),
        (proactive(documents=None), 3, "no-documents"),
        (proactive(documents=CITIZEN_ID), 3, "citizen-supplies-bus-data"),
        (proactive(proactive_topics=None), 4, "not-proactive"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_reason_why_a_card_is_not_one_level_higher(
    card: dict[str, Any], level: int, code: str
) -> None:
    got, reasons = definition_level(card, SUPPLIED)
    assert (got, [r["code"] for r in reasons]) == (level, [code])


def test_steps_not_applicable_and_documents_no_bus_service_supplies_keep_the_level() -> None:
    steps = {s: None for s in ONLINE} | {"apply_online": True}
    assert definition_level(proactive(steps), set())[0] == 5
    assert definition_level(proactive(documents=CITIZEN_ID), set())[0] == 5
    from_bus = [{**CITIZEN_ID[0], "source": "DEV/GOV/10100387143/sabt/person-inquiry.v1"}]
    assert definition_level(proactive(documents=from_bus), SUPPLIED)[0] == 5


# -- export -----------------------------------------------------------------------------------


def test_the_export_carries_every_card_and_its_computed_columns(engine: Engine) -> None:
    load(engine, DATA / "catalogue.json")
    doc = export_json(engine)
    cards = {c["service_id"]: c for c in doc["services"]}
    assert [a["legal_id"] for a in doc["agencies"]] == ["10100387143", "14003000014"]
    birth = cards["10000000001"]
    source = json.loads((DATA / "catalogue.json").read_text(encoding="utf-8"))["services"][0]
    assert {k: birth[k] for k in source} == source
    assert (birth["definition_level"], birth["verified_level"], birth["counted"]) == (
        5,
        None,
        False,
    )
    assert [r["code"] for r in birth["reasons"]] == ["not-measured"]
    assert [
        (c["definition_level"], [r["code"] for r in c["reasons"]])
        for c in (cards["10000000002"], cards["10000000003"])
    ] == [(0, ["no-description", "not-measured"]), (2, ["payment-offline", "not-measured"])]
    assert cards["10000000003"]["extra"] == {"legacy_code": "P-17", "note": "kept as it is"}


def test_a_data_item_a_bus_service_supplies_lowers_the_level_of_cards_asking_citizens_for_it(
    engine: Engine,
) -> None:
    load(engine, DATA / "catalogue.json")
    with engine.begin() as conn:
        members.add_subsystem(conn, "TEST/GOV/10100387143/sabt", "test")
        services.add_service(
            conn,
            "TEST/GOV/10100387143/sabt/person-inquiry.v1",
            "http://127.0.0.1:9/",
            "test",
            supplies=["person.identity"],
        )
    birth = next(c for c in export_json(engine)["services"] if c["service_id"] == "10000000001")
    assert birth["definition_level"] == 3
    assert [r["code"] for r in birth["reasons"]] == ["citizen-supplies-bus-data", "not-measured"]


def test_the_csv_export_is_flattened_the_way_an_import_reads_it(engine: Engine) -> None:
    load(engine, DATA / "catalogue.json")
    out = io.StringIO()
    export_catalogue(engine, "csv", out)
    rows = {r["service_id"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    birth = rows["10000000001"]
    assert (birth["channels"], birth["steps.apply_online"], birth["steps.pay_online"]) == (
        "online|in_person",
        "true",
        "",
    )
    assert birth["documents.name_fa"] == "گواهی ولادت|کارت ملی پدر"
    assert birth["reported.period"] == "1402|1403-Q2"
    assert birth["reported.applications_in_person"] == "300|"
    assert json.loads(birth["form"])["required"] == ["name"]
    assert (
        birth["definition_level"],
        birth["verified_level"],
        birth["counted"],
        birth["reasons"],
    ) == ("5", "", "false", "not-measured")
    assert rows["10000000002"]["documents"] == "[]"  # an empty list is not null
    assert rows["10000000003"]["extra.note"] == "kept as it is"


TRICKY = {
    "agencies": [
        {
            "legal_id": "14101234563",
            "name_en": "Health",
            "member_class": "PUB",
            "extra": {"rank": "3"},
        }
    ],  # CSV carries extras as text
    "services": [
        {
            "service_id": "60000000001",
            "agency_legal_id": "14101234563",
            "title_en": "A | B",
            "life_events": ["birth | adoption", "NA"],
            "documents": [{"name_en": "form A|B"}],
            "reported": [{"period": "2023-2024", "completed": 5, "note": "from the annual report"}],
        },
        {
            "service_id": "60000000002",
            "agency_legal_id": "14101234563",
            "title_en": "Empty lists",
            "channels": [],
            "documents": [],
            "recipients": ["business", "government"],
        },
        {
            "service_id": "60000000003",
            "agency_legal_id": "14101234563",
            "title_fa": '=HYPERLINK("http://evil.example","جزئیات")',
            "title_en": "-minus first",
            "description_fa": "'starts with an apostrophe",
            "description_en": "@SUM(1+1)",
        },
    ],
}


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_an_export_imports_back_as_it_was(engine: Engine, tmp_path: Path, fmt: str) -> None:
    tricky = tmp_path / "tricky.json"
    tricky.write_text(json.dumps(TRICKY, ensure_ascii=False), encoding="utf-8")
    load(engine, DATA / "catalogue.json", tricky)
    load(engine, DATA / "agencies.csv", DATA / "services.csv")
    files = [tmp_path / f"cards.{fmt}"]
    if fmt == "csv":
        files.append(tmp_path / "agencies.csv")
    export_catalogue(engine, fmt, files[0], agencies_out=files[-1] if fmt == "csv" else None)
    fresh = _open(tmp_path / "fresh")  # on SQLite, whatever the first backend was
    try:
        report = import_catalogue(fresh, files, actor="test", instance="TEST")
        assert report.written and not report.errors, report.errors
        assert export_json(fresh) == export_json(engine)
        again = import_catalogue(fresh, files, actor="test", instance="TEST")
        assert again.services_unchanged == len(export_json(engine)["services"]) == 9
        if fmt == "csv":  # no cell a spreadsheet would run as a formula
            import csv

            with files[0].open(encoding="utf-8", newline="") as f:
                cells = [c for row in csv.reader(f) for c in row]
            assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]
    finally:
        fresh.dispose()


def test_the_export_command_writes_json_or_csv(tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "home")
    assert (
        runner.invoke(catalogue, ["import", str(DATA / "catalogue.json"), "--home", home]).exit_code
        == 0
    )
    shown = runner.invoke(catalogue, ["export", "--home", home])
    assert shown.exit_code == 0
    assert len(json.loads(shown.stdout)["services"]) == 3
    out, agencies = tmp_path / "cards.csv", tmp_path / "agencies.csv"
    written = runner.invoke(
        catalogue,
        [
            "export",
            "--format",
            "csv",
            "--out",
            str(out),
            "--agencies-out",
            str(agencies),
            "--home",
            home,
        ],
    )
    assert written.exit_code == 0, written.output
    assert (
        out.read_text(encoding="utf-8")
        .splitlines()[0]
        .endswith("definition_level,verified_level,counted,reasons")
    )
    assert agencies.read_text(encoding="utf-8").startswith("legal_id,name_fa,name_en,")
