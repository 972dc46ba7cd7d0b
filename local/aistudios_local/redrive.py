"""``RedriveExecution`` on moto's Step Functions engine, which has none (moto 5.2.x).

AWS's ``RedriveExecution`` continues a ``FAILED``, ``TIMED_OUT`` or ``ABORTED`` Standard
execution from the step that did not succeed, with the input that step had, under the same
execution ARN, input and context. moto answers it with ``NotImplementedError`` and its context
object has no ``$$.Execution.RedriveCount``, which AWS gives every execution (0 until a
redrive). :func:`install` (called by :class:`~aistudios_local.moto_shims.MotoShims`) adds:

- ``$$.Execution.RedriveCount`` (and, after a redrive, ``RedriveTime``) to every execution's
  context object;
- the ``RedriveExecution`` action: the last top-level state entered (from the execution's
  history) runs again with that state's input, on a new engine thread whose definition starts
  there; the history goes on (an ``ExecutionRedriven`` event, then the new attempt's events, with
  increasing ids); the execution is ``RUNNING`` until it ends again. ``clientToken`` makes two
  requests one redrive. A ``SUCCEEDED`` or ``RUNNING`` execution answers
  ``ExecutionNotRedrivable`` (HTTP 400), an unknown one ``ExecutionDoesNotExist``;
- ``redriveCount``, ``redriveDate`` (once redriven), ``redriveStatus`` and
  ``redriveStatusReason`` in ``DescribeExecution``'s answer.

Only top-level states are redriven (AWS also redrives the failed iterations of a Map or the
branches of a Parallel state; the export machine has neither), and a redrive re-arms the
machine's ``TimeoutSeconds`` for the new attempt.
"""

from __future__ import annotations

