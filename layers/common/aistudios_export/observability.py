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
"""

from __future__ import annotations

import logging
import re

QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
"""Loggers whose DEBUG records carry request or answer bodies: never below INFO."""
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry")
"""The loggers through which urllib3 reports request URLs."""

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
