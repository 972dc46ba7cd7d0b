"""statemachine/export.asl.json: the rules of the export machine itself.

The rules every state machine keeps (timeouts, defaults, retries, transitions, error names)
are in test_asl_rules.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from aistudios_export.models import TIMEOUT_SECONDS, Job
from tests.unit import _template
from tests.unit._asl import lambda_tasks, of_type, retried, targets
from tests.unit._retry import expected_wait, worst_case_wait

EXPORT_MACHINE = "ExportStateMachine"


@pytest.fixture
def asl() -> dict[str, Any]:
    return _template.definition(EXPORT_MACHINE)


def states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    value: dict[str, dict[str, Any]] = asl["States"]
    return value


def test_execution_timeout_is_above_every_budget(asl: dict[str, Any]) -> None:
    # The longest export budget a request may ask for, plus storing the video, fits inside.
    assert (
        TIMEOUT_SECONDS[1] + states(asl)["FinalizeExport"]["TimeoutSeconds"] < asl["TimeoutSeconds"]
    )


def test_wait_states_use_the_interval_of_the_last_check(asl: dict[str, Any]) -> None:
    waits = of_type(asl, "Wait")
    assert waits
    for name, wait in waits.items():
        assert wait.get("SecondsPath") == "$.job.nextPollSeconds", name
        assert not {"Seconds", "Timestamp", "TimestampPath"} & set(wait), name


def test_transient_errors_are_retried_where_they_can_be_raised(asl: dict[str, Any]) -> None:
    api_transient = {"RateLimited", "ServiceUnavailable", "NetworkError"}
    tasks = lambda_tasks(asl)
    assert tasks
    for name, task in tasks.items():
        assert api_transient <= retried(task), name
    assert {"DownloadInterrupted", "StorageError"} <= retried(states(asl)["FinalizeExport"])


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


def test_failures_end_in_a_fail_state_with_the_error(asl: dict[str, Any]) -> None:
    (fail,) = of_type(asl, "Fail").values()
    assert fail["ErrorPath"] == "$.error.Error" and fail["CausePath"] == "$.error.Cause"


API_TRANSIENT_BRIEF = ("ServiceUnavailable", "NetworkError")
"""Transient API errors that pass in seconds; RateLimited is backed off apart, for minutes."""
RATE_LIMIT_PATIENCE_SECONDS = 180
"""How long, on average, a task keeps retrying a rate limit before its export is given up."""


def retrier_of(task: dict[str, Any], error: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in task["Retry"] if error in r["ErrorEquals"]]
    (retrier,) = found
    return retrier


def test_rate_limits_back_off_for_minutes_on_every_ai_studios_task(asl: dict[str, Any]) -> None:
    tasks = lambda_tasks(asl)
    assert set(tasks) == {"SubmitExport", "CheckProgress", "FinalizeExport", "RefreshToken"}
    for name, task in tasks.items():
        throttled = retrier_of(task, "RateLimited")
        assert throttled["ErrorEquals"] == ["RateLimited"], f"{name}: a retrier of its own"
        assert expected_wait(throttled) >= RATE_LIMIT_PATIENCE_SECONDS, name
        brief = retrier_of(task, API_TRANSIENT_BRIEF[0])
        assert set(brief["ErrorEquals"]) == set(API_TRANSIENT_BRIEF), name
        assert worst_case_wait(brief) < expected_wait(throttled), name


def test_a_rate_limited_poll_still_ends_within_the_execution(asl: dict[str, Any]) -> None:
    # The longest budget, one poll backed off to the end, then storing the video backed off too.
    check, finalize = states(asl)["CheckProgress"], states(asl)["FinalizeExport"]
    worst = (
        TIMEOUT_SECONDS[1]
        + worst_case_wait(retrier_of(check, "RateLimited"))
        + finalize["TimeoutSeconds"]
    )
    assert worst < asl["TimeoutSeconds"]


def test_every_failure_passes_the_submitted_check_before_it_is_reported(
    asl: dict[str, Any],
) -> None:
    note = states(asl)["WasSubmitted"]
    into_report = {n for n, s in states(asl).items() if "HasProjectId" in set(targets(s))}
    assert into_report == {"WasSubmitted", "NoteSubmitted"}
    assert note["Default"] == "HasProjectId"
    # The check reads a field the job has from its submit on (SubmitExport writes $.job).
    assert states(asl)["SubmitExport"]["ResultPath"] == "$.job"
    for rule in note["Choices"]:
        (field,) = {
            c["Variable"].removeprefix("$.job.")
            for c in rule["And"]
            if c["Variable"].startswith("$.job.")
        }
        assert field in Job.__dataclass_fields__
    rewrite = states(asl)["NoteSubmitted"]["Parameters"]["Cause.$"]
    assert rewrite.startswith("States.Format('{} (the export was submitted to AI Studios")
    assert "$.error.Cause" in rewrite
