"""Checksum-valid IDs derived deterministically from a source's values (mapping ``derive_from``).

A derived ID is a hash of the mapping's namespace, the kind of ID and the normalised source
values, so importing the same file again yields the same IDs. Legal IDs are 10 digits of
SHA-256 completed with the national legal ID check digit; service IDs are 11 digits.
When two different source values hash to the same ID, the values are taken in sorted order
and each later one is hashed again with a counter: the result depends only on the set of
values, and each collision is reported as a warning. Rows with the same source value get
the same ID, so a real duplicate stays visible as one.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dargah.core.identifiers import is_legal_id, make_legal_id
from dargah.registry.catalogue.mapping import Derived
from dargah.registry.catalogue.models import DERIVABLE, Problem, Record


def _digits(namespace: str, kind: str, key: str, attempt: int, width: int) -> str:
    seed = f"{namespace}\x1f{kind}\x1f{key}" + (f"\x1f{attempt}" if attempt else "")
    number = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest(), "big")
    return f"{number % 10**width:0{width}d}"


def derive_id(namespace: str, kind: str, key: str, attempt: int = 0) -> str:
    """The ID of ``kind`` ("legal" or "service") for ``key``; later attempts give other IDs."""
    if kind == "service":
        return _digits(namespace, kind, key, attempt, 11)
    while True:
        legal = make_legal_id(_digits(namespace, kind, key, attempt, 10))
        if is_legal_id(legal):  # not all zero, digits 4-9 not all zero
            return legal
        attempt += 1


def resolve(namespace: str, records: list[Record]) -> list[Problem]:
    """Replace every :class:`Derived` placeholder in ``records`` by its ID."""
    keys: dict[str, dict[str, Record]] = {"legal": {}, "service": {}}
    taken: dict[str, set[str]] = {"legal": set(), "service": set()}
    for record in records:
        for name, value in record.values.items():
            if isinstance(value, Derived):
                keys[value.kind].setdefault(value.key, record)
            elif name in DERIVABLE and isinstance(value, str):
                taken[DERIVABLE[name]].add(value.strip())
    ids: dict[tuple[str, str], str] = {}
    problems = []
    for kind, by_key in keys.items():
        for key in sorted(by_key):
            attempt = 0
            candidate = derive_id(namespace, kind, key)
            while candidate in taken[kind]:
                attempt += 1
                candidate = derive_id(namespace, kind, key, attempt)
            if attempt:
                shown = key.replace("\x1f", " / ")
                problems.append(
                    by_key[key].problem(
                        "warning",
                        "service_id" if kind == "service" else "legal_id",
                        f"the {kind} ID derived from {shown!r} collided with another; re-derived as "
                        f"{candidate} (attempt {attempt})",
                        "شناسهٔ ساخته‌شده تکراری بود و دوباره ساخته شد",
                    )
                )
            taken[kind].add(candidate)
            ids[(kind, key)] = candidate
    for record in records:
        values: dict[str, Any] = record.values
        for name, value in values.items():
            if isinstance(value, Derived):
                values[name] = ids[(value.kind, value.key)]
    return problems
