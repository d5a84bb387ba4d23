"""Importing the catalogue of public services (catalogue.md): every problem found, located and
explained before anything is written; then everything written in one transaction, or nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from dargah.cli.catalogue import catalogue
from dargah.core.identifiers import is_legal_id
from dargah.core.persian import normalize
from dargah.core.settings import Settings
from dargah.registry import audit, members
from dargah.registry.catalogue import ImportReport, MappingError, import_catalogue
from dargah.registry.catalogue.derive import derive_id, resolve
from dargah.registry.catalogue.mapping import Derived, parse_mapping
from dargah.registry.catalogue.models import Record
from dargah.registry.instance import open_instance
from dargah.store.tables import (
    audit_log,
    catalogue_agencies,
    public_service_reports,
    public_services,
)
from dargah.store.tables import members as members_table

DATA = Path(__file__).resolve().parent / "data" / "catalogue"
MAPPINGS = Path(__file__).resolve().parents[1] / "docs" / "mappings"
KENYA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kenya-ecitizen"


def _open(home: Path, database_url: str = "") -> Engine:
    engine, _info, _token = open_instance(
        Settings(home=home, database_url=database_url, instance="TEST")
    )
    return engine


@pytest.fixture
def engine(tmp_path: Path, database_url: str) -> Iterator[Engine]:
    """A fresh instance on SQLite and on PostgreSQL."""
    eng = _open(tmp_path / "home", database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Engine]:
    """A fresh instance on SQLite, for what does not depend on the backend (reading files)."""
    eng = _open(tmp_path / "lite")
    yield eng
    eng.dispose()


def run(engine: Engine, *files: str | Path, **options: Any) -> ImportReport:
    paths = [DATA / f if isinstance(f, str) else f for f in files]
    return import_catalogue(engine, paths, actor="test", instance="TEST", **options)


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (
                members_table,
                public_services,
                public_service_reports,
                catalogue_agencies,
                audit_log,
            )
        }


def card(engine: Engine, service_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = (
            conn.execute(select(public_services).where(public_services.c.service_id == service_id))
            .mappings()
            .one()
        )
        return dict(row)


def with_agencies(engine: Engine) -> None:
    report = run(engine, "agencies.csv")
    assert report.written and not report.errors, report.problems


def located(report: ImportReport) -> list[tuple[int | None, str | None]]:
    return sorted(((p.line, p.field) for p in report.errors), key=str)


# -- good files -----------------------------------------------------------------------------


def test_a_json_catalogue_is_stored_field_by_field(engine: Engine) -> None:
    report = run(engine, "catalogue.json")
    assert report.written and not report.errors
    assert (report.agencies_created, report.services_created) == (2, 3)
    birth = card(engine, "10000000001")
    assert birth["member_id"] == "TEST/GOV/10100387143"
    assert birth["title_fa"] == "صدور شناسنامهٔ نوزاد"
    assert json.loads(birth["channels"]) == ["online", "in_person"]
    assert birth["steps_apply_online"] is True and birth["steps_pay_online"] is None
    assert json.loads(birth["documents"])[1]["data_item"] == "person.identity"
    assert json.loads(birth["form"])["properties"]["father"]["x-data-item"] == "person.identity"
    assert (birth["fee_rials"], birth["time_limit_days"], birth["declared_level"]) == (0, 3, 4)
    with engine.connect() as conn:
        post = members.get_member(conn, "TEST/GOV/14003000014")
        reports = (
            conn.execute(select(public_service_reports).order_by(public_service_reports.c.position))
            .mappings()
            .all()
        )
        entries = audit.entries(conn, "catalogue")
    assert (post["name"], post["parent_legal_id"], post["website"]) == (
        "شرکت ملی پست",
        "10320003214",
        "https://post.ir",
    )
    assert [(r["period"], r["jalali_year"], r["jalali_quarter"]) for r in reports] == [
        ("1402", 1402, None),
        ("1403-Q2", 1403, 2),
    ]
    assert reports[0]["satisfaction_pct"] == 81.5 and reports[1]["completed"] is None
    assert entries[0]["action"] == "registry:catalogue:import"
    assert entries[0]["after"]["services_created"] == 3


def test_unknown_fields_are_kept_in_extra_and_reported_as_warnings(lite: Engine) -> None:
    report = run(lite, "catalogue.json")
    assert [(w.field, "kept in extra" in w.reason) for w in report.warnings] == [
        ("legacy_code", True)
    ]
    assert json.loads(card(lite, "10000000003")["extra"]) == {
        "note": "kept as it is",
        "legacy_code": "P-17",
    }


def test_a_csv_pair_of_agencies_and_cards_is_read_by_its_headers(engine: Engine) -> None:
    report = run(engine, "services.csv", "agencies.csv")  # order does not matter
    assert report.written and not report.problems, report.problems
    assert [f.kind for f in report.files] == ["services", "agencies"]
    first = card(engine, "20000000001")
    assert json.loads(first["channels"]) == ["online", "in_person"]
    assert (
        first["steps_apply_online"],
        first["steps_pay_online"],
        first["steps_issue_online"],
        first["paper_required"],
    ) == (True, True, True, False)
    assert json.loads(first["documents"]) == [
        {
            "name_fa": "کارت ملی",
            "name_en": None,
            "data_item": "person.identity",
            "source": "citizen",
        },
        {"name_fa": "عکس", "name_en": None, "data_item": None, "source": "citizen"},
    ]
    second = card(engine, "20000000002")
    assert (
        second["steps_apply_online"],
        second["steps_pay_online"],
        second["paper_required"],
        second["in_person_visits"],
        second["fee_rials"],
        second["url"],
    ) == (True, False, True, None, None, None)
    with engine.connect() as conn:
        rows = conn.execute(
            select(public_service_reports.c.period, public_service_reports.c.applications_online)
        ).all()
    assert sorted(rows) == [("1402", 900), ("1403-Q1", None)]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1256"])
def test_utf8_with_bom_and_windows_1256_files_read_the_same(
    lite: Engine, tmp_path: Path, encoding: str
) -> None:
    text = (
        "service_id,agency_legal_id,title_fa,description_fa,paper_required\n"
        "40000000001,10100387143,صدور گواهی پایان خدمت,گواهی برای کارکنان پیمانی,بله\n"
    )
    path = tmp_path / f"cards-{encoding}.csv"
    # Windows-1256 has no Persian yeh: a real file holds the Arabic one, which is read back.
    path.write_bytes((text.replace("ی", "ي") if encoding == "cp1256" else text).encode(encoding))
    with_agencies(lite)
    report = run(lite, path)
    assert report.written and not report.problems
    assert report.files[0].encoding == encoding
    stored = card(lite, "40000000001")
    assert (stored["title_fa"], stored["description_fa"], stored["paper_required"]) == (
        "صدور گواهی پایان خدمت",
        "گواهی برای کارکنان پیمانی",
        True,
    )


def test_a_mapped_file_with_its_own_columns_and_persian_booleans(engine: Engine) -> None:
    with_agencies(engine)
    report = run(engine, "mapped-services.csv", mapping=DATA / "mapped.toml")
    assert report.written and not report.problems, report.problems
    assert report.services_created == 3
    sid = derive_id("test.mapped", "service", f"10100387143\x1f{normalize('تغییر نام')}")
    rename = card(engine, sid)
    assert json.loads(rename["channels"]) == ["online", "in_person"]
    assert (
        rename["steps_apply_online"],
        rename["steps_pay_online"],
        rename["paper_required"],
        rename["in_person_visits"],
        rename["fee_rials"],
    ) == (True, False, True, 1, 200000)
    assert [d["name_fa"] for d in json.loads(rename["documents"])] == ["کارت ملی", "شناسنامه"]
    assert json.loads(rename["recipients"]) == ["citizen"]
    assert json.loads(rename["extra"]) == {"internal_code": "S-1"}  # ردیف is ignored
    death_id = derive_id("test.mapped", "service", f"10100387143\x1f{normalize('ثبت وفات')}")
    death = card(engine, death_id)
    assert (
        death["fee_rials"],
        death["in_person_visits"],
        death["steps_pay_online"],
        death["paper_required"],
    ) == (0, 0, None, False)
    again = run(engine, "mapped-services.csv", mapping=DATA / "mapped.toml")
    assert (again.services_created, again.services_unchanged) == (0, 3)


def test_a_dry_run_validates_and_counts_but_writes_nothing(engine: Engine) -> None:
    before = counts(engine)
    report = run(engine, "catalogue.json", dry_run=True)
    assert not report.written and not report.errors
    assert (report.agencies_created, report.services_created) == (2, 3)
    assert counts(engine) == before


def test_progress_is_reported_for_reading_validating_and_writing(lite: Engine) -> None:
    seen: list[tuple[str, int, int]] = []
    run(lite, "catalogue.json", progress=lambda *a: seen.append(a))
    stages = {stage: (done, total) for stage, done, total in seen}  # the last tick of each
    assert list(stages) == ["reading", "validating", "writing"]
    assert all(done == total for done, total in stages.values())


# -- broken files: every problem located, nothing written ------------------------------------

BROKEN = [
    ("bad-service-id.csv", [(3, "service_id"), (4, "service_id")]),
    ("bad-legal-id.csv", [(3, "agency_legal_id")]),
    ("duplicates.csv", [(2, "service_id"), (4, "service_id")]),
    ("unknown-agency.csv", [(3, "agency_legal_id")]),
    ("bad-enum.csv", [(3, "channels"), (3, "recipients"), (3, "status")]),
]


@pytest.mark.parametrize(("name", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_bad_row_is_reported_by_line_and_field_and_nothing_is_written(
    engine: Engine, name: str, expected: list[tuple[int, str]]
) -> None:
    with_agencies(engine)
    before = counts(engine)
    report = run(engine, name)
    assert not report.written and report.refused
    assert located(report) == sorted(expected, key=str)
    assert all(p.file.endswith(name) and p.reason for p in report.errors)
    assert counts(engine) == before


def test_each_problem_names_the_rows_service_id_and_reason(lite: Engine) -> None:
    with_agencies(lite)
    report = run(lite, "bad-legal-id.csv", "duplicates.csv", "bad-enum.csv")
    lines = [str(p) for p in report.errors]
    assert any(
        line.startswith(f"{DATA / 'bad-legal-id.csv'}:3 30000000002 agency_legal_id: ")
        and "not a valid national legal ID" in line
        for line in lines
    )
    # every problem of every file, not only the first: 1 bad legal ID, 3 bad enums, and the
    # 7 rows whose service_id appears more than once across the three files
    assert len(lines) == 11
    assert sum("appears" in line for line in lines) == 7


def test_missing_required_columns_are_one_error_naming_them(engine: Engine) -> None:
    before = counts(engine)
    report = run(engine, "missing-columns.csv")
    assert len(report.errors) == 1
    error = report.errors[0]
    assert error.line == 1 and "service_id" in error.reason and "agency_legal_id" in error.reason
    assert counts(engine) == before


@pytest.mark.parametrize(
    "content",
    [
        "service_id,title_fa\n40000000001,گواهی\n".encode("utf-16"),
        "service_id,title_fa\n40000000001,گواهی\n".encode("utf-16-le"),
        bytes(range(256)) * 4,
    ],
    ids=["utf-16", "utf-16-no-bom", "random-bytes"],
)
def test_a_file_in_another_encoding_is_a_clear_error(
    engine: Engine, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "cards.csv"
    path.write_bytes(content)
    before = counts(engine)
    report = run(engine, "agencies.csv", path)
    assert [(e.file, e.line) for e in report.errors] == [(str(path), None)]
    assert "UTF-8" in report.errors[0].reason and report.errors[0].reason_fa
    assert counts(engine) == before


def test_json_problems_are_located_by_path(engine: Engine) -> None:
    with_agencies(engine)
    before = counts(engine)
    report = run(engine, "broken.json")
    assert {(p.path, p.service_id) for p in report.errors} == {("services[1]", "30000000002")}
    assert {p.field for p in report.errors} == {
        "declared_level",
        "documents",
        "form",
        "in_person_visits",
        "url",
    }
    assert counts(engine) == before


def test_skip_invalid_writes_the_good_rows_and_reports_the_rest(engine: Engine) -> None:
    with_agencies(engine)
    report = run(engine, "bad-enum.csv", skip_invalid=True)
    assert report.written and len(report.errors) == 3
    assert (report.services_created, report.services_refused) == (1, 1)
    with engine.connect() as conn:
        assert conn.execute(select(public_services.c.service_id)).scalars().all() == ["30000000001"]


def test_a_card_of_a_refused_agency_is_refused_with_it(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "agencies": [
                    {"legal_id": "14101234563", "member_class": "XYZ", "name_fa": "بهداشت"}
                ],
                "services": [
                    {
                        "service_id": "50000000001",
                        "agency_legal_id": "14101234563",
                        "title_fa": "واکسن",
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    before = counts(engine)
    report = run(engine, path, skip_invalid=True)
    assert [(p.path, p.field) for p in report.errors] == [
        ("agencies[0]", "member_class"),
        ("services[0]", "agency_legal_id"),
    ]
    assert "refused" in report.errors[1].reason
    assert counts(engine)["public_services"] == before["public_services"]


# -- idempotence and round trips --------------------------------------------------------------


def test_importing_the_same_file_twice_gives_the_same_result(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, "catalogue.json")
    first = counts(engine)
    again = run(engine, "catalogue.json")
    assert (again.agencies_created, again.agencies_updated, again.agencies_unchanged) == (0, 0, 2)
    assert (again.services_created, again.services_updated, again.services_unchanged) == (0, 0, 3)
    assert {k: v for k, v in counts(engine).items() if k != "audit_log"} == {
        k: v for k, v in first.items() if k != "audit_log"
    }
    changed = json.loads((DATA / "catalogue.json").read_text(encoding="utf-8"))
    changed["services"][1]["title_en"] = "Parcel tracking by code"
    del changed["services"][0]["reported"][1]
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(changed, ensure_ascii=False), encoding="utf-8")
    report = run(engine, path)
    assert (report.services_updated, report.services_unchanged) == (2, 1)
    assert card(engine, "10000000002")["title_en"] == "Parcel tracking by code"
    assert counts(engine)["public_service_reports"] == 1


# -- mapping files and derived IDs -------------------------------------------------------------


def test_derived_legal_ids_are_checksum_valid_and_deterministic() -> None:
    ids = {derive_id("ns", "legal", str(i)) for i in range(2000)}
    assert len(ids) == 2000 and all(is_legal_id(i) and int(i[3:9]) for i in ids)
    assert derive_id("ns", "legal", "x") == derive_id("ns", "legal", "x")
    assert derive_id("ns", "legal", "x") != derive_id("other", "legal", "x")
    assert len(derive_id("ns", "service", "x")) == 11


def test_a_derived_id_that_collides_is_derived_again_deterministically() -> None:
    def records() -> list[Record]:
        taken = derive_id("ns", "service", "b")  # an explicit ID equal to what "b" derives
        return [
            Record("services", "f.csv", 2, None, {"service_id": Derived("service", "b")}),
            Record("services", "f.csv", 3, None, {"service_id": taken}),
        ]

    first, second = records(), records()
    warnings = resolve("ns", first)
    resolve("ns", second)
    assert (
        first[0].values["service_id"]
        == second[0].values["service_id"]
        == derive_id("ns", "service", "b", 1)
    )
    assert [(w.severity, w.line, "collided" in w.reason) for w in warnings] == [
        ("warning", 2, True)
    ]


def test_rows_with_the_same_source_key_are_reported_as_duplicates(
    lite: Engine, tmp_path: Path
) -> None:
    with_agencies(lite)
    path = tmp_path / "own.csv"
    path.write_text(
        "agency,name\n10100387143,Same service\n10100387143,same  SERVICE\n", encoding="utf-8"
    )
    mapping = parse_mapping(
        {
            "services": {
                "fields": {
                    "service_id": {"derive_from": ["agency", "name"]},
                    "agency_legal_id": {"column": "agency"},
                    "title_en": {"column": "name"},
                }
            }
        }
    )
    report = run(lite, path, mapping=mapping)
    assert [(p.line, p.field) for p in report.errors] == [(2, "service_id"), (3, "service_id")]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"services": {"fields": {"titel_en": {"column": "x"}}}}, "'titel_en' is not a field"),
        ({"services": {"fields": {"title_en": {"derive_from": "x"}}}}, "can be derived"),
        ({"services": {"fields": {"url": {"column": "x", "fix": [["(", ""]]}}}}, "bad regex"),
        ({"services": {"fields": {"url": {"colum": "x"}}}}, "unknown key(s) colum"),
        ({"services": {"fields": {"title_en": {"column": "x", "split": ";"}}}}, "list fields only"),
        ({"servics": {}}, "unknown top-level key(s) servics"),
    ],
)
def test_a_mapping_mistake_is_a_clear_error(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_mapping(doc)


# -- the command ------------------------------------------------------------------------------


def test_the_command_prints_each_bad_row_and_exits_1_when_nothing_written(tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "home")
    ok = runner.invoke(catalogue, ["import", str(DATA / "agencies.csv"), "--home", home])
    assert ok.exit_code == 0, ok.output
    assert "agencies: 2 created" in ok.output
    bad = runner.invoke(catalogue, ["import", str(DATA / "bad-enum.csv"), "--home", home])
    assert bad.exit_code == 1
    assert f"{DATA / 'bad-enum.csv'}:3 30000000002 channels: 'fax' not one of" in bad.output
    assert "refused: nothing written" in bad.output
    skip = runner.invoke(
        catalogue, ["import", str(DATA / "bad-enum.csv"), "--skip-invalid", "--home", home]
    )
    assert skip.exit_code == 0 and "services: 1 created" in skip.output


# -- the Kenya eCitizen catalogue: real data at scale ------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not KENYA.is_dir(), reason=f"the Kenya eCitizen data is not at {KENYA}")
def test_the_whole_kenya_catalogue_imports_with_no_invalid_row(tmp_path: Path) -> None:
    eng = _open(tmp_path / "kenya")
    files = [KENYA / "agencies.csv", KENYA / "services.csv"]
    started = time.perf_counter()
    report = import_catalogue(
        eng, files, mapping=MAPPINGS / "kenya-ecitizen.toml", actor="test", instance="TEST"
    )
    elapsed = time.perf_counter() - started
    assert not report.problems, report.problems[:10]
    agencies = (KENYA / "agencies.csv").read_text(encoding="utf-8").count("\n") - 1
    assert (report.services_created, report.agencies_created) == (5489, agencies) == (5489, 286)
    assert elapsed < 60
    with eng.connect() as conn:
        rows = conn.execute(select(public_services.c.title_en, public_services.c.url)).all()
    assert len(rows) == 5489 and all(title and url for title, url in rows)
    again = import_catalogue(
        eng, files, mapping=MAPPINGS / "kenya-ecitizen.toml", actor="test", instance="TEST"
    )
    assert (again.services_unchanged, again.agencies_unchanged) == (5489, 286)
    eng.dispose()
