"""What the management API's routes share: the caller, the database, identifiers in paths.

Identifiers in paths: an id of the protocol (§1) contains slashes, and the API
spells it out segment by segment, so the URL of a thing is its id:
``/api/v1/members/DEV/GOV/10100387143``,
``/api/v1/subsystems/DEV/GOV/10100387143/sabt``,
``/api/v1/services/DEV/GOV/10100387143/sabt/person-inquiry.v1``.
Each segment is described in the OpenAPI document; a malformed id, a wrong
legal-ID checksum included, is a ``400 bad-request``.

One request, one transaction: :func:`writing` for changes (on SQLite the
transaction takes the write lock up front, so it waits for the bus's log writer
instead of failing), :func:`reading` for queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy import Connection, Engine

from dargah.console.auth import OPERATOR, Principal
from dargah.console.schemas import MemberClass
from dargah.core.identifiers import parse_member_id, parse_service_id, parse_subsystem_id

API_PREFIX = "/api/v1"
MEMBER_PATH = "/members/{instance}/{member_class}/{legal_id}"
SUBSYSTEM_PATH = "/subsystems/{instance}/{member_class}/{legal_id}/{subsystem}"
SERVICE_PATH = "/services/{instance}/{member_class}/{legal_id}/{subsystem}/{service}"

ID_NOTE = (
    "Ids contain slashes and are spelled out in the path, one segment per part: "
    "the URL of a thing is its id, e.g. `/api/v1/members/DEV/GOV/10100387143`."
)


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]
Operator = Annotated[Principal, Depends(OPERATOR)]


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back on any error."""
    with engine.begin() as conn:  # on SQLite the engine begins with BEGIN IMMEDIATE
        yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn


Instance = Annotated[
    str, Path(pattern=r"^[A-Z]{2,8}$", description="Instance code, e.g. DEV or IR.")
]
Class = Annotated[MemberClass, Path(description="Member class.")]
LegalId = Annotated[
    str, Path(pattern=r"^[0-9]{11}$", description="11-digit national legal ID, checksum-validated.")
]
SubsystemCode = Annotated[
    str,
    Path(pattern=r"^[a-z][a-z0-9-]{1,39}$", description="The subsystem's code within its member."),
]
ServiceCode = Annotated[
    str,
    Path(
        max_length=64,
        pattern=r"^[a-z][a-z0-9-]*(\.v[0-9]+)?$",
        description="The service's code, e.g. person-inquiry.v1.",
    ),
]
Kid = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="A key's kid.")]
GrantId = Annotated[int, Path(ge=1, le=2**31 - 1, description="A grant's number.")]


def member_id(instance: Instance, member_class: Class, legal_id: LegalId) -> str:
    return str(parse_member_id(f"{instance}/{member_class}/{legal_id}"))


MemberId = Annotated[str, Depends(member_id)]


def client_id(member: MemberId, subsystem: SubsystemCode) -> str:
    return str(parse_subsystem_id(f"{member}/{subsystem}"))


ClientId = Annotated[str, Depends(client_id)]


def service_id(client: ClientId, service: ServiceCode) -> str:
    return str(parse_service_id(f"{client}/{service}"))


ServiceId = Annotated[str, Depends(service_id)]


def problems(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problems a route may answer besides 400, 401 and 403."""
    return {status: {"description": text} for status, text in described.items()}
