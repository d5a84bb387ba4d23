"""Mapping files (TOML): an agency's own spreadsheet onto the exchange format's fields.

One table per kind of record, ``[agencies.fields]`` and ``[services.fields]``, with one
rule per target field::

    name = "Kenya eCitizen"
    namespace = "ke.ecitizen"          # salt of derived IDs: change it and they all change

    [services]
    ignore = ["department_id"]         # source columns deliberately not imported

    [services.fields]
    title_en = { column = "service_name" }
    channels = { column = "mode", split = ";", values = { Web = "online", Office = "in_person" } }
    url = { column = "link", fix = [["^htpps://", "https://"]] }
    service_id = { derive_from = ["agency", "service_name"] }
    status = { default = "active" }
    recipients = { constant = ["citizen"] }
    "extra.source_id" = { column = "id" }

A source column that a rule names (``column`` or ``derive_from``) is consumed by it; every
other column passes through under its own name. See docs/catalogue.md.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dargah.core.persian import normalize
from dargah.registry.catalogue.coerce import LIST_SEP, is_null
from dargah.registry.catalogue.models import (
    AGENCY_FIELDS,
    CARD_FIELDS,
    DERIVABLE,
    DOCUMENT_KEYS,
    LIST_FIELDS,
    OBJECT_LISTS,
    Kind,
)

_RULE_KEYS = {
    "column",
    "derive_from",
    "constant",
    "default",
    "values",
    "split",
    "fix",
    "document_name",
    "document_source",
}
_UNSET: Any = object()


class MappingError(ValueError):
    """A mapping file that cannot be used: the message names the file, table and key."""


@dataclass(frozen=True, slots=True)
class Derived:
    """An ID still to be derived from ``key`` (resolved for all records at once, see derive.py)."""

    kind: str
    key: str


@dataclass
class Rule:
    target: str
    column: str | None = None
    derive_from: tuple[str, ...] = ()
    constant: Any = _UNSET
    default: Any = _UNSET
    values: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    fix: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    document_name: str | None = None
    document_source: str = "citizen"

    def _map(self, item: str) -> Any:
        if item in self.values:
            return self.values[item]
        return self.values.get("\0" + normalize(item), item)

    def produce(self, src: dict[str, Any]) -> Any:
        if self.constant is not _UNSET:
            return self.constant
        if self.derive_from:
            parts = [src.get(c) for c in self.derive_from]
            if all(is_null(p) for p in parts):
                return None
            key = "\x1f".join(normalize(str(p)) if not is_null(p) else "" for p in parts)
            return Derived(DERIVABLE[self.target], key)
        value = src.get(self.column or self.target)
        if isinstance(value, str):
            for pattern, repl in self.fix:
                value = pattern.sub(repl, value)
        if is_null(value):
            return None if self.default is _UNSET else self.default
        listy = self.target in LIST_FIELDS or self.document_name is not None
        if listy and isinstance(value, str) and (self.split or not value.strip().startswith("[")):
            value = [v.strip() for v in value.split(self.split or LIST_SEP) if v.strip()]
        if self.values:
            if isinstance(value, list):
                mapped = [self._map(v) if isinstance(v, str) else v for v in value]
                value = [v for v in mapped if not is_null(v)]
            elif isinstance(value, str):
                value = self._map(value.strip())
        if self.document_name is not None and isinstance(value, list):
            value = [
                {self.document_name: v, "source": self.document_source} if isinstance(v, str) else v
                for v in value
            ]
        if is_null(value) and self.default is not _UNSET:
            return self.default
        return value


@dataclass
class Section:
    rules: dict[str, Rule] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()

    @property
    def consumed(self) -> set[str]:
        out: set[str] = set()
        for rule in self.rules.values():
            if rule.constant is not _UNSET:
                continue
            out.update(rule.derive_from or (rule.column or rule.target,))
        return out


@dataclass
class Mapping:
    name: str = ""
    namespace: str = "dargah"
    sections: dict[str, Section] = field(default_factory=dict)

    def section(self, kind: Kind) -> Section:
        return self.sections.get(kind) or Section()

    def apply(self, kind: Kind, src: dict[str, Any]) -> dict[str, Any]:
        """A source record with this kind's rules applied: keys are now card (or agency) fields."""
        sec = self.section(kind)
        if not sec.rules and not sec.ignore:
            return src
        consumed = sec.consumed
        out = {k: v for k, v in src.items() if k not in consumed and k not in sec.ignore}
        for name, rule in sec.rules.items():
            out[name] = rule.produce(src)
        return out

    def provides(self, kind: Kind, header: list[str], constants: bool = True) -> set[str]:
        """The fields a CSV file with this header gives once mapped (from its columns only,
        without ``constants``)."""
        sec = self.section(kind)
        out = {h for h in header if h not in sec.consumed and h not in sec.ignore}
        for name, rule in sec.rules.items():
            if rule.constant is not _UNSET or rule.default is not _UNSET:
                if constants:
                    out.add(name)
            elif rule.derive_from:
                if all(c in header for c in rule.derive_from):
                    out.add(name)
            elif (rule.column or name) in header:
                out.add(name)
        return out

    def absent_columns(self, kind: Kind, header: list[str]) -> list[str]:
        """Source columns this kind's rules name that the header does not have."""
        named: set[str] = set()
        for rule in self.section(kind).rules.values():
            named.update(rule.derive_from)
            if rule.column:
                named.add(rule.column)
        return sorted(named - set(header))


