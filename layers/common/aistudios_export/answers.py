"""Reading AI Studios' answers: the envelope, the status, ``Retry-After``, what failed on the way.

One function maps an answer to the library's errors (:func:`read_answer`), as hvac's
``_raise_for_error`` does, so the client only asks and this module only reads.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Any

import urllib3

from aistudios_export.errors import (
    ApiError,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
    Unauthorized,
)


def read_answer(method: str, path: str, response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    """Return an answer's ``data`` object, or raise the error its status or envelope says.

    401/403 are :class:`Unauthorized`, 429 :class:`RateLimited` (with its ``Retry-After`` read
    as seconds), 5xx, any other status outside 2xx (a redirect is not followed) and answers
    that are not the JSON envelope :class:`ServiceUnavailable`, other 4xx and
    ``success: false`` :class:`RequestRejected`.
    """
    status = response.status
    try:
        envelope = json.loads(response.data)
    except ValueError:
        envelope = None
    error = envelope.get("error") if isinstance(envelope, dict) else None
    code = str(error.get("code")) if isinstance(error, dict) and "code" in error else None
    msg = str(error.get("msg", ""))[:300] if isinstance(error, dict) else ""
    where = f"{method} {path} answered HTTP {status}"
    detail = f"{where}" + (f" (code {code}: {msg})" if code or msg else "")
    kwargs: dict[str, Any] = {"method": method, "path": path, "status": status, "code": code}

    exc: type[ApiError] | None = None
    if status in (401, 403):
        exc = Unauthorized
    elif status == 429:
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            detail += f", Retry-After {retry_after[:20]}"
        throttled = RateLimited(detail, **kwargs)
        throttled.retry_after = seconds_to_wait(retry_after, time.time())
        raise throttled
    elif status >= 500:
        exc = ServiceUnavailable
    elif status >= 400:
        exc = RequestRejected if envelope is not None else ServiceUnavailable
    elif not 200 <= status < 300:  # whatever the body says
        raise ServiceUnavailable(
            f"{where}, which is not an answer (no redirect is followed)", **kwargs
        )
    if exc is not None:
        raise exc(detail, **kwargs)

    if not isinstance(envelope, dict) or "success" not in envelope:
        raise ServiceUnavailable(f"{where} with a body that is not the JSON envelope", **kwargs)
    if envelope.get("success") is not True:
        raise RequestRejected(detail.replace(f"HTTP {status}", "success: false"), **kwargs)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise ServiceUnavailable(f"{where} without a data object", **kwargs)
    return data


NOT_FOUND = re.compile(
    r"not[\s_-]*(?:found|exists?)|no[\s_-]+such|unknown[\s_-]+project|does[\s_-]*n[o']?t[\s_-]+exist",
    re.IGNORECASE,
)
"""Words of an error code or message that say the thing asked about does not exist."""


def says_not_found(rejected: RequestRejected) -> bool:
    """Tell whether a refusal says that what the call named does not exist.

    The answer AI Studios gives for an unknown project is undocumented, so both ways are read:
    an HTTP 404 with a JSON body, and a ``success: false`` whose code or message says so.

    Examples
    --------
    >>> says_not_found(RequestRejected("x", status=404))
    True
    >>> says_not_found(RequestRejected("success: false (code PROJECT_NOT_FOUND: )", status=200))
    True
    >>> says_not_found(RequestRejected("success: false (code 1001: credit exhausted)", status=200))
    False
    """
    return rejected.status == 404 or NOT_FOUND.search(str(rejected)) is not None


MAX_RETRY_AFTER_SECONDS = 3600.0
"""A ``Retry-After`` beyond this is a lie or a mistake: it is read as this."""


def seconds_to_wait(retry_after: str | None, now: float) -> float | None:
    """Read ``Retry-After`` (delay seconds or an HTTP date) as seconds; None when unreadable.

    Examples
    --------
    >>> seconds_to_wait("7", 0.0)
    7.0
    >>> seconds_to_wait("-3", 0.0) is None
    True
    >>> seconds_to_wait("Thu, 01 Jan 1970 00:00:10 GMT", 4.0)
    6.0
    """
    text = (retry_after or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return min(float(text[:8]), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER_SECONDS)
