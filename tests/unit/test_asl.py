"""statemachine/export.asl.json: structure, bounds, and that its error names match errors.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from aistudios_export import errors
from aistudios_export.models import TIMEOUT_SECONDS
from tests.unit._fixtures import ROOT

ASL_PATH = ROOT / "statemachine" / "export.asl.json"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")
LAMBDA_SERVICE_ERRORS = frozenset(
    {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.Unknown",
    }
)


def substituted(text: str) -> str:
    """Replace every ``${Name}`` DefinitionSubstitution with a dummy value of the right shape."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name.endswith("FunctionArn"):
            return f"arn:aws:lambda:us-east-1:123456789012:function:{name.removesuffix('Arn')}"
        if name.startswith("Default"):
            return "60"
        return f"dummy-{name}"

    return PLACEHOLDER.sub(value, text)


@cache
def _definition() -> str:
    return substituted(ASL_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def asl() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(_definition())
    return value


def states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    value: dict[str, dict[str, Any]] = asl["States"]
    return value


def of_type(asl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in states(asl).items() if s["Type"] == kind}


def lambda_tasks(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: s for n, s in of_type(asl, "Task").items() if s["Resource"].startswith("arn:aws:lambda:")
    }


def targets(state: dict[str, Any]) -> Iterator[str]:
    """Every state name this state can go to next."""
    if "Next" in state:
        yield state["Next"]
    if "Default" in state:
        yield state["Default"]
    for choice in state.get("Choices", []):
        yield choice["Next"]
    for catcher in state.get("Catch", []):
        yield catcher["Next"]


def test_every_placeholder_is_substituted() -> None:
    raw = ASL_PATH.read_text(encoding="utf-8")
    assert PLACEHOLDER.search(raw), "the definition takes DefinitionSubstitutions"
    assert "${" not in _definition()


def test_start_and_states_are_sane(asl: dict[str, Any]) -> None:
    assert asl["StartAt"] in states(asl)
    assert states(asl)
    kinds = {"Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"}
    for name, state in states(asl).items():
        assert state["Type"] in kinds, name
        terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
        if state["Type"] == "Choice":
            assert "Next" not in state and "End" not in state, name
        else:
            assert terminal != ("Next" in state), f"{name} needs exactly one of Next/End"
    assert any(s["Type"] == "Fail" for s in states(asl).values())
    assert any(s.get("End") is True or s["Type"] == "Succeed" for s in states(asl).values())


def test_execution_has_a_timeout_above_every_budget(asl: dict[str, Any]) -> None:
    timeout = asl["TimeoutSeconds"]
    assert isinstance(timeout, int) and timeout > 0
    # The longest export budget a request may ask for, plus storing the video, fits inside.
    assert TIMEOUT_SECONDS[1] + states(asl)["FinalizeExport"]["TimeoutSeconds"] < timeout


def test_every_task_has_a_timeout(asl: dict[str, Any]) -> None:
    for name, task in of_type(asl, "Task").items():
        assert isinstance(task.get("TimeoutSeconds"), int) and task["TimeoutSeconds"] > 0, name
        assert task["TimeoutSeconds"] <= 900, name  # Lambda's own maximum


def test_every_choice_has_a_default(asl: dict[str, Any]) -> None:
    choices = of_type(asl, "Choice")
    assert choices
    for name, choice in choices.items():
        assert choice.get("Default") in states(asl), name


def test_every_next_target_exists(asl: dict[str, Any]) -> None:
    for name, state in states(asl).items():
        for target in targets(state):
            assert target in states(asl), f"{name} → {target}"


def test_every_state_is_reachable(asl: dict[str, Any]) -> None:
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(targets(states(asl)[name]))
    assert seen == set(states(asl))


def test_every_cycle_passes_through_a_choice(asl: dict[str, Any]) -> None:
    """A loop can only end if something decides: without Choice states the graph is acyclic."""
    graph = {
        n: [t for t in targets(s) if states(asl)[t]["Type"] != "Choice"]
        for n, s in states(asl).items()
        if s["Type"] != "Choice"
    }
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"a cycle without a Choice runs through {name}"
        if name in done:
            return
        visiting.add(name)
        for target in graph[name]:
            visit(target)
        visiting.discard(name)
        done.add(name)

    for name in graph:
        visit(name)


def test_wait_states_use_seconds_path(asl: dict[str, Any]) -> None:
    waits = of_type(asl, "Wait")
    assert waits
    for name, wait in waits.items():
        assert wait.get("SecondsPath") == "$.job.nextPollSeconds", name
        assert not {"Seconds", "Timestamp", "TimestampPath"} & set(wait), name


def test_every_retry_has_full_jitter_and_a_delay_cap(asl: dict[str, Any]) -> None:
    retries = [(n, r) for n, s in states(asl).items() for r in s.get("Retry", [])]
    assert retries
    for name, retry in retries:
        assert retry.get("JitterStrategy") == "FULL", name
        assert isinstance(retry.get("MaxDelaySeconds"), int) and retry["MaxDelaySeconds"] > 0, name
        assert 0 < retry.get("MaxAttempts", 3) <= 10, name


def test_lambda_tasks_retry_only_transient_errors(asl: dict[str, Any]) -> None:
    allowed = set(errors.TRANSIENT_ERROR_NAMES) | LAMBDA_SERVICE_ERRORS
    tasks = lambda_tasks(asl)
    assert set(tasks) == {"SubmitExport", "CheckProgress", "FinalizeExport", "RefreshToken"}
    for name, task in tasks.items():
        retried = {e for r in task.get("Retry", []) for e in r["ErrorEquals"]}
        assert retried, f"{name} retries nothing"
        assert retried <= allowed, f"{name} retries final errors: {sorted(retried - allowed)}"


def test_transient_errors_are_retried_where_they_can_be_raised(asl: dict[str, Any]) -> None:
    api_transient = {"RateLimited", "ServiceUnavailable", "NetworkError"}
    for name, task in lambda_tasks(asl).items():
        retried = {e for r in task.get("Retry", []) for e in r["ErrorEquals"]}
        assert api_transient <= retried, name
    finalize = {e for r in states(asl)["FinalizeExport"]["Retry"] for e in r["ErrorEquals"]}
    assert {"DownloadInterrupted", "StorageError"} <= finalize


def test_every_error_name_is_an_error_class(asl: dict[str, Any]) -> None:
    names = {
        e
        for state in states(asl).values()
        for rule in state.get("Retry", []) + state.get("Catch", [])
        for e in rule["ErrorEquals"]
    }
    for name in names:
        if name.startswith(("States.", "Lambda.")):
            continue
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, errors.ExportError), name


