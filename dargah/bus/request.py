"""Parsing a ``/r1/`` call: identifiers, path and headers (the ``bad-request`` step)."""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from dargah.core.forwarded import VIA_HEADERS
from dargah.core.identifiers import InvalidIdentifier, parse_service_id

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
# Never forwarded to a provider: credentials, framing, and headers only the bus may set
# (RFC 9440's Client-Cert headers come from a TLS-terminating proxy, never from a client).
_DROP = frozenset(
    {
        b"authorization",
        b"cookie",
        b"host",
        b"content-length",
        b"expect",
        b"client-cert",
        b"client-cert-chain",
    }
)
# What a client says about the hops before the bus: kept aside (believed from trusted proxies
# only, dargah.core.forwarded), never forwarded; the bus sends its own Forwarded.
_CLIENT_ADDRESS = frozenset({b"x-real-ip", b"true-client-ip", b"x-client-ip"})
# Names a provider's framework may read as one of the headers above or a GSB-* header when
# written with '_' for '-' (many join the two spellings): dropped in every spelling.
_SHADOWED = HOP_BY_HOP | _DROP | _CLIENT_ADDRESS | VIA_HEADERS | {b"traceparent", b"tracestate"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_SERVICE_CACHE: dict[str, bool] = {}
MAX_PATH = 8192
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
MAX_PURPOSE = 64  # the registry's longest purpose code


class ParseError(Exception):
    """A malformed request: always ``bad-request``."""


@dataclass(slots=True)
class ParsedCall:
    service: str | None = None
    path: str = ""
    authorization: bytes | None = None
    purpose: str | None = None
    subject: str | None = None
    user: str | None = None
    request_id: str = ""
    traceparent: str = ""
    incoming_trace: str | None = None
    tracestate: bytes | None = None
    content_length: int | None = None
    forward: list[tuple[bytes, bytes]] = field(default_factory=list)
    via: list[tuple[bytes, bytes]] | None = None
    """The client's X-Forwarded-For, Forwarded and X-Forwarded-Proto, if it sent any."""


def _valid_service(raw: str) -> bool:
    ok = _SERVICE_CACHE.get(raw)
    if ok is None:
        try:
            parse_service_id(raw)
            ok = True
        except InvalidIdentifier:
            ok = False
        if len(_SERVICE_CACHE) < 100_000:
            _SERVICE_CACHE[raw] = ok
    return ok


def split_target(raw_path: str) -> tuple[str, str]:
    """``/r1/{service id}{path}`` → (service id, path). Raises ParseError."""
    if len(raw_path) > MAX_PATH:
        raise ParseError("the path is too long")
    parts = raw_path[4:].split("/", 5)
    if len(parts) < 5:
        raise ParseError("the path must start with /r1/ and a full bus service id")
    service = "/".join(parts[:5])
    path = "/" + parts[5] if len(parts) == 6 else ""
    if not _valid_service(service):
        try:
            parse_service_id(service)
        except InvalidIdentifier as exc:
            raise ParseError(str(exc)) from None
    if path:
        # Decoded, and with '\\' as a separator too: '..%2F' or '%2e%2e%5C' must not let a
        # provider that decodes before resolving step out of the service's base path.
        decoded = unquote(path) if "%" in path else path
        if "." in decoded:
            for seg in decoded.replace("\\", "/").split("/"):
                if seg == "." or seg == "..":
                    raise ParseError("the path must not contain '.' or '..' segments")
        if _CONTROL.search(path):
            raise ParseError("the path contains control characters")
    return service, path


def new_traceparent(incoming: str | None, random_hex: str | None = None) -> str:
    """The traceparent to send on: the caller's trace with the bus's own span id, or a new trace.

    ``random_hex`` (48 hex digits) supplies the new trace and span ids.
    """
    r = random_hex or f"{_ids.getrandbits(192):048x}"
    span = r[32:48]
    if incoming:
        m = _TRACEPARENT.fullmatch(incoming.strip())
        if m and m.group(1) != "ff" and m.group(2) != "0" * 32 and m.group(3) != "0" * 16:
            return f"00-{m.group(2)}-{span}-{m.group(4)}"
    return f"00-{r[:32]}-{span}-01"


def _uuid7(h: str, now_ns: int | None = None) -> str:
    """A version-7 UUID (RFC 9562: Unix milliseconds first, then randomness from ``h``).

    Ids the bus makes grow with time, so the message log's request-id index
    takes them at its end instead of at random places.
    """
    ms = f"{(time.time_ns() if now_ns is None else now_ns) // 1_000_000:012x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{ms[:8]}-{ms[8:12]}-7{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's GSB-Request-Id when it is a UUID (for refusing a call that failed parsing)."""
    for name, value in headers:
        if name == b"gsb-request-id":
            try:
                return str(uuid.UUID(value.decode("latin-1").strip()))
            except ValueError:
                return None
    return None


# What becomes of a header, by name: forwarded, dropped, kept aside for the client's address,
# or one the protocol reads (the GSB-* ones at most once each).
_FORWARD, _DROPPED, _VIA, _AUTH, _TRACE_PARENT, _TRACE_STATE, _LENGTH, _CONNECTION = range(8)
_GSB, _PURPOSE, _SUBJECT, _USER, _REQUEST_ID = range(8, 13)
_READ: dict[bytes, int] = {
    b"authorization": _AUTH,
    b"traceparent": _TRACE_PARENT,
    b"tracestate": _TRACE_STATE,
    b"content-length": _LENGTH,
    b"connection": _CONNECTION,
    b"gsb-purpose": _PURPOSE,
    b"gsb-subject": _SUBJECT,
    b"gsb-user": _USER,
    b"gsb-request-id": _REQUEST_ID,
}
_KINDS: dict[bytes, int] = dict(_READ)


def _kind_of(raw: bytes) -> int:
    """What becomes of a header whose name was not seen before (then kept in ``_KINDS``)."""
    if raw.startswith(b"gsb-"):
        kind = _GSB  # any other GSB-* header is the bus's own to set: dropped
    else:
        name = raw.lower()  # ASGI servers give lower case; the rule does not depend on it
        dashed = name.replace(b"_", b"-")
        if name in VIA_HEADERS:
            kind = _VIA
        elif (
            name in HOP_BY_HOP
            or name in _DROP
            or name in _CLIENT_ADDRESS
            or name.startswith(b"x-forwarded-")
            or (
                dashed != name
                and (dashed.startswith((b"gsb-", b"x-forwarded-")) or dashed in _SHADOWED)
            )
        ):
            kind = _DROPPED
        else:
            kind = _FORWARD
    if len(_KINDS) < 10_000:  # names a client makes up do not grow it for ever
        _KINDS[raw] = kind
    return kind


def parse_headers(
    headers: list[tuple[bytes, bytes]], call: ParsedCall, now_ns: int | None = None
) -> None:
    """Fill ``call`` from the request headers. Raises ParseError for malformed ones.
    ``now_ns``: the call's time (Unix nanoseconds), for the request id the bus makes."""
    seen_gsb: set[bytes] | None = None
    connection_tokens: set[bytes] | None = None
    incoming_trace: str | None = None
    forward = call.forward
    kinds = _KINDS
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            kind = _kind_of(name)
        if kind == _FORWARD:
            forward.append((name, value))
        elif kind >= _GSB:
            if seen_gsb is None:
                seen_gsb = {name}
            elif name in seen_gsb:
                raise ParseError(f"header {name.decode()} must appear only once")
            else:
                seen_gsb.add(name)
            if kind == _GSB:
                continue
            text = value.decode("latin-1").strip()
            if kind == _PURPOSE:
                if len(text) > MAX_PURPOSE:  # no grant holds a longer one; keeps the log bounded
                    raise ParseError(f"GSB-Purpose must be at most {MAX_PURPOSE} characters")
                call.purpose = text or None
            elif kind == _SUBJECT:
                call.subject = text or None
            elif kind == _USER:
                if len(text) > 256:
                    raise ParseError("GSB-User must be at most 256 characters")
                call.user = text or None
            else:
                try:
                    call.request_id = str(uuid.UUID(text))
                except ValueError:
                    raise ParseError("GSB-Request-Id must be a UUID") from None
        elif kind == _AUTH:
            if call.authorization is not None:
                raise ParseError("Authorization must appear only once")
            call.authorization = value
        elif kind == _DROPPED:
            continue
        elif kind == _VIA:
            if call.via is None:
                call.via = []
            call.via.append((name, value))
        elif kind == _TRACE_PARENT:
            incoming_trace = value.decode("latin-1")
        elif kind == _TRACE_STATE:
            call.tracestate = value
        elif kind == _LENGTH:
            try:
                n = int(value)
            except ValueError:
                raise ParseError("Content-Length is not a number") from None
            if n < 0 or (call.content_length is not None and call.content_length != n):
                raise ParseError("Content-Length is invalid")
            call.content_length = n
        else:  # Connection
            if connection_tokens is None:
                connection_tokens = set()
            connection_tokens.update(t.strip().lower() for t in value.split(b","))
    if connection_tokens:
        call.forward = [(n, v) for n, v in forward if n not in connection_tokens]
    # Ids need to be unique, not secret: a fast generator (reseeded in every forked process).
    random_hex = f"{_ids.getrandbits(320):080x}"
    if not call.request_id:
        call.request_id = _uuid7(random_hex[48:], now_ns)
    call.incoming_trace = incoming_trace
    call.traceparent = new_traceparent(incoming_trace, random_hex)
