"""Typed errors of the export workflow.

Every exception's class name is the Step Functions error name that the state machine
retries or catches, so renaming a class is a change to ``statemachine/export.asl.json``.

Transient errors (retried by the state machine with backoff and jitter) derive from
:class:`TransientError`; everything else is final. No message may carry a secret: a
token, an appId/userKey, or a signed URL's query string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

type Problem = tuple[str, str]
"""One thing wrong with a request: ``(field, message)``; the field is ``""`` for the whole."""


class ExportError(Exception):
    """Base class of every error the library raises on purpose."""


class TransientError(ExportError):
    """A failure that may succeed when tried again later."""


class FinalError(ExportError):
    """A failure that trying again cannot fix."""


# --- input and configuration -------------------------------------------------------


class InvalidRequest(FinalError):
    """The export request is malformed; ``problems`` names each bad field and what is wrong.

    Parameters
    ----------
    problems
        ``(field, message)`` pairs, in the order found; ``field`` is ``""`` when a problem is
        about the request as a whole (it is not a JSON object, it has unknown fields).
    message
        The text of the error; by default ``"invalid request: field: message; ..."``.

    Examples
    --------
    >>> error = InvalidRequest([("projectId", "must be a 24-character hexadecimal ObjectId")])
    >>> str(error)
    'invalid request: projectId: must be a 24-character hexadecimal ObjectId'
    >>> error.problems
    [('projectId', 'must be a 24-character hexadecimal ObjectId')]
    """

    def __init__(self, problems: Iterable[Problem], message: str | None = None) -> None:
        self.problems: list[Problem] = list(problems)
        if message is None:
            message = "invalid request: " + "; ".join(
                f"{field}: {text}" if field else text for field, text in self.problems
            )
        super().__init__(message)

    @classmethod
    def whole(cls, message: str) -> InvalidRequest:
        """Return the error of a request that is wrong as a whole, with ``message`` as its text."""
        return cls([("", message)], message)

    def __reduce__(self) -> tuple[type[InvalidRequest], tuple[list[Problem], str]]:
        return type(self), (self.problems, str(self))


class ConfigurationError(FinalError):
    """The deployment is misconfigured (a missing variable, a malformed secret)."""


class ExportCancelled(FinalError):
    """The export was cancelled (``StopExecution``): the stopped execution's error name."""


class StateConflict(FinalError):
    """An export's status does not allow what was asked (cancel a finished one, redrive a success).

    Parameters
    ----------
    export_id
        The export.
    status
        Its execution's status now.
    reason
        Why the status does not allow it, in plain words (no secret: statuses and AWS's reason).
    """

    def __init__(self, export_id: str, status: str, reason: str) -> None:
        super().__init__(reason)
        self.export_id = export_id
        self.status = status
        self.reason = reason


class ManifestInvalid(FinalError):
    """A batch manifest cannot be read as export requests; the message says exactly why."""


class UnexpectedOutcome(FinalError):
    """The export state machine reached a state it has no rule for (a defect, never input)."""


# --- AI Studios API ----------------------------------------------------------------


class ApiError(ExportError):
    """Base of AI Studios API failures, carrying what is safe to show about the call.

    Parameters
    ----------
    message
        What went wrong, without secrets.
    method, path
        The HTTP method and URL path of the call (never a query string).
    status
        The HTTP status code, when an answer arrived.
    code
        The ``error.code`` of a ``success: false`` envelope, when present.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status
        self.code = code


class Unauthorized(ApiError, FinalError):
    """The API refused the token (HTTP 401/403) even after re-reading the token secret.

    ``token_fingerprint`` (see :func:`aistudios_export.client.token_fingerprint`) names the
    refused token without revealing it; it ends the message, so that the refresher the state
    machine runs next learns from the error's cause which token to replace.
    """

    def __init__(self, message: str, *, token_fingerprint: str | None = None, **call: Any) -> None:
        if token_fingerprint is not None:
            message = f"{message} (refused token {token_fingerprint})"
        super().__init__(message, **call)
        self.token_fingerprint = token_fingerprint

    @classmethod
    def refused_fingerprint(cls, cause: object) -> str | None:
        """Return the refused token's fingerprint from a Step Functions cause, if it names one."""
        found = _REFUSED_TOKEN.search(readable_cause(cause) or "")
        return found[1] if found else None


_REFUSED_TOKEN = re.compile(r"\(refused token ([0-9a-f]{16}|none)\)$")


