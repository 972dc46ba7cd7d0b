"""Connect to the address the URL guard checked, never to a fresh DNS answer.

:func:`~aistudios_export.urlguard.check_url` resolves a download host and checks every
address; if the HTTP client then resolved the host again to connect, a DNS server that answers
a public address first and an internal one second (DNS rebinding) would get the request sent
inside. :class:`PinnedPools` closes that gap: it sends only a
:class:`~aistudios_export.urlguard.CheckedUrl`, over a connection to its first checked address,
and keeps the host name where it belongs (the ``Host`` header, TLS SNI and the certificate's
host name check).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import urllib3

from aistudios_export import transport
from aistudios_export.urlguard import CheckedUrl


class PinnedPools:
    """Connection pools keyed on checked addresses, for URLs the guard allowed.

    Nothing follows redirects or retries here: each redirect hop is a new URL for the caller
    to check. Proxies are never used (a proxy would resolve the host itself).

    Parameters
    ----------
    http
        The pool manager to keep the connections in; a new one by default
        (:func:`~aistudios_export.transport.pool_manager`).

    Examples
    --------
    >>> pools = PinnedPools()
    >>> response = pools.request(check_url(url, policy), "GET", timeout=(5, 60))  # doctest: +SKIP
    """

    def __init__(self, http: urllib3.PoolManager | None = None) -> None:
        self._http = http or transport.pool_manager()

    def request(
        self,
        checked: CheckedUrl,
        method: str,
        *,
        timeout: tuple[float, float],
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        preload_content: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request for ``checked.url`` to the first of its checked addresses.

        Parameters
        ----------
        checked
            What :func:`~aistudios_export.urlguard.check_url` returned for the URL.
        method, headers, body
            The request; the ``Host`` header is the URL's.
        timeout
            ``(connect, read)`` seconds.
        preload_content
            Read the whole body before returning; ``False`` leaves it to be streamed (as
            served: a body is never decoded here), and the caller closes the response.

        Returns
        -------
        urllib3.BaseHTTPResponse
            The answer, whatever its status (a redirect included).
        """
        parts = urlsplit(checked.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        tls = (
            {"server_hostname": checked.host, "assert_hostname": checked.host}
            if checked.scheme == "https"
            else None
        )
        pool = self._http.connection_from_host(
            checked.addresses[0], checked.port, checked.scheme, pool_kwargs=tls
        )
        # The connection is opened to an address, so name the host the URL names.
        return pool.urlopen(
            method,
            target,
            body=body,
            headers={**(headers or {}), "Host": parts.netloc},
            timeout=transport.timeout(timeout),
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=preload_content,
            decode_content=False,
        )

    def clear(self) -> None:
        """Close every kept connection."""
        self._http.clear()
