"""Duplicate public services (catalogue.md, `dargah catalogue duplicates`): scoring, decisions, CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from dargah.cli.catalogue import catalogue
from dargah.core.settings import Settings
from dargah.registry import audit
from dargah.registry.catalogue import import_catalogue
from dargah.registry.catalogue.duplicates import (
    ServiceText,
    decide,
    duplicates,
    load_services,
    score_pairs,
)
from dargah.registry.instance import open_instance
from dargah.sandbox.catalogue_seed import (
    INTENDED_DUPLICATES,
    OBJECT_ONLY_NEAR_MISSES,
    load_seed_catalogue,
)

MAPPINGS = Path(__file__).resolve().parents[1] / "docs" / "mappings"
KENYA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kenya-ecitizen"


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _import_seed(home: Path, change: Any = None) -> Engine:
    engine, _info, _token = open_instance(Settings(home=home, instance="TEST"))
    data = load_seed_catalogue()
    if change is not None:
        change(data)
    seed = home.parent / f"{home.name}-seed.json"
    seed.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    report = import_catalogue(engine, [seed], actor="test", instance="TEST")
    assert report.written and not report.errors
    return engine


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Engine]:
    engine = _import_seed(tmp_path / "home")
    yield engine
    engine.dispose()


def _pairs(engine: Engine, floor: float = 0.0) -> dict[tuple[str, str], Any]:
    with engine.connect() as conn:
        services = load_services(conn)
    return {(p.a, p.b): p for p in score_pairs(services, floor=floor)}


def test_intended_duplicates_rank_above_every_object_only_near_miss(seeded: Engine) -> None:
    pairs = _pairs(seeded)
    dup = [pairs[_key(a, b)] for a, b in INTENDED_DUPLICATES]
    near = [pairs[_key(a, b)] for a, b in OBJECT_ONLY_NEAR_MISSES if _key(a, b) in pairs]
    assert len(near) == len(OBJECT_ONLY_NEAR_MISSES)
    assert min(p.score for p in dup) > 0.8
    assert min(p.score for p in dup) > max(p.score for p in near)
    assert not any(p.object_differs for p in dup)
    assert all(p.object_differs for p in near)
    # The best pairs of the whole catalogue are exactly the intended duplicates.
    ranked = sorted(pairs.values(), key=lambda p: -p.score)[: len(INTENDED_DUPLICATES)]
    assert {(p.a, p.b) for p in ranked} == {_key(a, b) for a, b in INTENDED_DUPLICATES}
    # Within one agency too: صدور گواهی ولادت / صدور گواهی فوت.
    assert pairs[_key("21600000002", "21600000003")].same_agency
    assert not pairs[_key(*INTENDED_DUPLICATES[0])].same_agency


def test_near_misses_are_flagged_and_stay_candidates(seeded: Engine) -> None:
    listed = {(d["a"], d["b"]): d for d in duplicates(seeded, min_score=0.0)}
    for a, b in OBJECT_ONLY_NEAR_MISSES:
        d = listed[_key(a, b)]
        assert d["object_differs"] is True
        assert d["status"] == "candidate"
    assert all(d["status"] == "candidate" for d in listed.values())  # nothing auto-confirmed
    best = duplicates(seeded)
    assert {(d["a"], d["b"]) for d in best} == {_key(a, b) for a, b in INTENDED_DUPLICATES}
    assert [d["score"] for d in best] == sorted((d["score"] for d in best), reverse=True)


def _others() -> list[ServiceText]:
    # Context for the idf: other services sharing some words.
    titles = ["صدور کارت سوخت", "تمدید گذرنامه", "صدور گواهی ولادت", "پرداخت قبض برق"]
    return [ServiceText(f"9{i:010d}", "other", title_fa=t) for i, t in enumerate(titles)]


@pytest.mark.parametrize(
    "variants",
    [
        ["صدور کارت ملی هوشمند", "صدور كارت ملي هوشمند", "صدورِ کارتِ ملّی هوشمند"],
        ["تمدید گواهی\u200cنامه رانندگی", "تمدید گواهی نامه رانندگی", "تمدید گواهینامه رانندگی"],
        ["ثبت\u200cنام آزمون سراسری ۱۴۰۴", "ثبت نام آزمون سراسری 1404", "ثبتنام آزمون سراسری ١٤٠٤"],
        ["صدور مجوز کسب\u200cوکار", "صدور مجوز کسب و کار", "صدور مجوز كسب وكار"],
    ],
)
def test_variant_spellings_of_one_title_score_at_least_095(variants: list[str]) -> None:
    services = _others() + [
        ServiceText(f"1{i:010d}", f"agency-{i}", title_fa=t) for i, t in enumerate(variants)
    ]
    pairs = {(p.a, p.b): p for p in score_pairs(services, floor=0.0)}
    for x, y in combinations(range(len(variants)), 2):
        p = pairs[(f"1{x:010d}", f"1{y:010d}")]
        assert p.score >= 0.95, (variants[x], variants[y], p)
        assert not p.object_differs


def test_english_pairs() -> None:
    services = [
        ServiceText("10000000001", "kplc", title_en="Paying the electricity bill"),
        ServiceText("10000000002", "ecitizen", title_en="Pay Electricity Bills"),
        ServiceText("10000000003", "gas", title_en="Paying the gas bill"),
        ServiceText("10000000004", "ntsa", title_en="Driving licence renewal"),
        ServiceText("10000000005", "ntsa", title_en="Renewal of driving licence."),
        ServiceText("10000000006", "kra", title_en="Driving licence renewl"),  # a typo
    ]
    pairs = {(p.a, p.b): p for p in score_pairs(services, floor=0.0)}
    assert pairs[("10000000004", "10000000005")].score >= 0.95
    assert pairs[("10000000004", "10000000005")].same_agency
    assert pairs[("10000000004", "10000000006")].score >= 0.6
    assert not pairs[("10000000004", "10000000006")].object_differs
    assert pairs[("10000000001", "10000000002")].score >= 0.8
    gas = pairs[("10000000001", "10000000003")]
    assert gas.object_differs
    assert gas.score < pairs[("10000000001", "10000000002")].score
    assert ("10000000001", "10000000004") not in pairs  # nothing shared: not listed


def _entries(engine: Engine, a: str, b: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return audit.entries(conn, target=f"duplicate:{a}:{b}")


def test_decisions_change_the_status_are_audited_and_survive_a_rerun(seeded: Engine) -> None:
    dup = _key(*INTENDED_DUPLICATES[0])
    near = _key(*OBJECT_ONLY_NEAR_MISSES[0])
    with seeded.connect() as conn, conn.begin():
        decide(conn, dup[1], dup[0], "confirmed", "operator", "one card, two counters")
        decide(conn, near[0], near[1], "dismissed", "operator", None)
    for _ in range(2):  # a re-run scores again and keeps the decisions
        listed = {(d["a"], d["b"]): d for d in duplicates(seeded, min_score=0.5)}
        assert listed[dup]["status"] == "confirmed"
        assert listed[near]["status"] == "dismissed"  # listed although below the minimum
        assert listed[near]["score"] < 0.5
    logged = _entries(seeded, *dup)
    assert logged[0]["action"] == str(audit.Action.DUPLICATE_DECIDE)
    assert logged[0]["actor"] == "operator"
    assert logged[0]["after"]["status"] == "confirmed"
    assert logged[0]["after"]["reason"] == "one card, two counters"
    with seeded.connect() as conn, conn.begin():
        decide(conn, dup[0], dup[1], "dismissed", "operator", "different after all")
    assert {(d["a"], d["b"]): d for d in duplicates(seeded)}[dup]["status"] == "dismissed"
    logged = _entries(seeded, *dup)
    assert len(logged) == 2 and logged[0]["before"]["status"] == "confirmed"
    with seeded.connect() as conn, conn.begin(), pytest.raises(ValueError):
        decide(conn, dup[0], dup[1], "candidate", "operator", None)
    with seeded.connect() as conn, conn.begin(), pytest.raises(ValueError):
        decide(conn, dup[0], "99999999999", "confirmed", "operator", None)


def test_retired_services_are_excluded(tmp_path: Path) -> None:
    retired_id = INTENDED_DUPLICATES[0][0]

    def retire(data: dict[str, Any]) -> None:
        for card in data["services"]:
            if card["service_id"] == retired_id:
                card["status"] = "retired"

    engine = _import_seed(tmp_path / "home", retire)
    try:
        retired = {
            c["service_id"]
            for c in load_seed_catalogue()["services"]
            if c.get("status") == "retired"
        } | {retired_id}
        listed = duplicates(engine, min_score=0.0)
        assert listed
        assert not any(d["a"] in retired or d["b"] in retired for d in listed)
    finally:
        engine.dispose()


def test_the_cli_lists_and_decides(tmp_path: Path, seeded: Engine) -> None:
    home = str(seeded.url.database and Path(seeded.url.database).parent)
    runner = CliRunner()
    shown = runner.invoke(catalogue, ["duplicates", "--home", home])
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.stdout)
    assert listed == duplicates(seeded)
    assert set(listed[0]) == {"a", "b", "score", "status", "object_differs", "same_agency"}
    a, b = listed[0]["a"], listed[0]["b"]
    done = runner.invoke(
        catalogue, ["decide", b, a, "--confirm", "--reason", "same service", "--home", home]
    )
    assert done.exit_code == 0, done.output
    again = json.loads(runner.invoke(catalogue, ["duplicates", "--home", home]).stdout)
    assert again[0]["status"] == "confirmed"
    low = json.loads(
        runner.invoke(catalogue, ["duplicates", "--min-score", "0.3", "--home", home]).stdout
    )
    assert len(low) > len(again)
    table = runner.invoke(catalogue, ["duplicates", "--format", "table", "--home", home])
    assert table.exit_code == 0 and a in table.stdout and "confirmed" in table.stdout
    neither = runner.invoke(catalogue, ["decide", a, b, "--home", home])
    assert neither.exit_code != 0
    unknown = runner.invoke(catalogue, ["decide", a, "99999999999", "--dismiss", "--home", home])
    assert unknown.exit_code == 1 and "no such service" in unknown.output


@pytest.mark.slow
def test_all_pairs_of_the_kenya_catalogue_are_scored_quickly(tmp_path: Path) -> None:
    engine, _info, _token = open_instance(Settings(home=tmp_path / "kenya", instance="TEST"))
    try:
        report = import_catalogue(
            engine,
            [KENYA / "agencies.csv", KENYA / "services.csv"],
            mapping=MAPPINGS / "kenya-ecitizen.toml",
            actor="test",
            instance="TEST",
        )
        assert report.written
        with engine.connect() as conn:
            services = load_services(conn)
        assert len(services) == 5489
        started = time.perf_counter()
        pairs = score_pairs(services, floor=0.5)
        seconds = time.perf_counter() - started
        print(f"kenya: {len(services)} services, {len(pairs)} pairs >= 0.5 in {seconds:.2f} s")
        assert pairs and pairs[0].score == 1.0
        assert seconds < 10  # about 3 s; generous for a loaded CI machine
    finally:
        engine.dispose()