class RequestRejected(ApiError, FinalError):
    """The API answered ``success: false`` or a 4xx for a request it will never accept."""


class ProjectNotFound(RequestRejected):
    """AI Studios does not know the project (or this account cannot see it): nothing to export.

    Raised at submit, so no render starts and nothing is retried: the project id is wrong, or
    the credentials belong to another account or workspace.
    """


class RateLimited(ApiError, TransientError):
    """The API answered 429; ``retry_after`` is its ``Retry-After`` in seconds, when it gave one."""

    retry_after: float | None = None


class ServiceUnavailable(ApiError, TransientError):
    """The API answered 5xx, or an answer that is not the documented JSON envelope."""


class NetworkError(ApiError, TransientError):
    """The call timed out or the connection failed or was reset."""


# --- export outcome ----------------------------------------------------------------


class ExportFailed(FinalError):
    """AI Studios reported that the export failed or was cancelled."""


class ExportTimedOut(FinalError):
    """The export did not finish within its budget, or its progress stalled."""


class DownloadUrlMissing(FinalError):
    """The export reached 100% but no download URL appeared within the allowed re-checks."""


# --- render slots ------------------------------------------------------------------


class NoSlotFree(TransientError):
    """Every slot of the account-wide render limit is held by a live lease; wait and try again.

    Parameters
    ----------
    held
        How many slots live leases hold (as last read).
    limit
        How many renders may be in flight at once.
    message
        The text of the error; by default ``"no render slot free: H of L held"``.

    Examples
    --------
    >>> str(NoSlotFree(10, 10))
    'no render slot free: 10 of 10 held'
    """

    def __init__(self, held: int, limit: int, message: str | None = None) -> None:
        self.held = held
        self.limit = limit
        super().__init__(message or f"no render slot free: {held} of {limit} held")

    def __reduce__(self) -> tuple[type[NoSlotFree], tuple[int, int, str]]:
        return type(self), (self.held, self.limit, str(self))


class SlotLost(FinalError):
    """A holder renewed a slot it no longer holds: its lease expired and another export took it.

    The render it covered may still be running, so the caller decides whether to carry on (over
    the limit for a while) or to stop; trying the renewal again cannot bring the slot back.
    """


# --- download and storage ----------------------------------------------------------


class ForbiddenDownloadUrl(FinalError):
    """The download URL (or a redirect) points somewhere the exporter must not fetch."""


class DownloadRejected(FinalError):
    """The download server refused the file with a status other than 403 or 5xx (404, 410, ...)."""


class DownloadInterrupted(TransientError):
    """The download was cut, timed out, or delivered a byte count other than announced."""


class DownloadUrlExpired(FinalError):
    """The download URL kept answering 403 even after fresh URLs were requested."""


class StorageError(TransientError):
    """S3 refused an upload step; the multipart upload has been aborted."""


# --- batches -----------------------------------------------------------------------


class BatchFailed(FinalError):
    """The batch's Map of exports stopped before every row ran (its cause says why)."""


class ExportsFailed(FinalError):
    """More of a batch's exports failed than its tolerated failure percentage allows."""


class NotStarted(FinalError):
    """A batch row whose export never started, because the batch ended first."""


class ExportNotSucceeded(FinalError):
    """A batch row that an earlier upload of the same manifest ran, and whose export failed."""


class ResultMissing(FinalError):
    """A batch row that the Map's result files do not list (the Map stopped without them)."""


class ResultsUnreadable(FinalError):
    """A Distributed Map's result files are not what Step Functions writes."""


def readable_cause(cause: object) -> str | None:
    """Return a Lambda error's message from a Step Functions cause, else the cause as given.

    A Lambda task's cause is ``{"errorMessage", "errorType", "stackTrace", ...}``; the stack
    trace names the deployment's files and lines, so callers get the message only.
    """
    if not isinstance(cause, str) or not cause:
        return None
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[:1000]
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        return str(parsed["errorMessage"])[:1000]
    return cause[:1000]


TRANSIENT_ERROR_NAMES: tuple[str, ...] = tuple(
    sorted(
        cls.__name__
        for cls in (
            RateLimited,
            ServiceUnavailable,
            NetworkError,
            DownloadInterrupted,
            StorageError,
            NoSlotFree,
        )
    )
)
"""The error names the state machine retries; a test keeps the ASL in step with this."""
