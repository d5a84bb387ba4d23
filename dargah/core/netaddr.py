"""Where the bus may send requests: outbound URLs, host spellings and the address rules.

A provider's base URL or a webhook is ``http`` or ``https`` with a host, an optional port
and no user information. Its host is read the way the resolver that connects will read it:
a host that ends in a number is an IPv4 address in any of the spellings libc's
``inet_aton`` and the WHATWG URL standard accept (``2852039166``, ``0xa9fea9fe``,
``0251.0376.0251.0376``, ``127.1``), bracketed hosts are IPv6 (an IPv4-mapped, -compatible,
NAT64 or 6to4 address is judged by the IPv4 address inside it), and anything else must be a
plain DNS name. Which addresses are refused is a :class:`TargetPolicy`:

- on every instance: link-local (cloud metadata at 169.254.169.254), unspecified
  (``0.0.0.0/8``, ``::``), multicast and broadcast addresses are never a provider;
- on a production instance, also loopback, reserved addresses, the bus's own listening
  address and port and its public URL's host and port, and private-use ranges when the
  operator forbids them;
- addresses in the operator's allow list are exempt from the production rules (a provider
  sidecar on the bus's own machine, say), never from the first ones nor the bus's own.

A name is checked again after resolution, each time the bus connects (``dargah.bus.outbound``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from dargah.core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMBER = re.compile(r"[0-9]+|0[x][0-9a-f]*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
PRIVATE_RANGES: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT
        "198.18.0.0/15",  # benchmarking
        "fc00::/7",  # unique local
        "fec0::/10",  # site-local (deprecated)
    )
)


class BadTarget(ValueError):
    """An outbound URL or host the bus will not use; the message says why."""


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a host that ends in a number (WHATWG URL "IPv4 parser", the same
    numbers as ``inet_aton``), None for a name. Raises BadTarget when it ends in a number but
    is not a valid address: such a host is never a name."""
    parts = host.lower().split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # one trailing dot
    if not parts or not _NUMBER.fullmatch(parts[-1]):
        return None
    if len(parts) > 4 or any(not _NUMBER.fullmatch(p) for p in parts):
        raise BadTarget(f"host {host!r} ends in a number but is not an IPv4 address")
    numbers = []
    for p in parts:
        if p.startswith("0x"):
            numbers.append(int(p[2:] or "0", 16))
        elif len(p) > 1 and p.startswith("0"):
            if any(ch in "89" for ch in p):
                raise BadTarget(f"host {host!r} has an invalid octal part")
            numbers.append(int(p, 8))
        else:
            numbers.append(int(p))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise BadTarget(f"host {host!r} is out of the IPv4 range")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_host(host: str) -> IPAddress | None:
    """The address a URL's host (as :func:`urllib.parse.urlsplit` gives its ``hostname``, or
    bracketed) stands for, or None when it is a DNS name. Raises BadTarget for anything that
    is neither a valid address nor a plain name."""
    if not host:
        raise BadTarget("the URL has no host")
    bracketed = host.startswith("[") and host.endswith("]")
    raw = host[1:-1] if bracketed else host
    if bracketed and ":" not in raw:
        raise BadTarget(f"host {host!r} is not a valid IPv6 address")
    if "%" in raw:
        raise BadTarget(f"host {host!r} must not be percent-encoded")
    if ":" in raw:
        try:
            return ipaddress.IPv6Address(raw)
        except ValueError:
            raise BadTarget(f"host {host!r} is not a valid IPv6 address") from None
    ip = parse_ipv4(raw)
    if ip is not None:
        return ip
    name = raw.lower().removesuffix(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise BadTarget(f"host {host!r} is not a valid DNS name")
    return None


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), else ``ip``."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_local_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is one of this machine's own addresses (it can be bound here)."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((str(ip), 0))
    except OSError:
        return False
    return True


def parse_networks(text: str, what: str) -> tuple[IPNetwork, ...]:
    """A comma- or space-separated list of CIDRs (or single addresses). Raises ValueError."""
    out = []
    for item in text.replace(",", " ").split():
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{what}: {item!r} is not an address or CIDR range") from None
    return tuple(out)


