"""Reading AWS errors: one place that knows an error's code and whether trying again may help.

Every caller that catches a botocore error asks :func:`error_code` what it was and
:func:`is_transient` whether it is worth a retry (throttling, a 5xx, a dropped connection), then
raises the library's own error for it (:func:`translate`), so that the state machine retries
what is transient and catches what is final.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from aistudios_export.errors import ConfigurationError, ExportError, StorageError

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ExecutionLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServiceError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
"""Error codes that say "busy or briefly broken", whatever the HTTP status they came with."""

_TRANSIENT_BOTOCORE = (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


def error_code(error: BaseException) -> str:
    """Return a botocore ``ClientError``'s code (``"NoSuchKey"``), or ``""`` for anything else.

    Examples
    --------
    >>> error_code(ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"))
    'NoSuchKey'
    >>> error_code(ValueError("not an AWS error"))
    ''
    """
    if not isinstance(error, ClientError):
        return ""
    return str(error.response.get("Error", {}).get("Code", "") or "")


def http_status(error: BaseException) -> int:
    """Return the HTTP status of a ``ClientError``'s answer, or 0 when there is none."""
    if not isinstance(error, ClientError):
        return 0
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(error: BaseException) -> bool:
    """Tell whether an AWS call that raised ``error`` may succeed when tried again later.

    Transient: throttling (any code naming it, or HTTP 429), the service's own failures
    (HTTP 5xx and the codes in :data:`TRANSIENT_CODES`), and a connection that failed,
    was cut or timed out. Everything else (access denied, a missing resource, a bad
    parameter) is the deployment's or the caller's to fix.

    Examples
    --------
    >>> is_transient(ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"))
    True
    >>> is_transient(ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject"))
    False
    """
    if isinstance(error, ClientError):
        code = error_code(error)
        status = http_status(error)
        return code in TRANSIENT_CODES or "Throttl" in code or status == 429 or status >= 500
    return isinstance(error, _TRANSIENT_BOTOCORE)


def translate(error: BotoCoreError | ClientError, what: str) -> ExportError:
    """Return the library's error for a failed AWS call: :class:`StorageError` when transient.

    Parameters
    ----------
    error
        What botocore raised.
    what
        The step that failed, the start of the message (``"could not read manifests/a.csv"``);
        the error code follows it.

    Returns
    -------
    ExportError
        :class:`StorageError` (retried by the state machine) or :class:`ConfigurationError`
        (final: a permission, a missing resource), naming the step and the error code.
    """
    code = error_code(error) or type(error).__name__
    if is_transient(error):
        return StorageError(f"{what}: {code}")
    return ConfigurationError(f"{what}: {code}")