def _targets(kind: str) -> set[str]:
    if kind == "agencies":
        return set(AGENCY_FIELDS)
    dotted = {f"{name}.{key}" for name, keys in OBJECT_LISTS.items() for key in keys}
    return set(CARD_FIELDS) | dotted


def _rule(where: str, kind: str, name: str, spec: Any) -> Rule:
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: {name} = {{ column = ... }} (a table), not {spec!r}")
    unknown = sorted(set(spec) - _RULE_KEYS)
    if unknown:
        raise MappingError(
            f"{where}: {name}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_RULE_KEYS))}"
        )
    if not name.startswith("extra.") and name not in _targets(kind):
        raise MappingError(
            f"{where}: {name!r} is not a field of {kind} in catalogue.md "
            f'(write "extra.{name}" to keep it as an extra field)'
        )
    rule = Rule(name)
    sources = [k for k in ("column", "derive_from", "constant") if k in spec]
    if len(sources) > 1:
        raise MappingError(
            f"{where}: {name}: give one of column, derive_from, constant, not "
            f"{' and '.join(sources)}"
        )
    if "column" in spec:
        if not isinstance(spec["column"], str) or not spec["column"]:
            raise MappingError(f"{where}: {name}: column must be a column name")
        rule.column = spec["column"]
    if "derive_from" in spec:
        if name not in DERIVABLE:
            raise MappingError(f"{where}: {name}: only {', '.join(DERIVABLE)} can be derived")
        cols = spec["derive_from"]
        cols = [cols] if isinstance(cols, str) else cols
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise MappingError(f"{where}: {name}: derive_from is a column or a list of columns")
        rule.derive_from = tuple(cols)
    rule.constant = spec.get("constant", _UNSET)
    rule.default = spec.get("default", _UNSET)
    values = spec.get("values", {})
    if not isinstance(values, dict):
        raise MappingError(f"{where}: {name}: values is a table of source value = card value")
    for src, dst in values.items():
        rule.values[src] = None if dst == "" else dst
        rule.values["\0" + normalize(src)] = rule.values[src]
    split = spec.get("split")
    if split is not None and (not isinstance(split, str) or not split):
        raise MappingError(f"{where}: {name}: split is the separator of the list's items")
    if split is not None and name not in (*LIST_FIELDS, "documents"):
        raise MappingError(
            f"{where}: {name}: split applies to list fields only "
            f"({', '.join(LIST_FIELDS)}, documents)"
        )
    rule.split = split
    for pair in spec.get("fix", []):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise MappingError(f"{where}: {name}: fix is a list of [regex, replacement] pairs")
        try:
            rule.fix.append((re.compile(pair[0]), pair[1]))
        except re.error as exc:
            raise MappingError(f"{where}: {name}: bad regex {pair[0]!r}: {exc}") from None
    if "document_name" in spec or "document_source" in spec:
        if name != "documents" or spec.get("document_name") not in DOCUMENT_KEYS[:2]:
            raise MappingError(
                f"{where}: document_name (name_fa or name_en) and document_source "
                "apply to documents only"
            )
        rule.document_name = spec["document_name"]
        rule.document_source = str(spec.get("document_source", "citizen"))
    return rule


def _dotted(fields: dict[str, Any]) -> dict[str, Any]:
    """``steps.apply_online = {...}`` written without quotes is a nested TOML table: flatten it."""
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        nested = (
            isinstance(spec, dict)
            and spec
            and not (set(spec) & _RULE_KEYS)
            and all(isinstance(v, dict) for v in spec.values())
        )
        if nested:
            for sub, value in _dotted(spec).items():
                out[f"{name}.{sub}"] = value
        else:
            out[name] = spec
    return out


def parse_mapping(doc: dict[str, Any], where: str = "mapping") -> Mapping:
    unknown = sorted(set(doc) - {"name", "description", "namespace", "agencies", "services"})
    if unknown:
        raise MappingError(f"{where}: unknown top-level key(s) {', '.join(unknown)}")
    mapping = Mapping(str(doc.get("name", "")), str(doc.get("namespace", "dargah")))
    if not mapping.namespace.strip():
        raise MappingError(f"{where}: namespace must not be empty")
    for kind in ("agencies", "services"):
        table = doc.get(kind)
        if table is None:
            continue
        if not isinstance(table, dict) or sorted(set(table) - {"fields", "ignore"}):
            raise MappingError(f"{where}: [{kind}] holds only 'fields' and 'ignore'")
        ignore = table.get("ignore", [])
        if not isinstance(ignore, list) or not all(isinstance(c, str) for c in ignore):
            raise MappingError(f"{where}: [{kind}] ignore is a list of column names")
        fields = table.get("fields", {})
        if not isinstance(fields, dict):
            raise MappingError(f"{where}: [{kind}.fields] must be a table")
        rules = {
            name: _rule(f"{where} [{kind}.fields]", kind, name, spec)
            for name, spec in _dotted(fields).items()
        }
        mapping.sections[kind] = Section(rules, frozenset(ignore))
    return mapping


def load_mapping(path: Path) -> Mapping:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}") from None
    return parse_mapping(doc, str(path))
