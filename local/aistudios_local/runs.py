"""Wait for executions on the local stack and report exports in the CLI's ``--json`` shape."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from aistudios_export.errors import readable_cause
from aistudios_local.lambda_bridge import LambdaBridge

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

__all__ = ["TERMINAL", "ExportRun", "execution_ending", "wait_for_execution", "watch_export"]

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@dataclass
class ExportRun:
    """The outcome of one export on the local stack, in the CLI's ``--json`` shape."""

    status: str
    error: str | None
    cause: str | None
    video: dict[str, Any] | None
    objects: list[dict[str, Any]]
    incomplete_uploads: int
    state_transitions: int
    elapsed_seconds: float
    execution_arn: str = ""
    output: dict[str, Any] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the documented JSON object of ``aistudios-export local --json``."""
        return {
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "video": self.video,
            "objects": self.objects,
            "incompleteUploads": self.incomplete_uploads,
            "stateTransitions": self.state_transitions,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
        }


def watch_export(
    execution_arn: str,
    *,
    bucket: str,
    bridge: LambdaBridge | None,
    deadline_seconds: float,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    interval: float = 0.1,
) -> ExportRun:
    """Wait until an export execution ends (stopping it after the deadline) and report it.

    Parameters
    ----------
    execution_arn
        The export state machine's execution.
    bucket
        The output bucket, whose objects and open uploads the report lists.
    bridge
        Its invocations feed `on_progress`.
    deadline_seconds, interval
        As in `wait_for_execution`.
    on_progress
        Called with every result of a function that reports ``progress``, in order.

    Returns
    -------
    ExportRun
        The outcome, with the bucket's objects and open multipart uploads.
    """
    started = time.monotonic()
    seen = 0

    def show_progress() -> None:
        nonlocal seen
        if on_progress is not None and bridge is not None:
            for record in bridge.invocations[seen:]:
                if isinstance(record.result, dict) and "progress" in record.result:
                    on_progress(record.result)
            seen = len(bridge.invocations)

    description = wait_for_execution(
        execution_arn,
        deadline_seconds=deadline_seconds,
        started=started,
        interval=interval,
        on_poll=show_progress,
    )
    return _report(description, time.monotonic() - started, bucket)


def _report(description: Mapping[str, Any], elapsed: float, bucket: str) -> ExportRun:
    sfn: SFNClient = boto3.client("stepfunctions")
    s3: S3Client = boto3.client("s3")
    arn = description["executionArn"]
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    transitions = sum(1 for e in history if e["type"].endswith("StateEntered"))
    output = json.loads(description["output"]) if description.get("output") else None
    video = None
    if description["status"] == "SUCCEEDED" and output and isinstance(output.get("video"), dict):
        video = {k: output["video"][k] for k in ("bucket", "key", "size", "sha256", "contentType")}
    objects = [
        {"key": o["Key"], "size": o["Size"]}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    status, error, cause = execution_ending(description)
    return ExportRun(
        status=status,
        error=error,
        cause=cause,
        video=video,
        objects=objects,
        incomplete_uploads=len(uploads),
        state_transitions=transitions,
        elapsed_seconds=elapsed,
        execution_arn=arn,
        output=output,
    )


def execution_ending(description: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """Return ``(status, error, cause)`` of a described execution, the cause made readable.

    Parameters
    ----------
    description
        A ``DescribeExecution`` answer.

    Returns
    -------
    tuple[str, str | None, str | None]
        The status, the error name and the cause as :func:`readable_cause` gives it.
    """
    return description["status"], description.get("error"), readable_cause(description.get("cause"))


def wait_for_execution(
    execution_arn: str,
    *,
    deadline_seconds: float,
    started: float | None = None,
    interval: float = 0.1,
    on_poll: Callable[[], None] | None = None,
) -> DescribeExecutionOutputTypeDef:
    """Poll an execution until it ends; stop it (ABORTED) once ``deadline_seconds`` have passed.

    The local runners' one loop: bounded by the deadline, whatever the state machine does.
    """
    sfn: SFNClient = boto3.client("stepfunctions")
    started = time.monotonic() if started is None else started
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        if on_poll is not None:
            on_poll()
        if description["status"] in TERMINAL:
            return description
        if time.monotonic() - started > deadline_seconds:
            sfn.stop_execution(
                executionArn=execution_arn,
                error="LocalDeadline",
                cause=f"no result within {deadline_seconds:g} s",
            )
            return sfn.describe_execution(executionArn=execution_arn)
        time.sleep(interval)
