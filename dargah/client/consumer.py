"""What an agency's consumer system runs to call services over the bus.

:class:`GsbClient` (blocking) and :class:`AsyncGsbClient` (asyncio) get an
access token from ``{bus_url}/oauth/token`` with the subsystem's private key
or (sandbox instances only) its client secret, keep it while more than 30 s of
it remain, and send ``/r1/`` calls and ``/e1/`` events with the GSB headers of
gsb-protocol §3. A call answered ``401`` with ``GSB-Error: unauthenticated``
gets a fresh token and is retried once.

Over HTTPS a client may present its system's certificate (``certificate_file``
and ``certificate_key_file``, mutual TLS): with no key or secret the
certificate alone authenticates it (RFC 8705), and the bus binds its tokens
to that certificate. ``ca_file`` names the CA certificates that the bus's
server certificate is checked against (default: the system's).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Mapping
from typing import Any, Self

import httpx

from dargah.client.calls import (
    CallSpec,
    cloud_event,
    is_stale_token,
    json_or_raise,
)
from dargah.client.tokens import Credentials, TokenCache, parse_token_response

Params = Mapping[str, str | int | float] | None


class _Config:
    """What both clients share: URLs, credentials and the token cache."""

    def __init__(
        self,
        bus_url: str,
        client_id: str,
        *,
        private_key_pem: bytes | None,
        private_key_file: str | None,
        client_secret: str | None,
        token_url: str | None,
        certificate_file: str | None = None,
        certificate_key_file: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.bus_url = bus_url.rstrip("/")
        self.client_id = client_id
        self.token_url = token_url or f"{self.bus_url}/oauth/token"
        self.credentials = Credentials.build(
            client_id,
            self.token_url,
            private_key_pem=private_key_pem,
            private_key_file=private_key_file,
            client_secret=client_secret,
            mtls=certificate_file is not None,
        )
        self.verify: ssl.SSLContext | bool = True
        if certificate_file is not None or ca_file is not None:
            self.verify = ssl.create_default_context(cafile=ca_file)
            if certificate_file is not None:
                self.verify.load_cert_chain(certificate_file, certificate_key_file)
        self.tokens = TokenCache()
        self.token_requests = 0
        """How many token requests this client has sent (for tests and metrics)."""


class GsbClient(_Config):
    """A blocking bus client with a keep-alive connection pool; safe to share across threads."""

    def __init__(
        self,
        bus_url: str,
        client_id: str,
        *,
        private_key_pem: bytes | None = None,
        private_key_file: str | None = None,
        client_secret: str | None = None,
        token_url: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        certificate_file: str | None = None,
        certificate_key_file: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        super().__init__(
            bus_url,
            client_id,
            private_key_pem=private_key_pem,
            private_key_file=private_key_file,
            client_secret=client_secret,
            token_url=token_url,
            certificate_file=certificate_file,
            certificate_key_file=certificate_key_file,
            ca_file=ca_file,
        )
        self._http = httpx.Client(
            timeout=timeout, transport=transport, follow_redirects=False, verify=self.verify
        )
        self._fetch_lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def token(self) -> str:
        """A valid access token, from the cache or a new token request."""
        cached = self.tokens.current()
        if cached is not None:
            return cached
        with self._fetch_lock:
            cached = self.tokens.current()
            if cached is not None:
                return cached
            self.token_requests += 1
            resp = self._http.post(self.token_url, data=self.credentials.token_form())
            token, lifetime = parse_token_response(resp.status_code, _json_body(resp))
            self.tokens.store(token, lifetime)
            return token

    def _send(self, spec: CallSpec) -> httpx.Response:
        for attempt in (1, 2):
            token = self.token()
            resp = self._http.request(
                spec.method,
                spec.url,
                headers=spec.headers_with(token),
                params=spec.params,
                content=spec.content,
            )
            if attempt == 1 and is_stale_token(resp):
                resp.close()
                self.tokens.invalidate(token)
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def call(
        self,
        service_id: str,
        path: str = "/",
        *,
        method: str = "GET",
        purpose: str | None = None,
        subject: str | None = None,
        user: str | None = None,
        request_id: str | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Params = None,
    ) -> httpx.Response:
        """Send ``{method} {bus_url}/r1/{service_id}{path}`` and return the bus's answer."""
        spec = CallSpec.for_service(
            self.bus_url,
            service_id,
            path,
            method=method,
            purpose=purpose,
            subject=subject,
            user=user,
            request_id=request_id,
            json=json,
            content=content,
            headers=headers,
            params=params,
        )
        return self._send(spec)

    def call_json(self, service_id: str, path: str = "/", **kwargs: Any) -> Any:
        """Like :meth:`call`, but returns the parsed JSON body; raises GsbError on errors."""
        return json_or_raise(self.call(service_id, path, **kwargs))

    def publish(self, topic_id: str, event: Mapping[str, Any]) -> httpx.Response:
        """POST a CloudEvents 1.0 event to ``/e1/{topic_id}`` (202 once stored)."""
        body = cloud_event(event, source=self.client_id)
        return self._send(CallSpec.for_event(self.bus_url, topic_id, body))


