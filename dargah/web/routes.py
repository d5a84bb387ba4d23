"""Routes that state who may open them.

``auth`` is one of :data:`AUTH_LEVELS`: ``public`` (anyone), ``citizen`` (a signed-in
citizen, their own data only), ``sandbox`` (anyone, on sandbox instances only). Tests walk
every app's routes and fail on one that states nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from starlette.routing import Route

Auth = Literal["public", "citizen", "sandbox"]
AUTH_LEVELS: tuple[str, ...] = ("public", "citizen", "sandbox")


def page_route(
    path: str, endpoint: Callable[..., Any], *, auth: Auth, methods: tuple[str, ...] = ("GET",)
) -> Route:
    """A route that states its authentication."""
    route = Route(path, endpoint, methods=list(methods))
    route.auth = auth  # type: ignore[attr-defined]
    return route
