"""Members, their subsystems and the subsystems' keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from dargah.console.api_deps import (
    ID_NOTE,
    MEMBER_PATH,
    SUBSYSTEM_PATH,
    ClientId,
    EngineDep,
    Kid,
    MemberId,
    Operator,
    problems,
    reading,
    writing,
)
from dargah.console.schemas import (
    MEMBER_ID_PATTERN,
    Key,
    Member,
    MemberIn,
    Subsystem,
    SubsystemIn,
    SubsystemSecret,
)
from dargah.console.schemas import JwkIn as JwkBody
from dargah.registry import members
from dargah.registry.instance import instance_info

router = APIRouter()
MemberFilter = Annotated[
    str | None,
    Query(
        alias="member",
        pattern=MEMBER_ID_PATTERN,
        description="Only this member's subsystems (INSTANCE/CLASS/LEGAL_ID).",
    ),
]
Jwk = Annotated[JwkBody, Body(description="The new public key, as a JWK.")]


@router.get("/members", tags=["members"], name="list_members")
def list_members(engine: EngineDep, _caller: Operator) -> list[Member]:
    """Every member of the instance, by id."""
    with reading(engine) as conn:
        return [Member(**m) for m in members.list_members(conn)]


@router.post(
    "/members",
    status_code=201,
    tags=["members"],
    name="add_member",
    responses=problems({409: "The member is already registered."}),
)
def add_member(body: MemberIn, engine: EngineDep, caller: Operator) -> Member:
    """Register a member of this instance by its national legal ID; its id is
    `{instance}/{member_class}/{legal_id}`."""
    with writing(engine) as conn:
        mid = f"{instance_info(conn).code}/{body.member_class}/{body.legal_id}"
        return Member(**members.add_member(conn, mid, body.name, caller.actor, body.name_en))


@router.get(
    MEMBER_PATH,
    tags=["members"],
    name="get_member",
    description=ID_NOTE,
    responses=problems({404: "No such member."}),
)
def get_member(member: MemberId, engine: EngineDep, _caller: Operator) -> Member:
    with reading(engine) as conn:
        return Member(**members.get_member(conn, member))


@router.post(
    MEMBER_PATH + "/revoke",
    tags=["members"],
    name="revoke_member",
    responses=problems({404: "No such member."}),
)
def revoke_member(member: MemberId, engine: EngineDep, caller: Operator) -> Member:
    """Revoke a member: none of its subsystems can authenticate any more."""
    with writing(engine) as conn:
        return Member(**members.set_member_status(conn, member, "revoked", caller.actor))


@router.get("/subsystems", tags=["subsystems"], name="list_subsystems")
def list_subsystems(
    engine: EngineDep, _caller: Operator, member: MemberFilter = None
) -> list[Subsystem]:
    with reading(engine) as conn:
        return [Subsystem(**s) for s in members.list_subsystems(conn, member)]


@router.post(
    "/subsystems",
    status_code=201,
    tags=["subsystems"],
    name="add_subsystem",
    responses=problems(
        {404: "No such member.", 409: "The subsystem exists already, or its member is not active."}
    ),
)
def add_subsystem(body: SubsystemIn, engine: EngineDep, caller: Operator) -> Subsystem:
    """Register a subsystem (an information system of a member) under its client id."""
    with writing(engine) as conn:
        return Subsystem(**members.add_subsystem(conn, body.id, caller.actor, body.name))


@router.get(
    SUBSYSTEM_PATH,
    tags=["subsystems"],
    name="get_subsystem",
    description=ID_NOTE,
    responses=problems({404: "No such subsystem."}),
)
def get_subsystem(client: ClientId, engine: EngineDep, _caller: Operator) -> Subsystem:
    with reading(engine) as conn:
        return Subsystem(**members.get_subsystem(conn, client))


@router.post(
    SUBSYSTEM_PATH + "/revoke",
    tags=["subsystems"],
    name="revoke_subsystem",
    responses=problems({404: "No such subsystem."}),
)
def revoke_subsystem(client: ClientId, engine: EngineDep, caller: Operator) -> Subsystem:
    """Revoke a subsystem: its tokens stop working within seconds."""
    with writing(engine) as conn:
        return Subsystem(**members.revoke_subsystem(conn, client, caller.actor))


@router.post(
    SUBSYSTEM_PATH + "/secret",
    tags=["subsystems"],
    name="new_subsystem_secret",
    responses=problems({404: "No such subsystem."}),
)
def new_secret(client: ClientId, engine: EngineDep, caller: Operator) -> SubsystemSecret:
    """A new client secret, shown once (sandbox instances only: production refuses
    secrets with `bad-request`). The previous secret stops working."""
    with writing(engine) as conn:
        secret = members.new_client_secret(conn, client, caller.actor)
    return SubsystemSecret(client_id=client, client_secret=secret)


@router.get(
    SUBSYSTEM_PATH + "/keys",
    tags=["keys"],
    name="list_keys",
    responses=problems({404: "No such subsystem."}),
)
def list_keys(client: ClientId, engine: EngineDep, _caller: Operator) -> list[Key]:
    """The subsystem's keys, revoked ones included, oldest first."""
    with reading(engine) as conn:
        members.get_subsystem(conn, client)
        return [Key(**k) for k in members.list_keys(conn, client)]


@router.post(
    SUBSYSTEM_PATH + "/keys",
    status_code=201,
    tags=["keys"],
    name="add_key",
    responses=problems(
        {404: "No such subsystem.", 409: "The key exists already, or the subsystem is inactive."}
    ),
)
def add_key(client: ClientId, jwk: Jwk, engine: EngineDep, caller: Operator) -> Key:
    """Register a public key (Ed25519 or P-256 JWK); its kid is the RFC 7638 thumbprint."""
    with writing(engine) as conn:
        return Key(**members.add_key(conn, client, jwk.public(), caller.actor))


@router.post(
    SUBSYSTEM_PATH + "/keys/{kid}/revoke",
    tags=["keys"],
    name="revoke_key",
    responses=problems({404: "The subsystem has no such key."}),
)
def revoke_key(client: ClientId, kid: Kid, engine: EngineDep, caller: Operator) -> Key:
    """Revoke a key: tokens obtained with it stop working within seconds."""
    with writing(engine) as conn:
        return Key(**members.revoke_key(conn, client, kid, caller.actor))


@router.post(
    SUBSYSTEM_PATH + "/keys/{kid}/rotate",
    status_code=201,
    tags=["keys"],
    name="rotate_key",
    responses=problems(
        {404: "The subsystem has no such key.", 409: "The new key is registered already."}
    ),
)
def rotate_key(client: ClientId, kid: Kid, jwk: Jwk, engine: EngineDep, caller: Operator) -> Key:
    """Register the new key in the body and revoke key `kid`, in one transaction.
    Answers the new key."""
    with writing(engine) as conn:
        new: dict[str, Any] = members.rotate_key(conn, client, kid, jwk.public(), caller.actor)
        return Key(**new)
