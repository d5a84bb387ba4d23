"""Admin API tokens: list, create (shown once), revoke. See :mod:`dargah.registry.admin_tokens`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from dargah.console.api_deps import EngineDep, Operator, problems, reading, writing
from dargah.registry import admin_tokens

router = APIRouter()
NAME_PATTERN = admin_tokens.NAME_RE.pattern
TokenName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="The token's name, e.g. ali.rezaei or ci-deploy.")
]


class AdminTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        pattern=NAME_PATTERN,
        description="One name per operator or automation: 1-63 of a-z, 0-9, '.', '_', '-'.",
        examples=["ali.rezaei"],
    )


class AdminToken(BaseModel):
    name: str
    status: Literal["active", "revoked"]
    created_at: str
    created_by: str
    revoked_at: str | None
    last_used_at: str | None = Field(
        description="Recorded at most once a minute per token and bus process."
    )


class AdminTokenCreated(AdminToken):
    token: str = Field(description="Shown once; only its hash is kept.")


@router.get("/admin-tokens", tags=["admin"], name="list_admin_tokens")
def list_admin_tokens(engine: EngineDep, _caller: Operator) -> list[AdminToken]:
    """Every admin API token by name, revoked ones included, with its last use."""
    with reading(engine) as conn:
        return [AdminToken(**t) for t in admin_tokens.list_tokens(conn)]


@router.post(
    "/admin-tokens",
    status_code=201,
    tags=["admin"],
    name="create_admin_token",
    responses=problems({409: "An active token already has this name."}),
)
def create_admin_token(
    body: AdminTokenIn, engine: EngineDep, caller: Operator
) -> AdminTokenCreated:
    """Make a token for one operator or automation; other tokens keep working."""
    with writing(engine) as conn:
        row, token = admin_tokens.create_token(conn, body.name, caller.actor)
    return AdminTokenCreated(**row, token=token)


@router.post(
    "/admin-tokens/{name}/revoke",
    tags=["admin"],
    name="revoke_admin_token",
    responses=problems({404: "No token has this name."}),
)
def revoke_admin_token(name: TokenName, engine: EngineDep, caller: Operator) -> AdminToken:
    """Revoke a token: every bus process refuses it within seconds (a token may revoke itself)."""
    with writing(engine) as conn:
        return AdminToken(**admin_tokens.revoke_token(conn, name, caller.actor))
