"""Shims that make moto's Step Functions engine do less per call, with the same outcomes.

A local batch spends most of its CPU in moto's engine and the botocore calls it and the
handlers make (``python -m bench scale``). Four of those costs repeat work whose result is
already known:

- **JSONPath parsing.** Every ``InputPath``, ``Parameters`` path, ``Choice`` variable and
  ``ResultPath`` is parsed again at every evaluation, and ``jsonpath_ng``'s ``parse`` builds a
  new lexer and LALR parser (reading its tables) for each call: several milliseconds for a
  path like ``$.job``. :func:`cached_parse` keeps the parsed expression of each path text. A
  parsed expression is a tree of immutable nodes that ``find`` and ``update_or_create`` only
  read (they build new ``DatumInContext`` objects and change the data, never the expression),
  so one expression serves every thread; a path that does not parse raises as before and is
  not kept.
- **Polling a ``.sync:2`` child.** ``states:startExecution.sync:2`` calls ``DescribeExecution``
  every 0.5 s until the child ends: a batch's Map waits on every running export that way, and
  each call goes through botocore and moto. :class:`SyncWaits` wakes such a wait when the child
  (or the waiting execution itself) ends, from the engine's ``terminated`` hook, or when the
  task's token gets an answer (moto's loop ends on that too), and otherwise polls every
  :data:`SYNC_FALLBACK_SECONDS`. The parent still learns the child's end from
  ``DescribeExecution``, as before; it asks right after the end instead of up to 0.5 s later,
  and a few times per child instead of twice a second. Waits without a known child (other
  ``.sync`` integrations) keep moto's interval.
- **A state's properties.** moto's preprocessor builds every execution's components afresh
  (``engine_cache`` keeps only the parse tree), and ``StateProps.add`` tests each property
  against fourteen classes with ``issubclass`` (ABC checks): a third of that build.
  :func:`state_props_add` keeps, per property class, which of them it is filed under (the
  first that matches, in the same order), and files it as before.
- **The User-Agent header.** botocore rebuilds it for every request (twice), sanitising each of
  its few dozen components character by character: about 0.3 ms a request, some thirty requests
  an export. :func:`cached_sanitizer` keeps the answer of that pure function per component
  text, so the header is byte for byte what it was.

:class:`EngineSpeed` installs all four (``EngineCache`` does, with its caches) and restores moto as
it was on uninstall.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

from botocore import useragent
from jsonpath_ng.ext.parser import parse as jsonpath_ext_parse
from jsonpath_ng.parser import parse as jsonpath_parse
from moto.stepfunctions.parser.asl.component.common.flow.end import End
from moto.stepfunctions.parser.asl.component.common.flow.next import Next
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state import state_props
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501 - moto's module path
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (  # noqa: E501 - moto's module path
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.parse.typed_props import TypedProps
from moto.stepfunctions.parser.asl.utils import json_path
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

from aistudios_local.patches import Patches

__all__ = [
    "MAX_PATHS",
    "SYNC_FALLBACK_SECONDS",
    "EngineSpeed",
    "SyncWaits",
    "cached_parse",
    "cached_sanitizer",
    "state_props_add",
]

MAX_PATHS: Final = 4096
"""Parsed JSONPath expressions kept per parser (a definition has a few dozen paths)."""

SYNC_FALLBACK_SECONDS: Final = 10.0
"""How often a ``.sync:2`` wait asks ``DescribeExecution`` when no end woke it (moto: 0.5 s)."""


def cached_parse(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Return ``parse`` with its expressions kept per path text (thread-safe LRU)."""
    return functools.lru_cache(maxsize=MAX_PATHS)(parse)


def cached_sanitizer(sanitize: Callable[[str, bool], str]) -> Callable[[str, bool], str]:
    """Return botocore's User-Agent component sanitiser with its answers kept (thread-safe LRU).

    A component that cannot be a cache key (not hashable) is sanitised as before.
    """
    cached = functools.lru_cache(maxsize=MAX_PATHS)(sanitize)

    def sanitize_user_agent_string_component(raw_str: str, allow_hash: bool) -> str:
        try:
            return cached(raw_str, allow_hash)
        except TypeError:
            return sanitize(raw_str, allow_hash)

    return sanitize_user_agent_string_component


