"""Open a third party's download URL safely and read its body as checked chunks.

The URL and every redirect hop are checked by :func:`~aistudios_export.urlguard.check_url`
before anything connects to them (redirects are followed by hand), each connection goes to
the address that was checked (:mod:`~aistudios_export.pinning`), a 403 (an expired signed
URL) asks for a fresh URL, and every failure becomes one of the library's download errors
whose message and cause never show the URL's query string (a signed URL's secret).
"""

from __future__ import annotations

import functools
import http.client
import traceback
from collections.abc import Callable, Iterator
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
import urllib3.exceptions
from aws_lambda_powertools import Logger

from aistudios_export.errors import DownloadInterrupted, DownloadRejected, DownloadUrlExpired
from aistudios_export.pinning import pinned_adapter
from aistudios_export.urlguard import UrlPolicy, check_url, redact_url

logger = Logger(service="aistudios-export", child=True)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Statuses that say "try again later" rather than "this file will never come".
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
# Everything a cut, reset or timed-out HTTP exchange can raise through requests/urllib3.
_NETWORK_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def open_download(
    ask_download_url: Callable[[], str],
    session: requests.Session,
    policy: UrlPolicy,
    *,
    timeout: tuple[float, float],
    max_url_refreshes: int,
    max_redirects: int,
) -> requests.Response:
    """Return a ``200`` streaming response for the file, asking for fresh URLs after 403s.

    Parameters
    ----------
    ask_download_url
        Returns a download URL; called once at the start and again after each 403.
    session, policy
        The HTTP session that sends the requests, and the policy every URL and redirect
        hop must pass before anything connects to it.
    timeout, max_url_refreshes, max_redirects
        The ``(connect, read)`` timeout in seconds of each request, the number of fresh URLs
        to ask for after 403s, and the number of redirects to follow.

    Returns
    -------
    requests.Response
        The open ``200`` response, its body not read yet; the caller closes it.

    Raises
    ------
    ForbiddenDownloadUrl
        A URL or redirect hop is one the policy refuses; it was not fetched.
    DownloadUrlExpired
        Every URL answered 403, the last of them after ``max_url_refreshes`` refreshes.
    DownloadInterrupted
        The connection failed or timed out, or the server answered 5xx, 408 or 429.
    DownloadRejected
        Any other 4xx or unexpected status, a malformed URL, too many redirects, or a
        ``200`` whose ``Content-Encoding`` is not ``identity``.
    """
    refreshes = 0
    while True:
        url = ask_download_url()
        response = _get_following_redirects(url, session, policy, timeout, max_redirects)
        status = response.status_code
        if status == 200:
            _refuse_encoded(response)
            return response
        response.close()
        where = redact_url(response.url or url)
        if status == 403:
            if refreshes >= max_url_refreshes:
                raise DownloadUrlExpired(
                    f"download URL {where} still answered 403 after {refreshes} fresh URL(s)"
                )
            refreshes += 1
            logger.info("download URL expired (403); asking for a fresh one", extra={"url": where})
            continue
        if status >= 500 or status in _RETRYABLE_CLIENT_STATUSES:
            raise DownloadInterrupted(f"download server answered {status} for {where}")
        raise DownloadRejected(f"download server answered {status} for {where}")


def announced_length(response: requests.Response, max_size: int) -> int | None:
    """Return the body length the server announced, refusing a malformed or too large one.

    Parameters
    ----------
    response
        An open response.
    max_size
        The largest video accepted, in bytes.

    Returns
    -------
    int or None
        ``Content-Length``, or ``None`` when there is none.

    Raises
    ------
    DownloadRejected
        ``Content-Length`` is not one decimal number, or announces more than ``max_size``.
    """
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    where = redact_url(response.url)
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise DownloadRejected(f"download from {where} has a malformed Content-Length header")
    # Compare digit counts first: int() of thousands of digits is slow, then refused.
    if len(text.lstrip("0")) > len(str(max_size)) or int(text) > max_size:
        raise too_large(where, max_size, "its Content-Length header announces")
    return int(text)


def too_large(where: str, max_size: int, how: str = "it delivers") -> DownloadRejected:
    """Return the error for a download larger than the maximum video size (announced or not)."""
    return DownloadRejected(
        f"download from {where} is refused: {how} more than the maximum video size "
        f"({max_size} bytes)"
    )


