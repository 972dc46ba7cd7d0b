"""aistudios_local.lambda_bridge: handlers run in-process, with their own env, answering boto3."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from aistudios_local.lambda_bridge import Invocation, LambdaBridge, LocalFunction
from tests.unit._fixtures import ACCOUNT, REGION, fake_aws

HANDLER = """
import os

from aistudios_export.errors import ExportFailed

LOADS = []
LOADS.append(1)


class Unserialisable:
    pass


def lambda_handler(event, context):
    action = event.get("action")
    if action == "fail":
        raise ExportFailed("project 65fa6b07dca2e367461a2925 failed")
    if action == "value-error":
        raise ValueError("bad value")
    if action == "unserialisable":
        return {"thing": Unserialisable()}
    return {
        "env": dict(os.environ),
        "event": event,
        "function": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remaining_positive": context.get_remaining_time_in_millis() > 0,
        "loads": len(LOADS),
    }
"""


def function(
    code_dir: Path, name: str = "Echo", environment: dict[str, str] | None = None
) -> LocalFunction:
    return LocalFunction(
        logical_id=f"{name}Function",
        name=f"stack-{name}",
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stack-{name}",
        code_dir=code_dir,
        handler="app.lambda_handler",
        environment={"FN_VAR": name, "SHARED": "from-function"}
        if environment is None
        else environment,
        timeout=30,
        memory=512,
    )


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HANDLER, encoding="utf-8")
    return tmp_path


@pytest.fixture
def bridge(code_dir: Path) -> LambdaBridge:
    fn = function(code_dir)
    return LambdaBridge({fn.logical_id: fn}, {"BASE_VAR": "base", "SHARED": "from-base"})


# --- invoke ---------------------------------------------------------------------------


def test_handler_runs_with_exactly_its_environment(
    bridge: LambdaBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTSIDE_ONLY", "must-not-leak")
    before = dict(os.environ)
    result, error_type = bridge.invoke("stack-Echo", {"x": 1})
    assert error_type is None
    assert result["env"] == {
        "BASE_VAR": "base",
        "SHARED": "from-function",
        "FN_VAR": "Echo",
        "AWS_LAMBDA_FUNCTION_NAME": "stack-Echo",
    }
    assert dict(os.environ) == before


def test_handler_gets_the_event_and_a_context(bridge: LambdaBridge) -> None:
    result, _ = bridge.invoke("stack-Echo", {"x": [1, 2]})
    assert result["event"] == {"x": [1, 2]}
    assert result["function"] == "stack-Echo"
    assert result["arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stack-Echo"
    assert result["memory"] == 512
    assert result["remaining_positive"] is True


def test_function_is_found_by_name_and_arn_and_loaded_once(bridge: LambdaBridge) -> None:
    first, _ = bridge.invoke("stack-Echo", {})
    second, _ = bridge.invoke(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stack-Echo", {})
    assert (first["loads"], second["loads"]) == (1, 1)


def test_exception_is_reported_with_its_class_name(bridge: LambdaBridge) -> None:
    before = dict(os.environ)
    result, error_type = bridge.invoke("stack-Echo", {"action": "fail"})
    assert error_type == "ExportFailed"
    assert result["errorType"] == "ExportFailed"
    assert result["errorMessage"] == "project 65fa6b07dca2e367461a2925 failed"
    assert isinstance(result["stackTrace"], list)
    json.dumps(result)
    assert dict(os.environ) == before


def test_serialisation_failure_is_reported_as_an_error(bridge: LambdaBridge) -> None:
    result, error_type = bridge.invoke("stack-Echo", {"action": "unserialisable"})
    assert error_type == "TypeError"
    assert result["errorType"] == "TypeError"
    assert "not JSON serializable" in result["errorMessage"]
    json.dumps(result)


def test_invocations_are_recorded_and_reported(bridge: LambdaBridge) -> None:
    seen: list[Invocation] = []
    bridge.on_invocation = seen.append
    bridge.invoke("stack-Echo", {"action": "value-error"})
    assert [(i.function, i.payload, i.error_type) for i in bridge.invocations] == [
        ("EchoFunction", {"action": "value-error"}, "ValueError")
    ]
    assert seen == bridge.invocations


def test_environment_is_restored_when_the_module_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("raise RuntimeError('broken at import')\n", encoding="utf-8")
    fn = function(tmp_path)
    before = dict(os.environ)
    result, error_type = LambdaBridge({fn.logical_id: fn}, {}).invoke(fn.name, {})
    assert error_type == "RuntimeError"
    assert result["errorMessage"] == "broken at import"
    assert dict(os.environ) == before


def test_handler_module_may_define_a_dataclass(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from dataclasses import dataclass

            @dataclass
            class Answer:
                value: int

            def lambda_handler(event, context):
                return {"value": Answer(7).value}
            """
        ),
        encoding="utf-8",
    )
    fn = function(tmp_path)
    assert LambdaBridge({fn.logical_id: fn}, {}).invoke(fn.name, {}) == ({"value": 7}, None)


