"""Walking an Amazon States Language definition: its scopes, states, transitions and errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

AWS_ERROR_PREFIXES = ("States.", "Lambda.", "StepFunctions.", "Sfn.")
"""Error names AWS defines (the runtime's, Lambda's and the service integrations')."""
LAMBDA_INVOKE = "arn:aws:lambda:"


def scopes(machine: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The machine and every Map's item processor or Parallel branch (each has StartAt, States)."""
    yield machine
    for state in machine["States"].values():
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from scopes(state[key])
        for branch in state.get("Branches", []):
            yield from scopes(branch)


def all_states(machine: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, state)`` of every state, those of nested scopes included."""
    for scope in scopes(machine):
        yield from scope["States"].items()


def of_type(machine: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Every state of one type, nested scopes included, by name."""
    return {name: state for name, state in all_states(machine) if state["Type"] == kind}


def lambda_tasks(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Task states that invoke a Lambda function (after substitution), by name."""
    return {
        name: state
        for name, state in of_type(machine, "Task").items()
        if state["Resource"].startswith(LAMBDA_INVOKE)
    }


def targets(state: dict[str, Any]) -> Iterator[str]:
    """Every state name this state can go to next."""
    for key in ("Next", "Default"):
        if key in state:
            yield state[key]
    for rule in state.get("Choices", []) + state.get("Catch", []):
        yield rule["Next"]


def retried(state: dict[str, Any]) -> set[str]:
    """The error names a state retries."""
    return {name for rule in state.get("Retry", []) for name in rule["ErrorEquals"]}


def error_names(machine: dict[str, Any]) -> set[str]:
    """Every error name the machine retries, catches, or raises by name.

    Raised by name: a Fail state's ``Error`` and an ``{"Error": ...}`` a Pass state records for
    a Fail state's ``ErrorPath``.
    """
    names: set[str] = set()
    for _, state in all_states(machine):
        for rule in state.get("Retry", []) + state.get("Catch", []):
            names |= set(rule["ErrorEquals"])
        if isinstance(state.get("Error"), str):
            names.add(state["Error"])
        result = state.get("Result")
        if isinstance(result, dict) and isinstance(result.get("Error"), str):
            names.add(result["Error"])
    return names
