"""Keep secrets out of the logs of the libraries the functions use, at any log level.

- botocore logs every request's parameters and every answer's body at DEBUG: a
  ``GetSecretValue`` answer is the API token, a ``PutSecretValue`` request the new one, the
  credentials secret the appId/userKey. With ``AWS_LAMBDA_LOG_LEVEL=DEBUG`` the runtime sets the
  root logger to DEBUG, and botocore would log them. :func:`install_log_hygiene` holds the AWS
  SDK's and urllib3's loggers at INFO or above, where they log no bodies.
- urllib3 logs every request's URL, query string included (at DEBUG, and its retries at
  WARNING), and a signed download URL's query is its secret. :func:`install_url_redaction` puts a
  filter on those loggers that cuts query strings out of their records.

Installing them is an explicit step, taken once per container by every handler (and by the
embedded local stack before it creates anything), rather than a side effect of importing a
module.

It is also the seam of the functions' metrics (CloudWatch embedded metric format, through
Powertools): library code calls :func:`record` with one of :class:`Metric`'s names, and a
handler decorated with :func:`collect_metrics` flushes what its invocation recorded when it
ends. Outside such an invocation (a script, a test of the library) :func:`record` does nothing,
so the library needs neither a Lambda context nor a namespace.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from aistudios_export import settings

QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
"""Loggers whose DEBUG records carry request or answer bodies: never below INFO."""
URLLIB3_LOGGERS = (
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "urllib3.http2.connection",
    "urllib3.contrib.pyopenssl",
)
"""urllib3's module loggers, any of which may report a request URL (a filter on a logger does
not apply to its children's records, so each is named)."""

_QUERY = re.compile(r"\?[^\s'\"]*")


def strip_query_strings(record: logging.LogRecord) -> bool:
    """Cut query strings out of a log record's arguments; keep the record.

    Parameters
    ----------
    record
        A record whose ``args`` may hold URLs or request targets (``/video?X-Amz-...``).

    Returns
    -------
    bool
        Always ``True``: the record is logged, without its query strings.

    Examples
    --------
    >>> record = logging.LogRecord("urllib3", 10, "", 0, '"GET %s"', ("/v.mp4?sig=1",), None)
    >>> strip_query_strings(record), record.getMessage()
    (True, '"GET /v.mp4"')
    """
    if isinstance(record.args, tuple):
        record.args = tuple(_QUERY.sub("", a) if isinstance(a, str) else a for a in record.args)
    return True


def install_url_redaction() -> None:
    """Filter query strings out of urllib3's log records, from now on, in this process.

    Call it once per container before the first download; calling it again changes nothing
    (a logger holds a filter once).
    """
    for name in URLLIB3_LOGGERS:
        logging.getLogger(name).addFilter(strip_query_strings)


def install_log_hygiene() -> None:
    """Keep the AWS SDK's and urllib3's loggers at INFO or above, and their URLs without queries.

    A level set higher (WARNING, say) is kept; only levels that would let DEBUG records through
    (including "not set", which inherits the root's) are raised. Idempotent.
    """
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
    install_url_redaction()


class Metric(StrEnum):
    """The functions' metrics: the only names :func:`record` takes, and the dashboard shows."""

    EXPORTS_STARTED = "ExportsStarted"
    """AI Studios accepted an export (SubmitExport)."""
    EXPORTS_SUCCEEDED = "ExportsSucceeded"
    """An export's video is stored and verified (FinalizeExport)."""
    EXPORTS_FAILED = "ExportsFailed"
    """An export execution failed or timed out, by error name (RenderSlot, from its end event)."""
    EXPORT_DURATION = "ExportDuration"
    """Seconds from the submission to the stored video (FinalizeExport)."""
    TIME_TO_DOWNLOAD_URL = "TimeToDownloadUrl"
    """Seconds from the submission to the first check that saw the download URL (CheckProgress)."""
    BYTES_COPIED = "BytesCopied"
    """Bytes of a video copied into S3 (FinalizeExport; none when an earlier attempt's copy is
    reused)."""
    COPY_THROUGHPUT = "CopyThroughput"
    """Bytes per second of that copy, download and upload together (FinalizeExport)."""
    TOKEN_REFRESHES = "TokenRefreshes"  # noqa: S105 - a metric name
    """API tokens minted, after a refusal or by the secret's rotation (RefreshToken)."""
    AI_STUDIOS_ERRORS = "AiStudiosErrors"
    """Calls to AI Studios that ended in an error, by kind (the error's name)."""


