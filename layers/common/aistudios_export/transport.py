"""HTTP over urllib3, which botocore already loads: pools, timeouts, trusted CAs, failures in words.

Every call the library makes over HTTP (AI Studios' API, downloads, relayed webhooks) goes
through urllib3 directly. requests would add its own imports (character detection, cookies,
IDNA) to every cold start, 20-30 ms, for nothing these calls use: they send JSON or read
bytes, follow no redirect on their own, keep no cookies and retry nothing behind the caller's
back.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
import urllib3
import urllib3.exceptions

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Variables naming the CA bundle that TLS is verified with, the first set one winning."""

NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)
"""Everything a refused, cut, reset or timed-out HTTP exchange can raise through urllib3."""


def ca_bundle(env: Mapping[str, str] | None = None) -> str:
    """Return the CA bundle that TLS is verified with; verification is never switched off.

    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` when set (the variables HTTP tools read for a
    private CA; a file, or a directory of hashed certificates), else certifi's bundle, as the
    AWS SDK uses.

    Examples
    --------
    >>> ca_bundle({"REQUESTS_CA_BUNDLE": "/etc/ca.pem"})
    '/etc/ca.pem'
    >>> ca_bundle({}) == certifi.where()
    True
    """
    env = os.environ if env is None else env
    for name in CA_BUNDLE_VARIABLES:
        if env.get(name):
            return env[name]
    return certifi.where()


PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
"""The proxy variables, read in either case (the lower-case one wins), as curl and requests do."""


def proxy_for(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """Return the proxy that the environment names for ``url``, or ``None``.

    ``HTTPS_PROXY`` for an https URL, ``HTTP_PROXY`` for http, else ``ALL_PROXY``; none when
    ``NO_PROXY`` names the URL's host (a name, a domain suffix, an address, or ``*``).

    Examples
    --------
    >>> proxy_for("https://app.aistudios.com", {"HTTPS_PROXY": "http://proxy:3128"})
    'http://proxy:3128'
    >>> proxy_for("https://app.aistudios.com", {"HTTPS_PROXY": "http://proxy:3128",
    ...                                         "NO_PROXY": ".aistudios.com"}) is None
    True
    """
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for name, value in env.items():
        key = name.lower()
        if key in PROXY_VARIABLES and value and (key not in found or name == key):
            found[key] = value
    parts = urlsplit(url)
    proxy = found.get(f"{parts.scheme}_proxy") or found.get("all_proxy")
    if not proxy:
        return None
    if exempt_from_proxy(parts.hostname or "", found.get("no_proxy", "")):
        return None
    return proxy


def exempt_from_proxy(host: str, no_proxy: str) -> bool:
    """Tell whether ``NO_PROXY``'s value exempts ``host``.

    Its comma-separated entries are ``*``, host names (which exempt their subdomains too; a
    leading ``.`` changes nothing), addresses and networks (``10.0.0.0/8``); a ``:port`` is
    ignored.

    Examples
    --------
    >>> exempt_from_proxy("api.aistudios.com", "localhost, aistudios.com")
    True
    >>> exempt_from_proxy("127.0.0.1", "10.0.0.0/8,127.0.0.0/8")
    True
    >>> exempt_from_proxy("notaistudios.com", ".aistudios.com")
    False
    """
    import ipaddress  # only with a proxy configured

    host = host.lower().strip("[]").rstrip(".")
    for raw in no_proxy.lower().split(","):
        entry = raw.strip().strip(".")
        if entry.startswith("[") and "]" in entry:  # [::1]:8080
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:  # name:port
            entry = entry.split(":")[0]
        if entry == "*":
            return True
        if not entry:
            continue
        if host == entry or host.endswith("." + entry):
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:  # a name on either side
            continue
    return False


def pool_manager(
    *, num_pools: int = 10, maxsize: int = 10, proxy: str | None = None
) -> urllib3.PoolManager:
    """Return a pool manager that verifies TLS, retries nothing and follows no redirect.

    Parameters
    ----------
    num_pools, maxsize
        Hosts whose connections are kept, and connections kept per host (requests' defaults:
        threads that share a client, as on the local stack, each keep theirs).
    proxy
        A proxy to send every request through (https ones in a CONNECT tunnel); its URL's
        user and password, if any, go in ``Proxy-Authorization``.
    """
    bundle = ca_bundle()
    options: dict[str, Any] = {
        "num_pools": num_pools,
        "maxsize": maxsize,
        "cert_reqs": "CERT_REQUIRED",
        # A directory of hashed certificates (c_rehash), as curl and requests also take it.
        ("ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"): bundle,
        "retries": False,
    }
    if not proxy:
        return urllib3.PoolManager(**options)
    parsed = urllib3.util.parse_url(proxy if "://" in proxy else f"http://{proxy}")
    headers = None
    if parsed.auth:
        user, _, password = parsed.auth.partition(":")
        credentials = f"{unquote(user)}:{unquote(password)}"
        headers = urllib3.make_headers(proxy_basic_auth=credentials)
    address = parsed._replace(auth=None, path=None, query=None, fragment=None).url
    return urllib3.ProxyManager(address, proxy_headers=headers, **options)


def timeout(connect_read: tuple[float, float]) -> urllib3.Timeout:
    """Return urllib3's timeout for ``(connect, read)`` seconds."""
    connect, read = connect_read
    return urllib3.Timeout(connect=connect, read=read)


def network_failure(error: BaseException) -> str:
    """Say in words what failed on the way: the reason, not the exception's text (it has URLs).

    Examples
    --------
    >>> network_failure(ConnectionRefusedError(111, "Connection refused"))
    'the connection was refused (nothing listens on that port)'
    >>> network_failure(urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"))
    'the answer timed out'
    """
    text = repr(error)
    if isinstance(error, urllib3.exceptions.NameResolutionError) or "gaierror" in text:
        return "the host name does not resolve"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "the connection was refused (nothing listens on that port)"
    # NewConnectionError derives from ConnectTimeoutError: only a timeout says "timed out".
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError) and "timed out" in text:
        return "the connection timed out"
    if isinstance(error, urllib3.exceptions.ReadTimeoutError | TimeoutError):
        return "the answer timed out"
    if isinstance(error, urllib3.exceptions.SSLError):
        return "the TLS handshake failed"
    if "IncompleteRead" in text:
        return "the answer was cut off before its end"
    if "reset" in text.lower() or "RemoteDisconnected" in text or "aborted" in text.lower():
        return "the connection was reset before an answer arrived"
    return "the connection failed"
