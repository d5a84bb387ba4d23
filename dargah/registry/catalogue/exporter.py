"""``export_catalogue``: every card as stored, plus the levels computed from it.

JSON is ``{"agencies": [...], "services": [...]}``. CSV writes the cards flattened the
way an import reads them (steps and list-of-object fields as dotted columns, lists joined
with '|', a JSON cell where that cannot hold the value), so an export imports back as it was;
the agencies go to a second CSV file when one is given.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, Engine, select

from dargah.registry.catalogue.coerce import LIST_SEP, NULLS
from dargah.registry.catalogue.levels import Reason, definition_level, reason
from dargah.registry.catalogue.models import (
    AGENCY_FIELDS,
    CARD_FIELDS,
    COMPUTED_FIELDS,
    LIST_FIELDS,
    OBJECT_LISTS,
)
from dargah.registry.catalogue.reading import inert_text
from dargah.registry.catalogue.service import load_agencies, load_cards
from dargah.store.db import READ_ONLY
from dargah.store.tables import services

NOT_MEASURED = reason(
    "not-measured",
    "verified level not measured yet: oversight has no evidence for this service",
    "سطح تأییدشده هنوز سنجیده نشده است",
)


def supplied_items(conn: Connection) -> set[str]:
    """The data items that active bus services declare they supply."""
    out: set[str] = set()
    q = select(services.c.supplies).where(services.c.status == "active")
    for (supplies,) in conn.execute(q):
        out.update(json.loads(supplies) if supplies else [])
    return out


# Oversight's computed columns of one card: (verified_level, counted, reasons). The registry
# must not import oversight, so the caller hands in a function that computes them for every
# card on the exporter's own connection (dargah.oversight.assess, from the CLI).
Verdict = tuple[int | None, bool, list[Reason]]
Verdicts = Callable[[Connection], Mapping[str, Verdict]]


def computed(
    card: dict[str, Any], supplied: set[str], verdict: Verdict | None = None
) -> dict[str, Any]:
    """The computed columns of one card.

    Without a ``verdict`` (oversight did not measure the service), nothing is verified and
    nothing counts (reason ``not-measured``).
    """
    level, reasons = definition_level(card, supplied)
    if verdict is None:
        verified: int | None = None
        counted = False
        why: list[Reason] = [*reasons, NOT_MEASURED]
    else:
        verified, counted, extra = verdict
        why = [*reasons, *extra]
    return {
        "definition_level": level,
        "verified_level": verified,
        "counted": counted,
        "reasons": why,
    }


def _plain(value: Any) -> bool:
    """Whether a value survives being a '|'-joined item of a CSV cell."""
    if isinstance(value, str):
        return (
            value == value.strip()
            and value not in NULLS
            and LIST_SEP not in value
            and not value.startswith(("[", "{"))
        )
    return value is None or isinstance(value, bool | int | float)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _list_cell(items: list[Any] | None) -> str:
    if items is None:
        return ""
    if items and all(isinstance(i, str) and _plain(i) for i in items):
        return LIST_SEP.join(items)
    return json.dumps(items, ensure_ascii=False)


def _object_cells(name: str, items: list[dict[str, Any]] | None) -> dict[str, str]:
    keys = OBJECT_LISTS[name]
    cells = {name: ""} | {f"{name}.{k}": "" for k in keys}
    if items is None:
        return cells
    if items and all(set(i) <= set(keys) and all(_plain(v) for v in i.values()) for i in items):
        for k in keys:
            values = [_scalar(i.get(k)) for i in items]
            cells[f"{name}.{k}"] = LIST_SEP.join(values) if any(values) else ""
    else:
        cells[name] = json.dumps(items, ensure_ascii=False)
    return cells


def card_columns() -> list[str]:
    """The CSV columns of a card, before its extra and computed columns."""
    columns: list[str] = []
    for name in CARD_FIELDS:
        columns.append(name)
        columns += [f"{name}.{k}" for k in OBJECT_LISTS.get(name, ())]
    return columns


def flatten_card(card: dict[str, Any]) -> dict[str, str]:
    """A CARD (with its computed columns, if any) as one CSV row."""
    row: dict[str, str] = {}
    for name in CARD_FIELDS:
        if name.startswith("steps."):
            row[name] = _scalar((card.get("steps") or {}).get(name[len("steps.") :]))
        elif name in LIST_FIELDS:
            row[name] = _list_cell(card.get(name))
        elif name in OBJECT_LISTS:
            row.update(_object_cells(name, card.get(name)))
        else:
            row[name] = _scalar(card.get(name))
    for key, value in (card.get("extra") or {}).items():
        row[f"extra.{key}"] = _scalar(value)
    if "definition_level" in card:
        row["definition_level"] = str(card["definition_level"])
        row["verified_level"] = _scalar(card["verified_level"])
        row["counted"] = _scalar(card["counted"])
        row["reasons"] = LIST_SEP.join(r["code"] for r in card["reasons"])
    return row


def flatten_agency(agency: dict[str, Any]) -> dict[str, str]:
    row = {name: _scalar(agency.get(name)) for name in AGENCY_FIELDS}
    for key, value in (agency.get("extra") or {}).items():
        row[f"extra.{key}"] = _scalar(value)
    return row


@contextmanager
def _opened(out: Path | TextIO) -> Iterator[TextIO]:
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8", newline="") as f:
            yield f
    else:
        yield out


def _write_csv(
    out: Path | TextIO, head: list[str], rows: list[dict[str, str]], tail: tuple[str, ...] = ()
) -> None:
    extra = sorted({k for r in rows for k in r if k.startswith("extra.")})
    with _opened(out) as f:
        writer = csv.DictWriter(f, [*head, *extra, *tail], restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: inert_text(v) for k, v in row.items()} for row in rows)


def export_catalogue(
    engine: Engine,
    fmt: str = "json",
    out: Path | TextIO | None = None,
    *,
    agencies_out: Path | TextIO | None = None,
    verdicts: Verdicts | None = None,
) -> dict[str, int]:
    """Write the catalogue to ``out`` (a path or a text stream); returns the counts written.

    ``fmt`` is ``json`` or ``csv``; for CSV, ``agencies_out`` receives the agencies.
    ``verdicts`` computes oversight's verified level, counted and reasons of every card
    (by service ID); without it, or for a card it leaves out, they are not measured.
    """
    if fmt not in ("json", "csv"):
        raise ValueError(f"unknown export format {fmt!r}: json or csv")
    if out is None:
        raise ValueError("export_catalogue needs somewhere to write (out)")
    with engine.connect().execution_options(**READ_ONLY) as conn:
        supplied = supplied_items(conn)
        agencies = load_agencies(conn)
        measured = verdicts(conn) if verdicts is not None else {}
        cards = [
            {**card, **computed(card, supplied, measured.get(card["service_id"]))}
            for card in load_cards(conn)
        ]
    if fmt == "json":
        with _opened(out) as f:
            json.dump({"agencies": agencies, "services": cards}, f, ensure_ascii=False, indent=2)
            f.write("\n")
    else:
        _write_csv(out, card_columns(), [flatten_card(c) for c in cards], COMPUTED_FIELDS)
        if agencies_out is not None:
            _write_csv(agencies_out, list(AGENCY_FIELDS), [flatten_agency(a) for a in agencies])
    return {"agencies": len(agencies), "services": len(cards)}
