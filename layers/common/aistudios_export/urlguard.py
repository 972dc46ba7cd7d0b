"""Decide whether a download URL (or a redirect hop) may be fetched.

The download URL comes from a third party, so fetching it blindly would let whoever controls
it make the exporter read internal endpoints (cloud metadata, the Lambda runtime API on
loopback, VPC hosts) and store the answer in S3. :func:`check_url` therefore allows only
``https`` to hosts whose every address is public, with one exception: the exact origin of a
local simulator, named in :class:`UrlPolicy`.

The check returns the addresses it approved (:class:`CheckedUrl`): the HTTP client must connect
to one of them (:mod:`~aistudios_export.pinning`) instead of resolving the host again, or a DNS
answer that changes between the check and the connection (DNS rebinding) would get through.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from urllib3.util import parse_url

from aistudios_export.errors import ConfigurationError, ForbiddenDownloadUrl

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRUSTED_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# What a trusted ``localhost`` origin is connected to: loopback, whatever the resolver says.
_LOCALHOST_ADDRESSES = ("127.0.0.1", "::1")

# Instance-metadata and host-service endpoints of the clouds. Most are already non-global;
# they are listed so the refusal names them, and for the public ones (Azure's wire server).
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
        "169.254.170.2",  # ECS task metadata and credentials
        "169.254.169.253",  # AWS VPC DNS resolver
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::253",  # AWS VPC DNS resolver over IPv6
        "fd00:ec2::23",  # ECS task metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure wire server (a public address)
        "192.0.0.192",  # Oracle Cloud metadata
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# WHATWG's "ends in a number": a host whose last label is numeric is parsed as an IPv4
# address by browsers and by inet_aton (decimal 2130706433, hex 0x7f000001, octal 0177.0.0.1,
# short 127.1), so any such host must be a canonical dotted quad or is refused.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def _resolve(host: str, port: int) -> list[str]:
    """Return every address ``host`` resolves to, as strings (``getaddrinfo``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _origin_of(parts: SplitResult) -> tuple[str, str, int]:
    """Return ``(scheme, host, port)`` with the scheme's default port filled in."""
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port  # raises ValueError on a malformed port
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme, -1)


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that :func:`check_url` allowed, with the addresses it allowed for its host.

    Attributes
    ----------
    url
        The URL as checked.
    scheme, host, port
        Its scheme and host (lower case) and its port (the scheme's default filled in).
    addresses
        The host's addresses that were checked, in the resolver's order (never empty); the
        connection must go to one of these, not to a fresh resolution of ``host``.
    """

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class UrlPolicy:
    """What :func:`check_url` allows beyond public ``https`` URLs.

    Parameters
    ----------
    trusted_origin
        ``http(s)://<127.0.0.1|localhost|[::1]>[:port]`` of a local simulator whose URLs are
        allowed over http and on loopback; ``None`` (production) allows no such exception.
    resolver
        ``(host, port) -> [address, ...]``; ``getaddrinfo`` by default. Tests pass a fake so
        that no DNS query is made.

    Raises
    ------
    ConfigurationError
        If ``trusted_origin`` is not exactly a loopback origin.
    """

    trusted_origin: str | None = None
    resolver: Callable[[str, int], list[str]] = field(default=_resolve, compare=False)

    def __post_init__(self) -> None:
        if self.trusted_origin is not None:
            self.trusted_key()  # validates

    @classmethod
    def from_trusted_origin(cls, origin: str | None) -> UrlPolicy:
        """Build the policy from a setting; an empty or missing origin means none.

        Parameters
        ----------
        origin
            The trusted loopback origin, or ``None``/``""``.

        Returns
        -------
        UrlPolicy
            The policy with the default resolver.

        Raises
        ------
        ConfigurationError
            If a non-empty origin is not exactly a loopback origin.
        """
        origin = (origin or "").strip()
        return cls(trusted_origin=origin or None)

    def trusted_key(self) -> tuple[str, str, int] | None:
        """Return the trusted origin as ``(scheme, host, port)``, or ``None`` if there is none.

        Raises
        ------
        ConfigurationError
            If the trusted origin is not exactly a loopback origin.
        """
        if self.trusted_origin is None:
            return None
        bad = ConfigurationError(
            "trusted download origin must be http(s)://<127.0.0.1|localhost|[::1]>[:port] "
            "with no path, query or user info"
        )
        try:
            parts = urlsplit(self.trusted_origin)
            key = _origin_of(parts)
        except ValueError as e:
            raise bad from e
        scheme, host, _ = key
        if (
            scheme not in _DEFAULT_PORTS
            or host not in _TRUSTED_HOSTS
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "?" in self.trusted_origin
            or "#" in self.trusted_origin
        ):
            raise bad
        return key


def redact_url(url: str) -> str:
    """Return ``scheme://host[:port]/path``: the URL without query, fragment and user info.

    Parameters
    ----------
    url
        Any URL; a signed URL's query string is its secret.

    Returns
    -------
    str
        A form that is safe to log and to put in an error message.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    hostport = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{hostport}{parts.path}"


def _is_noncanonical_ipv4(host: str) -> bool:
    """Tell whether ``host`` would be read as an IPv4 address without being a dotted quad."""
    last = host.removesuffix(".").rpartition(".")[2]
    looks_numeric = bool(_NUMERIC_LABEL.fullmatch(last))
    if not looks_numeric:
        try:
            socket.inet_aton(host)
            looks_numeric = True
        except OSError:
            pass
    if not looks_numeric:
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


def _address_problem(address: IPAddress) -> str | None:
    """Return why ``address`` must not be fetched from, or ``None`` if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # Forms that carry an IPv4 address are judged by that address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _address_problem(embedded)
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    for problem, flagged in (
        ("an unspecified address", address.is_unspecified),
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
        ("a private address", address.is_private),
        ("a non-public address", not address.is_global),
    ):
        if flagged:
            return problem
    return None


def check_url(url: str, policy: UrlPolicy) -> CheckedUrl:
    """Refuse a URL that the exporter must not fetch; return the addresses it may connect to.

    Allowed: ``https`` with no user info, a host that is a name or a canonical IP literal,
    and every address it resolves to public. Also allowed, and nothing else: a URL whose
    (scheme, host, port) equals the policy's trusted origin, over http and on loopback.

    Parameters
    ----------
    url
        The download URL or a redirect's absolute target.
    policy
        The trusted origin (if any) and the resolver.

    Returns
    -------
    CheckedUrl
        The URL with the addresses that were checked (the trusted origin's loopback address;
        an IP literal itself; else every address the resolver gave).

    Raises
    ------
    ForbiddenDownloadUrl
        With the reason and the redacted URL.
    """

    def refuse(reason: str) -> ForbiddenDownloadUrl:
        return ForbiddenDownloadUrl(f"refused download URL {redact_url(url)}: {reason}")

    try:
        parts = urlsplit(url)
        scheme, host, port = _origin_of(parts)
    except ValueError as e:
        raise refuse("the URL is malformed") from e
    if scheme not in _DEFAULT_PORTS:
        raise refuse(f"scheme {scheme or '(none)'!r} is not allowed")
    if "@" in parts.netloc:
        raise refuse("user info in URLs is not allowed")
    if not host:
        raise refuse("the URL has no host")
    if not host.isascii() or any(c.isspace() or c in "%\\" for c in host):
        raise refuse("the host has characters outside plain ASCII hostnames")
    try:
        # The HTTP client (urllib3) parses the URL itself: both parsers must agree.
        theirs = parse_url(url)
    except ValueError as e:
        raise refuse("the URL is malformed") from e
    their_port = theirs.port if theirs.port is not None else _DEFAULT_PORTS[scheme]
    if ((theirs.host or "").strip("[]").lower(), their_port) != (host, port):
        raise refuse("the URL is ambiguous")

    def checked(addresses: list[str] | tuple[str, ...]) -> CheckedUrl:
        return CheckedUrl(url, scheme, host, port, tuple(addresses))

    if (scheme, host, port) == policy.trusted_key():
        return checked(_LOCALHOST_ADDRESSES if host == "localhost" else (host,))
    if scheme != "https":
        raise refuse("only https is allowed")
    if ":" not in host and _is_noncanonical_ipv4(host):
        raise refuse("IP addresses must be written as canonical dotted quads")

    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[str] = [host]
    else:
        try:
            addresses = policy.resolver(host, port)
        except (OSError, UnicodeError) as e:
            raise refuse("the host does not resolve") from e
        if not addresses:
            raise refuse("the host does not resolve")
    allowed: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.partition("%")[0])
        except ValueError as e:
            raise refuse(f"the host resolves to an unreadable address {text!r}") from e
        problem = _address_problem(address)
        if problem is not None:
            raise refuse(f"the host's address {address} is {problem}")
        allowed.append(str(address))
    return checked(allowed)