class AsyncGsbClient(_Config):
    """The asyncio twin of :class:`GsbClient`; use it from one event loop."""

    def __init__(
        self,
        bus_url: str,
        client_id: str,
        *,
        private_key_pem: bytes | None = None,
        private_key_file: str | None = None,
        client_secret: str | None = None,
        token_url: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        certificate_file: str | None = None,
        certificate_key_file: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        super().__init__(
            bus_url,
            client_id,
            private_key_pem=private_key_pem,
            private_key_file=private_key_file,
            client_secret=client_secret,
            token_url=token_url,
            certificate_file=certificate_file,
            certificate_key_file=certificate_key_file,
            ca_file=ca_file,
        )
        self._http = httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=False, verify=self.verify
        )
        self._fetch_lock: asyncio.Lock | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def token(self) -> str:
        """A valid access token, from the cache or a new token request."""
        cached = self.tokens.current()
        if cached is not None:
            return cached
        if self._fetch_lock is None:
            self._fetch_lock = asyncio.Lock()
        async with self._fetch_lock:
            cached = self.tokens.current()
            if cached is not None:
                return cached
            self.token_requests += 1
            resp = await self._http.post(self.token_url, data=self.credentials.token_form())
            token, lifetime = parse_token_response(resp.status_code, _json_body(resp))
            self.tokens.store(token, lifetime)
            return token

    async def _send(self, spec: CallSpec) -> httpx.Response:
        for attempt in (1, 2):
            token = await self.token()
            resp = await self._http.request(
                spec.method,
                spec.url,
                headers=spec.headers_with(token),
                params=spec.params,
                content=spec.content,
            )
            if attempt == 1 and is_stale_token(resp):
                await resp.aclose()
                self.tokens.invalidate(token)
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def call(
        self,
        service_id: str,
        path: str = "/",
        *,
        method: str = "GET",
        purpose: str | None = None,
        subject: str | None = None,
        user: str | None = None,
        request_id: str | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Params = None,
    ) -> httpx.Response:
        """Send ``{method} {bus_url}/r1/{service_id}{path}`` and return the bus's answer."""
        spec = CallSpec.for_service(
            self.bus_url,
            service_id,
            path,
            method=method,
            purpose=purpose,
            subject=subject,
            user=user,
            request_id=request_id,
            json=json,
            content=content,
            headers=headers,
            params=params,
        )
        return await self._send(spec)

    async def call_json(self, service_id: str, path: str = "/", **kwargs: Any) -> Any:
        """Like :meth:`call`, but returns the parsed JSON body; raises GsbError on errors."""
        return json_or_raise(await self.call(service_id, path, **kwargs))

    async def publish(self, topic_id: str, event: Mapping[str, Any]) -> httpx.Response:
        """POST a CloudEvents 1.0 event to ``/e1/{topic_id}`` (202 once stored)."""
        body = cloud_event(event, source=self.client_id)
        return await self._send(CallSpec.for_event(self.bus_url, topic_id, body))


def _json_body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