def body_chunks(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """Yield the body's non-empty chunks, turning a broken stream into DownloadInterrupted.

    Parameters
    ----------
    response
        An open ``200`` response from :func:`open_download`.
    chunk_size
        The largest chunk to read at once.

    Yields
    ------
    bytes
        The next non-empty chunk of the body.

    Raises
    ------
    DownloadInterrupted
        The stream broke or timed out; the cause is chained only if it does not show the
        URL's query string.
    """
    url = response.url
    raw = response.raw
    # The bytes as served, never decoded (iter_content would decode): what is stored is what
    # was sent, and a small compressed body cannot turn into a huge one.
    if isinstance(raw, urllib3.BaseHTTPResponse):
        chunks: Iterator[bytes] = raw.stream(chunk_size, decode_content=False)
    else:  # a plain file object (a canned response): nothing to decode
        chunks = iter(functools.partial(raw.read, chunk_size), b"")
    try:
        for chunk in chunks:
            if chunk:
                yield chunk
    except _NETWORK_ERRORS as e:
        raise _interrupted(e, url) from _safe_cause(e, url)


def _refuse_encoded(response: requests.Response) -> None:
    """Close and refuse a response whose body is encoded: it is never decoded, so never stored.

    A compressed answer is not the file (its bytes would be stored, not the video's), and
    decoding it would let a small body grow without bound (a decompression bomb).
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return
    response.close()
    raise DownloadRejected(
        f"download from {redact_url(response.url)} is refused: Content-Encoding "
        f"{encoding[:40]!r} (only identity is accepted; nothing is decompressed)"
    )


def _get_following_redirects(
    url: str,
    session: requests.Session,
    policy: UrlPolicy,
    timeout: tuple[float, float],
    max_redirects: int,
) -> requests.Response:
    """GET ``url``, following redirects by hand so each hop is checked before connecting."""
    adapter = pinned_adapter(session)
    for _ in range(max_redirects + 1):
        checked = check_url(url, policy)
        try:
            # Identity encoding: store the file's own bytes and compare Content-Length with them.
            request = session.prepare_request(
                requests.Request("GET", url, headers={"Accept-Encoding": "identity"})
            )
        except requests.RequestException as e:
            raise DownloadRejected(f"download URL {redact_url(url)} is malformed") from e
        if request.url != url:  # requests normalised it: check what is actually sent
            checked = check_url(request.url or "", policy)
        # Connect to the address just checked: resolving the host again could answer another.
        adapter.pin(checked)
        logger.info("downloading", extra={"url": redact_url(url)})
        try:
            response = session.send(
                request,
                stream=True,
                timeout=timeout,
                allow_redirects=False,
                verify=_ca_bundle(session, url),
            )
        except _NETWORK_ERRORS as e:
            raise _interrupted(e, url) from _safe_cause(e, url)
        location = response.headers.get("Location")
        if response.status_code not in _REDIRECT_STATUSES or not location:
            return response
        response.close()
        url = urljoin(url, location)
        logger.info("following redirect", extra={"url": redact_url(url)})
    raise DownloadRejected(f"more than {max_redirects} redirects, last to {redact_url(url)}")


def _ca_bundle(session: requests.Session, url: str) -> str | bool:
    """Return the CA bundle to verify TLS with: requests' own configuration, never "don't verify".

    ``Session.send`` skips what ``Session.request`` reads from the environment, so the usual
    ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``, or ``session.verify`` set to a path) is
    looked up here; verification cannot be switched off this way.
    """
    verify = session.merge_environment_settings(url, {}, False, None, None)["verify"]
    return verify if isinstance(verify, str) and verify else True


def _interrupted(error: BaseException, url: str) -> DownloadInterrupted:
    return DownloadInterrupted(
        f"download from {redact_url(url)} was interrupted ({type(error).__name__})"
    )


def _safe_cause(error: BaseException, url: str) -> BaseException | None:
    """Return ``error`` as the cause to chain, or ``None`` if its text shows the URL's secrets.

    requests' connection errors quote the request URL, query string included; a signed URL's
    query must never reach a traceback that a handler may log.
    """
    secret = urlsplit(url).query
    if secret and secret in "".join(traceback.format_exception(error)):
        return None
    return error
