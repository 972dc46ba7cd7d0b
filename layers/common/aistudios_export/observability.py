"""Keep the secrets of signed URLs out of the logs of the libraries that fetch them.

urllib3 logs every request's URL, query string included (at DEBUG, and its retries at
WARNING), and a signed download URL's query is its secret. :func:`install_url_redaction` puts a
filter on those loggers that cuts query strings out of their records. Installing it is an
explicit step, taken once per container by whatever downloads (the FinalizeExport handler),
rather than a side effect of importing a module.
"""

from __future__ import annotations

import logging
import re

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
