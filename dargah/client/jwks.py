"""The bus's public signing keys, fetched from its JWKS URL and cached.

A key id not in the cache makes one refetch, at most every
``min_refetch_interval`` seconds (so forged ``kid`` values cannot make a
provider hammer the bus); the whole set is also refreshed after ``max_age``
seconds so that withdrawn keys stop being accepted. Thread-safe; the async
lookup runs the blocking fetch in a worker thread, so it never blocks an
event loop and shares one cache with sync callers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

from dargah.core.keys import jwk_to_public_key

log = logging.getLogger(__name__)

RETRY_WHEN_EMPTY = 1.0
"""Seconds between attempts while no key set has ever been fetched."""


class JwksCache:
    """The Ed25519 keys of one JWKS document, by ``kid``."""

    def __init__(
        self,
        url: str,
        *,
        min_refetch_interval: float = 30.0,
        max_age: float = 300.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.min_refetch_interval = min_refetch_interval
        self.max_age = max_age
        self._timeout = timeout
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._keys: dict[str, ed25519.Ed25519PublicKey] | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._http: httpx.Client | None = None
        self.fetches = 0
        """How many times the JWKS was requested (for tests and metrics)."""

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def get(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        """The key with this id, fetching the set when allowed; None when unknown."""
        key, fetch = self._lookup(kid)
        if not fetch:
            return key
        with self._fetch_lock:
            key, fetch = self._lookup(kid)
            if fetch:
                self._refresh()
                with self._lock:
                    key = (self._keys or {}).get(kid)
        return key

    async def aget(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        """:meth:`get` for async code: a fetch runs in a worker thread."""
        key, fetch = self._lookup(kid)
        if not fetch:
            return key
        return await asyncio.to_thread(self.get, kid)

    def _lookup(self, kid: str) -> tuple[ed25519.Ed25519PublicKey | None, bool]:
        """(cached key or None, whether a fetch is due now)."""
        now = time.monotonic()
        with self._lock:
            since_attempt = now - self._attempted_at
            if self._keys is None:
                return None, since_attempt >= RETRY_WHEN_EMPTY
            key = self._keys.get(kid)
            if key is not None:
                stale = now - self._fetched_at >= self.max_age
                return key, stale and since_attempt >= RETRY_WHEN_EMPTY
            return None, since_attempt >= self.min_refetch_interval

    def _refresh(self) -> None:
        with self._lock:
            self._attempted_at = time.monotonic()
            if self._http is None:
                self._http = httpx.Client(timeout=self._timeout, follow_redirects=False)
            http = self._http
        self.fetches += 1
        try:
            resp = http.get(self.url, headers={"Accept": "application/json"})
            resp.raise_for_status()
            keys = parse_jwks(resp.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("could not fetch the bus's keys from %s: %s", self.url, exc)
            return
        with self._lock:
            self._keys = keys
            self._fetched_at = time.monotonic()


def parse_jwks(doc: Any) -> dict[str, ed25519.Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document by kid; other keys are skipped."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("a JWKS document is an object with a 'keys' list")
    keys: dict[str, ed25519.Ed25519PublicKey] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("alg", "EdDSA") != "EdDSA":
            continue
        try:
            key, alg = jwk_to_public_key(jwk)
        except ValueError:
            continue
        if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            keys[jwk["kid"]] = key
    return keys
