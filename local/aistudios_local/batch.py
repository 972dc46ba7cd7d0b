"""Batches on the local stack: upload a manifest, let the template's rule start the batch, report.

Nothing here starts the batch state machine itself: the upload goes to the local bucket and the
template's EventBridge rule (emulated by :mod:`aistudios_local.moto_shims`) does, as in AWS.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote_plus

import boto3
from botocore.exceptions import ClientError

from aistudios_export.batches import REPORT_FILE, BatchSettings, batch_location
from aistudios_export.errors import readable_cause
from aistudios_local.operator.commands import report_rows
from aistudios_local.stack import LocalStack, wait_for_execution


class NoRuleMatched(Exception):
    """The upload started no batch: no rule of the template matches its key.

    Reported in :class:`BatchRun` by its name, as a batch's own errors are; never raised.
    """


@dataclass
class BatchRun:
    """The outcome of one batch on the local stack, in ``local batch --json``'s shape."""

    status: str
    error: str | None
    cause: str | None
    manifest_key: str
    execution_arn: str | None
    report_key: str | None
    report: dict[str, Any] | None
    elapsed_seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return ``{"status", "error", "cause", "manifest", "reportKey", "rows", ...}``.

        ``rows`` lists each exported row (``projectId``, ``status``, ``video`` or ``error``)
        and then each rejected row (status ``REJECTED``, with its error).
        """
        return {
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "manifest": self.manifest_key,
            "reportKey": self.report_key,
            "rows": self.rows,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
        }


def manifest_key(stack: LocalStack, file_name: str) -> str:
    """Return the key a manifest file is uploaded to: the template's manifest prefix + its name."""
    return stack.parameter("ManifestKeyPrefix") + PurePosixPath(file_name).name


def upload_manifest(stack: LocalStack, data: bytes, file_name: str) -> tuple[str, str | None]:
    """Put a manifest into the local bucket; return its key and the batch the rule started.

    The rule is matched while S3 stores the object, so the execution (if any) is known on return.
    """
    key = manifest_key(stack, file_name)
    seen = len(stack.rule_deliveries)
    boto3.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=data)
    started = [
        d.execution_arn
        for d in stack.rule_deliveries[seen:]
        if json.loads(d.input).get("key") in (key, quote_plus(key, safe="/"))
    ]
    return key, (started[0] if started else None)


def upload_and_wait(
    stack: LocalStack,
    data: bytes,
    file_name: str,
    *,
    deadline_seconds: float = 600,
    interval: float = 0.1,
) -> BatchRun:
    """Upload a manifest, wait for the batch its upload started (bounded), and report it."""
    started = time.monotonic()
    key, execution_arn = upload_manifest(stack, data, file_name)
    if execution_arn is None:
        return BatchRun(
            status="NOT_STARTED",
            error=NoRuleMatched.__name__,
            cause=f"no rule of the template starts a batch for {key}",
            manifest_key=key,
            execution_arn=None,
            report_key=None,
            report=None,
            elapsed_seconds=time.monotonic() - started,
        )
    return wait_batch(
        stack,
        execution_arn,
        manifest_key=key,
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        deadline_seconds=deadline_seconds,
        interval=interval,
        started=started,
    )


def wait_batch(
    stack: LocalStack,
    execution_arn: str,
    *,
    manifest_key: str,
    manifest_sha256: str,
    scope: str = "",
    deadline_seconds: float = 600,
    interval: float = 0.1,
    started: float | None = None,
) -> BatchRun:
    """Wait until a batch execution ends (stopping it after ``deadline_seconds``); report it."""
    started = time.monotonic() if started is None else started
    description = wait_for_execution(
        execution_arn, deadline_seconds=deadline_seconds, started=started, interval=interval
    )
    settings = BatchSettings(
        bucket=stack.bucket,
        manifest_prefix=stack.parameter("ManifestKeyPrefix"),
        results_prefix=stack.parameter("ResultsKeyPrefix"),
    )
    _, prefix = batch_location(settings, manifest_key, manifest_sha256, scope)
    report_key = prefix + REPORT_FILE
    report = _read_report(stack, report_key)
    return BatchRun(
        status=description["status"],
        error=description.get("error"),
        cause=readable_cause(description.get("cause")),
        manifest_key=manifest_key,
        execution_arn=execution_arn,
        report_key=report_key if report is not None else None,
        report=report,
        elapsed_seconds=time.monotonic() - started,
        rows=_rows(report),
    )


def _read_report(stack: LocalStack, key: str) -> dict[str, Any] | None:
    try:
        body = boto3.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    except ClientError:
        return None
    report: dict[str, Any] = json.loads(body)
    return report


def _rows(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    return report_rows(report)