def test_handler_may_import_a_sibling_module(tmp_path: Path) -> None:
    (tmp_path / "helpers_for_bridge_test.py").write_text("VALUE = 7\n", encoding="utf-8")
    (tmp_path / "app.py").write_text(
        "from helpers_for_bridge_test import VALUE\n\n\ndef lambda_handler(event, context):\n"
        "    return {'value': VALUE}\n",
        encoding="utf-8",
    )
    fn = function(tmp_path)
    assert LambdaBridge({fn.logical_id: fn}, {}).invoke(fn.name, {}) == ({"value": 7}, None)


# --- the botocore hook ------------------------------------------------------------------


@pytest.fixture
def installed(bridge: LambdaBridge, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaBridge]:
    with fake_aws(monkeypatch):
        bridge.install()
        try:
            yield bridge
        finally:
            bridge.uninstall()


def test_boto3_invoke_gets_the_handler_payload(installed: LambdaBridge) -> None:
    answer = boto3.client("lambda").invoke(
        FunctionName="stack-Echo", Payload=json.dumps({"x": 1}).encode()
    )
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    payload = json.loads(answer["Payload"].read())
    assert payload["event"] == {"x": 1}
    assert payload["env"]["FN_VAR"] == "Echo"
    assert installed.invocations[-1].function == "EchoFunction"


def test_boto3_invoke_by_arn(installed: LambdaBridge) -> None:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stack-Echo"
    answer = boto3.client("lambda").invoke(FunctionName=arn, Payload=b"{}")
    assert json.loads(answer["Payload"].read())["function"] == "stack-Echo"


def test_boto3_invoke_of_a_failing_handler_is_an_unhandled_function_error(
    installed: LambdaBridge,
) -> None:
    answer = boto3.client("lambda").invoke(FunctionName="stack-Echo", Payload=b'{"action": "fail"}')
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    payload: dict[str, Any] = json.loads(answer["Payload"].read())
    assert (payload["errorType"], payload["errorMessage"]) == (
        "ExportFailed",
        "project 65fa6b07dca2e367461a2925 failed",
    )


def test_other_functions_are_left_to_moto(installed: LambdaBridge) -> None:
    with pytest.raises(ClientError) as info:
        boto3.client("lambda").invoke(FunctionName="not-ours", Payload=b"{}")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert installed.invocations == []


def test_uninstall_removes_the_hook(installed: LambdaBridge) -> None:
    installed.invoke("stack-Echo", {})
    installed.uninstall()
    assert not [name for name in sys.modules if name.startswith("_local_EchoFunction_")]
    with pytest.raises(ClientError):
        boto3.client("lambda").invoke(FunctionName="stack-Echo", Payload=b"{}")
    assert [i.function for i in installed.invocations] == ["EchoFunction"]


def test_a_shut_down_function_forgets_its_containers(bridge: LambdaBridge) -> None:
    def containers() -> list[str]:
        return [name for name in sys.modules if name.startswith("_local_EchoFunction_")]

    bridge.invoke("stack-Echo", {})
    assert len(containers()) == 1
    (fn,) = {f.logical_id: f for f in bridge._functions.values()}.values()
    fn.shut_down()
    assert containers() == []
    assert bridge.invoke("stack-Echo", {})[0]["loads"] == 1  # a new container, loaded afresh
    assert fn.containers == 2
    fn.shut_down()


# --- concurrency, as Lambda scales ---------------------------------------------------------


RENDEZVOUS = """
import sys

def lambda_handler(event, context):
    # Both invocations must be inside a handler at once for either to get past this.
    sys.modules["_bridge_rendezvous"].barrier.wait(timeout=10)
    return {"ok": True}
"""


def test_invocations_run_at_the_same_time_in_containers_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "app.py").write_text(RENDEZVOUS, encoding="utf-8")
    rendezvous = types.ModuleType("_bridge_rendezvous")
    rendezvous.barrier = threading.Barrier(2)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "_bridge_rendezvous", rendezvous)
    fn = function(tmp_path)
    bridge = LambdaBridge({fn.logical_id: fn}, {})
    answers: list[tuple[Any, str | None]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(bridge.invoke(fn.name, {})))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == [({"ok": True}, None)] * 2, "a lock around invocations breaks the barrier"
    assert fn.containers == 2


def test_a_warm_container_is_reused_and_keeps_its_state(bridge: LambdaBridge) -> None:
    loads = [bridge.invoke("stack-Echo", {})[0]["loads"] for _ in range(3)]
    assert loads == [1, 1, 1]
    (fn,) = {f.logical_id: f for f in bridge._functions.values()}.values()
    assert fn.containers == 1
