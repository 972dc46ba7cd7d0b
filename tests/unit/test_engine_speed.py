"""local/aistudios_local/engine_speed.py: each shim saves work and changes no outcome.

- JSONPath: moto parses a path anew at every evaluation (a new lexer and LALR parser each
  time); with the shim one expression per path text serves every call and thread, and finds
  exactly what a fresh parse finds.
- ``.sync:2``: with the fallback interval set far beyond the tests' deadlines, a parent still
  sees its child's end at once (succeeded, failed), a stopped parent's wait ends, and an answer
  to the task's token ends the wait, which only the wake-ups can do; the parent asks
  ``DescribeExecution`` a few times, not twice a second.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import boto3.session
import pytest
from botocore import useragent
from jsonpath_ng.ext.parser import parse as fresh_parse
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state import state_props
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import json_path

from aistudios_local.engine_speed import EngineSpeed
from aistudios_local.moto_shims import MotoShims
from tests.unit.test_moto_shims import ROLE, engine, finished

__all__ = ["engine"]  # the fixture, imported so that pytest finds it here


def moto_parse(path: str) -> Any:
    """Parse as moto's ``extract_json`` does now (its module's ``parse``, shim or not)."""
    return vars(json_path)["parse"](path)


def result_parse(path: str) -> Any:
    """Parse as moto's ``ResultPath`` does now."""
    return vars(result_path)["parse"](path)


def patched() -> tuple[Any, ...]:
    """What the shims replace (each from its owner's own namespace)."""
    return (
        vars(json_path)["parse"],
        vars(result_path)["parse"],
        vars(state_task_service_callback)["time"],
        vars(state_task_service_callback.StateTaskServiceCallback)["_eval_sync"],
        vars(useragent)["sanitize_user_agent_string_component"],
        vars(state_props.StateProps)["add"],
    )


REPO = Path(__file__).resolve().parents[2]
LONG_FALLBACK = 120.0
"""Far beyond every deadline here: a wait that ends came from a wake-up, not from polling."""

DATA: dict[str, Any] = {
    "job": {"id": "a", "items": [{"n": 1}, {"n": 2}, {"n": 3}]},
    "n": 5,
    "empty": [],
}
PATHS = ["$", "$.job", "$.job.id", "$.job.items[*].n", "$.job.items[1]", "$.n", "$.empty[*]"]


@pytest.fixture
def shims(engine: None) -> Iterator[MotoShims]:
    installed = MotoShims()
    installed.install()
    installed.cache.speed.sync_waits.fallback_seconds = LONG_FALLBACK
    try:
        yield installed
    finally:
        installed.uninstall()


# --- JSONPath --------------------------------------------------------------------------------


def test_moto_parses_every_path_anew_and_the_shim_parses_each_once() -> None:
    assert moto_parse("$.job") is not moto_parse("$.job")  # the waste
    speed = EngineSpeed()
    speed.install()
    try:
        assert moto_parse("$.job") is moto_parse("$.job")
        assert result_parse("$.out") is result_parse("$.out")
    finally:
        speed.uninstall()
    assert moto_parse("$.job") is not moto_parse("$.job")  # moto as it was


