"""The export machine's execution history stays far below Step Functions' 25,000 events.

The bound is computed from the definition as it runs: the events each state of a poll writes,
times the most polls the library allows (:meth:`Job.start` with the longest budget a request may
ask for and the deployment's floor under ``pollSeconds``), plus the longest pass through the
rest of the machine and every token refresh it allows. A redrive resumes the same job (its polls
carry on), so the polls are counted once, and the rest once per attempt: the first and each
redrive that ``ResumeAfterRedrive`` resumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aistudios_export.models import (
    MAX_URL_MISSING_CHECKS,
    MAX_WAKES,
    POLL_SECONDS,
    TIMEOUT_SECONDS,
    ExportRequest,
    Job,
    min_poll_seconds,
)
from aistudios_export.render_slots import MAX_ATTEMPTS
from tests.unit import _template
from tests.unit._asl import LAMBDA_INVOKE, of_type, targets
from tests.unit._fixtures import PROJECT_ID, T0

EXPORT_MACHINE = "ExportStateMachine"
HISTORY_LIMIT = 25_000
"""Step Functions ends an execution whose history reaches this many events."""
HISTORY_BUDGET = 12_500
"""What this machine may use of it, half: retried tasks (3 events an attempt) need the rest."""
EXECUTION_EVENTS = 2
"""ExecutionStarted and ExecutionSucceeded/Failed/TimedOut."""
CLOUD_MIN_POLL_SECONDS = 5
"""The floor asked of the template's ``MinPollSeconds`` parameter, until the template has it."""


def state_events(state: dict[str, Any]) -> int:
    """How many history events one visit of ``state`` writes when it succeeds.

    Pass/Choice/Wait/Succeed: ``*StateEntered`` and ``*StateExited``. A Fail state writes
    ``FailStateEntered`` only. A Task that invokes a function by its ARN writes
    ``TaskStateEntered``, ``LambdaFunctionScheduled``, ``LambdaFunctionStarted``,
    ``LambdaFunctionSucceeded``, ``TaskStateExited``; a service integration writes
    ``TaskStateEntered``, ``TaskScheduled``, ``TaskStarted``, ``TaskSubmitted``,
    ``TaskSucceeded``, ``TaskStateExited``.
    """
    kind = state["Type"]
    if kind == "Fail":
        return 1
    if kind == "Task":
        return 5 if state["Resource"].startswith(LAMBDA_INVOKE) else 6
    assert kind in ("Pass", "Choice", "Wait", "Succeed"), kind
    return 2


def cycles_through(states: dict[str, Any], start: str) -> Iterator[list[str]]:
    """Every simple cycle of ``states`` through ``start`` (as the states it visits)."""

    def walk(path: list[str]) -> Iterator[list[str]]:
        for target in set(targets(states[path[-1]])):
            if target == start:
                yield path
            elif target not in path:
                yield from walk([*path, target])

    yield from walk([start])


def longest_path(states: dict[str, Any], start: str) -> int:
    """The most events of a path from ``start`` to a terminal state visiting no state twice."""

    def walk(name: str, seen: frozenset[str]) -> int:
        nexts = [t for t in set(targets(states[name])) if t not in seen]
        rest = max((walk(t, seen | {t}) for t in nexts), default=0)
        return state_events(states[name]) + rest

    return walk(start, frozenset({start}))


def events(states: dict[str, Any], path: list[str]) -> int:
    return sum(state_events(states[name]) for name in path)


def deployed_min_poll_seconds() -> int:
    """The deployment's floor: the template's ``MinPollSeconds`` default once it has one."""
    parameter = _template.template()["Parameters"].get("MinPollSeconds")
    if parameter is None:
        return CLOUD_MIN_POLL_SECONDS
    return int(parameter["Default"])


@pytest.fixture
def states() -> dict[str, dict[str, Any]]:
    value: dict[str, dict[str, Any]] = _template.definition(EXPORT_MACHINE)["States"]
    return value


def poll_wait(states: dict[str, Any]) -> str:
    """The wait of the polling loop: the callback task the progress check follows."""
    (name,) = [
        n
        for n, s in of_type({"States": states}, "Task").items()
        if s.get("Next") == "CheckProgress"
    ]
    return name


def slot_wait(states: dict[str, Any]) -> str:
    """The Wait state of the queue for a render slot."""
    (name,) = [
        n for n, s in of_type({"States": states}, "Wait").items() if s["Next"] == "SubmitExport"
    ]
    return name


