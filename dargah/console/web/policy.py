"""What each console role may see and change: the one place that decides it.

- **operator** (the national operator): sees and changes everything.
- **auditor**: sees everything, changes nothing.
- **agency-admin**: sees only its own member, its subsystems, keys, bus services and public
  services, the grants in which one side is its own, the incidents of its services, the audit
  entries about its member, its own oversight figures and the complaints routed to it;
  registers and changes subsystems, keys, bus services and public services of its own member
  only (a catalogue upload may hold its own agency's cards only); decides grant requests only
  on its own services; answers the complaints routed to it.

Members are added, revoked and re-approved by the operator only (a member has no pending
state: it exists once the operator adds it). Duplicate decisions are the operator's.

Pages call these functions and never decide by themselves; a refusal is
:class:`~dargah.core.errors.AccessDenied` (a 403 page).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_

from dargah.console.web.accounts import ConsoleUser
from dargah.core.errors import AccessDenied
from dargah.store.tables import audit_log

OPERATOR = "operator"
AGENCY_ADMIN = "agency-admin"
AUDITOR = "auditor"
ALL = (OPERATOR, AGENCY_ADMIN, AUDITOR)
READERS = (OPERATOR, AUDITOR)

_DENIED_FA = "نقش شما اجازه این کار را ندارد"


def member_of(thing_id: str) -> str:
    """The member (``INSTANCE/CLASS/LEGAL_ID``) a member, subsystem or service id belongs to."""
    return "/".join(thing_id.split("/")[:3])


def scope(user: ConsoleUser) -> str | None:
    """The only member whose things the user may see, or None for all."""
    return user.member_id if user.role == AGENCY_ADMIN else None


def can_see(user: ConsoleUser, thing_id: str) -> bool:
    mine = scope(user)
    return mine is None or member_of(thing_id) == mine


def require_visible(user: ConsoleUser, thing_id: str) -> None:
    if not can_see(user, thing_id):
        raise AccessDenied(f"{user.username} may not see {thing_id}", _DENIED_FA)


def require_operator(user: ConsoleUser) -> None:
    """Registry changes (members, subsystems, keys, incidents' owner and resolution)."""
    if user.role != OPERATOR:
        raise AccessDenied(f"role {user.role} may not change this", _DENIED_FA)


def can_see_grant(user: ConsoleUser, grant: dict[str, Any]) -> bool:
    return can_see(user, grant["service_id"]) or can_see(user, grant["client_id"])


def require_grant_visible(user: ConsoleUser, grant: dict[str, Any]) -> None:
    if not can_see_grant(user, grant):
        raise AccessDenied(f"{user.username} may not see grant {grant['id']}", _DENIED_FA)


def can_decide(user: ConsoleUser, grant: dict[str, Any], decision: str) -> bool:
    """Approve and reject: the provider's agency (or the operator). Revoke: the provider's
    agency, or the operator for any grant."""
    if user.role == OPERATOR:
        return True
    if user.role != AGENCY_ADMIN or decision not in ("approve", "reject", "revoke"):
        return False
    return member_of(grant["service_id"]) == user.member_id


def require_decide(user: ConsoleUser, grant: dict[str, Any], decision: str) -> None:
    if not can_decide(user, grant, decision):
        raise AccessDenied(
            f"{user.username} may not {decision} grant {grant['id']}",
            "تصمیم درباره این درخواست با دستگاه ارائه‌دهنده خدمت است",
        )


def can_note_incident(user: ConsoleUser, incident: dict[str, Any]) -> bool:
    return user.role == OPERATOR or (
        user.role == AGENCY_ADMIN and can_see(user, incident["service_id"])
    )


def audit_filter(user: ConsoleUser) -> ColumnElement[bool] | None:
    """The audit entries a user may read, as a condition (None: all of them)."""
    mine = scope(user)
    if mine is None:
        return None
    return or_(
        audit_log.c.target == mine,
        audit_log.c.target.like(f"{mine}/%"),
        audit_log.c.target.like(f"% -> {mine}/%"),
    )


def can_change(user: ConsoleUser, thing_id: str) -> bool:
    """Whether the user may register or change subsystems, keys, bus services or public
    services of the member ``thing_id`` belongs to (a member, subsystem or service id)."""
    if user.role == OPERATOR:
        return True
    return user.role == AGENCY_ADMIN and member_of(thing_id) == user.member_id


def require_change(user: ConsoleUser, thing_id: str) -> None:
    if not can_change(user, thing_id):
        raise AccessDenied(
            f"{user.username} may not change {thing_id}",
            "فقط دستگاه صاحب این مورد (یا راهبر) می‌تواند آن را تغییر دهد",
        )


def may_register(user: ConsoleUser) -> bool:
    """Whether the user registers things at all (for some member)."""
    return user.role in (OPERATOR, AGENCY_ADMIN)


def import_scope(user: ConsoleUser, wanted: str | None) -> str | None:
    """The member a catalogue import is held to: an agency administrator's own (whatever it
    asks for), the operator's choice (None: the whole catalogue). Others may not import."""
    if user.role == OPERATOR:
        return wanted
    if user.role == AGENCY_ADMIN and user.member_id and wanted in (None, user.member_id):
        return user.member_id
    raise AccessDenied(f"{user.username} may not import for {wanted}", _DENIED_FA)


def oversight_scope(user: ConsoleUser, wanted: str | None) -> str | None:
    """The agency whose oversight figures a page shows: an agency administrator's own only;
    operators and auditors any (None: choose one)."""
    mine = scope(user)
    if mine is None:
        return wanted
    if wanted not in (None, mine):
        raise AccessDenied(f"{user.username} may not see {wanted}", _DENIED_FA)
    return mine


def require_duplicate_decider(user: ConsoleUser) -> None:
    """Confirming or dismissing a duplicate pair is the operator's decision."""
    require_operator(user)


def complaint_filter(user: ConsoleUser) -> str | None:
    """The member whose complaints the user reads (None: all)."""
    return scope(user)


def require_answer_complaint(user: ConsoleUser, complaint: dict[str, Any]) -> None:
    """The agency a complaint is routed to answers it; the operator may too."""
    if user.role == OPERATOR:
        return
    if user.role == AGENCY_ADMIN and complaint["member_id"] == user.member_id:
        return
    raise AccessDenied(
        f"{user.username} may not answer complaint {complaint['id']}",
        "پاسخ به این شکایت با دستگاهی است که شکایت به آن رسیده است",
    )