_FILED_UNDER: dict[type, type | None] = {}
"""Property class → the ``UNIQUE_SUBINSTANCES`` class it is filed under (``None``: its own)."""


def _filed_under(inst_type: type) -> type | None:
    try:
        return _FILED_UNDER[inst_type]
    except KeyError:
        pass
    # moto's loop: the first class of the set, in its iteration order, that the type subclasses.
    found = next((t for t in state_props.UNIQUE_SUBINSTANCES if issubclass(inst_type, t)), None)
    _FILED_UNDER[inst_type] = found  # the same answer whichever thread stores it
    return found


def state_props_add(props: Any, instance: Any) -> None:
    """Do what moto's ``StateProps.add`` does, with its subclass search kept per class."""
    inst_type = type(instance)
    # End-Next conflicts (moto's messages):
    if inst_type == End and Next in props._instance_by_type:
        raise ValueError(f"End redefines Next, from '{props.get(Next)}' to '{instance}'.")
    if inst_type == Next and End in props._instance_by_type:
        raise ValueError(f"Next redefines End, from '{props.get(End)}' to '{instance}'.")
    typ = _filed_under(inst_type)
    if typ is not None:
        TypedProps._add(props, typ, instance)
        return
    TypedProps.add(props, instance)


class _SleepOrWake:
    """The callback module's ``time``: ``sleep`` waits for the waiting thread's wake-up."""

    def __init__(self, waits: SyncWaits) -> None:
        self._waits = waits

    def sleep(self, seconds: float) -> None:
        self._waits.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class SyncWaits:
    """Wake ``.sync:2`` waits when the child execution or the waiting one ends.

    A wait registers one event under the child's ARN and the waiting execution's ARN; the
    engine's ``terminated`` hook (after the status change is visible to ``DescribeExecution``)
    sets the events registered under the ARN of the execution that ended.
    """

    def __init__(self, fallback_seconds: float = SYNC_FALLBACK_SECONDS) -> None:
        self.fallback_seconds = fallback_seconds
        self._lock = threading.Lock()
        self._events: dict[str, set[threading.Event]] = {}
        self._polling: set[threading.Event] = set()
        self._local = threading.local()
        self.woken = 0
        """How many waits an end woke (before their fallback interval ran out)."""

    def build_sync2_resolver(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``StateTaskServiceSfn._build_sync2_resolver``: tag the resolver with its child."""

        def _build_sync2_resolver(task: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
            submission = env.stack[-1] if env.stack else None
            resolver = original(task, env, *args, **kwargs)
            if isinstance(submission, dict) and isinstance(submission.get("ExecutionArn"), str):
                resolver._child_execution_arn = submission["ExecutionArn"]
            return resolver

        return _build_sync2_resolver

    def eval_sync(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``StateTaskServiceCallback._eval_sync``: register the wait while it runs."""

        def _eval_sync(task: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
            resolver = kwargs.get("sync_resolver", args[0] if args else None)
            child = getattr(resolver, "_child_execution_arn", None)
            if child is None:  # not a .sync:2 child: moto's own interval
                return original(task, env, *args, **kwargs)
            event = threading.Event()
            arns = {child, _execution_arn(env), _token_key(kwargs.get("callback_endpoint"))}
            arns.discard(None)
            self._register(arns, event)
            self._local.event = event
            try:
                return original(task, env, *args, **kwargs)
            finally:
                self._local.event = None
                self._unregister(arns, event)

        return _eval_sync

    def wait_for_task_token(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``StateTaskServiceCallback._eval_wait_for_task_token``: wake on its outcome.

        moto's ``.sync`` loop also ends when the task's token gets an answer (its listening
        thread sets the outcome), which it used to see at its next 0.5 s tick.
        """

        def _eval_wait_for_task_token(task: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(task, *args, **kwargs)
            finally:
                key = _token_key(kwargs.get("callback_endpoint"))
                if key is not None:
                    # moto's thread stores the outcome only after this returns: back to moto's
                    # interval for this wait, rather than up to the fallback late.
                    self.wake(key, keep_polling=True)

        return _eval_wait_for_task_token

    def terminated(self, original: Callable[..., None]) -> Callable[..., None]:
        """Wrap ``BaseExecutionWorkerCommunication.terminated``: wake the waits on that ARN."""

        def terminated(communication: Any) -> None:
            try:
                original(communication)
            finally:
                self.wake(communication.execution.exec_arn)

        return terminated

    def wake(self, arn: str, *, keep_polling: bool = False) -> None:
        """Wake every wait registered under ``arn`` (``keep_polling``: at moto's interval)."""
        with self._lock:
            events = list(self._events.get(arn, ()))
            if keep_polling:
                self._polling.update(events)
        for event in events:
            event.set()

    def sleep(self, seconds: float) -> None:
        """Sleep as moto's loop asked, or until woken (at most the fallback) in a known wait."""
        event: threading.Event | None = getattr(self._local, "event", None)
        if event is None:
            time.sleep(seconds)
            return
        with self._lock:
            timeout = seconds if event in self._polling else max(seconds, self.fallback_seconds)
        if event.wait(timeout):
            with self._lock:
                self.woken += 1
        event.clear()  # the loop asks DescribeExecution next, after this

    def _register(self, arns: set[Any], event: threading.Event) -> None:
        with self._lock:
            for arn in arns:
                self._events.setdefault(arn, set()).add(event)

    def _unregister(self, arns: set[Any], event: threading.Event) -> None:
        with self._lock:
            for arn in arns:
                events = self._events.get(arn)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._events[arn]
            self._polling.discard(event)


def _token_key(callback_endpoint: Any) -> str | None:
    """Return the key a task token's outcome wakes waits under (``None``: no endpoint)."""
    callback_id = getattr(callback_endpoint, "callback_id", None)
    return f"task-token:{callback_id}" if callback_id is not None else None


def _execution_arn(env: Any) -> str | None:
    """Return the ARN of the execution ``env`` evaluates (its context's ``Execution.Id``)."""
    try:
        arn = env.states.context_object.context_object_data["Execution"]["Id"]
    except (AttributeError, KeyError, TypeError):
        return None
    return arn if isinstance(arn, str) else None


class EngineSpeed:
    """Install the JSONPath and User-Agent caches and the ``.sync:2`` wake-ups; undo. Idempotent."""

    def __init__(self) -> None:
        self.sync_waits = SyncWaits()
        self._patches = Patches()

    @property
    def installed(self) -> bool:
        """Whether the shims are in place."""
        return bool(self._patches)

    def install(self) -> None:
        """Patch moto (over whatever is installed now, e.g. the status events' hook)."""
        if self._patches:
            return
        self.sync_waits = SyncWaits()
        self._patch(json_path, "parse", cached_parse(jsonpath_ext_parse))
        self._patch(result_path, "parse", cached_parse(jsonpath_parse))
        self._patch(state_props.StateProps, "add", state_props_add)
        self._patch(
            useragent,
            "sanitize_user_agent_string_component",
            cached_sanitizer(useragent.sanitize_user_agent_string_component),
        )
        self._patch(state_task_service_callback, "time", _SleepOrWake(self.sync_waits))
        self._patch(
            StateTaskServiceSfn,
            "_build_sync2_resolver",
            self.sync_waits.build_sync2_resolver(StateTaskServiceSfn._build_sync2_resolver),
        )
        self._patch(
            StateTaskServiceCallback,
            "_eval_sync",
            self.sync_waits.eval_sync(StateTaskServiceCallback._eval_sync),
        )
        self._patch(
            StateTaskServiceCallback,
            "_eval_wait_for_task_token",
            self.sync_waits.wait_for_task_token(StateTaskServiceCallback._eval_wait_for_task_token),
        )
        self._patch(
            BaseExecutionWorkerCommunication,
            "terminated",
            self.sync_waits.terminated(BaseExecutionWorkerCommunication.terminated),
        )

    def uninstall(self) -> None:
        """Restore moto as it was."""
        self._patches.restore()

    def _patch(self, owner: type | ModuleType, name: str, replacement: Any) -> None:
        self._patches.replace(owner, name, replacement)
