"""Connect to the address the URL guard checked, never to a fresh DNS answer.

:func:`~aistudios_export.urlguard.check_url` resolves a download host and checks every
address; if the HTTP client then resolved the host again to connect, a DNS server that answers
a public address first and an internal one second (DNS rebinding) would get the request sent
inside. :class:`PinnedAdapter` is the requests transport that closes that gap: each URL is
sent only after it was pinned to its :class:`~aistudios_export.urlguard.CheckedUrl`, the
connection goes to the first checked address, and the host name is kept where it belongs (the
``Host`` header, TLS SNI and the certificate's host name check).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest

from aistudios_export.errors import ForbiddenDownloadUrl
from aistudios_export.urlguard import CheckedUrl, redact_url

if TYPE_CHECKING:
    # The stubs' names for the pool key's parts (they exist only in types-requests).
    from requests.adapters import _HostParams, _PoolKwargs


class PinnedAdapter(HTTPAdapter):
    """A requests transport that sends a URL only to the address checked for it.

    Call :meth:`pin` with the answer of :func:`~aistudios_export.urlguard.check_url` before
    sending the URL (every redirect hop is a new URL to check and pin). A URL that was not
    pinned is refused without connecting. Proxies are ignored: a proxy would resolve the host
    itself.

    Examples
    --------
    >>> adapter = PinnedAdapter()
    >>> session = requests.Session()
    >>> session.mount("https://", adapter)
    >>> adapter.pin(check_url(url, policy))  # doctest: +SKIP
    >>> session.get(url)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__()
        self._pins: dict[str, CheckedUrl] = {}

    def pin(self, checked: CheckedUrl) -> None:
        """Let ``checked.url`` be sent, to the first of its checked addresses.

        Parameters
        ----------
        checked
            What :func:`~aistudios_export.urlguard.check_url` returned for the URL.
        """
        self._pins[checked.url] = checked

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` to its pinned address, with the host name as its ``Host``.

        Raises
        ------
        ForbiddenDownloadUrl
            The URL was not pinned (not checked); nothing connected.
        """
        checked = self._checked(request)
        # The connection is opened to an address, so name the host the URL names.
        request.headers["Host"] = urlsplit(checked.url).netloc
        return super().send(request, stream, timeout, verify, cert, proxies=None)

    def build_connection_pool_key_attributes(
        self,
        request: PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[_HostParams, _PoolKwargs]:
        """Key the pool on the pinned address, with the host name for SNI and the certificate."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        checked = self._checked(request)
        host_params["host"] = checked.addresses[0]
        if checked.scheme == "https":
            tls = cast("dict[str, Any]", pool_kwargs)  # urllib3 takes keys the stubs omit
            tls["server_hostname"] = checked.host
            tls["assert_hostname"] = checked.host
        return host_params, pool_kwargs

    def _checked(self, request: PreparedRequest) -> CheckedUrl:
        checked = self._pins.get(request.url or "")
        if checked is None:
            raise ForbiddenDownloadUrl(
                f"refused download URL {redact_url(request.url or '')}: it was not checked"
            )
        return checked


def pinned_adapter(session: requests.Session) -> PinnedAdapter:
    """Return the session's :class:`PinnedAdapter`, mounting one for http and https if needed.

    Parameters
    ----------
    session
        The session that sends the downloads; its http(s) transports (any prefix) are
        replaced by the pinned one, once.

    Returns
    -------
    PinnedAdapter
        The transport to :meth:`~PinnedAdapter.pin` each URL on before sending it.
    """
    web = [prefix for prefix in session.adapters if prefix.lower().startswith("http")]
    current = session.adapters.get("https://")
    if isinstance(current, PinnedAdapter) and all(session.adapters[p] is current for p in web):
        return current
    # Every other http(s) transport goes, a more specific mount included: none may resolve.
    for prefix in web:
        session.adapters.pop(prefix).close()
    adapter = PinnedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return adapter
