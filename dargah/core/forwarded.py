"""Who is calling: the client's address and scheme as seen through trusted proxies only.

A client's own ``X-Forwarded-For``, ``Forwarded`` or ``X-Forwarded-Proto`` says nothing: it
is believed only when the connection comes from a proxy the operator listed
(``DARGAH_TRUSTED_PROXIES``). Then the address list is read from the right (the hop nearest
the bus) and the first address that is not itself a trusted proxy is the client. The bus
tells providers what it found in ``Forwarded: for=…;proto=…`` (RFC 7239) and counts sign-in
failures by the same address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from dargah.core.netaddr import IPAddress, IPNetwork, in_networks, parse_networks

# What a client may send about the hops before the bus: read from trusted proxies only.
FORWARDED_FOR = b"x-forwarded-for"
FORWARDED = b"forwarded"
FORWARDED_PROTO = b"x-forwarded-proto"
VIA_HEADERS = frozenset({FORWARDED_FOR, FORWARDED, FORWARDED_PROTO})
_MAX_CACHED = 50_000


def _address(text: str) -> IPAddress | None:
    """An address in a forwarding header: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``,
    ``"[::1]"``; None for anything else (``unknown``, an obfuscated name)."""
    t = text.strip().strip('"')
    if t.startswith("["):
        t = t[1 : t.find("]")] if "]" in t else ""
    elif t.count(":") == 1:
        t = t.split(":", 1)[0]
    try:
        return ipaddress.ip_address(t)
    except ValueError:
        return None


def _hops(via: Iterable[tuple[bytes, bytes]]) -> tuple[list[str], str | None]:
    """The ``for`` addresses (oldest first) and the last forwarded protocol in ``via``."""
    xff: list[str] = []
    fwd: list[str] = []
    proto: str | None = None
    for name, value in via:
        text = value.decode("latin-1")
        if name == FORWARDED_FOR:
            xff += text.split(",")
        elif name == FORWARDED:
            for element in text.split(","):
                for pair in element.split(";"):
                    key, _, val = pair.strip().partition("=")
                    if key.lower() == "for":
                        fwd.append(val)
                    elif key.lower() == "proto" and val.strip('"').lower() in ("http", "https"):
                        proto = val.strip('"').lower()
        elif name == FORWARDED_PROTO:
            last = text.split(",")[-1].strip().lower()
            if last in ("http", "https"):
                proto = last
    return (xff or fwd), proto


class ClientAddresses:
    """The client's address behind ``trusted`` proxies (CIDRs, as ``DARGAH_TRUSTED_PROXIES``)."""

    def __init__(self, trusted: str | tuple[IPNetwork, ...]) -> None:
        self.trusted = (
            parse_networks(trusted, "DARGAH_TRUSTED_PROXIES")
            if isinstance(trusted, str)
            else trusted
        )
        self._direct: dict[tuple[str | None, str], bytes] = {}

    def _trusts(self, peer: str | None) -> bool:
        if not self.trusted or peer is None:
            return False
        ip = _address(peer)
        return ip is not None and in_networks(ip, self.trusted)

    def client(
        self, peer: str | None, scheme: str, via: Iterable[tuple[bytes, bytes]] = ()
    ) -> tuple[str | None, str]:
        """(client address, scheme): the peer's own unless the peer is a trusted proxy."""
        if not self._trusts(peer):
            return peer, scheme
        hops, proto = _hops(via)
        address = peer
        for hop in reversed(hops):
            ip = _address(hop)
            if ip is None:
                break  # what came before an unreadable hop cannot be trusted either
            address = str(ip)
            if not in_networks(ip, self.trusted):
                break
        return address, proto or scheme

    def forwarded(
        self, peer: str | None, scheme: str, via: Iterable[tuple[bytes, bytes]] | None
    ) -> bytes:
        """The ``Forwarded`` value the bus sends on (one element, RFC 7239 §4)."""
        if via is None or not self._trusts(peer):
            key = (peer, scheme)
            value = self._direct.get(key)
            if value is None:
                if len(self._direct) >= _MAX_CACHED:
                    self._direct.clear()
                value = self._direct[key] = forwarded_value(peer, scheme)
            return value
        return forwarded_value(*self.client(peer, scheme, via))


def forwarded_value(address: str | None, scheme: str) -> bytes:
    """``for=192.0.2.1;proto=https``; an IPv6 address quoted in brackets; ``for=unknown``."""
    if address is None:
        node = "unknown"
    else:
        ip = _address(address)
        node = "unknown" if ip is None else (f'"[{ip}]"' if ip.version == 6 else str(ip))
    proto = scheme if scheme in ("http", "https") else "http"
    return f"for={node};proto={proto}".encode()
