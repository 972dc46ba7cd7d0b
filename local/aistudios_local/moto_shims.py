"""Compatibility shims for moto 5.2.x, installed by the local stack for the length of a run.

Each shim corrects one moto behaviour that makes an AWS-correct definition fail (or do
nothing) on the local engine; ``tests/unit/test_moto_shims.py`` and
``tests/unit/test_status_events.py`` have a test per shim that fails without it. Nothing here
touches what the product or the tests send and receive. The shims:

- engine hooks: botocore hooks registered on the clients that moto's Step Functions engine
  creates for its ``states:*`` and ``aws-sdk:*`` integrations (never on boto3's default
  session): parameter names, PascalCase answers, epoch-millisecond dates; and the PascalCase
  answer of the ``.sync`` integrations, which moto builds after those hooks ran;
- rule targets: what moto's rules cannot deliver to, a Step Functions target (an execution
  starts) and a Lambda target (invoked asynchronously through boto3's default session, where
  the local stack's Lambda bridge answers; see :mod:`aistudios_local.lambda_targets`);
- status events: Step Functions "Execution Status Change" events on the default event bus when
  a Standard execution starts and ends (see :mod:`aistudios_local.status_events`);
- stopped callback waits: ``StopExecution`` of an execution in a ``.waitForTaskToken`` task
  leaves it RUNNING until the task's timeout and then FAILED (``States.Timeout``); AWS aborts it
  at once. The stop now ends the execution's open callback waits, and it ends ABORTED;
- one lock makes each request atomic, as each AWS API call is: moto checks a condition
  (``ClientRequestToken`` already used, a DynamoDB condition expression) and then writes, and two
  threads can both pass the check in between;
- finished threads are forgotten: moto's engine appends every thread it starts (one per
  execution, Map item, branch, ...) to a module-level list that nothing reads or empties;
- a stopped execution stays stopped: a task that fails after ``StopExecution`` (the stop ended
  its wait, or it was in flight) set moto's program FAILED over the stop; AWS says ABORTED;
- redrive: moto has no ``RedriveExecution`` and no ``$$.Execution.RedriveCount``; the local
  stack adds both for top-level states (see :mod:`aistudios_local.redrive`);
- a task that starts after its program ended (the state's own timeout ended the task's frame,
  or a stop) records nothing: moto skips evaluating the task's ``TimeoutSecondsPath`` and pops
  the state's input in its place, a ``TaskScheduled`` event whose ``timeoutInSeconds`` is that
  input, and every later ``GetExecutionHistory`` of the execution fails to serialize it;
- bytes-like bodies: a request whose body is a ``bytearray`` (botocore sends one as it is,
  as the product does each full part) reaches moto's S3 as bytes; moto hands a body that is not
  ``bytes`` to werkzeug as form fields, and the request fails. The unit tests that run moto
  themselves enter :func:`bytes_like_bodies`.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from botocore.awsrequest import AWSPreparedRequest
from moto.core import botocore_stubber
from moto.core.botocore_stubber import BotocoreStubber
from moto.events import models as events_models
from moto.events.utils import EventTemplateParser
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import Timeout
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_sfn,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackOutcomeSuccess
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.backend.execution import (
    BaseExecutionWorkerCommunication,
    Execution,
)
from moto.stepfunctions.parser.utils import TMP_THREADS
from moto.stepfunctions.responses import get_backend

from aistudios_local import redrive, result_writer, status_events
from aistudios_local.engine_cache import EngineCache
from aistudios_local.lambda_targets import LambdaDeliveries
from aistudios_local.patches import Patches

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

logger = logging.getLogger(__name__)

_ENGINE_CLIENT_MODULES: tuple[ModuleType, ...] = (
    state_task_service_sfn,
    state_task_service_aws_sdk,
)
"""The engine's integrations whose boto3 clients get the hooks below."""


# --- Step Functions integrations (startExecution.sync:2, aws-sdk:sfn:*) -----------------------


def lower_parameter_names(params: dict[str, Any], **_: Any) -> None:
    """``provide-client-params.sfn``: ``StateMachineArn`` → ``stateMachineArn``.

    moto's engine hands the ASL's PascalCase parameters (``StateMachineArn``, ``Name``,
    ``Input``; ``ExecutionArn`` of ``aws-sdk:sfn:describeExecution``) to boto3 unchanged, where
    AWS maps them to the API's camelCase members; boto3 then sends none of them.
    """
    for key in [k for k in params if k[:1].isupper()]:
        params[key[0].lower() + key[1:]] = params.pop(key)


def _pascal_case(name: str) -> str:
    return name[:1].upper() + name[1:]


