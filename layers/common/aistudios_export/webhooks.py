"""The export's webhook: the URL AI Studios calls, its token, and waking the waiting execution.

AI Studios calls an export's ``webhookUrl`` as it progresses and when it finishes; the call is
not signed, so it is only a hint. The URL handed to AI Studios is
``{base}/webhooks/{exportId}/{token}``, where the token is HMAC-SHA256 of the export id under a
key only this stack knows (a Secrets Manager secret, :mod:`aistudios_export.webhook_keys`):
nobody can guess it for an export, and it opens nothing but that export's wake-up.
:class:`WebhookWaker` finds the task token of the wait the execution is in from the
execution's own history (the callback task's parameters carry it: no database) and sends it
back; the execution then asks AI Studios itself
(:func:`~aistudios_export.workflow.check_progress`). What a call says is never trusted: a body
that says the export is still running is the one thing that lets a wake be skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from aistudios_export.aws_errors import error_code
from aistudios_export.exports.machine import ExportsService
from aistudios_export.webhook_keys import (
    BASE_URL_FIELD,
    KEY_CACHE_SECONDS,
    KEY_FIELD,
    WebhookKey,
    webhook_url,
)

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.type_defs import HistoryEventTypeDef

logger = Logger(service="aistudios-export", child=True)

WAIT_RESOURCE = "putEvents.waitForTaskToken"
"""``TaskScheduled.resource`` of the export machine's callback wait (``WaitForExport``)."""
HISTORY_PAGE = 10
"""Newest events read to find the open wait: a wait writes 4 before its token can be used."""
WAIT_ENDED = frozenset(
    {
        "TaskSucceeded",
        "TaskFailed",
        "TaskTimedOut",
        "TaskStateExited",
        "ExecutionSucceeded",
        "ExecutionFailed",
        "ExecutionAborted",
        "ExecutionTimedOut",
    }
)
LOOKS = 3
"""How often a wake looks for the open wait: a webhook that arrives while the execution is
between two waits (checking) finds the next one a moment later."""
LOOK_INTERVAL_SECONDS = 0.5
MAX_BODY_BYTES = 16 * 1024
"""The largest webhook body read; the documented one is four short fields."""
STOPS_LOOKING = frozenset(
    {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}
)


def worth_waking(body: bytes) -> bool:
    """Say whether a webhook's body may announce an end: only "still running" is skipped.

    A body that parses as an object whose ``progress`` is a number below 100, and that says
    nothing of a state or an error, cannot mean the export ended; anything else (no body, no
    JSON, 100 %, a state) wakes the execution, which then asks AI Studios.

    Examples
    --------
    >>> worth_waking(b'{"progress": 40}'), worth_waking(b'{"progress": 100}'), worth_waking(b"")
    (False, True, True)
    >>> worth_waking(b'{"progress": 40, "state": "failed"}')
    True
    """
    try:
        payload = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return True
    if not isinstance(payload, dict):
        return True
    progress = payload.get("progress")
    running = (
        isinstance(progress, int | float) and not isinstance(progress, bool) and progress < 100
    )
    return not running or any(k in payload for k in ("state", "status", "error"))


class WebhookWaker(ExportsService):
    """Wake an export's execution that waits for its webhook; the execution checks itself."""

    def wake(self, export_id: str, *, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Send the open wait's task token back; return whether a wait was woken.

        Nothing is said to the caller either way: an execution that is not waiting (it is
        checking already, has ended or does not exist) needs no wake.
        """
        arn = self.machine.execution_arn(export_id)
        for look in range(LOOKS):
            if look:
                sleep(LOOK_INTERVAL_SECONDS)
            try:
                events = self.machine.sfn.get_execution_history(
                    executionArn=arn, reverseOrder=True, maxResults=HISTORY_PAGE
                )["events"]
            except ClientError as e:
                if error_code(e) == "ExecutionDoesNotExist":
                    return False
                raise
            token, ended = open_wait(events)
            if token is not None:
                return self._send(token)
            if ended:
                return False
        return False

    def _send(self, token: str) -> bool:
        try:
            self.machine.sfn.send_task_success(taskToken=token, output="{}")
        except ClientError as e:
            # The wait ended meanwhile (timed out, or another webhook woke it).
            if error_code(e) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
                return False
            raise
        return True


def open_wait(events: Sequence[HistoryEventTypeDef]) -> tuple[str | None, bool]:
    """Return ``(task token of the open wait or None, whether the execution ended)``.

    ``events`` are the newest of the history in any order; the open wait is a callback wait
    scheduled after anything that ended one.
    """
    newest_first = sorted(events, key=lambda e: e["id"], reverse=True)
    for event in newest_first:
        kind = event["type"]
        if kind in STOPS_LOOKING:
            return None, True
        if kind in WAIT_ENDED:
            return None, False
        if kind == "TaskScheduled":
            details: Mapping[str, Any] = event.get("taskScheduledEventDetails") or {}
            if details.get("resource") != WAIT_RESOURCE:
                return None, False
            return _token_of(details.get("parameters")), False
    return None, False


def _token_of(parameters: Any) -> str | None:
    try:
        entries = json.loads(parameters)["Entries"]
        detail = entries[0]["Detail"]
        if isinstance(detail, str):
            detail = json.loads(detail)
        token = detail["taskToken"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return token if isinstance(token, str) and token else None


__all__ = [
    "BASE_URL_FIELD",
    "KEY_CACHE_SECONDS",
    "KEY_FIELD",
    "MAX_BODY_BYTES",
    "WAIT_RESOURCE",
    "WebhookKey",
    "WebhookWaker",
    "open_wait",
    "webhook_url",
    "worth_waking",
]
