"""Rules every state machine of the project keeps, nested Map processors included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit._fixtures import ROOT
from tests.unit.test_asl import substituted

MACHINES = sorted((ROOT / "statemachine").glob("*.asl.json"))


def scopes(machine: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The machine and every Map's item processor, each with its own StartAt and States."""
    yield machine
    for state in machine["States"].values():
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from scopes(state[key])
        for branch in state.get("Branches", []):
            yield from scopes(branch)


def all_states(machine: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for scope in scopes(machine):
        yield from scope["States"].items()


@pytest.fixture(params=MACHINES, ids=lambda p: p.name)
def machine(request: pytest.FixtureRequest) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(substituted(request.param.read_text(encoding="utf-8")))
    return value


def test_both_machines_are_checked() -> None:
    assert {p.name for p in MACHINES} >= {"export.asl.json", "batch.asl.json"}


def test_execution_has_a_timeout(machine: dict[str, Any]) -> None:
    assert isinstance(machine.get("TimeoutSeconds"), int) and machine["TimeoutSeconds"] > 0


def test_every_task_has_a_timeout(machine: dict[str, Any]) -> None:
    missing = [
        n for n, s in all_states(machine) if s["Type"] == "Task" and "TimeoutSeconds" not in s
    ]
    assert missing == []


def test_every_choice_has_a_default(machine: dict[str, Any]) -> None:
    missing = [n for n, s in all_states(machine) if s["Type"] == "Choice" and "Default" not in s]
    assert missing == []


def test_every_retry_has_full_jitter_and_bounds(machine: dict[str, Any]) -> None:
    for name, state in all_states(machine):
        for retrier in state.get("Retry", []):
            assert retrier.get("JitterStrategy") == "FULL", name
            assert "MaxDelaySeconds" in retrier, name
            assert 0 < retrier.get("MaxAttempts", 3) <= 10, name


def test_every_next_exists_in_its_scope(machine: dict[str, Any]) -> None:
    for scope in scopes(machine):
        names = set(scope["States"])
        assert scope["StartAt"] in names
        for state in scope["States"].values():
            targets = [state.get("Next"), state.get("Default")]
            targets += [c["Next"] for c in state.get("Choices", [])]
            targets += [c["Next"] for c in state.get("Catch", [])]
            assert {t for t in targets if t is not None} <= names


def test_jsonpath_only(machine: dict[str, Any]) -> None:
    text = json.dumps(machine)
    assert "JSONata" not in text and "{%" not in text