def add_pascal_case_copies(parsed: dict[str, Any], **_: Any) -> None:
    """``after-call.sfn.StartExecution`` and ``.DescribeExecution``: add ``ExecutionArn``, ...

    moto's ``.sync`` resolver reads ``ExecutionArn`` from boto3's ``StartExecution`` answer
    (camelCase ``executionArn``), and its ``aws-sdk:`` integration returns boto3's answer as
    is, where AWS answers with PascalCase members (``Status``, ``Output``, ...).
    """
    for key in [k for k in parsed if k[:1].islower()]:
        parsed.setdefault(_pascal_case(key), parsed[key])


def pascal_case_answer(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    """Replace ``StateTaskServiceSfn._normalise_response``: ``output`` → ``Output``, ...

    moto's ``states:startExecution.sync`` and ``.sync:2`` keep only boto3's camelCase
    ``DescribeExecution`` members (``output``, ``status``, ``error``: the copies
    :func:`add_pascal_case_copies` added are dropped) and call this method, which moto leaves
    empty, before returning them as the task's result or putting them, as JSON, into the
    ``Cause`` of the task's failure. AWS answers with PascalCase members only, which is what a
    ``ResultSelector`` names (``"$.Output"``): the same renaming as the hook's, without the
    camelCase originals, and inside ``inputDetails``/``outputDetails`` too.
    """
    if service_action_name != "describe_execution" or not isinstance(response, dict):
        return
    add_pascal_case_copies(response)
    for key in [k for k in response if k[:1].islower()]:
        del response[key]
    for key, value in response.items():
        if key.endswith("Details") and isinstance(value, dict):
            response[key] = {_pascal_case(k): v for k, v in value.items()}


def datetimes_to_epoch_millis(parsed: dict[str, Any], **_: Any) -> None:
    """``after-call.sfn.DescribeExecution``: ``startDate`` datetime → epoch milliseconds.

    moto's ``.sync:2`` resolver puts boto3's ``DescribeExecution`` answer, datetimes included,
    into the state's data, which then cannot be JSON-encoded; AWS gives epoch milliseconds.
    """
    for key, value in list(parsed.items()):
        if isinstance(value, datetime.datetime):
            parsed[key] = int(value.timestamp() * 1000)


ENGINE_HOOKS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("provide-client-params.sfn", lower_parameter_names),
    ("after-call.sfn.StartExecution", add_pascal_case_copies),
    # Dates first, so that the PascalCase copies carry numbers too.
    ("after-call.sfn.DescribeExecution", datetimes_to_epoch_millis),
    ("after-call.sfn.DescribeExecution", add_pascal_case_copies),
)
"""The botocore hooks put on each client of the engine's Step Functions integrations."""


def _register_engine_hooks(client: Any) -> Any:
    for event, handler in ENGINE_HOOKS:
        client.meta.events.register(event, handler)
    return client


# --- EventBridge rules with Step Functions and Lambda targets ---------------------------------


@dataclass(frozen=True)
class RuleDelivery:
    """One event a rule delivered to a state machine: what started, and with which input."""

    rule: str
    target_arn: str
    input: str
    execution_arn: str


def _target_service(target: dict[str, Any]) -> str:
    """``states``, ``lambda``, ``sqs``, ...: the service of a target's ARN."""
    parts = str(target["Arn"]).split(":")
    return parts[2] if len(parts) > 2 else ""


