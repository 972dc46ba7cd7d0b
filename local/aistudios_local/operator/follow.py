"""The wait loops of ``--wait``: bounded by a deadline, one look per interval."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aistudios_export.exports import Status, StatusReader
from aistudios_local.operator.exits import NOT_FOUND, STILL_RUNNING, CommandError
from aistudios_local.operator.progress import ExportProgress, RowsProgress

ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
"""Execution statuses that do not change any more (until a redrive)."""


def follow_export(
    reader: StatusReader,
    export_id: str,
    progress: ExportProgress | None,
    *,
    wait_seconds: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Status:
    """Read the export's status every ``interval`` seconds until it ends; return the last.

    Raises
    ------
    CommandError
        ``NOT_FOUND`` when the export does not exist; ``STILL_RUNNING`` when it has not ended
        after ``wait_seconds``.
    """
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            status = reader.read(export_id)
            if status is None:
                raise CommandError(f"no export {export_id}", NOT_FOUND)
            if progress is not None:
                progress.update(status.status, status.progress, status.state)
            if status.status in ENDED:
                return status
            if time.monotonic() + interval > deadline:
                raise CommandError(
                    f"export {export_id} is still {status.status} after {wait_seconds:g} s",
                    STILL_RUNNING,
                )
            sleep(interval)
    finally:
        if progress is not None:
            progress.end()


def map_run_counts(sfn: Any, execution_arn: str) -> tuple[int, int, int]:
    """Return ``(ended, total, failed)`` rows of the batch execution's Map Runs (0s before one)."""
    done = total = failed = 0
    for run in sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", []):
        counts = sfn.describe_map_run(mapRunArn=run["mapRunArn"]).get("itemCounts", {})
        bad = sum(int(counts.get(k, 0)) for k in ("failed", "timedOut", "aborted"))
        done += int(counts.get("succeeded", 0)) + bad
        total += int(counts.get("total", 0))
        failed += bad
    return done, total, failed


def follow_batch(
    sfn: Any,
    execution_arn: str,
    progress: RowsProgress | None,
    *,
    wait_seconds: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Describe the batch execution every ``interval`` seconds until it ends; return the last.

    Raises
    ------
    CommandError
        ``STILL_RUNNING`` when it has not ended after ``wait_seconds``.
    """
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if progress is not None:
                done, total, failed = map_run_counts(sfn, execution_arn)
                progress.update(description["status"], done, total, failed)
            if description["status"] in ENDED:
                return description
            if time.monotonic() + interval > deadline:
                raise CommandError(
                    f"the batch is still {description['status']} after {wait_seconds:g} s",
                    STILL_RUNNING,
                )
            sleep(interval)
    finally:
        if progress is not None:
            progress.end()
