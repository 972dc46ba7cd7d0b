"""The API's answers as JSON bodies, in plain Python: what the models of :mod:`.models` describe.

A body is a record's fields, camelCase, in the model's order; times are ISO 8601 (``Z`` for UTC)
and the progress a float, as pydantic writes them. ``tests/unit/test_api_agreement.py`` checks
that each body here is the one its model (``models.ExportStatusBody``, ...) makes of a record.
"""

from dataclasses import asdict
from datetime import datetime
from typing import Any, NamedTuple


class Answer(NamedTuple):
    """An answer to a request: its status, its JSON body and the headers it adds."""

    status: int
    body: Any
    headers: dict[str, str] | None = None


ACCEPTED = ("export_id", "status", "status_url")
"""``models.ExportAccepted`` and ``models.ExportControlled``."""
SUMMARY = (
    "export_id",
    "project_id",
    "resolution",
    "status",
    "started_at",
    "stopped_at",
    "status_url",
)
"""``models.ExportSummaryBody``."""
STATUS = (
    "export_id",
    "project_id",
    "resolution",
    "status",
    "progress",
    "state",
    "started_at",
    "stopped_at",
    "error",
    "cause",
    "video",
)
"""``models.ExportStatusBody``."""
VIDEO = ("s3_uri", "size", "sha256", "content_type", "download_url", "download_url_expires_at")
"""``models.VideoBody``."""
WEBHOOK_ACCEPTED = {"status": "accepted"}
"""``models.WebhookAccepted``."""


def fields(record: Any) -> dict[str, Any]:
    """Return a library record's (a dataclass's) fields, nested records as dicts."""
    return asdict(record)


def accepted(values: dict[str, Any]) -> dict[str, Any]:
    """Return the body of a 202 that names an export and where to follow it."""
    return _body(values, ACCEPTED)


def status(record: Any) -> dict[str, Any]:
    """Return the body of ``GET /exports/{exportId}`` for a ``Status``."""
    values = fields(record)
    values["progress"] = float(values["progress"])
    video = values["video"]
    values["video"] = None if video is None else _body(video, VIDEO)
    return _body(values, STATUS)


def listing(summaries: list[dict[str, Any]], next_token: str | None) -> dict[str, Any]:
    """Return the body of ``GET /exports``: the summaries (with their links) and the next token."""
    return {"exports": [_body(s, SUMMARY) for s in summaries], "nextToken": next_token}


def error(status_code: int, message: str) -> dict[str, Any]:
    """Return the body of an error that is not about the request's fields (``ErrorBody``)."""
    return {"statusCode": status_code, "message": message}


def camel(name: str) -> str:
    """Return the JSON name of a field (pydantic's ``to_camel``).

    Examples
    --------
    >>> camel("download_url_expires_at"), camel("s3_uri"), camel("sha256")
    ('downloadUrlExpiresAt', 's3Uri', 'sha256')
    """
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _body(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {camel(name): _json(values[name]) for name in names}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text
    return value