def test_states_all_comes_last(asl: dict[str, Any]) -> None:
    for name, state in states(asl).items():
        for key in ("Retry", "Catch"):
            rules = state.get(key, [])
            for i, rule in enumerate(rules):
                if "States.ALL" in rule["ErrorEquals"]:
                    assert rule["ErrorEquals"] == ["States.ALL"] and i == len(rules) - 1, (
                        f"{name}.{key}"
                    )


def test_unauthorized_is_caught_before_anything_else(asl: dict[str, Any]) -> None:
    for name, task in lambda_tasks(asl).items():
        if name == "RefreshToken":
            continue
        first = task["Catch"][0]
        assert first["ErrorEquals"] == ["Unauthorized"], name
        assert first["Next"] == f"AuthFailedIn{name}"
        assert states(asl)[first["Next"]]["Result"] == name


def test_token_refresh_loop_is_bounded(asl: dict[str, Any]) -> None:
    choice = states(asl)["CanRefreshToken"]
    (rule,) = choice["Choices"]
    assert rule["Variable"] == "$.auth.refreshes" and rule["NumericLessThan"] <= 3
    assert rule["Next"] == "RefreshToken"
    assert states(asl)["Init"]["Parameters"]["auth"] == {"refreshes": 0}


def test_no_jsonata(asl: dict[str, Any]) -> None:
    text = _definition()
    assert asl.get("QueryLanguage", "JSONPath") == "JSONPath"
    assert "{%" not in text and "%}" not in text
    for name, state in states(asl).items():
        assert state.get("QueryLanguage", "JSONPath") == "JSONPath", name
        assert not {"Arguments", "Output", "Condition"} & set(state), name
        for choice in state.get("Choices", []):
            assert "Condition" not in choice, name


def test_failures_end_in_a_fail_state_with_the_error(asl: dict[str, Any]) -> None:
    (fail,) = of_type(asl, "Fail").values()
    assert fail["ErrorPath"] == "$.error.Error" and fail["CausePath"] == "$.error.Cause"
