"""The portal's way to agencies: one more subsystem on the bus, with its own key and grants.

Every call names its purpose and the citizen it is about (``GSB-Subject``), so it lands in the
message log where the citizen later sees it under "who used my data". Nothing here reads an
agency's data any other way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from dargah.client.consumer import GsbClient
from dargah.core.settings import Settings

log = logging.getLogger("dargah.portal")

APPLICATION_PURPOSE = "service-application"
SIGN_IN_PURPOSE = "identity-verification"


class BusUnavailable(Exception):
    """The portal could not get an answer over the bus (not configured, refused or failed)."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any
    request_id: str


class PortalBus:
    """A blocking bus client (portal pages run in worker threads) with the portal's identity."""

    def __init__(self, settings: Settings) -> None:
        self.client_id = settings.portal_client_id
        self._client: GsbClient | None = None
        if settings.portal_client_id and settings.portal_key_file:
            url = (
                settings.portal_bus_url
                or settings.public_url
                or (
                    f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}"
                    f":{settings.port}"
                )
            )
            self._client = GsbClient(
                url,
                settings.portal_client_id,
                private_key_file=settings.portal_key_file,
                timeout=15.0,
            )

    @property
    def available(self) -> bool:
        return self._client is not None

    def call(
        self,
        service_id: str,
        path: str,
        *,
        purpose: str,
        subject: str,
        method: str = "GET",
        json: Any = None,
    ) -> Answer:
        """One bus call; raises :class:`BusUnavailable` on a bus error or no answer."""
        if self._client is None:
            raise BusUnavailable("the portal has no bus credentials", "not-configured")
        try:
            r = self._client.call(
                service_id, path, method=method, purpose=purpose, subject=subject, json=json
            )
        except (httpx.HTTPError, OSError) as exc:
            log.warning("bus call to %s failed: %s", service_id, exc)
            raise BusUnavailable(str(exc), "unreachable") from exc
        except Exception as exc:  # token refused and the like: the call did not happen
            log.warning("bus call to %s refused: %s", service_id, exc)
            raise BusUnavailable(str(exc), "refused") from exc
        error = r.headers.get("gsb-error")
        if error:
            raise BusUnavailable(f"{error}: {r.text[:200]}", error)
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = None
        return Answer(r.status_code, body, r.headers.get("gsb-request-id", ""))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
