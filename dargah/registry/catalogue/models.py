"""The exchange format's vocabulary (catalogue.md): fields, enumerations, import reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from dargah.core.identifiers import MEMBER_CLASSES

RECIPIENTS = ("citizen", "business", "government")
CHANNELS = ("online", "in_person", "phone", "mail", "kiosk", "app")
STATUSES = ("active", "retired")
CLASSES = MEMBER_CLASSES
STEPS = (
    "sign_in_online",
    "apply_online",
    "pay_online",
    "decision_online",
    "issue_online",
    "track_online",
)
DOCUMENT_KEYS = ("name_fa", "name_en", "data_item", "source")
REPORT_COUNTS = (
    "applications_online",
    "applications_in_person",
    "applications_other",
    "completed",
    "completed_online",
    "started",
    "cost_total_rials",
    "cost_per_transaction_rials",
)
REPORT_KEYS = ("period", *REPORT_COUNTS, "satisfaction_pct")

# A CARD, in the order of catalogue.md; steps are flattened with dots, as in CSV.
CARD_FIELDS = (
    "service_id",
    "agency_legal_id",
    "title_fa",
    "title_en",
    "description_fa",
    "description_en",
    "recipients",
    "cluster",
    "life_events",
    "channels",
    *(f"steps.{s}" for s in STEPS),
    "in_person_visits",
    "paper_required",
    "documents",
    "data_sources",
    "proactive_topics",
    "form",
    "submit_to",
    "fee_rials",
    "time_limit_days",
    "declared_level",
    "reported",
    "status",
    "url",
)
AGENCY_FIELDS = ("legal_id", "name_fa", "name_en", "member_class", "parent_legal_id", "website")

# Computed by the export; an import recognises and ignores them (they are recomputed).
COMPUTED_FIELDS = ("definition_level", "verified_level", "counted", "reasons")

# Card fields held as lists (CSV: items joined with '|'), lists of objects (CSV: dotted columns).
LIST_FIELDS = ("recipients", "life_events", "channels", "data_sources", "proactive_topics")
OBJECT_LISTS = {"documents": DOCUMENT_KEYS, "reported": REPORT_KEYS}

# IDs a mapping may derive, and the kind of ID each is.
DERIVABLE = {
    "service_id": "service",
    "legal_id": "legal",
    "agency_legal_id": "legal",
    "parent_legal_id": "legal",
}

Kind = Literal["agencies", "services"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (error) or worth knowing (warning), where it is and why."""

    severity: Severity
    file: str
    reason: str
    reason_fa: str = ""
    line: int | None = None  # CSV line, the header being line 1
    path: str | None = None  # JSON path such as services[10]
    service_id: str | None = None
    field: str | None = None

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.path is not None:
            return f"{self.file}:{self.path}"
        return self.file

    def __str__(self) -> str:
        return f"{self.where} {self.service_id or '-'} {self.field or '-'}: {self.reason}"


@dataclass(slots=True)
class Record:
    """One agency or card as read from a file, before and after validation."""

    kind: Kind
    file: str
    line: int | None
    path: str | None
    values: dict[str, Any]
    errors: int = 0
    value: dict[str, Any] | None = None  # the validated AGENCY or CARD
    key: str | None = None  # its valid service_id (cards) or legal_id (agencies), even with errors
    ref: str | None = None  # a card's valid agency_legal_id, even with errors

    def problem(
        self,
        severity: Severity,
        field_name: str | None,
        reason: str,
        reason_fa: str = "",
        service_id: str | None = None,
    ) -> Problem:
        return Problem(
            severity, self.file, reason, reason_fa, self.line, self.path, service_id, field_name
        )

    def refuse(
        self,
        field_name: str | None,
        reason: str,
        reason_fa: str = "",
        service_id: str | None = None,
    ) -> Problem:
        """An error that keeps this row out of the import: counted, and its value dropped."""
        self.errors += 1
        self.value = None
        return self.problem("error", field_name, reason, reason_fa, service_id)


@dataclass(slots=True)
class FileSummary:
    file: str
    format: str
    kind: str | None = None
    encoding: str | None = None
    rows: int = 0


@dataclass
class ImportReport:
    """What an import found and did; ``written`` is False for a dry run or a refused import."""

    files: list[FileSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False
    written: bool = False
    agencies_created: int = 0
    agencies_updated: int = 0
    agencies_unchanged: int = 0
    agencies_refused: int = 0
    services_created: int = 0
    services_updated: int = 0
    services_unchanged: int = 0
    services_refused: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def refused(self) -> bool:
        """True when the import was refused as a whole: errors, and nothing written."""
        return bool(self.errors) and not self.written

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = [{**asdict(p), "where": p.where} for p in self.problems]
        return out
