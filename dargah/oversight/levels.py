"""The verified level of a public service and whether it counts toward the 7th Plan target.

The **verified level** (catalogue.md) is the definition level capped by what was observed:

- 2 and above need online applications (portal or reported ``applications_online``);
- 3 and above need completed online applications (portal or reported ``completed_online``);
- 4 and above need ``ok`` bus calls to each of the card's ``data_sources`` (a card that
  declares none has no evidence of integration) while it had applications, and no once-only
  finding;
- 5 needs events delivered on one of its ``proactive_topics``.

A service is **counted** (smartness.md) when its verified level is 4 or 5, at least 78% of
at least 30 ratings over the last 90 days are 4 or 5, it is not a confirmed duplicate (the
first of a pair still counts once), and it has no direct-connection finding.

Every reason is ``{code, en, fa}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection

from dargah.oversight.evidence import Evidence, gather
from dargah.registry.catalogue.exporter import supplied_items
from dargah.registry.catalogue.levels import Reason, definition_level, reason
from dargah.registry.catalogue.service import load_cards

MIN_RATINGS = 30
MIN_SATISFACTION = 0.78


def _no_applications(e: Evidence) -> list[Reason]:
    if e.applications_online > 0:
        return []
    return [
        reason(
            "no-online-applications",
            "no online application was observed (portal or reported applications_online)",
            "هیچ درخواست برخطی دیده نشده است",
        )
    ]


def _no_completed(e: Evidence) -> list[Reason]:
    if e.completed_online > 0:
        return []
    return [
        reason(
            "no-completed-online",
            "no application was completed online (portal or reported completed_online)",
            "هیچ درخواستی به‌طور کامل برخط انجام نشده است",
        )
    ]


def _no_bus_calls(e: Evidence) -> list[Reason]:
    out: list[Reason] = []
    if not e.data_sources:
        out.append(
            reason(
                "no-bus-calls",
                "the service declares no data sources, so no data is seen arriving over the bus",
                "خدمت هیچ منبع دادهٔ گذرگاهی اعلام نکرده است",
            )
        )
    elif e.uncalled_sources:
        names = ", ".join(e.uncalled_sources)
        out.append(
            reason(
                "no-bus-calls",
                f"no successful bus call to its data sources {names}",
                f"هیچ فراخوانی موفقی از منابع داده {names} روی گذرگاه دیده نشده است",
            )
        )
    if e.once_only_items:
        items = ", ".join(e.once_only_items)
        out.append(
            reason(
                "once-only",
                f"the citizen must still bring {items}, which a bus service supplies",
                f"شهروند هنوز باید {items} را بیاورد که روی گذرگاه در دسترس است",
            )
        )
    return out


def _no_events(e: Evidence) -> list[Reason]:
    if e.events_delivered > 0:
        return []
    return [
        reason(
            "no-events-delivered",
            "no event was delivered on any of its proactive topics",
            "هیچ رویدادی از موضوع‌های پیش‌نگر آن تحویل نشده است",
        )
    ]


# level → what must have been observed for it (the reasons it was not, when not)
_RULES: tuple[tuple[int, Callable[[Evidence], list[Reason]]], ...] = (
    (2, _no_applications),
    (3, _no_completed),
    (4, _no_bus_calls),
    (5, _no_events),
)


def verified_level(definition: int, evidence: Evidence) -> tuple[int, list[Reason]]:
    """The definition level capped by the evidence, and why it is capped (``[]`` if not).

    The reasons are the unmet observations of the first level (from 2 up, at most the
    definition level) the evidence does not support.
    """
    for level, unmet in _RULES:
        if level > definition:
            break
        why = unmet(evidence)
        if why:
            return level - 1, why
    return definition, []


def counted(verified: int, evidence: Evidence) -> tuple[bool, list[Reason]]:
    """Whether the service counts toward its agency's target, and every reason it does not."""
    out: list[Reason] = []
    if verified < 4:
        out.append(
            reason(
                "below-level-4",
                f"the verified level is {verified}; a smart service needs level 4 or 5",
                f"سطح تأییدشده {verified} است؛ خدمت هوشمند باید سطح ۴ یا ۵ باشد",
            )
        )
    sat = evidence.satisfaction
    if evidence.ratings < MIN_RATINGS:
        out.append(
            reason(
                "too-few-ratings",
                f"{evidence.ratings} rating(s) in the last 90 days; at least {MIN_RATINGS} needed",
                f"{evidence.ratings} امتیاز در ۹۰ روز گذشته؛ دست‌کم {MIN_RATINGS} امتیاز لازم است",
            )
        )
    elif sat is None or sat < MIN_SATISFACTION:
        pct = round(100 * (sat or 0.0), 1)
        out.append(
            reason(
                "low-satisfaction",
                f"{pct}% of ratings are 4 or 5; at least 78% needed",
                f"رضایت کاربران {pct}٪ است؛ دست‌کم ۷۸٪ لازم است",
            )
        )
    if evidence.duplicate_of is not None:
        first = evidence.duplicate_of
        out.append(
            reason(
                "duplicate",
                f"a confirmed duplicate of service {first}, which counts instead",
                f"تکراری تأییدشدهٔ خدمت {first} است و فقط یک بار شمرده می‌شود",
            )
        )
    if evidence.direct_connection:
        out.append(
            reason(
                "direct-connection",
                "its data reaches it outside the bus: applications but no bus call to its sources",
                "داده‌های خدمت بیرون از گذرگاه به آن می‌رسد",
            )
        )
    return not out, out


class Verdict(NamedTuple):
    """Oversight's computed columns of one card (beside its definition level)."""

    verified_level: int
    counted: bool
    reasons: list[Reason]


def assess(
    conn: Connection, now: datetime, evidence: Mapping[str, Evidence] | None = None
) -> dict[str, Verdict]:
    """Every stored service's verified level, whether it counts, and why (by service ID).

    The reasons are the verified level's and the counting's; the definition level's own
    reasons are the registry's. ``evidence`` is gathered when not given.
    """
    if evidence is None:
        evidence = gather(conn, now)
    supplied = supplied_items(conn)
    out: dict[str, Verdict] = {}
    for card in load_cards(conn):
        sid = card["service_id"]
        e = evidence.get(sid) or Evidence(service_id=sid)
        level, _ = definition_level(card, supplied)
        verified, why = verified_level(level, e)
        ok, why_not = counted(verified, e)
        out[sid] = Verdict(verified, ok, [*why, *why_not])
    return out
