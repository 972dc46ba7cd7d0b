"""Open a third party's download URL safely and read its body as checked chunks.

The URL and every redirect hop are checked by :func:`~aistudios_export.urlguard.check_url`
before anything connects to them (redirects are followed by hand), each connection goes to
the address that was checked (:mod:`~aistudios_export.pinning`), a 403 (an expired signed
URL) asks for a fresh URL, and every failure becomes one of the library's download errors
whose message and cause never show the URL's query string (a signed URL's secret).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import urllib3
from aws_lambda_powertools import Logger

from aistudios_export.errors import DownloadInterrupted, DownloadRejected, DownloadUrlExpired
from aistudios_export.pinning import PinnedPools
from aistudios_export.transport import NETWORK_ERRORS
from aistudios_export.urlguard import UrlPolicy, check_url, redact_url

logger = Logger(service="aistudios-export", child=True)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Statuses that say "try again later" rather than "this file will never come".
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class OpenDownload:
    """A ``200`` answer for a download URL, its body not read yet; close it when done.

    ``url`` is the URL that answered (after redirects): possibly signed, never log it whole.
    """

    url: str
    response: urllib3.BaseHTTPResponse

    def header(self, name: str) -> str | None:
        """Return a response header (any case), or ``None``."""
        value: str | None = self.response.headers.get(name)
        return value

    def close(self) -> None:
        """Drop the connection (a body that was not read to its end cannot be reused)."""
        self.response.close()

    def __enter__(self) -> OpenDownload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_download(
    ask_download_url: Callable[[], str],
    pools: PinnedPools,
    policy: UrlPolicy,
    *,
    timeout: tuple[float, float],
    max_url_refreshes: int,
    max_redirects: int,
) -> OpenDownload:
    """Return a ``200`` streaming response for the file, asking for fresh URLs after 403s.

    Parameters
    ----------
    ask_download_url
        Returns a download URL; called once at the start and again after each 403.
    pools, policy
        The connections that send the requests, and the policy every URL and redirect
        hop must pass before anything connects to it.
    timeout, max_url_refreshes, max_redirects
        The ``(connect, read)`` timeout in seconds of each request, the number of fresh URLs
        to ask for after 403s, and the number of redirects to follow.

    Returns
    -------
    OpenDownload
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
        download = _get_following_redirects(url, pools, policy, timeout, max_redirects)
        status = download.response.status
        if status == 200:
            _refuse_encoded(download)
            return download
        download.close()
        where = redact_url(download.url)
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


def announced_length(download: OpenDownload, max_size: int) -> int | None:
    """Return the body length the server announced, refusing a malformed or too large one.

    Parameters
    ----------
    download
        An open download.
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
    value = download.header("Content-Length")
    if value is None:
        return None
    where = redact_url(download.url)
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


def body_chunks(download: OpenDownload, chunk_size: int) -> Iterator[bytes]:
    """Yield the body's non-empty chunks, turning a broken stream into DownloadInterrupted.

    Parameters
    ----------
    download
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
    url = download.url
    # The bytes as served, never decoded: what is stored is what was sent, and a small
    # compressed body cannot turn into a huge one.
    try:
        for chunk in download.response.stream(chunk_size, decode_content=False):
            if chunk:
                yield chunk
    except NETWORK_ERRORS as e:
        raise _interrupted(e, url) from _safe_cause(e, url)


def _refuse_encoded(download: OpenDownload) -> None:
    """Close and refuse a response whose body is encoded: it is never decoded, so never stored.

    A compressed answer is not the file (its bytes would be stored, not the video's), and
    decoding it would let a small body grow without bound (a decompression bomb).
    """
    encoding = (download.header("Content-Encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return
    download.close()
    raise DownloadRejected(
        f"download from {redact_url(download.url)} is refused: Content-Encoding "
        f"{encoding[:40]!r} (only identity is accepted; nothing is decompressed)"
    )


def _get_following_redirects(
    url: str,
    pools: PinnedPools,
    policy: UrlPolicy,
    timeout: tuple[float, float],
    max_redirects: int,
) -> OpenDownload:
    """GET ``url``, following redirects by hand so each hop is checked before connecting."""
    for _ in range(max_redirects + 1):
        checked = check_url(url, policy)
        logger.info("downloading", extra={"url": redact_url(url)})
        try:
            # Connect to the address just checked: resolving the host again could answer
            # another. Identity encoding: store the file's own bytes and compare
            # Content-Length with them.
            response = pools.request(
                checked,
                "GET",
                headers={"Accept-Encoding": "identity"},
                timeout=timeout,
                preload_content=False,
            )
        except NETWORK_ERRORS as e:
            raise _interrupted(e, url) from _safe_cause(e, url)
        download = OpenDownload(url, response)
        location = download.header("Location")
        if response.status not in _REDIRECT_STATUSES or not location:
            return download
        download.close()
        url = urljoin(url, _as_sent(location))
        logger.info("following redirect", extra={"url": redact_url(url)})
    raise DownloadRejected(f"more than {max_redirects} redirects, last to {redact_url(url)}")


def _as_sent(location: str) -> str:
    r"""Return a ``Location`` as its sender wrote it (UTF-8; http.client read it as Latin-1).

    Examples
    --------
    >>> _as_sent("/vid\u00c3\u00a9o.mp4"), _as_sent("/v%C3%A9.mp4"), _as_sent("/caf\u00e9")
    ('/vidéo.mp4', '/v%C3%A9.mp4', '/café')
    """
    try:
        return location.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not UTF-8 after all: keep what was read
        return location


def _interrupted(error: BaseException, url: str) -> DownloadInterrupted:
    return DownloadInterrupted(
        f"download from {redact_url(url)} was interrupted ({type(error).__name__})"
    )


def _safe_cause(error: BaseException, url: str) -> BaseException | None:
    """Return ``error`` as the cause to chain, or ``None`` if its text shows the URL's secrets.

    urllib3's errors may quote the request target, query string included; a signed URL's
    query must never reach a traceback that a handler may log.
    """
    secret = urlsplit(url).query
    if secret and secret in "".join(traceback.format_exception(error)):
        return None
    return error