def test_cached_expressions_find_what_fresh_ones_find_in_every_thread() -> None:
    expected = {path: json_path.extract_json(path, DATA) for path in PATHS}
    speed = EngineSpeed()
    speed.install()
    found: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def extract(offset: int) -> None:
        data = {**DATA, "n": DATA["n"] + offset}
        try:
            for _ in range(20):
                got = {path: json_path.extract_json(path, data) for path in PATHS}
                assert got["$.n"] == DATA["n"] + offset
                found.append({**got, "$.n": DATA["n"], "$": {**got["$"], "n": DATA["n"]}})
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    try:
        threads = [threading.Thread(target=extract, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        speed.uninstall()
    assert not errors
    assert len(found) == 8 * 20
    assert all(got == expected for got in found)
    assert [m.value for m in fresh_parse("$.job.items[*].n").find(DATA)] == [1, 2, 3]


def test_a_path_that_does_not_parse_raises_every_time() -> None:
    speed = EngineSpeed()
    speed.install()
    try:
        for _ in range(2):
            with pytest.raises(Exception) as raised:
                moto_parse("$.[")
            assert type(raised.value).__name__ == "JsonPathParserError"
    finally:
        speed.uninstall()


def test_uninstall_restores_every_patched_name() -> None:
    before = patched()
    speed = EngineSpeed()
    speed.install()
    speed.install()  # idempotent
    speed.uninstall()
    assert patched() == before
    assert vars(state_task_service_callback)["time"] is time


# --- state properties -------------------------------------------------------------------------


def _filed(definition: str) -> list[list[tuple[type, type]]]:
    """Build a definition's components; return how each state's properties were filed."""
    built: list[Any] = []
    original_init: Any = state_props.StateProps.__init__

    def init(props: Any) -> None:
        original_init(props)
        built.append(props)

    state_props.StateProps.__init__ = init  # type: ignore[method-assign]
    try:
        AmazonStateLanguageParser.parse(definition)
    finally:
        state_props.StateProps.__init__ = original_init  # type: ignore[method-assign]
    return [[(k, type(v)) for k, v in props._instance_by_type.items()] for props in built]


@pytest.mark.parametrize("name", ["export.asl.json", "batch.asl.json"])
def test_state_properties_are_filed_as_moto_files_them(name: str) -> None:
    definition = re.sub(
        r"\$\{\w+\}",
        "arn:aws:lambda:us-east-1:123456789012:function:f",
        (REPO / "statemachine" / name).read_text(),
    )
    plain = _filed(definition)
    speed = EngineSpeed()
    speed.install()
    try:
        fast = _filed(definition)
    finally:
        speed.uninstall()
    assert len(plain) > 10
    assert fast == plain


def test_end_and_next_together_are_refused_as_moto_refuses_them() -> None:
    definition = json.dumps(
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A", "End": True}}}
    )
    with pytest.raises(Exception) as plain:
        AmazonStateLanguageParser.parse(definition)
    speed = EngineSpeed()
    speed.install()
    try:
        with pytest.raises(Exception) as fast:
            AmazonStateLanguageParser.parse(definition)
    finally:
        speed.uninstall()
    assert (type(fast.value), str(fast.value)) == (type(plain.value), str(plain.value))
    assert "redefines" in str(plain.value)


# --- User-Agent --------------------------------------------------------------------------------


def test_requests_carry_the_same_user_agent_with_the_sanitiser_cached() -> None:
    seen: list[str] = []

    def user_agents() -> list[str]:
        client = boto3.session.Session().client(
            "sts",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def record(request: Any, **_: Any) -> None:
            header = request.headers["User-Agent"]
            seen.append(header.decode() if isinstance(header, bytes) else header)
            raise _Stop

        client.meta.events.register("before-send.sts.*", record)
        for _ in range(2):
            with pytest.raises(_Stop):
                client.get_caller_identity()
        return seen[-2:]

    plain = user_agents()
    speed = EngineSpeed()
    speed.install()
    try:
        cached = user_agents()
        sanitize = vars(useragent)["sanitize_user_agent_string_component"]
        assert sanitize("a b#c/1", False) == "a-b-c-1"
        assert sanitize("a b#c/1", True) == "a-b#c-1"
    finally:
        speed.uninstall()
    assert cached == plain  # byte for byte, however many requests
    assert "aistudios" not in plain[0]  # a plain client: nothing of ours in its header


class _Stop(Exception):
    """Ends a request once its headers are seen (nothing leaves the process)."""


# --- .sync:2 waits ---------------------------------------------------------------------------


def _machine(name: str, definition: dict[str, Any]) -> str:
    sfn = boto3.client("stepfunctions")
    return str(
        sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)[
            "stateMachineArn"
        ]
    )


def _parent(child_arn: str, parameters: dict[str, Any] | None = None) -> str:
    return _machine(
        "parent",
        {
            "StartAt": "Run",
            "States": {
                "Run": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::states:startExecution.sync:2",
                    "Parameters": {"StateMachineArn": child_arn, "Name": "row-1"}
                    | (parameters or {}),
                    "End": True,
                }
            },
        },
    )


def _start(arn: str) -> str:
    sfn = boto3.client("stepfunctions")
    return str(sfn.start_execution(stateMachineArn=arn, name="parent-1")["executionArn"])


def _count_describes(shims: MotoShims) -> list[str]:
    """Record the engine's DescribeExecution calls (the test's own waits run in its thread)."""
    seen: list[str] = []
    session = boto3.DEFAULT_SESSION
    assert session is not None

    def record(**_: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            seen.append(threading.current_thread().name)

    session.events.register("before-call.sfn.DescribeExecution", record)
    return seen


def test_a_parent_sees_its_child_succeed_at_once_and_asks_a_few_times(shims: MotoShims) -> None:
    child = _machine(
        "child",
        {
            "StartAt": "Wait",
            "States": {
                "Wait": {"Type": "Wait", "Seconds": 2, "Next": "Done"},
                "Done": {"Type": "Pass", "Result": {"ok": True}, "End": True},
            },
        },
    )
    describes = _count_describes(shims)
    started = time.monotonic()
    parent = finished(_start(_parent(child)))
    assert parent["status"] == "SUCCEEDED", parent.get("cause")
    assert json.loads(parent["output"])["Output"] == {"ok": True}
    assert time.monotonic() - started < 8  # not the 120 s fallback: the child's end woke it
    assert shims.cache.speed.sync_waits.woken == 1
    assert len(describes) <= 3  # moto alone: one every 0.5 s of the child's 2 s


def test_a_parent_sees_its_child_fail(shims: MotoShims) -> None:
    child = _machine(
        "child",
        {
            "StartAt": "Wait",
            "States": {
                "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Fail"},
                "Fail": {"Type": "Fail", "Error": "Broken", "Cause": "on purpose"},
            },
        },
    )
    parent = finished(_start(_parent(child)))
    assert parent["status"] == "FAILED"
    assert parent["error"] == "States.TaskFailed"
    assert json.loads(parent["cause"])["Error"] == "Broken"


def test_stopping_the_parent_ends_its_wait(shims: MotoShims) -> None:
    child = _machine(
        "child",
        {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}},
    )
    sfn = boto3.client("stepfunctions")
    parent_arn = _start(_parent(child))
    _wait_until(lambda: _child_arn(sfn, child) is not None)
    sfn.stop_execution(executionArn=parent_arn)
    assert finished(parent_arn)["status"] == "ABORTED"
    # moto's loop checks that its program still runs after each wake-up: the wait is over.
    _wait_until(lambda: not shims.cache.speed.sync_waits._events)
    child_arn = _child_arn(sfn, child)
    assert child_arn is not None
    sfn.stop_execution(executionArn=child_arn)


def test_an_answer_to_the_task_token_ends_the_wait(shims: MotoShims) -> None:
    child = _machine(
        "child",
        {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}},
    )
    sfn = boto3.client("stepfunctions")
    parent_arn = _start(_parent(child, {"Input": {"token.$": "$$.Task.Token"}}))
    _wait_until(lambda: _child_arn(sfn, child) is not None)
    child_arn = _child_arn(sfn, child)
    assert child_arn is not None
    token = json.loads(sfn.describe_execution(executionArn=child_arn)["input"])["token"]
    started = time.monotonic()
    sfn.send_task_success(taskToken=token, output=json.dumps({"answered": True}))
    parent = finished(parent_arn)
    assert parent["status"] == "SUCCEEDED", parent.get("cause")
    assert json.loads(parent["output"]) == {"answered": True}
    assert time.monotonic() - started < 8  # not the 120 s fallback
    sfn.stop_execution(executionArn=child_arn)


def _child_arn(sfn: Any, machine_arn: str) -> str | None:
    executions = sfn.list_executions(stateMachineArn=machine_arn)["executions"]
    return str(executions[0]["executionArn"]) if executions else None


def _wait_until(condition: Any, deadline_seconds: float = 10) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
