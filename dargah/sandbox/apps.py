"""The sandbox agencies as ASGI apps: one per agency, or all of them on one port.

:func:`build_app` makes one agency's Starlette app, behind
:class:`~dargah.client.provider.GsbAssertionMiddleware` when given a verifier
(``/healthz`` stays open). :func:`build_sandbox_app` mounts every agency under
``/{subsystem_code}`` of one app, with one verifier against the bus's JWKS, so
each agency's provider base URL is ``{sandbox_url}/{subsystem_code}``. Like
any outside agency, the sandbox knows the bus only through HTTP and
:mod:`dargah.client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from dargah.client.provider import (
    ASGIApp,
    AssertionVerifier,
    GsbAssertionMiddleware,
    RefusedHook,
)
from dargah.sandbox.agencies import AGENCIES
from dargah.sandbox.citizens import Citizen
from dargah.sandbox.desks import desk_service_id, desks
from dargah.sandbox.directory import CitizenDirectory
from dargah.sandbox.model import Agency
from dargah.sandbox.providers import civil_registration, desk, post, tax, traffic, welfare
from dargah.sandbox.providers.common import ProviderContext, Publisher

PROVIDERS: dict[str, Callable[[ProviderContext], list[BaseRoute]]] = {
    "sabt": civil_registration.routes,
    "post": post.routes,
    "tax": tax.routes,
    "rahvar": traffic.routes,
    "behzisti": welfare.routes,
}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_app(
    agency: Agency,
    citizens: Iterable[Citizen] | CitizenDirectory,
    verifier: AssertionVerifier | None,
    *,
    on_refused: RefusedHook | None = None,
    publish: Publisher | None = None,
) -> ASGIApp:
    """One agency's provider app; without a verifier it accepts any caller (tests, local dev).

    ``publish`` sends the agency's own events through the bus (civil registration's births).
    """
    directory = citizens if isinstance(citizens, CitizenDirectory) else CitizenDirectory(citizens)
    routes = [
        Route("/healthz", healthz),
        *PROVIDERS[agency.subsystem_code](ProviderContext(agency, directory, publish)),
    ]
    app = Starlette(routes=routes)
    if verifier is None:
        return app
    return GsbAssertionMiddleware(app, verifier, on_refused=on_refused)


def sandbox_audiences(instance: str) -> frozenset[str]:
    """Every ``aud`` a sandbox agency accepts: its service ids, its client id (events), and
    the application desks of the catalogue's agencies."""
    ids = {a.service_id(instance, s.code) for a in AGENCIES for s in a.services}
    ids |= {desk_service_id(instance, legal_id) for legal_id in desks()}
    return frozenset(ids | {a.subsystem_id(instance) for a in AGENCIES})


def build_sandbox_app(
    instance: str,
    bus_url: str,
    citizens: Iterable[Citizen],
    *,
    verifier: AssertionVerifier | None = None,
    on_refused: RefusedHook | None = None,
    publishers: dict[str, Publisher] | None = None,
) -> Starlette:
    """Every sandbox agency under ``/{subsystem_code}`` of one app, verifying the bus's assertions.

    ``app.state.providers`` maps each subsystem code to its middleware (whose
    ``refused`` counts direct, bus-bypassing calls); ``app.state.directory``
    is the citizen directory all agencies share. The verifier made here is
    closed when the app's lifespan ends.
    """
    directory = CitizenDirectory(citizens)
    owned = verifier is None
    if verifier is None:
        verifier = AssertionVerifier(
            f"{bus_url.rstrip('/')}/.well-known/jwks.json", audiences=sandbox_audiences(instance)
        )
    providers: dict[str, ASGIApp] = {
        a.subsystem_code: build_app(
            a,
            directory,
            verifier,
            on_refused=on_refused,
            publish=(publishers or {}).get(a.subsystem_code),
        )
        for a in AGENCIES
    }

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "instance": instance,
                "agencies": [
                    {
                        "member": a.member_id(instance),
                        "subsystem": a.subsystem_id(instance),
                        "name_fa": a.name_fa,
                        "base_path": f"/{a.subsystem_code}",
                        "services": [a.service_id(instance, s.code) for s in a.services],
                    }
                    for a in AGENCIES
                ],
            }
        )

    mounts = [Mount(f"/{code}", app=app) for code, app in providers.items()]
    for legal_id, (_name, service_ids) in desks().items():
        desk_app = Starlette(routes=desk.routes(legal_id, set(service_ids), directory))
        mounts.append(
            Mount(
                f"/desk/{legal_id}",
                app=GsbAssertionMiddleware(desk_app, verifier, on_refused=on_refused),
            )
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            verifier.close()

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/", index), *mounts], lifespan=lifespan
    )
    app.state.providers = providers
    app.state.directory = directory
    app.state.verifier = verifier
    return app
