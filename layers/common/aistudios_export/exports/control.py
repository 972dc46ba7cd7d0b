"""Cancel and redrive exports: ``StopExecution`` and ``RedriveExecution`` of their executions.

Both are idempotent, and both answer with the export's status afterwards:

- cancelling stops a ``RUNNING`` (or ``PENDING_REDRIVE``) export, which ends ``ABORTED``
  (at once on AWS; a task in flight may finish first on the local engine, so the status read
  right after the stop may still be ``RUNNING``); cancelling an export that is already
  ``ABORTED`` answers the same without calling anything.
  The render slot it held is freed by the status-change rule (``RenderSlotReleaseRule``), as for
  any execution that ends.
- redriving continues a ``FAILED`` export from the state that did not succeed (Step Functions'
  rules: Standard workflows, within 14 days): its failure path ends in ``EndFailedAttempt``,
  which resumes the export when a redrive runs it again (see :mod:`aistudios_export.attempts`
  and ``statemachine/export.asl.json``). Redriving an export that is running again after a
  redrive (``redriveCount > 0``, or ``PENDING_REDRIVE``) answers its status without redriving
  it again; ``clientToken`` makes two redrives of the same attempt one.
- an ``ABORTED`` or ``TIMED_OUT`` export is not redriven, although Step Functions could: it
  would resume the step in flight when the execution ended, a render without its render slot
  (the status-change rule freed it) or a copy past its time. Start a new export instead.

Anything else (cancel a finished export, redrive a success, an ``ABORTED`` or ``TIMED_OUT``
export or a never-redriven running one, or one that Step Functions says it cannot redrive)
raises :class:`StateConflict`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from aistudios_export.aws_errors import error_code
from aistudios_export.errors import ExportCancelled, StateConflict
from aistudios_export.exports.machine import ExportsService
from aistudios_export.exports.types import Started
from aistudios_export.naming import is_export_id

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

CANCEL_CAUSE = "Cancelled through the HTTP API."
"""The stopped execution's cause; its error is :class:`ExportCancelled`'s name."""
STOPPABLE = frozenset({"RUNNING", "PENDING_REDRIVE"})
"""Statuses an export can be cancelled in."""
REDRIVABLE = frozenset({"FAILED"})
"""Statuses an export is redriven from (Step Functions also redrives TIMED_OUT and ABORTED)."""
UNSAFE_TO_REDRIVE = frozenset({"TIMED_OUT", "ABORTED"})
"""Statuses Step Functions could redrive, but that a redrive would resume without a slot."""


class ExportController(ExportsService):
    """Cancels and redrives exports; built as an :class:`ExportsService`.

    Examples
    --------
    >>> from aistudios_export.settings import HttpApiSettings
    >>> import boto3
    >>> sfn = boto3.client("stepfunctions", region_name="us-east-1")
    >>> controller = ExportController(
    ...     HttpApiSettings("arn:aws:states:us-east-1:123456789012:stateMachine:m"), sfn=sfn
    ... )
    >>> controller.cancel("not an export id") is None
    True
    """

    def cancel(self, export_id: str, cause: str = CANCEL_CAUSE) -> Started | None:
        """Stop the export's execution; return its status then (None: no such export).

        ``cause`` says who cancelled it (never more): the API's sentence unless given.

        Raises
        ------
        StateConflict
            When the export already ended otherwise than ``ABORTED``.
        botocore.exceptions.ClientError
            When Step Functions fails otherwise.
        """
        description = self._describe(export_id)
        if description is None:
            return None
        status = description["status"]
        if status == "ABORTED":
            return Started(export_id, status)
        if status not in STOPPABLE:
            raise StateConflict(
                export_id,
                status,
                f"the export already ended {status}: only a running one can be cancelled",
            )
        try:
            # No KMS key encrypts the execution's data (the template sets none): error and cause
            # need no KMS permission. Neither says more than that the API cancelled it.
            self.machine.sfn.stop_execution(
                executionArn=self.machine.execution_arn(export_id),
                error=ExportCancelled.__name__,
                cause=cause,
            )
        except ClientError as e:
            if error_code(e) == "ExecutionDoesNotExist":
                return None
            raise
        after = self.machine.describe(export_id)
        if after is None:
            return None
        if after["status"] not in ("ABORTED", *STOPPABLE):
            # It ended by itself between the two calls: the stop did nothing.
            raise StateConflict(
                export_id,
                after["status"],
                f"the export ended {after['status']} before it could be cancelled",
            )
        return Started(export_id, after["status"])

    def redrive(self, export_id: str) -> Started | None:
        """Redrive the export's execution; return its status then (None: no such export).

        Raises
        ------
        StateConflict
            When the export's status does not allow a redrive, or Step Functions refuses it
            (``ExecutionNotRedrivable``: too old, history too long, ...).
        botocore.exceptions.ClientError
            When Step Functions fails otherwise.
        """
        description = self._describe(export_id)
        if description is None:
            return None
        if _redriven_and_running(description):
            return Started(export_id, description["status"])
        status = description["status"]
        if status in UNSAFE_TO_REDRIVE:
            raise StateConflict(
                export_id,
                status,
                f"the export ended {status}: a redrive would resume it without its render slot, "
                "so only a FAILED export can be redriven; start a new export instead",
            )
        if status not in REDRIVABLE:
            raise StateConflict(
                export_id, status, f"the export is {status}: only a FAILED one can be redriven"
            )
        if description.get("redriveStatus") == "NOT_REDRIVABLE":
            raise StateConflict(export_id, status, _not_redrivable(description))
        attempt = int(description.get("redriveCount") or 0)
        try:
            self.machine.sfn.redrive_execution(
                executionArn=self.machine.execution_arn(export_id),
                clientToken=_client_token(export_id, attempt),
            )
        except ClientError as e:
            code = error_code(e)
            if code == "ExecutionDoesNotExist":
                return None
            if code != "ExecutionNotRedrivable":
                raise
            # Another redrive may have won the race; else Step Functions' reason stands.
            again = self.machine.describe(export_id)
            if again is None:
                return None
            if _redriven_and_running(again):
                return Started(export_id, again["status"])
            raise StateConflict(export_id, again["status"], _not_redrivable(again)) from e
        return Started(export_id, "RUNNING")

    def _describe(self, export_id: str) -> DescribeExecutionOutputTypeDef | None:
        # Anything that is not an export id is no export: it never reaches Step Functions.
        return self.machine.describe(export_id) if is_export_id(export_id) else None


def _redriven_and_running(description: DescribeExecutionOutputTypeDef) -> bool:
    status = description["status"]
    return status == "PENDING_REDRIVE" or (
        status == "RUNNING" and int(description.get("redriveCount") or 0) > 0
    )


def _not_redrivable(description: DescribeExecutionOutputTypeDef) -> str:
    reason = str(description.get("redriveStatusReason") or "").strip()
    return f"Step Functions cannot redrive the export: {reason or 'it says it is not redrivable'}"


def _client_token(export_id: str, attempt: int) -> str:
    """Return the redrive's ``clientToken``: equal for every redrive of the same attempt."""
    return f"{attempt}-{hashlib.sha256(export_id.encode()).hexdigest()[:48]}"
