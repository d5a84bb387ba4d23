"""Identifiers of the GSB protocol (§1): validation and parsing.

Every parser raises :class:`InvalidIdentifier` (a ``bad-request``) and never
anything else, whatever string it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dargah.core.errors import BadRequest

INSTANCE_RE = re.compile(r"[A-Z]{2,8}")
MEMBER_CLASSES = ("GOV", "PUB", "COM", "NGO")
SUBSYSTEM_CODE_RE = re.compile(r"[a-z][a-z0-9-]{1,39}")
SERVICE_CODE_RE = re.compile(r"[a-z][a-z0-9-]*(\.v[0-9]+)?")
_DIGITS10 = re.compile(r"[0-9]{10}")
_DIGITS11 = re.compile(r"[0-9]{11}")
_POSTAL_RE = re.compile(r"(?!(\d)\1{3})[13-9]{4}[1346-9][013-9]{5}")
_MAX_SERVICE_CODE = 64


class InvalidIdentifier(BadRequest):
    """A malformed identifier: always a ``bad-request``."""


def is_national_code(value: str) -> bool:
    """True for a 10-digit Iranian national code (کد ملی) with a valid check digit."""
    if not _DIGITS10.fullmatch(value) or len(set(value)) == 1:
        return False
    total = sum(int(value[i]) * (10 - i) for i in range(9)) % 11
    check = int(value[9])
    return check == total if total < 2 else check == 11 - total


def national_code_check_digit(first9: str) -> int:
    total = sum(int(first9[i]) * (10 - i) for i in range(9)) % 11
    return total if total < 2 else 11 - total


_LEGAL_WEIGHTS = (29, 27, 23, 19, 17)


def legal_id_check_digit(first10: str) -> int:
    offset = int(first10[9]) + 2
    total = sum((offset + int(first10[i])) * _LEGAL_WEIGHTS[i % 5] for i in range(10)) % 11
    return 0 if total == 10 else total


def is_legal_id(value: str) -> bool:
    """True for an 11-digit national legal ID (شناسه ملی) with a valid check digit."""
    if not _DIGITS11.fullmatch(value) or int(value) == 0 or int(value[3:9]) == 0:
        return False
    return legal_id_check_digit(value[:10]) == int(value[10])


def is_postal_code(value: str) -> bool:
    """True for a well-formed 10-digit Iranian postal code."""
    return _POSTAL_RE.fullmatch(value) is not None


def is_public_service_id(value: str) -> bool:
    return _DIGITS11.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class MemberId:
    instance: str
    member_class: str
    legal_id: str

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.legal_id}"


@dataclass(frozen=True, slots=True)
class SubsystemId:
    member: MemberId
    code: str

    def __str__(self) -> str:
        return f"{self.member}/{self.code}"


@dataclass(frozen=True, slots=True)
class ServiceId:
    """A bus service id or a topic id: ``{subsystem}/{code}``."""

    subsystem: SubsystemId
    code: str

    def __str__(self) -> str:
        return f"{self.subsystem}/{self.code}"


def _member_parts(parts: list[str], what: str, raw: str) -> MemberId:
    instance, member_class, legal_id = parts
    if not INSTANCE_RE.fullmatch(instance):
        raise InvalidIdentifier(f"{what} {raw!r}: instance must be 2-8 capital letters")
    if member_class not in MEMBER_CLASSES:
        raise InvalidIdentifier(
            f"{what} {raw!r}: member class must be one of {', '.join(MEMBER_CLASSES)}"
        )
    if not is_legal_id(legal_id):
        raise InvalidIdentifier(f"{what} {raw!r}: {legal_id!r} is not a valid national legal ID")
    return MemberId(instance, member_class, legal_id)


def parse_member_id(raw: str) -> MemberId:
    parts = raw.split("/")
    if len(parts) != 3:
        raise InvalidIdentifier(f"member id {raw!r} must be INSTANCE/CLASS/LEGAL_ID")
    return _member_parts(parts, "member id", raw)


def parse_subsystem_id(raw: str) -> SubsystemId:
    parts = raw.split("/")
    if len(parts) != 4:
        raise InvalidIdentifier(f"client id {raw!r} must be INSTANCE/CLASS/LEGAL_ID/CODE")
    member = _member_parts(parts[:3], "client id", raw)
    if not SUBSYSTEM_CODE_RE.fullmatch(parts[3]):
        raise InvalidIdentifier(
            f"client id {raw!r}: subsystem code must be a lowercase letter followed by "
            "1-39 lowercase letters, digits or hyphens"
        )
    return SubsystemId(member, parts[3])


def parse_service_id(raw: str, what: str = "service id") -> ServiceId:
    parts = raw.split("/")
    if len(parts) != 5:
        raise InvalidIdentifier(f"{what} {raw!r} must be INSTANCE/CLASS/LEGAL_ID/SUBSYSTEM/CODE")
    subsystem = parse_subsystem_id("/".join(parts[:4]))
    code = parts[4]
    if len(code) > _MAX_SERVICE_CODE or not SERVICE_CODE_RE.fullmatch(code):
        raise InvalidIdentifier(
            f"{what} {raw!r}: code must be lowercase letters, digits and hyphens, "
            "optionally ending in a version such as .v1"
        )
    return ServiceId(subsystem, code)


def parse_topic_id(raw: str) -> ServiceId:
    return parse_service_id(raw, "topic id")


def make_national_code(first9: str) -> str:
    return first9 + str(national_code_check_digit(first9))


def make_legal_id(first10: str) -> str:
    return first10 + str(legal_id_check_digit(first10))