def _deliver_to_targets(
    original: Callable[..., None],
    on_delivery: Callable[[RuleDelivery], None],
    lambdas: LambdaDeliveries,
) -> Callable[..., None]:
    """Wrap moto's ``Rule.send_to_targets`` so that Step Functions and Lambda targets get events.

    moto's rules deliver only to logs, SQS, archives, buses and API destinations: a
    ``states`` or ``lambda`` target raises ``NotImplementedError``, which S3's EventBridge
    notification path swallows, so an upload starts nothing (and ``PutEvents`` fails). That
    path also passes ``transform_input=False``, skipping the target's ``InputTransformer`` that
    AWS applies, and its events lack the ``ingestion-time`` that moto's transformer reads.
    moto's rules also deliver while DISABLED; ours do not.
    """

    def send_to_targets(rule: Any, event: dict[str, Any], transform_input: bool = True) -> None:
        ours = [t for t in rule.targets if _target_service(t) in ("states", "lambda")]
        others = [t for t in rule.targets if t not in ours]
        if ours and rule.state == "ENABLED" and rule.event_pattern.matches_event(event):
            for target in ours:
                try:
                    text = _target_input(target, event)
                    if _target_service(target) == "lambda":
                        lambdas.submit(rule.name, target["Arn"], text)
                    else:
                        _start_target(rule, target, text, on_delivery)
                except Exception:
                    # moto's caller swallows every error: say what happened at least.
                    logger.exception("rule %s could not deliver to %s", rule.name, target["Arn"])
        if others:
            clone = copy.copy(rule)
            clone.targets = others
            original(clone, event, transform_input)

    return send_to_targets


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> str:
    """Return what EventBridge sends a target: its transformer's output, its Input, or the event."""
    transformer = target.get("InputTransformer")
    if transformer:
        event = {"ingestion-time": datetime.datetime.now(datetime.UTC).isoformat(), **event}
        payload = EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=cast("EventMessageType", event),
        )
        return payload if isinstance(payload, str) else json.dumps(payload)
    if "Input" in target:
        return str(target["Input"])
    # moto adds ``ingestion-time`` for its transformer and keeps ``time`` in epoch seconds;
    # AWS's events have no such field and give the time in ISO 8601.
    sent = {k: v for k, v in event.items() if k != "ingestion-time"}
    if isinstance(sent.get("time"), int | float):
        moment = datetime.datetime.fromtimestamp(sent["time"], datetime.UTC)
        sent["time"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(sent)


def _start_target(
    rule: Any,
    target: dict[str, Any],
    text: str,
    on_delivery: Callable[[RuleDelivery], None],
) -> None:
    arn = target["Arn"]
    region, account = arn.split(":")[3], arn.split(":")[4]
    # EventBridge names the execution itself; moto's engine would name it "None".
    execution = get_backend(account, region).start_execution(arn, str(uuid.uuid4()), text)
    on_delivery(RuleDelivery(rule.name, arn, text, execution.execution_arn))


# --- one request at a time -------------------------------------------------------------------

_REQUEST_LOCK = threading.RLock()
"""Held while moto answers a request (re-entrant: an answer may make requests of its own)."""


def _atomic(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``BotocoreStubber.process_request`` so that moto answers one request at a time.

    moto's backends read and then write without a lock: two threads calling ``PutSecretValue``
    with the same ``ClientRequestToken`` can both create the version, where AWS refuses the
    second. Serialising requests gives each the atomicity AWS gives it.
    """

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with _REQUEST_LOCK:
            return original(self, request)

    return process_request


@contextmanager
def atomic_requests() -> Iterator[None]:
    """Make every moto request atomic for the length of the block (unit tests with threads)."""
    original = BotocoreStubber.process_request
    BotocoreStubber.process_request = _atomic(original)  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]


# --- bytes-like request bodies --------------------------------------------------------------


def _bodies_as_bytes(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``normalize_request`` as ``BotocoreStubber`` calls it: a bytearray body as bytes.

    botocore accepts any bytes-like body for a blob and sends it as it is; moto builds its
    werkzeug request with the body as ``data``, which werkzeug reads as form fields unless it
    is ``bytes`` or a string (``'bytearray' object has no attribute 'items'``). The copy is
    moto's: the caller's request, and the body botocore would send again on a retry, are left
    as they were.
    """

    def normalize_request(request: Any) -> Any:
        if isinstance(request, AWSPreparedRequest) and isinstance(
            request.body, bytearray | memoryview
        ):
            request = AWSPreparedRequest(
                method=request.method,
                url=request.url,
                headers=request.headers,
                body=bytes(request.body),
                stream_output=request.stream_output,
            )
        return original(request)

    return normalize_request


def _take_bytes_like_bodies(patches: Patches) -> None:
    patches.replace(
        botocore_stubber,
        "normalize_request",
        _bodies_as_bytes(vars(botocore_stubber)["normalize_request"]),
    )


@contextmanager
def bytes_like_bodies() -> Iterator[None]:
    """Let moto take ``bytearray`` request bodies for the length of the block (unit tests)."""
    patches = Patches()
    _take_bytes_like_bodies(patches)
    try:
        yield
    finally:
        patches.restore()


# --- the engine's list of every thread it started --------------------------------------------


def forget_finished_threads() -> None:
    """Drop the threads that have ended from moto's ``TMP_THREADS``.

    moto's engine appends each thread it starts (about fifteen per export execution) to
    ``moto.stepfunctions.parser.utils.TMP_THREADS`` and never removes one: the list, and every
    ``Thread`` object in it, grows with executions for the life of the process. Nothing reads
    it, so a finished thread has nothing left to do there. (The list is pruned in place: moto's
    modules hold it by reference. A thread appended while it is pruned may be dropped from it,
    which only forgets one more thread.)
    """
    TMP_THREADS[:] = [thread for thread in TMP_THREADS if thread.is_alive()]


def _forgetting_finished_threads(original: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``Execution.start``: each new execution first forgets the threads that ended."""

    def start(execution: Any) -> None:
        forget_finished_threads()
        original(execution)

    return start


# --- installation -----------------------------------------------------------------------------


class MotoShims:
    """Install every shim; undo them all.

    Parameters
    ----------
    on_delivery
        Called with each execution an EventBridge rule starts (the local stack records them).

    Attributes
    ----------
    lambda_deliveries
        The invocations of Lambda targets: their outcomes, and a way to wait for them.
    """

    def __init__(self, on_delivery: Callable[[RuleDelivery], None] | None = None) -> None:
        self._on_delivery = on_delivery or (lambda _: None)
        self._patches = Patches()
        self.lambda_deliveries = LambdaDeliveries()
        self.cache = EngineCache()
        """The engine's parse and client caches, installed over the shims."""

    @property
    def installed(self) -> bool:
        """Whether the shims are in place."""
        return bool(self._patches)

    def install(self) -> None:
        """Patch moto; idempotent."""
        if self._patches:
            return
        for module in _ENGINE_CLIENT_MODULES:
            original = module.boto_client_for
            self._patch(module, "boto_client_for", _engine_client_factory(original))
        self._patch(
            events_models.Rule,
            "send_to_targets",
            _deliver_to_targets(
                events_models.Rule.send_to_targets, self._on_delivery, self.lambda_deliveries
            ),
        )
        self._patch(
            Execution, "start", status_events.emitting_start(Execution.start, _REQUEST_LOCK)
        )
        self._patch(Execution, "start", _forgetting_finished_threads(Execution.start))
        self._patch(
            BaseExecutionWorkerCommunication,
            "terminated",
            status_events.emitting_terminated(
                BaseExecutionWorkerCommunication.terminated, _REQUEST_LOCK
            ),
        )
        self._patch(Execution, "stop", _ending_callback_waits(Execution.stop))
        self._patch(Environment, "set_error", _staying_stopped(Environment.set_error))
        self._patch(Environment, "set_timed_out", _staying_stopped(Environment.set_timed_out))
        self._patch(Timeout, "eval", _timeout_of_a_running_program(Timeout.eval))
        self._patch(BotocoreStubber, "process_request", _atomic(BotocoreStubber.process_request))
        _take_bytes_like_bodies(self._patches)
        self._patch(
            state_task_service_sfn.StateTaskServiceSfn, "_normalise_response", pascal_case_answer
        )
        result_writer.install()
        redrive.install()
        self.cache.install()  # last: the cached clients carry the hooks above

    def uninstall(self) -> None:
        """Restore moto as it was (let the caller settle the Lambda deliveries first)."""
        self.cache.uninstall()
        result_writer.uninstall()
        redrive.uninstall()
        self._patches.restore()
        self.lambda_deliveries.close()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patches.replace(owner, name, replacement)


def _ending_callback_waits(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``Execution.stop``: end the stopped execution's open ``.waitForTaskToken`` waits.

    moto's callback wait blocks on its own event until its timeout, whatever the execution's
    state. An outcome lets the task return; the engine then finds the program stopped and
    ends the execution ABORTED, as AWS does at once. No state of the machine sees the outcome.
    """

    def stop(self: Execution, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        env = self.exec_worker.env if self.exec_worker is not None else None
        if env is not None:
            pool = env.callback_pool_manager._pool
            for callback_id, endpoint in list(pool.items()):
                endpoint.notify(CallbackOutcomeSuccess(callback_id=callback_id, output="{}"))
        return result

    return stop


def _staying_stopped(original: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``Environment.set_error`` or ``set_timed_out``: a stopped program stays stopped."""

    def set_state(self: Environment, *args: Any, **kwargs: Any) -> None:
        with self._state_mutex:
            if not isinstance(self._program_state, ProgramStopped):
                original(self, *args, **kwargs)

    return set_state


class ProgramNotRunningError(RuntimeError):
    """A state's timeout was asked for after its program (or the task's frame) ended."""


def _timeout_of_a_running_program(original: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``Timeout.eval``: push the seconds, or raise if the program no longer runs.

    moto's components evaluate nothing once their program has ended, but the callers of a
    timeout pop a value all the same. Under the program's lock, the program cannot end between
    the check and the evaluation. The raise ends the task's frame thread quietly (its outcome is
    no longer read) or, after a stop, ends the state, which the stop has already ended.
    """

    def eval(self: Timeout, env: Environment) -> None:
        with env._state_mutex:
            if env.is_running():
                original(self, env)
                return
        raise ProgramNotRunningError(f"{type(self).__name__} of a program that has ended")

    return eval


def _engine_client_factory(original: Callable[..., Any]) -> Callable[..., Any]:
    def boto_client_for(*args: Any, **kwargs: Any) -> Any:
        return _register_engine_hooks(original(*args, **kwargs))

    return boto_client_for
