"""What the exports library answers with: a started export, its status, a page of a listing.

Every export is one execution of the export state machine, and its export id is that
execution's name (``{projectId}-{resolution}-{digest}``, see :mod:`aistudios_export.naming`),
so the project and the resolution of an export are read from its export id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
"""Execution statuses, which are the export statuses."""


@dataclass(frozen=True)
class Started:
    """The answer to a start request: the export and its status now."""

    export_id: str
    status: str


@dataclass(frozen=True)
class Video:
    """A finished export's video and a short-lived link to download it."""

    s3_uri: str
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str | None
    download_url: str | None
    download_url_expires_at: datetime | None


@dataclass(frozen=True)
class Summary:
    """One export in a listing."""

    export_id: str
    project_id: str
    resolution: str
    status: str
    started_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True)
class Status(Summary):
    """Everything known about one export.

    ``progress`` and ``state`` are those of the latest progress check (``0.0`` and ``None``
    before the first); ``error`` and ``cause`` say why a failed export failed.
    """

    progress: float
    state: str | None
    error: str | None
    cause: str | None
    video: Video | None


@dataclass(frozen=True)
class Page:
    """A page of a listing; ``next_token`` fetches the next one (None at the end)."""

    exports: list[Summary]
    next_token: str | None


def summary_fields(export_id: str, execution: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields of the :class:`Summary` of the execution named ``export_id``.

    Parameters
    ----------
    export_id
        The execution's name, an export id.
    execution
        What Step Functions says of the execution: an item of ``ListExecutions`` or the
        answer of ``DescribeExecution`` (both have ``status``, ``startDate``, ``stopDate?``).

    Examples
    --------
    >>> fields = summary_fields(
    ...     "65fa6b07dca2e367461a2925-720-0123456789abcdefghij",
    ...     {"status": "RUNNING", "startDate": datetime(2026, 1, 1, tzinfo=UTC)},
    ... )
    >>> fields["project_id"], fields["resolution"], fields["stopped_at"]
    ('65fa6b07dca2e367461a2925', '720', None)
    """
    project_id, resolution, _ = export_id.split("-", 2)
    stopped_at = execution.get("stopDate")
    return {
        "export_id": export_id,
        "project_id": project_id,
        "resolution": resolution,
        "status": execution["status"],
        "started_at": execution["startDate"].astimezone(UTC),
        "stopped_at": stopped_at.astimezone(UTC) if stopped_at is not None else None,
    }
