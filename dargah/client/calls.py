"""The pieces of one bus call that need no I/O: URL and GSB headers, CloudEvents, errors.

Shared by :mod:`dargah.client.consumer`'s sync and async clients.
"""

from __future__ import annotations

import json as jsonlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


class GsbError(Exception):
    """An error answer of the bus itself (it carries a ``GSB-Error`` header).

    ``code`` is the protocol's error code (``access-denied``, ...), ``status``
    the HTTP status and ``problem`` the problem+json body as a dict.
    """

    def __init__(
        self,
        code: str,
        status: int,
        problem: dict[str, Any],
        response: httpx.Response | None = None,
    ) -> None:
        detail = problem.get("detail") or problem.get("title") or ""
        super().__init__(f"{code} ({status}): {detail}" if detail else f"{code} ({status})")
        self.code = code
        self.status = status
        self.problem = problem
        self.response = response


class ProviderError(GsbError):
    """A non-2xx answer of the provider itself, passed through by the bus.

    ``code`` is ``provider-error``; ``problem`` is the provider's JSON body when
    it was a JSON object, else ``{"body": <text>}``.
    """


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One request to the bus, ready to be sent with any access token."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None
    params: Mapping[str, str | int | float] | None = field(default=None)

    @classmethod
    def for_service(
        cls,
        bus_url: str,
        service_id: str,
        path: str,
        *,
        method: str,
        purpose: str | None,
        subject: str | None,
        user: str | None,
        request_id: str | None,
        json: Any,
        content: bytes | str | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str | int | float] | None,
    ) -> CallSpec:
        if path and not path.startswith("/"):
            path = "/" + path
        merged = dict(headers or {})
        body: bytes | None = content.encode() if isinstance(content, str) else content
        if json is not None:
            if body is not None:
                raise ValueError("give json or content, not both")
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
            if not any(k.lower() == "content-type" for k in merged):
                merged["Content-Type"] = "application/json"
        for name, value in (
            ("GSB-Purpose", purpose),
            ("GSB-Subject", subject),
            ("GSB-User", user),
            ("GSB-Request-Id", request_id),
        ):
            if value is not None:
                merged[name] = value
        return cls(method.upper(), f"{bus_url}/r1/{service_id}{path}", merged, body, params)

    @classmethod
    def for_event(cls, bus_url: str, topic_id: str, event: dict[str, Any]) -> CallSpec:
        body = jsonlib.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": CLOUDEVENTS_CONTENT_TYPE}
        return cls("POST", f"{bus_url}/e1/{topic_id}", headers, body)

    def headers_with(self, token: str) -> dict[str, str]:
        return {**self.headers, "Authorization": f"Bearer {token}"}


def cloud_event(event: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """A structured-mode CloudEvents 1.0 event: ``event`` plus any missing required attribute.

    ``type`` must be given; ``specversion`` (1.0), ``id`` (a UUID), ``source``
    (the publishing client id) and ``time`` (now, UTC) are filled in when absent.
    """
    if not event.get("type"):
        raise ValueError("a CloudEvents event needs a 'type'")
    body = dict(event)
    body.setdefault("specversion", "1.0")
    body.setdefault("id", str(uuid.uuid4()))
    body.setdefault("source", source)
    body.setdefault("time", datetime.now(UTC).isoformat(timespec="milliseconds"))
    if "data" in body:
        body.setdefault("datacontenttype", "application/json")
    return body


def is_stale_token(resp: httpx.Response) -> bool:
    """True when the bus refused the access token (worth one retry with a new one)."""
    return resp.status_code == 401 and resp.headers.get("GSB-Error") == "unauthenticated"


def json_or_raise(resp: httpx.Response) -> Any:
    """The parsed JSON body of a 2xx answer (None when empty); raises GsbError otherwise."""
    code = resp.headers.get("GSB-Error")
    if code is not None:
        raise GsbError(code, resp.status_code, _problem(resp), resp)
    if resp.status_code >= 400:
        raise ProviderError("provider-error", resp.status_code, _problem(resp), resp)
    if not resp.content:
        return None
    return resp.json()


def _problem(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {"body": resp.text}
    return body if isinstance(body, dict) else {"body": body}
