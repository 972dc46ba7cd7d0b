"""Read one export's status: its execution, its latest progress check and, once done, its video."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aistudios_export import clients
from aistudios_export.errors import readable_cause
from aistudios_export.exports.machine import ExportsService
from aistudios_export.exports.types import Status, Video, summary_fields
from aistudios_export.naming import is_export_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import HistoryEventTypeDef

    from aistudios_export.settings import HttpApiSettings

_HISTORY_PAGE = 100
_HISTORY_PAGES = 5
"""Bound on GetExecutionHistory calls when looking for the latest progress check."""


class StatusReader(ExportsService):
    """Reads what is known about an export, with a short-lived download link once it is done.

    Download links are made for videos in ``settings.output_bucket`` (any bucket when None) and
    live ``settings.download_link_seconds``.

    Parameters
    ----------
    settings, sfn, clock
        As for :class:`ExportsService`.
    s3
        An S3 client, for download links; a default one is created when None.
    """

    def __init__(
        self,
        settings: HttpApiSettings,
        *,
        sfn: SFNClient | None = None,
        s3: S3Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, sfn=sfn, clock=clock)
        self._s3 = clients.s3(s3)

    def read(self, export_id: str) -> Status | None:
        """Return the export's status, or None when there is no such export.

        Anything that is not an export id is no export: it never reaches Step Functions.
        """
        if not is_export_id(export_id):
            return None
        description = self.machine.describe(export_id)
        if description is None:
            return None
        job = self._latest_job(export_id)
        video = None
        if description["status"] == "SUCCEEDED":
            video = self._video(_json_object(description.get("output")).get("video"))
        return Status(
            **summary_fields(export_id, description),
            progress=_progress(job.get("progress")),
            state=str(job["state"]) if job.get("state") else None,
            error=description.get("error"),
            cause=readable_cause(description.get("cause")),
            video=video,
        )

    def _latest_job(self, export_id: str) -> dict[str, Any]:
        """Return the ``job`` of the latest state output that has one (the last progress check).

        Newest first where Step Functions honours ``reverseOrder``; the event id decides either way.
        """
        token: str | None = None
        for _ in range(_HISTORY_PAGES):
            kwargs: dict[str, Any] = {"nextToken": token} if token else {}
            page = self.machine.sfn.get_execution_history(
                executionArn=self.machine.execution_arn(export_id),
                reverseOrder=True,
                maxResults=_HISTORY_PAGE,
                includeExecutionData=True,
                **kwargs,
            )
            found = [(e["id"], job) for e in page["events"] if (job := _job_of(e)) is not None]
            if found:
                return max(found, key=lambda item: item[0])[1]
            token = page.get("nextToken")
            if not token:
                break
        return {}

    def _video(self, raw: Any) -> Video | None:
        if not isinstance(raw, Mapping) or not raw.get("bucket") or not raw.get("key"):
            return None
        bucket, key = str(raw["bucket"]), str(raw["key"])
        url = expires = None
        if self.settings.output_bucket in (None, bucket):
            url = self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self.settings.download_link_seconds,
            )
            expires = datetime.fromtimestamp(self._clock(), UTC) + timedelta(
                seconds=self.settings.download_link_seconds
            )
        return Video(
            s3_uri=f"s3://{bucket}/{key}",
            bucket=bucket,
            key=key,
            size=int(raw.get("size") or 0),
            sha256=str(raw.get("sha256") or ""),
            content_type=str(raw["contentType"]) if raw.get("contentType") else None,
            download_url=url,
            download_url_expires_at=expires,
        )


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _job_of(event: HistoryEventTypeDef) -> dict[str, Any] | None:
    details = event.get("stateExitedEventDetails")
    if not details:
        return None
    job = _json_object(details.get("output")).get("job")
    return job if isinstance(job, dict) and "progress" in job else None


def _progress(value: Any) -> float:
    """Return a percentage from 0 to 100; anything but a finite number counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(min(max(value, 0.0), 100.0))
