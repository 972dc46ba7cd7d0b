"""Rules every state machine of the project keeps, nested Map processors included.

Each rule is checked here once, on every state machine of the template, as it runs (its
DefinitionSubstitutions resolved). Rules of one machine only are in test_asl.py (export) and
test_asl_batch.py (batch).
"""

from __future__ import annotations

import json
from typing import Any

from aistudios_export import errors
from tests.unit import _template
from tests.unit._asl import (
    AWS_ERROR_PREFIXES,
    all_states,
    error_names,
    lambda_tasks,
    retried,
    scopes,
    targets,
)
from tests.unit._fixtures import ROOT
from tests.unit._retry import expected_wait, worst_case_wait

STATE_TYPES = {"Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"}
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
"""What Lambda itself may fail with, worth a retry (AWS's list of retryable Lambda errors)."""
LAMBDA_THROTTLE_PATIENCE_SECONDS = 120
"""How long, on average, a Lambda task retries Lambda's own errors: a batch of 1,000 rows
starts that many executions, whose invocations Lambda throttles for minutes, not seconds."""
MAX_RETRY_DELAY_SECONDS = 300
"""The longest single wait between two tries: an outage longer than minutes is reported."""


def test_every_asl_file_is_a_state_machine_of_the_template() -> None:
    files = {p.name for p in (ROOT / "statemachine").glob("*.asl.json")}
    deployed = {_template.definition_path(m).name for m in _template.machine_ids()}
    assert deployed == files
    assert len(files) >= 2, "the export and the batch machines"


def test_every_placeholder_has_a_value(machine_id: str) -> None:
    assert not _template.PLACEHOLDER.search(_template.substituted(machine_id))


def test_states_are_well_formed(machine: dict[str, Any]) -> None:
    for scope in scopes(machine):
        states = scope["States"]
        assert scope["StartAt"] in states
        for name, state in states.items():
            assert state["Type"] in STATE_TYPES, name
            if state["Type"] == "Choice":
                assert "Next" not in state and "End" not in state, name
            else:
                terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
                assert terminal != ("Next" in state), f"{name} needs exactly one of Next/End"
        assert any(s["Type"] in ("Succeed", "Fail") or s.get("End") for s in states.values())
    assert any(s["Type"] == "Fail" for s in machine["States"].values()), "failures end in a Fail"


def test_execution_has_a_timeout(machine: dict[str, Any]) -> None:
    assert isinstance(machine.get("TimeoutSeconds"), int) and machine["TimeoutSeconds"] > 0


def test_every_task_has_a_timeout(machine: dict[str, Any]) -> None:
    for name, state in all_states(machine):
        if state["Type"] == "Task":
            timeout = state.get("TimeoutSeconds")
            if "TimeoutSecondsPath" in state:
                # A callback wait whose length a task decided (and bounded) the time before.
                assert timeout is None and state["Resource"].endswith(".waitForTaskToken"), name
                continue
            assert isinstance(timeout, int) and timeout > 0, name


def test_every_choice_has_a_default(machine: dict[str, Any]) -> None:
    choices = {n: s for n, s in all_states(machine) if s["Type"] == "Choice"}
    assert choices
    for name, choice in choices.items():
        assert "Default" in choice, name


def test_every_retry_has_full_jitter_and_bounds(machine: dict[str, Any]) -> None:
    retriers = [(n, r) for n, s in all_states(machine) for r in s.get("Retry", [])]
    assert retriers
    for name, retrier in retriers:
        assert retrier.get("JitterStrategy") == "FULL", name
        delay = retrier.get("MaxDelaySeconds")
        assert isinstance(delay, int) and 0 < delay <= MAX_RETRY_DELAY_SECONDS, name
        assert 0 < retrier.get("MaxAttempts", 3) <= 10, name
        # Retrying gives up well within the execution: a failure still gets reported.
        assert worst_case_wait(retrier) <= machine["TimeoutSeconds"] / 4, name


def test_states_all_comes_last(machine: dict[str, Any]) -> None:
    for name, state in all_states(machine):
        for key in ("Retry", "Catch"):
            rules = state.get(key, [])
            for i, rule in enumerate(rules):
                if "States.ALL" in rule["ErrorEquals"]:
                    assert rule["ErrorEquals"] == ["States.ALL"], f"{name}.{key}"
                    assert i == len(rules) - 1, f"{name}.{key}"


def test_every_next_exists_in_its_scope(machine: dict[str, Any]) -> None:
    for scope in scopes(machine):
        for name, state in scope["States"].items():
            for target in targets(state):
                assert target in scope["States"], f"{name} → {target}"


def test_every_state_is_reachable(machine: dict[str, Any]) -> None:
    for scope in scopes(machine):
        seen: set[str] = set()
        todo = [scope["StartAt"]]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(targets(scope["States"][name]))
        assert seen == set(scope["States"])


def assert_acyclic_without_choices(states: dict[str, Any]) -> None:
    """Fail if a cycle of ``states`` does not pass through a Choice state."""
    graph = {
        n: [t for t in targets(s) if states[t]["Type"] != "Choice"]
        for n, s in states.items()
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


def test_every_cycle_passes_through_a_choice(machine: dict[str, Any]) -> None:
    """A loop can only end if something decides: without Choice states the graph is acyclic."""
    for scope in scopes(machine):
        assert_acyclic_without_choices(scope["States"])


def test_jsonpath_only(machine: dict[str, Any]) -> None:
    """The local engine runs JSONPath only (JSONata needs a Java bridge)."""
    text = json.dumps(machine)
    assert "JSONata" not in text and "{%" not in text and "%}" not in text
    for scope in scopes(machine):
        assert scope.get("QueryLanguage", "JSONPath") == "JSONPath"
    for name, state in all_states(machine):
        assert state.get("QueryLanguage", "JSONPath") == "JSONPath", name
        assert not {"Arguments", "Output", "Condition"} & set(state), name
        for choice in state.get("Choices", []):
            assert "Condition" not in choice, name


def test_lambda_tasks_retry_only_transient_errors(machine: dict[str, Any]) -> None:
    allowed = set(errors.TRANSIENT_ERROR_NAMES) | LAMBDA_SERVICE_ERRORS
    tasks = lambda_tasks(machine)
    assert tasks
    for name, task in tasks.items():
        assert retried(task), f"{name} retries nothing"
        final = retried(task) - allowed
        assert not final, f"{name} retries final errors: {sorted(final)}"


def test_every_error_name_is_an_error_class(machine: dict[str, Any]) -> None:
    ours = {n for n in error_names(machine) if not n.startswith(AWS_ERROR_PREFIXES)}
    assert ours, "the machine names errors of its own"
    for name in ours:
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, errors.ExportError), name


def test_lambda_tasks_outlast_a_throttled_fan_out(machine: dict[str, Any]) -> None:
    throttled = {"Lambda.TooManyRequestsException", "Lambda.ServiceException"}
    for name, task in lambda_tasks(machine).items():
        (retrier,) = [r for r in task["Retry"] if throttled & set(r["ErrorEquals"])]
        assert throttled <= set(retrier["ErrorEquals"]), name
        assert set(retrier["ErrorEquals"]) <= LAMBDA_SERVICE_ERRORS, name
        assert expected_wait(retrier) >= LAMBDA_THROTTLE_PATIENCE_SECONDS, name
