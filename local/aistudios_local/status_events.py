"""Put Step Functions' "Execution Status Change" events on moto's default event bus.

AWS sends one such event to the account's default bus whenever an execution of a Standard
state machine starts (``RUNNING``) or ends (``SUCCEEDED``, ``FAILED``, ``TIMED_OUT``,
``ABORTED``); rules route them (the template's render-slot release rule does). moto's engine
sends none. The wrappers here, installed by :class:`aistudios_local.moto_shims.MotoShims`, put
them through moto's own events backend, so that rules match them with moto's pattern matching
and deliver them to their targets:

- ``Execution.start``: the ``RUNNING`` event, before the engine's thread can end the execution;
- ``BaseExecutionWorkerCommunication.terminated`` (the engine's thread, once an execution has
  ended in any way, ``StopExecution`` and the top-level ``TimeoutSeconds`` included): the final
  event, put while moto's request lock is held together with the status change itself, so that
  a ``DescribeExecution`` that sees the final status comes after the event's delivery.

Express executions send no events, as on AWS. The event's ``detail`` is what
``DescribeExecution`` answers, with dates in epoch milliseconds and ``null`` for what the
execution does not have (``output`` unless it succeeded, ``error`` and ``cause`` unless it
failed).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from moto.events.models import events_backends
from moto.stepfunctions.parser.api import StateMachineType
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.state_machine import StateMachineVersion

__all__ = ["DETAIL_TYPE", "SOURCE", "emitting_start", "emitting_terminated", "status_change"]

logger = logging.getLogger(__name__)

SOURCE = "aws.states"
DETAIL_TYPE = "Step Functions Execution Status Change"

Lock = AbstractContextManager[Any]
"""What makes a put atomic with moto's requests (the shims' re-entrant request lock)."""


def status_change(execution: Any, status: str) -> dict[str, Any]:
    """Return the ``PutEvents`` entry AWS sends when ``execution`` reaches ``status``.

    Parameters
    ----------
    execution
        A moto engine ``Execution`` (``moto.stepfunctions.parser.backend.execution``).
    status
        ``RUNNING`` or the status the execution ended with.

    Returns
    -------
    dict[str, Any]
        ``Source``, ``DetailType``, ``Resources`` (the execution's ARN), ``Time`` and ``Detail``
        (a JSON string).
    """
    machine = execution.state_machine
    ended = status != "RUNNING"
    succeeded = status == "SUCCEEDED"
    detail: dict[str, Any] = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": (
            machine.source_arn if isinstance(machine, StateMachineVersion) else machine.arn
        ),
        "name": execution.name,
        "status": status,
        "startDate": _epoch_millis(execution.start_date),
        "stopDate": _epoch_millis(execution.stop_date) if ended else None,
        "input": to_json_str(execution.input_data, separators=(",", ":")),
        "inputDetails": {"included": True},
        "output": to_json_str(execution.output, separators=(",", ":")) if succeeded else None,
        "outputDetails": {"included": True} if succeeded else None,
        "error": (execution.error or None) if ended else None,
        "cause": (execution.cause or None) if ended else None,
    }
    if isinstance(machine, StateMachineVersion):
        detail["stateMachineVersionArn"] = machine.arn
    when: datetime.datetime = (execution.stop_date if ended else None) or execution.start_date
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Resources": [execution.exec_arn],
        # Epoch seconds, as moto's events backend keeps ``time`` (its SQS delivery needs a
        # number); the Step Functions and Lambda targets get AWS's ISO 8601 form.
        "Time": when.timestamp(),
        "Detail": json.dumps(detail),
    }


def emitting_start(original: Callable[..., None], lock: Lock) -> Callable[..., None]:
    """Wrap ``Execution.start`` so that a Standard execution's ``RUNNING`` event goes first."""

    def start(execution: Any) -> None:
        if _is_standard(execution):
            with lock:
                _put(execution, "RUNNING")
        original(execution)

    return start


def emitting_terminated(original: Callable[..., None], lock: Lock) -> Callable[..., None]:
    """Wrap ``BaseExecutionWorkerCommunication.terminated`` to put the final status's event."""

    def terminated(communication: Any) -> None:
        execution = communication.execution
        with lock:
            original(communication)
            if _is_standard(execution) and execution.exec_status is not None:
                _put(execution, execution.status)

    return terminated


def _is_standard(execution: Any) -> bool:
    # moto keeps the requested type in ``type``; ``sm_type`` always says STANDARD.
    kind = getattr(execution.state_machine, "type", execution.sm_type)
    return bool(kind != StateMachineType.EXPRESS)


def _put(execution: Any, status: str) -> None:
    """Put the event on the execution's default bus; a failure is logged, never raised."""
    try:
        backend = events_backends[execution.account_id][execution.region_name]
        answers = backend.put_events([status_change(execution, status)])
        refused = [a for a in answers if "ErrorCode" in a]
        if refused:
            logger.warning("%s %s: event refused: %s", execution.exec_arn, status, refused)
    except Exception:
        # The engine's thread must finish the execution whatever a rule's target does.
        logger.exception("%s %s: could not put the status change event", execution.exec_arn, status)


def _epoch_millis(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)