def most_polls(min_poll: int) -> int:
    """The most polls of one export: the longest budget at the shortest interval, by Job.start."""
    request = ExportRequest.parse(
        {
            "projectId": PROJECT_ID,
            "pollSeconds": POLL_SECONDS[0],
            "timeoutSeconds": TIMEOUT_SECONDS[1],
        }
    )
    # A poll at 100 % without a download URL may come on top of maxPolls, and so may the
    # checks webhooks cause.
    job = Job.start(request, T0, min_poll_seconds=min_poll)
    return job.maxPolls + MAX_URL_MISSING_CHECKS + MAX_WAKES


REDRIVE = "EndFailedAttempt"
"""Where a redrive resumes: a loop through it is a new attempt, counted apart."""


def resumed_redrives(states: dict[str, Any]) -> int:
    """The most redrives the machine resumes (a later one ends at once)."""
    (bound,) = [
        c["NumericGreaterThan"]
        for c in states["ResumeAfterRedrive"]["Choices"]
        if c.get("Variable") == "$.redrive.redriveCount"
    ]
    return int(bound)


def history_bound(states: dict[str, Any], min_poll: int) -> dict[str, int]:
    wait = poll_wait(states)
    # A loop through a token refresh is counted as a refresh, bounded apart (and generously:
    # its longest cycle takes in a whole poll too).
    per_poll = max(
        events(states, cycle)
        for cycle in cycles_through(states, wait)
        if "RefreshToken" not in cycle and REDRIVE not in cycle
    )
    refresh_detour = max(
        events(states, c) for c in cycles_through(states, "RefreshToken") if REDRIVE not in c
    )
    (rule,) = states["CanRefreshToken"]["Choices"]
    refreshes = int(rule["NumericLessThan"])
    polls = most_polls(min_poll)
    # The queue for a render slot: render_slots.take_slot (in SubmitExport) answers "wait"
    # MAX_ATTEMPTS - 1 times.
    queue = max(
        events(states, cycle)
        for cycle in cycles_through(states, slot_wait(states))
        if REDRIVE not in cycle and "RefreshToken" not in cycle
    )
    # The longest pass, a resumed redrive included; plus the redrive's own event.
    rest = EXECUTION_EVENTS + longest_path(states, "Init") + 1
    attempts = 1 + resumed_redrives(states)
    per_attempt = refreshes * refresh_detour + queue * MAX_ATTEMPTS + rest
    total = per_poll * polls + attempts * per_attempt
    return {
        "perPoll": per_poll,
        "polls": polls,
        "refresh": refresh_detour,
        "queue": queue,
        "rest": rest,
        "attempts": attempts,
        "total": total,
    }


def test_one_poll_is_the_wait_the_check_and_the_choice(states: dict[str, Any]) -> None:
    wait = poll_wait(states)
    loops = sorted(cycles_through(states, wait), key=len)
    assert [wait, "CheckProgress", "IsExportDone"] in loops
    # The callback wait is a service integration: 6 events, whether a webhook or the timeout
    # ends it (TaskSucceeded or TaskTimedOut).
    assert events(states, [wait, "CheckProgress", "IsExportDone"]) == 6 + 5 + 2


def test_history_stays_far_below_the_limit_at_the_deployed_floor(
    states: dict[str, Any],
) -> None:
    bound = history_bound(states, deployed_min_poll_seconds())
    assert bound["perPoll"] == 13
    assert bound["queue"] == 5 + 2 + 2  # SubmitExport, IsExportDone, WaitForRenderSlot
    assert bound["total"] < HISTORY_BUDGET < HISTORY_LIMIT, bound


def test_without_a_floor_the_history_could_reach_the_limit(states: dict[str, Any]) -> None:
    # What the floor is for: a request's pollSeconds 0 alone would allow this many events.
    assert history_bound(states, POLL_SECONDS[0])["total"] > HISTORY_LIMIT


def test_submit_export_receives_the_deployment_floor() -> None:
    raw = _template.raw_definition(EXPORT_MACHINE)
    defaults = raw["States"]["SubmitExport"]["Parameters"]["defaults"]
    if "MinPollSeconds" in _template.template()["Parameters"]:
        assert defaults["minPollSeconds"] == "${MinPollSeconds}"
    ran = _template.definition(EXPORT_MACHINE)["States"]["SubmitExport"]["Parameters"]
    assert min_poll_seconds(ran["defaults"]) >= POLL_SECONDS[0]