def in_networks(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


@dataclass(frozen=True)
class TargetPolicy:
    """Which addresses the bus connects to (see the module's docstring)."""

    production: bool
    forbid_private: bool = False
    allowed: tuple[IPNetwork, ...] = ()
    own_port: int | None = None
    own_host: IPAddress | None = None
    """The bus's listening address; None or unspecified: every address of this machine."""
    public: tuple[str, int] | None = None
    """Host (lower case) and port of the bus's public URL: a provider there is the bus again."""
    _local: dict[IPAddress, bool] = field(default_factory=dict, compare=False, repr=False)

    def refusal(self, ip: IPAddress, port: int) -> str | None:
        """Why the bus must not connect to ``ip``:``port``, or None."""
        v4 = embedded_ipv4(ip)
        both = (v4, ip) if v4 is not ip else (ip,)
        for a in both:
            if a.is_link_local:
                return "a link-local address (such as the cloud metadata service)"
            if a.is_unspecified or (a.version == 4 and a in _THIS_NETWORK):
                return "an unspecified address"
            if a.is_multicast or a == _BROADCAST:
                return "a multicast or broadcast address"
        if not self.production:
            return None
        if port == self.own_port and self._is_own(v4):
            return "the bus's own address and port"
        if in_networks(ip, self.allowed) or in_networks(v4, self.allowed):
            return None
        if any(a.is_loopback for a in both):
            return "a loopback address on a production instance"
        if self.forbid_private and any(in_networks(a, PRIVATE_RANGES) for a in both):
            return "a private-use address, which this instance forbids"
        if v4.is_reserved:
            return "a reserved address on a production instance"
        return None

    def _is_own(self, ip: IPAddress) -> bool:
        if self.own_host is not None and not self.own_host.is_unspecified:
            return ip == self.own_host
        local = self._local.get(ip)
        if local is None:
            local = self._local[ip] = is_local_address(ip)
        return local


def target_policy(settings: Settings, production: bool) -> TargetPolicy:
    """The policy of an instance (production or not) under ``settings``. Raises ValueError
    for a malformed allow list."""
    try:
        own_host: IPAddress | None = ipaddress.ip_address(settings.host)
    except ValueError:
        own_host = None  # a name: every address of this machine counts as the bus's own
    return TargetPolicy(
        production=production,
        forbid_private=settings.forbid_private_targets,
        allowed=parse_networks(settings.outbound_allow, "DARGAH_OUTBOUND_ALLOW"),
        own_port=settings.port,
        own_host=own_host,
        public=_host_port(settings.public_url),
    )


def _host_port(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname.rstrip("."), port) if parts.hostname else None


def check_url(raw: str, policy: TargetPolicy, *, query: bool = False) -> SplitResult:
    """The parts of an outbound URL the bus may use, or BadTarget saying why not. A query is
    allowed only when ``query`` (a webhook's; a provider's base URL has none), never a fragment.

    A name is accepted here: its addresses are checked when the bus connects.
    """
    if not raw.isascii() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise BadTarget("the URL must be ASCII without spaces: percent-encode its path")
    if "\\" in raw:
        raise BadTarget("the URL must not contain a backslash")
    try:
        url = urlsplit(raw)
        port = url.port
    except ValueError as exc:
        raise BadTarget(f"the URL is not valid: {exc}") from None
    if url.scheme not in ("http", "https") or not url.netloc:
        raise BadTarget("the URL must be http or https with a host")
    if "@" in url.netloc:
        raise BadTarget("the URL must not carry a user name or password")
    if (url.query and not query) or url.fragment or raw.endswith(("#", "?")):
        raise BadTarget("the URL must not have a query or a fragment")
    if port == 0:
        raise BadTarget("the URL's port must be 1-65535")
    netloc = url.netloc
    host = netloc[: netloc.index("]") + 1] if netloc.startswith("[") else netloc.partition(":")[0]
    if netloc[len(host) :] and not netloc[len(host) :].startswith(":"):
        raise BadTarget("the URL's host is followed by something other than a port")
    ip = parse_host(host)
    if policy.production and _host_port(raw) == policy.public:
        raise BadTarget("the bus does not connect to its own public URL")
    if ip is not None:
        why = policy.refusal(ip, port or (443 if url.scheme == "https" else 80))
        if why:
            raise BadTarget(f"the bus does not connect to {why} ({ip})")
    return url
