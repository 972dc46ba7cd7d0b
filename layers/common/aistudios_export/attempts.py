"""The end of a failed attempt of an export, and what a Step Functions redrive of it resumes.

``RedriveExecution`` continues a failed execution from the step that failed, with the input
that step had. A ``Fail`` state as the last step of the export machine's failure path would
fail again at once when redriven, so that path ends in ``EndFailedAttempt``, a task whose
function (:func:`end_attempt`) tells the two cases apart by ``$$.Execution.RedriveCount``:

- in the attempt that failed (the count equals the attempt recorded on the failure path) it
  raises the export's error: the exception's class name is the error's name and its message
  the error's readable cause, so the execution ends ``FAILED`` with them (its cause is then
  Lambda's ``{"errorMessage", "errorType", ...}``, which every reader unwraps with
  :func:`~aistudios_export.errors.readable_cause`);
- when that step runs again in a redrive, it returns, and the state machine resumes the export
  where it stood (see ``statemachine/export.asl.json``, ``ResumeAfterRedrive``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from aistudios_export.errors import FinalError, InvalidRequest, readable_cause

ERROR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,127}")
"""What an error name recorded on the failure path may look like (ours, ``States.*``, ...)."""
UNNAMED = "ExportFailed"
"""The name raised when the recorded one is missing or malformed (a defect, never input)."""


class FailedAttempt(FinalError):
    """Base of the errors :func:`end_attempt` raises; each subclass is named after an error."""


@cache
def failure_class(name: str) -> type[FailedAttempt]:
    """Return the exception class named ``name``: Step Functions reports it as the error name.

    Examples
    --------
    >>> failure_class("DownloadInterrupted").__name__
    'DownloadInterrupted'
    >>> failure_class("States.Timeout").__name__
    'States.Timeout'
    """
    return type(name if ERROR_NAME.fullmatch(name) else UNNAMED, (FailedAttempt,), {})


def end_attempt(failure: Mapping[str, Any] | None, redrive_count: object) -> dict[str, Any]:
    """Raise the attempt's error in the attempt that failed; return in a redrive of it.

    Parameters
    ----------
    failure
        What the failure path recorded: ``{"Error", "Cause", "Attempt"}`` (``Attempt`` is the
        ``$$.Execution.RedriveCount`` of the attempt that failed).
    redrive_count
        ``$$.Execution.RedriveCount`` now.

    Returns
    -------
    dict
        ``{"redriveCount": n, "failedAttempt": a}``: a redrive runs.

    Raises
    ------
    FailedAttempt
        A subclass named after ``failure["Error"]``, with the readable cause as its message.
    InvalidRequest
        When ``failure`` or ``redrive_count`` is not what the state machine sends.
    """
    count = _count(redrive_count, "redriveCount")
    if not isinstance(failure, Mapping):
        raise InvalidRequest([("error", "must be the failure the state machine recorded")])
    attempt = _count(failure.get("Attempt"), "error.Attempt")
    if count == attempt:
        name = failure.get("Error")
        cause = readable_cause(failure.get("Cause")) or "no cause given"
        raise failure_class(name if isinstance(name, str) else UNNAMED)(cause)
    return {"redriveCount": count, "failedAttempt": attempt}


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest([(field, "must be a redrive count (a whole number, 0 or more)")])
    return value
