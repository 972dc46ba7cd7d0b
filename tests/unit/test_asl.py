"""statemachine/export.asl.json: the rules of the export machine itself.

The rules every state machine keeps (timeouts, defaults, retries, transitions, error names)
are in test_asl_rules.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from aistudios_export.models import TIMEOUT_SECONDS
from tests.unit import _template
from tests.unit._asl import lambda_tasks, of_type, retried

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