METRIC_NAMES: tuple[str, ...] = tuple(m.value for m in Metric)
"""Every metric name the code emits, in the namespace of
:func:`~aistudios_export.settings.metrics_namespace`."""
UNITS: dict[Metric, MetricUnit] = {
    Metric.EXPORTS_STARTED: MetricUnit.Count,
    Metric.EXPORTS_SUCCEEDED: MetricUnit.Count,
    Metric.EXPORTS_FAILED: MetricUnit.Count,
    Metric.EXPORT_DURATION: MetricUnit.Seconds,
    Metric.TIME_TO_DOWNLOAD_URL: MetricUnit.Seconds,
    Metric.BYTES_COPIED: MetricUnit.Bytes,
    Metric.COPY_THROUGHPUT: MetricUnit.BytesPerSecond,
    Metric.TOKEN_REFRESHES: MetricUnit.Count,
    Metric.AI_STUDIOS_ERRORS: MetricUnit.Count,
}
DIMENSIONS: dict[Metric, str] = {
    Metric.EXPORTS_FAILED: "ErrorName",
    Metric.AI_STUDIOS_ERRORS: "Kind",
}
"""The metrics recorded with a dimension of their own (besides Powertools' ``service``), and
its name. Each such value is flushed on its own, as dimensions hold for a whole EMF record."""

Handler = Callable[[Any, Any], Any]

_invocation: ContextVar[EphemeralMetrics | None] = ContextVar("metrics", default=None)
"""The metrics of the invocation running in this thread (the local stack runs several at once,
one per thread; Lambda one per process)."""


def _new_metrics() -> EphemeralMetrics:
    # Ephemeral: each invocation's own set, never one shared by concurrent invocations.
    return EphemeralMetrics(namespace=settings.metrics_namespace())


def record(metric: Metric, value: float, *, dimension: str | None = None) -> None:
    """Record a value of a metric in the running invocation's metrics.

    Parameters
    ----------
    metric
        What is measured; its unit is :data:`UNITS`' and its dimension's name :data:`DIMENSIONS`'.
    value
        The value (1 for a count).
    dimension
        The value of the metric's own dimension (an error's name): required exactly for the
        metrics in :data:`DIMENSIONS`.

    Raises
    ------
    ValueError
        For a dimension given to a metric without one, or missing for one with one (in or
        outside an invocation).

    Notes
    -----
    Nothing is recorded outside a handler decorated with :func:`collect_metrics`.

    Examples
    --------
    >>> record(Metric.EXPORTS_STARTED, 1)  # no invocation here: nothing happens
    """
    name = DIMENSIONS.get(metric)
    if (name is None) != (dimension is None):
        raise ValueError(f"{metric} takes {'the dimension ' + name if name else 'no dimension'}")
    metrics = _invocation.get()
    if metrics is None:
        return
    if name is None:
        metrics.add_metric(name=metric.value, unit=UNITS[metric], value=value)
        return
    single = _new_metrics()
    single.add_dimension(name=name, value=str(dimension)[:250])
    single.add_metric(name=metric.value, unit=UNITS[metric], value=value)
    single.flush_metrics()


def collect_metrics(handler: Handler) -> Handler:
    """Decorate a Lambda handler: collect what its invocations record, flush it when they end.

    As Powertools' ``log_metrics`` does, the invocation's metrics are flushed when it ends (one
    EMF record on stdout), after a failure too; unlike it, an invocation that recorded nothing
    writes nothing and warns of nothing (most checks of a running export measure nothing).

    Parameters
    ----------
    handler
        The Lambda handler.

    Returns
    -------
    Callable
        The handler, with its invocations' metrics collected.
    """

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Any:
        metrics = _new_metrics()
        token = _invocation.set(metrics)
        try:
            return handler(event, context)
        finally:
            _invocation.reset(token)
            if metrics.metric_set:
                metrics.flush_metrics()

    return invoke