import datetime
import json
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from moto.core.exceptions import AWSError
from moto.core.responses import ActionResult
from moto.stepfunctions.parser.api import (
    ExecutionRedrivenEventDetails,
    ExecutionStatus,
    HistoryEventType,
)
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_manager import (
    EventHistoryContext,
    EventManager,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.responses import StepFunctionResponse

from aistudios_local.patches import Patches

if TYPE_CHECKING:
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

__all__ = ["ExecutionNotRedrivable", "install", "installed", "redrive", "uninstall"]

REDRIVABLE = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
"""The statuses AWS redrives an execution from."""


class ExecutionNotRedrivable(AWSError):
    """AWS's answer to a redrive of an execution that cannot be redriven (HTTP 400)."""

    TYPE = "ExecutionNotRedrivable"
    STATUS = 400


@dataclass
class Redrives:
    """What one execution's redrives left: their count, the last one's date, the tokens used."""

    count: int = 0
    date: datetime.datetime | None = None
    tokens: dict[str, datetime.datetime] = field(default_factory=dict)


_REDRIVES: weakref.WeakKeyDictionary[Execution, Redrives] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
"""Makes a redrive's check and its status change one step (two requests race otherwise)."""


def redrives_of(execution: Execution) -> Redrives:
    """Return the redrives of ``execution`` (none yet: a count of 0)."""
    with _LOCK:
        return _REDRIVES.setdefault(execution, Redrives())


def redrive(execution: Execution, client_token: str | None = None) -> datetime.datetime:
    """Redrive ``execution`` from its last top-level state; return the redrive's date.

    Raises
    ------
    ExecutionNotRedrivable
        When the execution is not ``FAILED``, ``TIMED_OUT`` or ``ABORTED``, is not a Standard
        one, or its history names no top-level state to resume.
    """
    with _LOCK:
        record = _REDRIVES.setdefault(execution, Redrives())
        if client_token and client_token in record.tokens:
            return record.tokens[client_token]
        status = execution.status
        if status not in REDRIVABLE:
            raise ExecutionNotRedrivable(f"Execution is {status} and cannot be redriven")
        if execution.sm_type != "STANDARD":
            raise ExecutionNotRedrivable("Only Standard executions can be redriven")
        definition = json.loads(execution.state_machine.definition)
        events = _event_manager(execution)
        found = _failed_state(events.get_event_history(), definition["States"])
        if found is None:
            raise ExecutionNotRedrivable("The execution's history names no state to redrive")
        state, state_input = found
        now = datetime.datetime.now(tz=datetime.UTC)
        record.count += 1
        record.date = now
        if client_token:
            record.tokens[client_token] = now
        worker = RedriveWorker(
            execution,
            definition={**definition, "StartAt": state},
            state_input=state_input,
            events=events,
            redrives=record,
        )
        execution.exec_worker = worker
        execution.exec_status = ExecutionStatus.RUNNING
        execution.stop_date = None
        execution.output = None
        execution.error = None
        execution.cause = None
    worker.start()  # type: ignore[no-untyped-call]
    return now


class RedriveWorker(ExecutionWorker):
    """moto's engine thread for a redriven attempt: one state's input, the history going on.

    Parameters
    ----------
    execution
        The execution redriven.
    definition
        Its definition, starting at the state to run again.
    state_input
        What that state was entered with.
    events
        The execution's event history, which the new attempt continues.
    redrives
        The execution's redrives (this one counted).
    """

    def __init__(
        self,
        execution: Execution,
        *,
        definition: dict[str, Any],
        state_input: Any,
        events: EventManager,
        redrives: Redrives,
    ) -> None:
        original = execution._get_start_execution_worker()
        super().__init__(
            evaluation_details=original._evaluation_details,
            exec_comm=original._execution_communication,
            cloud_watch_logging_session=original._cloud_watch_logging_session,
            activity_store=original._activity_store,
        )
        self._definition = json.dumps(definition)
        self._state_input = state_input
        self._events = events
        self._count = redrives.count
        self._date = redrives.date

    def _get_evaluation_entrypoint(self) -> EvalComponent:
        program: EvalComponent = AmazonStateLanguageParser.parse(self._definition)[0]
        return program

    def _get_evaluation_environment(self) -> Environment:
        env: Environment = super()._get_evaluation_environment()
        env.event_manager = self._events
        env.states.reset(self._state_input)
        context = env.states.context_object.context_object_data["Execution"]
        context["RedriveCount"] = self._count  # type: ignore[typeddict-unknown-key]
        if self._date is not None:
            moment = self._date.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            context["RedriveTime"] = moment  # type: ignore[typeddict-unknown-key]
        return env

    def _execution_logic(self) -> None:
        program = self._get_evaluation_entrypoint()
        env = self._get_evaluation_environment()
        self.env = env
        last = max((int(e["id"]) for e in self._events.get_event_history()), default=0)
        # The new attempt's events follow on from the redrive's (AWS links them so too).
        context = EventHistoryContext(previous_event_id=last)
        env.event_history_context = context  # type: ignore[misc]
        env.event_manager.add_event(
            context=context,
            event_type=HistoryEventType.ExecutionRedriven,
            # moto's EventDetails has no key for it; its history keeps what it is given.
            event_details=cast(
                "EventDetails",
                {
                    "executionRedrivenEventDetails": ExecutionRedrivenEventDetails(
                        redriveCount=self._count
                    )
                },
            ),
        )
        program.eval(env)
        self._execution_communication.terminated()


def _event_manager(execution: Execution) -> EventManager:
    worker = execution.exec_worker
    if worker is None or worker.env is None:
        raise ExecutionNotRedrivable("The execution has no history to redrive from")
    manager: EventManager = worker.env.event_manager
    return manager


def _failed_state(events: list[Any], states: dict[str, Any]) -> tuple[str, Any] | None:
    """Return the last top-level state entered and its input, from the history."""
    for event in reversed(events):
        details = event.get("stateEnteredEventDetails")
        if details and details.get("name") in states:
            return str(details["name"]), json.loads(details.get("input") or "{}")
    return None


# --- the context object and the API ----------------------------------------------------------


def _counting_redrives(original: Callable[..., Environment]) -> Callable[..., Environment]:
    """Wrap ``ExecutionWorker._get_evaluation_environment``: ``RedriveCount`` 0 to begin with."""

    def get_evaluation_environment(self: ExecutionWorker) -> Environment:
        env = original(self)
        context = env.states.context_object.context_object_data["Execution"]
        context.setdefault("RedriveCount", 0)  # type: ignore[typeddict-item]
        return env

    return get_evaluation_environment


def redrive_execution(self: StepFunctionResponse) -> ActionResult:
    """``StepFunctionResponse.redrive_execution``: the ``RedriveExecution`` action."""
    arn = self._get_param("executionArn")
    execution = self.stepfunction_backend.describe_execution(arn)
    if not isinstance(execution, Execution):
        # moto's mock backend (execute_state_machine off) runs no definition to resume.
        raise ExecutionNotRedrivable("Only executions that run their definition can be redriven")
    date = redrive(execution, self._get_param("clientToken"))
    return ActionResult({"redriveDate": date})


def _describing_redrives(original: Callable[..., ActionResult]) -> Callable[..., ActionResult]:
    """Wrap ``StepFunctionResponse.describe_execution``: add what AWS says of redrives."""

    def describe_execution(self: StepFunctionResponse) -> ActionResult:
        answer = original(self)
        result = answer.result
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        if isinstance(result, dict) and isinstance(execution, Execution):
            record = redrives_of(execution)
            result["redriveCount"] = record.count
            if record.date is not None:
                result["redriveDate"] = record.date
            if execution.status in REDRIVABLE:
                result["redriveStatus"] = "REDRIVABLE"
            else:
                result["redriveStatus"] = "NOT_REDRIVABLE"
                result["redriveStatusReason"] = (
                    f"Execution is {execution.status} and cannot be redriven"
                )
        return answer

    return describe_execution


_PATCHES = Patches()


def installed() -> bool:
    """Whether the shim is in place."""
    return bool(_PATCHES)


def install() -> None:
    """Teach moto ``RedriveExecution`` and ``RedriveCount``; idempotent."""
    if _PATCHES:
        return
    _patch(
        ExecutionWorker,
        "_get_evaluation_environment",
        _counting_redrives(ExecutionWorker._get_evaluation_environment),
    )
    _patch(StepFunctionResponse, "redrive_execution", redrive_execution)
    _patch(
        StepFunctionResponse,
        "describe_execution",
        _describing_redrives(StepFunctionResponse.describe_execution),
    )


def uninstall() -> None:
    """Restore moto as it was."""
    _PATCHES.restore()


def _patch(owner: Any, name: str, replacement: Any) -> None:
    _PATCHES.replace(owner, name, replacement)
