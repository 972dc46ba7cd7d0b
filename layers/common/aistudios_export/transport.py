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
    private CA), else certifi's bundle, as the AWS SDK uses.

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


def pool_manager(*, num_pools: int = 10, maxsize: int = 10) -> urllib3.PoolManager:
    """Return a pool manager that verifies TLS, retries nothing and follows no redirect.

    Parameters
    ----------
    num_pools, maxsize
        Hosts whose connections are kept, and connections kept per host (requests' defaults:
        threads that share a client, as on the local stack, each keep theirs).
    """
    return urllib3.PoolManager(
        num_pools=num_pools,
        maxsize=maxsize,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_bundle(),
        retries=False,
    )


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
