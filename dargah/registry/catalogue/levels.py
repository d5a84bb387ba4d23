"""The definition level of a card: what the card alone supports.

From catalogue.md, "Levels computed from a card".

The first rule from the top that holds:

5. level 4 holds and ``proactive_topics`` is not empty;
4. level 3 holds, ``documents`` is present, and no document with source ``citizen`` carries
   a ``data_item`` that a registered bus service supplies;
3. every step online or not applicable (sign-in, apply, payment, decision, issuance,
   tracking), no visit, no paper, and at least ``apply_online`` true;
2. ``apply_online`` true;
1. a title, a description, channels, and ``documents`` present (even empty);
0. otherwise.

The reasons say why the card is not one level higher: each unmet condition of that level.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

Reason = dict[str, str]

_STEP_REASONS = {
    "sign_in_online": (
        "sign-in-offline",
        "signing in is not online (steps.sign_in_online is false)",
        "ورود به سامانه برخط نیست",
    ),
    "apply_online": (
        "apply-offline",
        "the citizen cannot apply online (steps.apply_online is not true)",
        "ثبت درخواست برخط ممکن نیست",
    ),
    "pay_online": (
        "payment-offline",
        "the fee cannot be paid online (steps.pay_online is false)",
        "پرداخت هزینه برخط ممکن نیست",
    ),
    "decision_online": (
        "decision-offline",
        "the decision is not made online (steps.decision_online is false)",
        "رسیدگی و تصمیم برخط نیست",
    ),
    "issue_online": (
        "issuance-offline",
        "the output is not issued digitally (steps.issue_online is false)",
        "خروجی خدمت به‌صورت الکترونیکی صادر نمی‌شود",
    ),
    "track_online": (
        "tracking-offline",
        "there is no online tracking (steps.track_online is false)",
        "پیگیری برخط با کد رهگیری ممکن نیست",
    ),
}


def reason(code: str, en: str, fa: str) -> Reason:
    return {"code": code, "en": en, "fa": fa}


def _level1(card: Mapping[str, Any]) -> list[Reason]:
    out = []
    if not (card.get("title_fa") or card.get("title_en")):
        out.append(reason("no-title", "the card has no title", "خدمت عنوان ندارد"))
    if not (card.get("description_fa") or card.get("description_en")):
        out.append(reason("no-description", "the card has no description", "خدمت شرح ندارد"))
    if not card.get("channels"):
        out.append(
            reason("no-channels", "the card lists no channel", "مجرای ارائهٔ خدمت ثبت نشده است")
        )
    if card.get("documents") is None:
        out.append(_no_documents())
    return out


def _no_documents() -> Reason:
    return reason(
        "no-documents",
        "the required documents are not stated (documents is null; [] means none are required)",
        "مدارک لازم اعلام نشده است",
    )


def _apply(card: Mapping[str, Any]) -> list[Reason]:
    steps = card.get("steps") or {}
    if steps.get("apply_online") is True:
        return []
    code, en, fa = _STEP_REASONS["apply_online"]
    return [reason(code, en, fa)]


def _level3(card: Mapping[str, Any]) -> list[Reason]:
    steps = card.get("steps") or {}
    out = []
    for step, (code, en, fa) in _STEP_REASONS.items():
        if step == "apply_online":
            out += _apply(card)
        elif steps.get(step) is False:
            out.append(reason(code, en, fa))
    visits = card.get("in_person_visits")
    if visits:
        out.append(
            reason(
                "in-person-visit",
                f"the citizen must visit in person ({visits} visit(s))",
                f"{visits} بار مراجعهٔ حضوری لازم است",
            )
        )
    if card.get("paper_required") is True:
        out.append(
            reason("paper-required", "paper documents are required", "ارائهٔ مدرک کاغذی لازم است")
        )
    return out


def _level4(card: Mapping[str, Any], supplied: Set[str]) -> list[Reason]:
    documents = card.get("documents")
    if documents is None:
        return [_no_documents()]
    asked = sorted(
        {
            d.get("data_item")
            for d in documents
            if d.get("source") == "citizen" and d.get("data_item") in supplied
        }
    )
    if not asked:
        return []
    items = ", ".join(asked)
    return [
        reason(
            "citizen-supplies-bus-data",
            f"the citizen must bring {items}, which a bus service already supplies",
            f"شهروند باید {items} را بیاورد که خدمتی روی گذرگاه آن را ارائه می‌کند",
        )
    ]


def _level5(card: Mapping[str, Any]) -> list[Reason]:
    if card.get("proactive_topics"):
        return []
    return [
        reason(
            "not-proactive",
            "no life event starts the service (proactive_topics is empty)",
            "هیچ رویداد زندگی خدمت را خودکار آغاز نمی‌کند",
        )
    ]


def definition_level(card: Mapping[str, Any], supplied_items: Set[str]) -> tuple[int, list[Reason]]:
    """The card's definition level and why it is not one higher (``[]`` at level 5).

    ``card`` is in the JSON shape of catalogue.md (``steps`` an object); ``supplied_items``
    are the data items registered bus services supply.
    """
    l3 = _level3(card)
    l4 = _level4(card, supplied_items)
    if not l3 and not l4:
        l5 = _level5(card)
        return (5, []) if not l5 else (4, l5)
    if not l3:
        return 3, l4
    if not _apply(card):
        return 2, l3
    l1 = _level1(card)
    if not l1:
        return 1, _apply(card)
    return 0, l1
