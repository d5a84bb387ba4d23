"""The sandbox's Persian catalogue of services is well-formed, wired to the sandbox and varied.

The definition level is computed here by a small local implementation of
catalogue.md's rules, so that the seed's level spread does not depend on the
registry or oversight code (the sandbox must not import them).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from typing import Any

import pytest

from dargah.core.identifiers import is_legal_id, is_public_service_id, parse_service_id
from dargah.core.persian import compact, normalize
from dargah.sandbox.agencies import AGENCIES, DATA_ITEMS, service_ids
from dargah.sandbox.catalogue_seed import (
    CLUSTERS,
    INTENDED_DUPLICATES,
    LIFE_EVENTS,
    OBJECT_ONLY_NEAR_MISSES,
    cluster_titles,
    life_event_titles,
    load_seed_catalogue,
)
from dargah.sandbox.desks import desk_service_id, desks

INSTANCE = "DEV"
MEMBER_CLASSES = {"GOV", "PUB", "COM", "NGO"}
RECIPIENTS = {"citizen", "business", "government"}
CHANNELS = {"online", "in_person", "phone", "mail", "kiosk", "app"}
STEPS = (
    "sign_in_online",
    "apply_online",
    "pay_online",
    "decision_online",
    "issue_online",
    "track_online",
)
REPORT_FIELDS = {
    "period",
    "applications_online",
    "applications_in_person",
    "applications_other",
    "completed",
    "completed_online",
    "started",
    "cost_total_rials",
    "cost_per_transaction_rials",
    "satisfaction_pct",
}
JALALI_PERIOD = re.compile(r"1[34][0-9]{2}(-Q[1-4])?")

BUS_SERVICES = service_ids(INSTANCE)
SUPPLIED: set[str] = {item for _, spec in BUS_SERVICES.values() for item in spec.supplies}
TOPICS = {f"{a.subsystem_id(INSTANCE)}/{t.code}" for a in AGENCIES for t in a.topics}


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Any]:
    return load_seed_catalogue()


@pytest.fixture(scope="module")
def services(catalogue: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = catalogue["services"]
    return result


@pytest.fixture(scope="module")
def by_id(services: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["service_id"]: s for s in services}


def definition_level(card: dict[str, Any], supplied: set[str] = SUPPLIED) -> int:
    """catalogue.md, "Levels computed from a card": the first rule from the top that holds."""
    steps = card.get("steps") or {}
    docs = card.get("documents")

    def true_or_null(name: str) -> bool:
        return steps.get(name) in (True, None)

    level3 = (
        all(true_or_null(s) for s in STEPS)
        and card.get("in_person_visits") in (0, None)
        and card.get("paper_required") is not True
        and steps.get("apply_online") is True
    )
    level4 = (
        level3
        and docs is not None
        and not any(d.get("source") == "citizen" and d.get("data_item") in supplied for d in docs)
    )
    if level4 and card.get("proactive_topics"):
        return 5
    if level4:
        return 4
    if level3:
        return 3
    if steps.get("apply_online") is True:
        return 2
    titled = bool(card.get("title_fa") or card.get("title_en"))
    described = bool(card.get("description_fa") or card.get("description_en"))
    if titled and described and card.get("channels") and docs is not None:
        return 1
    return 0


def bus_ids_of(card: dict[str, Any]) -> list[str]:
    ids = [d["source"] for d in card.get("documents") or [] if d["source"] != "citizen"]
    ids += card.get("data_sources") or []
    if card.get("submit_to"):
        ids.append(card["submit_to"])
    return ids


def form_items(card: dict[str, Any]) -> list[str]:
    form = card.get("form") or {}
    return [p["x-data-item"] for p in form.get("properties", {}).values() if "x-data-item" in p]


# ---------------------------------------------------------------- the file


def test_the_file_is_utf8_json_in_the_exchange_format() -> None:
    raw = resources.files("dargah.sandbox").joinpath("catalogue_fa.json").read_bytes()
    data = json.loads(raw.decode("utf-8"))
    assert set(data) == {"agencies", "services"}
    assert load_seed_catalogue() == data
    assert load_seed_catalogue() is not load_seed_catalogue()


def test_sizes(catalogue: dict[str, Any]) -> None:
    assert len(catalogue["agencies"]) >= 12
    assert len(catalogue["services"]) >= 70


# ---------------------------------------------------------------- agencies


def test_agencies_are_well_formed_with_valid_unique_legal_ids(catalogue: dict[str, Any]) -> None:
    agencies = catalogue["agencies"]
    ids = [a["legal_id"] for a in agencies]
    assert len(set(ids)) == len(ids)
    for a in agencies:
        assert is_legal_id(a["legal_id"]), a
        assert a["name_fa"] and a["name_en"], a
        assert a.get("member_class", "GOV") in MEMBER_CLASSES
        if a.get("parent_legal_id"):
            assert a["parent_legal_id"] in ids and a["parent_legal_id"] != a["legal_id"], a
    classes = Counter(a.get("member_class", "GOV") for a in agencies)
    assert classes["GOV"] >= 10
    assert sum(1 for a in agencies if a.get("parent_legal_id")) >= 5


def test_the_five_sandbox_agencies_are_in_it_under_the_same_ids_and_names(
    catalogue: dict[str, Any],
) -> None:
    mine = {a["legal_id"]: a for a in catalogue["agencies"]}
    for agency in AGENCIES:
        assert agency.legal_id in mine, agency.name_en
        assert mine[agency.legal_id]["name_fa"] == agency.name_fa
        assert mine[agency.legal_id]["name_en"] == agency.name_en
        assert mine[agency.legal_id].get("member_class", "GOV") == agency.member_class


# ---------------------------------------------------------------- cards


def test_service_ids_are_unique_eleven_digits_and_agencies_exist(
    catalogue: dict[str, Any], services: list[dict[str, Any]]
) -> None:
    ids = [s["service_id"] for s in services]
    assert len(set(ids)) == len(ids)
    assert all(is_public_service_id(i) for i in ids)
    agencies = {a["legal_id"] for a in catalogue["agencies"]}
    assert all(s["agency_legal_id"] in agencies for s in services)
    # every agency offers something
    assert agencies == {s["agency_legal_id"] for s in services}


def test_cards_have_the_contract_fields_with_allowed_values(services: list[dict[str, Any]]) -> None:
    for s in services:
        sid = s["service_id"]
        assert s["title_fa"] and s["title_en"], sid
        assert set(s["recipients"]) <= RECIPIENTS and s["recipients"], sid
        assert s["cluster"] in CLUSTERS, sid
        assert set(s["life_events"]) <= set(LIFE_EVENTS), sid
        assert set(s["channels"]) <= CHANNELS and s["channels"], sid
        assert set(s["steps"]) == set(STEPS), sid
        assert all(v in (True, False, None) for v in s["steps"].values()), sid
        assert s["in_person_visits"] is None or s["in_person_visits"] >= 0, sid
        assert s["paper_required"] in (True, False, None), sid
        if s["fee_rials"] == 0:
            assert s["steps"]["pay_online"] is None, sid
        assert s["fee_rials"] is None or s["fee_rials"] >= 0, sid
        assert s["time_limit_days"] is None or s["time_limit_days"] > 0, sid
        assert s["declared_level"] in (None, 0, 1, 2, 3, 4, 5), sid
        assert s.get("status", "active") in ("active", "retired"), sid
        for d in s["documents"] or []:
            assert set(d) == {"name_fa", "name_en", "data_item", "source"}, sid
            assert d["name_fa"] and d["name_en"], sid
        for row in s["reported"]:
            assert set(row) <= REPORT_FIELDS, sid
            assert JALALI_PERIOD.fullmatch(row["period"]), (sid, row["period"])
            counts = [row.get(k) for k in REPORT_FIELDS - {"period", "satisfaction_pct"}]
            assert all(v is None or (isinstance(v, int) and v >= 0) for v in counts), sid
            pct = row.get("satisfaction_pct")
            assert pct is None or 0 <= pct <= 100, sid
            if row.get("completed") is not None and row.get("completed_online") is not None:
                assert row["completed_online"] <= row["completed"], sid


def test_life_events_clusters_and_statuses_are_spread(services: list[dict[str, Any]]) -> None:
    events = Counter(e for s in services for e in s["life_events"])
    assert all(events[code] >= 3 for code in LIFE_EVENTS), events
    assert len({s["cluster"] for s in services}) >= 9
    assert sum(1 for s in services if s.get("status") == "retired") >= 2
    assert sum(1 for s in services if s["reported"]) >= 60


def test_tricky_search_subjects_are_present(services: list[dict[str, Any]]) -> None:
    titles = [compact(s["title_fa"]) for s in services]
    for subject in (
        "گواهینامه رانندگی",
        "کارت ملی هوشمند",
        "گذرنامه",
        "سند ازدواج",
        "ثبت شرکت",
        "مجوز کسب",
        "بیمه بیکاری",
        "یارانه",
    ):
        assert any(compact(subject) in t for t in titles), subject


# ---------------------------------------------------------------- wired to the sandbox


def test_every_bus_service_id_it_names_is_a_sandbox_service(services: list[dict[str, Any]]) -> None:
    desk_ids = {desk_service_id(INSTANCE, legal_id) for legal_id in desks()}
    for s in services:
        for bus_id in bus_ids_of(s):
            parse_service_id(bus_id)
            assert bus_id in BUS_SERVICES or bus_id in desk_ids, (s["service_id"], bus_id)


def test_bus_documents_come_from_the_service_that_supplies_their_data_item(
    services: list[dict[str, Any]],
) -> None:
    for s in services:
        for d in s["documents"] or []:
            if d["source"] != "citizen":
                assert d["data_item"] in BUS_SERVICES[d["source"]][1].supplies, (s["service_id"], d)
                assert d["source"] in s["data_sources"], s["service_id"]


def test_every_form_goes_to_the_welfare_applications_service_or_its_agencys_desk(
    services: list[dict[str, Any]],
) -> None:
    with_form = [s for s in services if s.get("form")]
    assert with_form and all(s["submit_to"] for s in with_form)
    for s in with_form:
        target = s["submit_to"]
        if target in BUS_SERVICES:
            assert "welfare.application" in BUS_SERVICES[target][1].supplies
        else:
            assert target == desk_service_id(INSTANCE, s["agency_legal_id"])
            assert s["service_id"] in desks()[s["agency_legal_id"]][1]


def test_proactive_topics_are_sandbox_topics(services: list[dict[str, Any]]) -> None:
    named = {t for s in services for t in s["proactive_topics"]}
    assert named and named <= TOPICS
    assert any(t.endswith("/birth-registered.v1") for t in named)


def test_forms_are_json_schemas_whose_data_items_a_bus_service_supplies(
    services: list[dict[str, Any]],
) -> None:
    with_form = [s for s in services if s["form"]]
    assert len(with_form) >= 10
    assert set(SUPPLIED) <= set(DATA_ITEMS)
    for s in with_form:
        form = s["form"]
        assert form["type"] == "object" and form["properties"], s["service_id"]
        assert set(form.get("required", [])) <= set(form["properties"]), s["service_id"]
        items = form_items(s)
        assert items, s["service_id"]
        for item in items:
            assert item in SUPPLIED, (s["service_id"], item)
            suppliers = {b for b, (_, spec) in BUS_SERVICES.items() if item in spec.supplies}
            assert suppliers & set(s["data_sources"]), (s["service_id"], item)


def test_forms_are_valid_draft_2020_12_schemas(services: list[dict[str, Any]]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for s in services:
        if s["form"]:
            jsonschema.Draft202012Validator.check_schema(s["form"])


# ---------------------------------------------------------------- levels


def test_definition_levels_spread_from_zero_to_five(services: list[dict[str, Any]]) -> None:
    levels = Counter(definition_level(s) for s in services)
    assert all(levels[level] >= 2 for level in range(6)), levels
    active = Counter(definition_level(s) for s in services if s.get("status", "active") == "active")
    assert all(active[level] >= 2 for level in range(6)), active


def test_some_agencies_claim_more_than_their_cards_support(services: list[dict[str, Any]]) -> None:
    optimistic = [
        s
        for s in services
        if s["declared_level"] is not None and s["declared_level"] > definition_level(s)
    ]
    assert len(optimistic) >= 10
    assert any(s["declared_level"] is None for s in services)


def test_proactive_services_start_from_birth_and_death(services: list[dict[str, Any]]) -> None:
    fives = [s for s in services if definition_level(s) == 5]
    events = {e for s in fives for e in s["life_events"]}
    assert {"birth", "death"} <= events


def test_local_level_rules_on_minimal_cards() -> None:
    steps = dict.fromkeys(STEPS, True)
    card: dict[str, Any] = {
        "title_fa": "x",
        "description_fa": "y",
        "channels": ["online"],
        "steps": steps,
        "in_person_visits": 0,
        "paper_required": False,
        "documents": [],
        "proactive_topics": [],
    }
    assert definition_level(card) == 4
    assert definition_level({**card, "proactive_topics": ["t"]}) == 5
    citizen_id = {"source": "citizen", "data_item": "person.identity"}
    assert definition_level({**card, "documents": [citizen_id]}) == 3
    assert definition_level({**card, "documents": None}) == 3
    assert definition_level({**card, "in_person_visits": 1}) == 2
    offline = {**card, "steps": dict.fromkeys(STEPS, False)}
    assert definition_level(offline) == 1
    assert definition_level({**offline, "documents": None}) == 0
    assert definition_level({**offline, "channels": []}) == 0


# ---------------------------------------------------------------- duplicates


def test_intended_duplicates_are_variant_spellings_across_agencies(
    by_id: dict[str, dict[str, Any]],
) -> None:
    assert len(INTENDED_DUPLICATES) >= 6
    for a, b in INTENDED_DUPLICATES:
        assert a in by_id and b in by_id, (a, b)
        sa, sb = by_id[a], by_id[b]
        assert sa["agency_legal_id"] != sb["agency_legal_id"], (a, b)
        assert sa["title_fa"] != sb["title_fa"], (a, b)
        assert compact(sa["title_fa"]) == compact(sb["title_fa"]), (a, b)
        assert sa.get("status", "active") == sb.get("status", "active") == "active"


def test_duplicates_use_each_kind_of_spelling_variant(by_id: dict[str, dict[str, Any]]) -> None:
    titles = [by_id[i]["title_fa"] for pair in INTENDED_DUPLICATES for i in pair]
    joined = "".join(titles)
    assert "ي" in joined and "ك" in joined  # Arabic yeh and kaf
    assert "\u200c" in joined  # ZWNJ
    assert "\u0650" in joined  # a diacritic (kasra)
    assert any(ch in joined for ch in "۰۱۲۳۴۵۶۷۸۹") and re.search(r"[0-9]", joined)


def test_near_misses_are_different_services_that_read_alike(
    by_id: dict[str, dict[str, Any]],
) -> None:
    assert len(OBJECT_ONLY_NEAR_MISSES) >= 4
    duplicates = {frozenset(p) for p in INTENDED_DUPLICATES}
    for a, b in OBJECT_ONLY_NEAR_MISSES:
        assert a in by_id and b in by_id, (a, b)
        assert frozenset((a, b)) not in duplicates
        ta, tb = normalize(by_id[a]["title_fa"]).split(), normalize(by_id[b]["title_fa"]).split()
        assert compact(by_id[a]["title_fa"]) != compact(by_id[b]["title_fa"])
        assert ta[0] == tb[0], (a, b)  # the same action …
        assert set(ta) ^ set(tb), (a, b)  # … on a different object


# ---------------------------------------------------------------- helpers


def test_life_event_and_cluster_titles(services: list[dict[str, Any]]) -> None:
    titles = life_event_titles()
    assert set(titles) == set(LIFE_EVENTS)
    assert titles["birth"] == "تولد فرزند"
    assert {s["cluster"] for s in services} <= set(cluster_titles())
