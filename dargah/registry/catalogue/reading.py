"""Reading catalogue files: the encoding, CSV rows with their line numbers, JSON with its paths.

What comes out is raw: source column names and cell text (CSV) or JSON values, not yet
mapped or validated. A file that cannot be read at all gives one file-level problem.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dargah.registry.catalogue.models import FileSummary, Kind, Problem, Record

_CP1256_PERSIAN = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک"})
_CONTROL = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}


class Unreadable(ValueError):
    def __init__(self, reason: str, reason_fa: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_fa = reason_fa


def decode(data: bytes) -> tuple[str, str]:
    """The text of a file and its encoding: UTF-8 (with or without BOM), else Windows-1256."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (
        len(data) >= 4 and (data[1::2][:64].count(0) > 16 or data[0::2][:64].count(0) > 16)
    ):
        raise Unreadable(
            "the file is UTF-16, which is not read: save it as UTF-8 (or Windows-1256)",
            "پرونده با UTF-16 ذخیره شده است؛ آن را با UTF-8 ذخیره کنید",
        )
    if b"\x00" in data:
        raise Unreadable(
            "the file holds NUL bytes: it is not a text file (save it as UTF-8)",
            "پرونده متنی نیست؛ آن را با UTF-8 ذخیره کنید",
        )
    try:
        encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
        return data.decode("utf-8-sig"), encoding
    except UnicodeDecodeError:
        pass
    text = data.decode("cp1256", errors="replace")
    if "\ufffd" in text or any(c in _CONTROL for c in text):
        raise Unreadable(
            "the file is neither UTF-8 nor Windows-1256 text (it holds bytes no text file has): "
            "save it as UTF-8",
            "کدگذاری پرونده نه UTF-8 است و نه Windows-1256؛ آن را با UTF-8 ذخیره کنید",
        )
    # Windows-1256 has no Persian yeh: Persian text in it uses the Arabic yeh (and kaf).
    return text.translate(_CP1256_PERSIAN), "cp1256"


@dataclass
class RawFile:
    """One file as read: its records (CSV: one kind, told later by the header), or a problem."""

    summary: FileSummary
    header: list[str] | None = None
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def fail(self, reason: str, reason_fa: str, line: int | None = None) -> RawFile:
        self.problems.append(Problem("error", self.summary.file, reason, reason_fa, line=line))
        self.records = []
        return self


def read_file(path: Path, name: str | None = None) -> RawFile:
    """Read one file; JSON by its extension (or a leading '{'), CSV otherwise."""
    name = name or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return RawFile(FileSummary(name, "?")).fail(
            f"cannot read the file: {exc.strerror}", "پرونده خوانده نشد"
        )
    is_json = path.suffix.lower() == ".json" or data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"
    raw = RawFile(FileSummary(name, "json" if is_json else "csv"))
    try:
        text, raw.summary.encoding = decode(data)
    except Unreadable as exc:
        return raw.fail(exc.reason, exc.reason_fa)
    return _read_json(raw, text) if is_json else _read_csv(raw, text)


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_text(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula: ``=x`` is written ``'=x`` (and a
    value that starts with an apostrophe gets one more), as spreadsheets themselves do."""
    return "'" + value if value.startswith((*FORMULA_STARTS, "'")) else value


def spreadsheet_text(cell: str) -> str:
    """The value of a cell written by :func:`inert_text` (other cells unchanged)."""
    if cell.startswith("'") and cell[1:].startswith((*FORMULA_STARTS, "'")):
        return cell[1:]
    return cell


def _read_csv(raw: RawFile, text: str) -> RawFile:
    file = raw.summary.file
    first = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first), strict=False)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return raw.fail(f"the header is not valid CSV: {exc}", "سطر عنوان CSV معتبر نیست", 1)
    if not header or not any(h.strip() for h in header):
        return raw.fail("the file is empty: a CSV needs a header line", "پرونده خالی است", 1)
    names = [h.strip() or f"column_{i + 1}" for i, h in enumerate(header)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return raw.fail(
            f"column(s) {', '.join(twice)} appear more than once in the header",
            "نام ستون تکراری است",
            1,
        )
    raw.header = names
    last = reader.line_num
    try:
        for cells in reader:
            line, last = last + 1, reader.line_num
            if not cells or not any(c.strip() for c in cells):
                continue
            cells = [spreadsheet_text(c) for c in cells]
            record = Record("services", file, line, None, dict(zip(names, cells, strict=False)))
            if len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
                raw.problems.append(
                    record.problem(
                        "error",
                        None,
                        f"the row has {len(cells)} cells but the header has {len(names)}",
                        "تعداد خانه‌های سطر با سطر عنوان نمی‌خواند",
                    )
                )
                record.errors += 1
            raw.records.append(record)
    except csv.Error as exc:
        return raw.fail(f"not valid CSV: {exc}", "CSV معتبر نیست", reader.line_num)
    raw.summary.rows = len(raw.records)
    return raw


def flatten_json(item: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """A JSON card or agency as flat fields: ``steps`` and ``extra`` objects become dotted keys."""
    out: dict[str, Any] = {}
    problems = []
    for key, value in item.items():
        if key in ("steps", "extra") and value is not None:
            if not isinstance(value, dict):
                problems.append((key, f"{key} must be an object", f"{key} باید یک شیء باشد"))
                continue
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[key] = value
    return out, problems


def _read_json(raw: RawFile, text: str) -> RawFile:
    file = raw.summary.file
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return raw.fail(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            "JSON معتبر نیست",
            exc.lineno,
        )
    if not isinstance(doc, dict):
        return raw.fail(
            'a catalogue JSON file is an object {"agencies": [...], "services": [...]}',
            "پروندهٔ JSON باید یک شیء با agencies و services باشد",
        )
    for key in doc:
        if key not in ("agencies", "services"):
            raw.problems.append(
                Problem(
                    "warning",
                    file,
                    f"top-level key {key!r} is not part of the format and is not imported",
                    "کلید ناشناخته وارد نشد",
                    path=key,
                )
            )
    kinds: tuple[Kind, ...] = ("agencies", "services")
    for kind in kinds:
        items = doc.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            raw.problems.append(
                Problem("error", file, f"{kind} must be a list", "باید فهرست باشد", path=kind)
            )
            continue
        for i, item in enumerate(items):
            path = f"{kind}[{i}]"
            if not isinstance(item, dict):
                raw.problems.append(
                    Problem("error", file, "must be an object", "باید یک شیء باشد", path=path)
                )
                raw.records.append(Record(kind, file, None, path, {}, errors=1))
                continue
            values, bad = flatten_json(item)
            record = Record(kind, file, None, path, values)
            for fld, reason, reason_fa in bad:
                raw.problems.append(record.problem("error", fld, reason, reason_fa))
                record.errors += 1
            raw.records.append(record)
    raw.summary.rows = len(raw.records)
    raw.summary.kind = "+".join(k for k in kinds if doc.get(k)) or None
    return raw
