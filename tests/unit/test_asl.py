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
from tests.unit.test_asl_rules import LAMBDA_SERVICE_ERRORS

EXPORT_MACHINE = "ExportStateMachine"
AI_STUDIOS_TASKS = {"SubmitExport", "CheckProgress", "FinalizeExport", "RefreshToken"}
"""The tasks whose functions call AI Studios."""
RENDER_SLOT_TASKS = {"ReleaseRenderSlotAfterFailure"}
"""The tasks of the account-wide render limit (DynamoDB only); SubmitExport takes the slot and
CheckProgress renews and frees it."""
SLOT_TAKERS = {"SubmitExport"}
"""The tasks that take a render slot (DynamoDB, then AI Studios)."""
REDRIVE_TASKS = {"EndFailedAttempt"}
"""The task that ends a failed attempt, and that a redrive runs again (no AWS call)."""


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


def test_wait_states_wait_as_long_as_the_task_they_lead_back_to_said(
    asl: dict[str, Any],
) -> None:
    waits = of_type(asl, "Wait")
    assert set(waits) == {"WaitForRenderSlot"}
    for name, wait in waits.items():
        assert not {"Seconds", "Timestamp", "TimestampPath"} & set(wait), name
        # The task after the wait wrote the interval (into its ResultPath) the time before.
        task = states(asl)[wait["Next"]]
        assert wait["SecondsPath"].startswith(task["ResultPath"] + "."), name
    assert waits["WaitForRenderSlot"]["SecondsPath"] == "$.job.waitSeconds"


def test_the_export_waits_for_a_webhook_or_the_time_the_check_chose(
    asl: dict[str, Any],
) -> None:
    wait = states(asl)["WaitForExport"]
    assert wait["Resource"].endswith(".waitForTaskToken")
    assert wait["TimeoutSecondsPath"] == "$.job.nextPollSeconds"
    assert "TimeoutSeconds" not in wait
    # Either way the progress is checked next; the callback's output never reaches the job.
    assert wait["Next"] == "CheckProgress"
    assert wait["ResultSelector"] == {"by": "webhook"}
    timeout, rest = wait["Catch"]
    assert (timeout["ErrorEquals"], timeout["Next"]) == (["States.Timeout"], "CheckProgress")
    assert rest["ErrorEquals"] == ["States.ALL"]
    assert all("States.Timeout" not in r["ErrorEquals"] for r in wait["Retry"])
    detail = wait["Parameters"]["Entries"][0]["Detail"]
    assert detail["taskToken.$"] == "$$.Task.Token"


def test_a_wait_of_zero_seconds_checks_at_once(asl: dict[str, Any]) -> None:
    # A callback task's timeout must be positive: 0 s (local runs) skips the wait.
    choice = states(asl)["IsExportDone"]
    waiting = [c for c in choice["Choices"] if c["Next"] in ("WaitForExport", "CheckProgress")]
    assert [c["Next"] for c in waiting] == ["WaitForExport", "CheckProgress"]
    assert {"Variable": "$.job.nextPollSeconds", "NumericGreaterThan": 0} in waiting[0]["And"]
    assert states(asl)["SubmitExport"]["Next"] == "IsExportDone"


def test_the_lambda_tasks_are_the_ai_studios_ones_and_the_render_slot_ones(
    asl: dict[str, Any],
) -> None:
    assert set(lambda_tasks(asl)) == AI_STUDIOS_TASKS | RENDER_SLOT_TASKS | REDRIVE_TASKS


def test_transient_errors_are_retried_where_they_can_be_raised(asl: dict[str, Any]) -> None:
    api_transient = {"RateLimited", "ServiceUnavailable", "NetworkError"}
    tasks = lambda_tasks(asl)
    for name in AI_STUDIOS_TASKS:
        assert api_transient <= retried(tasks[name]), name
    for name in RENDER_SLOT_TASKS | SLOT_TAKERS:
        assert "StorageError" in retried(tasks[name]), name
    assert {"DownloadInterrupted", "StorageError"} <= retried(states(asl)["FinalizeExport"])


def test_unauthorized_is_caught_before_anything_else(asl: dict[str, Any]) -> None:
    for name, task in lambda_tasks(asl).items():
        if name not in AI_STUDIOS_TASKS - {"RefreshToken"}:
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
    # Only a redrive that does not resume the export ends there.
    into_fail = {n for n, s in states(asl).items() if "ExportFailed" in set(targets(s))}
    assert into_fail == {"CannotResume"}
    assert states(asl)["ResumeAfterRedrive"]["Default"] == "CannotResume"


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
    for name in AI_STUDIOS_TASKS:
        task = tasks[name]
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
    release = "ReleaseRenderSlotAfterFailure"
    into_release = {n for n, s in states(asl).items() if release in set(targets(s))}
    assert into_release == {"WasSubmitted", "NoteSubmitted"}
    assert note["Default"] == release
    # The slot is freed on the way, and a release that fails does not hide the export's error.
    into_report = {n for n, s in states(asl).items() if "HasProjectId" in set(targets(s))}
    assert into_report == {"RecordFailedAttempt"}
    assert states(asl)[release]["Next"] == "RecordFailedAttempt"
    assert {c["ResultPath"] for c in states(asl)[release]["Catch"]} == {None}
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


# --- the account-wide render limit ---------------------------------------------------------


def reachable(asl: dict[str, Any], start: str, *, avoiding: set[str]) -> set[str]:
    """The states reachable from ``start`` (itself included) without entering ``avoiding``."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name in avoiding:
            continue
        seen.add(name)
        todo.extend(targets(states(asl)[name]))
    return seen


def ends(asl: dict[str, Any]) -> set[str]:
    return {
        name
        for name, state in states(asl).items()
        if state["Type"] in ("Succeed", "Fail") or state.get("End")
    }


def test_a_slot_is_taken_before_anything_is_submitted(asl: dict[str, Any]) -> None:
    init = states(asl)["Init"]
    assert init["Next"] == "SubmitExport"
    # Until the submit, the export is queued: GET /exports/{id} reads state and progress.
    assert init["Parameters"]["job"] == {"state": "queued", "progress": 0}
    # SubmitExport takes the slot before it calls AI Studios (render_slots.start_render), and
    # is the first task: nothing calls AI Studios before it.
    assert reachable(asl, "Init", avoiding={"SubmitExport"}) == {"Init"}
    assert "SubmitExport" in set(targets(states(asl)["WaitForRenderSlot"]))


def test_every_way_from_a_taken_slot_to_the_end_frees_it(asl: dict[str, Any]) -> None:
    # The success path frees the slot in the check that finds the render done (CheckProgress,
    # render_slots.keep_slot), before the copy: FinalizeExport is entered only after that
    # check, after a failure path freed the slot (a redrive's copy), or to retry the copy.
    done = next(c for c in states(asl)["IsExportDone"]["Choices"] if c["StringEquals"] == "done")
    assert done["Next"] == "FinalizeExport"
    into_copy = {n for n, s in states(asl).items() if "FinalizeExport" in set(targets(s))}
    assert into_copy == {"IsExportDone", "ResumeCopy", "ResumeAfterRefresh"}
    # Otherwise, without the release states, no end can be reached once the slot is held.
    held = RENDER_SLOT_TASKS | {"FinalizeExport"}
    assert not ends(asl) & reachable(asl, "SubmitExport", avoiding=held)
    for name in RENDER_SLOT_TASKS:
        task = states(asl)[name]
        assert task["Parameters"] == {"action": "release", "holder.$": "$$.Execution.Name"}
        assert task["ResultPath"] is None, name
        (catch,) = task["Catch"]
        assert (catch["ErrorEquals"], catch["ResultPath"]) == (["States.ALL"], None), name
        assert catch["Next"] == task["Next"], f"{name}: a failed release changes nothing else"
    assert states(asl)["CheckProgress"]["Parameters"]["holder.$"] == "$$.Execution.Name"


def test_the_wait_for_a_slot_is_decided_by_the_function_and_has_a_default(
    asl: dict[str, Any],
) -> None:
    submit = states(asl)["SubmitExport"]
    params = submit["Parameters"]
    assert (params["executionName.$"], params["job.$"]) == ("$$.Execution.Name", "$.job")
    # A queue belongs to one attempt: a redrive queues afresh.
    assert params["attempt.$"] == "$$.Execution.RedriveCount"
    assert submit["ResultPath"] == "$.job"
    choice = states(asl)["IsExportDone"]
    (queued,) = [c for c in choice["Choices"] if c.get("StringEquals") == "queued"]
    assert (queued["Variable"], queued["Next"]) == ("$.job.outcome", "WaitForRenderSlot")
    assert choice["Default"] == "RecordUnexpectedOutcome"
    # The polls renew the slot: they name its holder, and the job carries its lease.
    assert states(asl)["CheckProgress"]["Parameters"]["holder.$"] == "$$.Execution.Name"
    assert "slotExpires" in Job.__dataclass_fields__


def test_the_happy_path_has_no_state_it_does_not_need(asl: dict[str, Any]) -> None:
    # Each state entered is a paid transition (README, "What an export costs"): the submit,
    # the checks and the copy, with one Choice after each task that loops, and no Pass but Init.
    path: list[str] = []
    name = asl["StartAt"]
    while name and len(path) < 10:
        path.append(name)
        state = states(asl)[name]
        if state["Type"] == "Choice":
            name = next(c["Next"] for c in state["Choices"] if c.get("StringEquals") == "done")
        else:
            name = state.get("Next")
    assert path == [
        "Init",
        "SubmitExport",
        "IsExportDone",
        "FinalizeExport",
        "NotifyCompleted",
    ]
    notify = states(asl)["NotifyCompleted"]
    assert notify["End"] is True and notify["OutputPath"] == "$.result"
    finalize = states(asl)["FinalizeExport"]
    assert finalize["ResultPath"] == "$.result"
    # FinalizeExport answers the execution's output when asked (an earlier definition did not).
    assert finalize["Parameters"] == {"job.$": "$.job", "result": "export"}
    (caught,) = notify["Catch"]
    assert states(asl)[caught["Next"]] == {
        "Type": "Succeed",
        "Comment": states(asl)[caught["Next"]]["Comment"],
        "OutputPath": "$.result",
    }


# --- a redrive resumes the export --------------------------------------------------------------


def test_a_failed_attempt_ends_in_a_task_that_raises_its_error_uncaught(
    asl: dict[str, Any],
) -> None:
    end = states(asl)["EndFailedAttempt"]
    assert "Catch" not in end, "nothing may swallow the error the attempt ends with"
    assert retried(end) <= LAMBDA_SERVICE_ERRORS
    assert end["Parameters"] == {
        "action": "endAttempt",
        "holder.$": "$$.Execution.Name",
        "error.$": "$.error",
        "redriveCount.$": "$$.Execution.RedriveCount",
    }
    # Every failure is reported, then ends there: both notifications lead to it, whatever.
    into_end = {n for n, s in states(asl).items() if "EndFailedAttempt" in set(targets(s))}
    assert into_end == {"NotifyFailed", "NotifyFailedWithoutProject"}
    for name in into_end:
        assert {states(asl)[name]["Next"]} | {c["Next"] for c in states(asl)[name]["Catch"]} == {
            "EndFailedAttempt"
        }
    # The attempt is recorded on the way, after the slot was freed.
    record = states(asl)["RecordFailedAttempt"]
    assert record["Parameters"]["Attempt.$"] == "$$.Execution.RedriveCount"
    assert record["ResultPath"] == "$.error" and record["Next"] == "HasProjectId"
    assert not reachable(asl, "WasSubmitted", avoiding={"RecordFailedAttempt"}) & {
        "EndFailedAttempt"
    }


def test_a_redrive_resumes_the_copy_the_submit_or_the_polls(asl: dict[str, Any]) -> None:
    choice = states(asl)["ResumeAfterRedrive"]
    assert states(asl)["EndFailedAttempt"]["Next"] == "ResumeAfterRedrive"
    nexts = [c["Next"] for c in choice["Choices"]]
    assert nexts == ["CannotResume", "ResumeCopy", "ResumeRender", "ResumeRender", "ResumeTimedOut"]
    # A render given up on is polled again as a waiting one: AI Studios may have finished it.
    timed_out = states(asl)["ResumeTimedOut"]
    assert (timed_out["Result"], timed_out["ResultPath"]) == ("waiting", "$.job.outcome")
    assert timed_out["Next"] == "ResumeRender"
    # What AI Studios reported failed is not resumed (the Default).
    outcomes = {
        c["StringEquals"]
        for rule in choice["Choices"]
        for c in rule.get("And", [])
        if "StringEquals" in c
    }
    assert outcomes == {"done", "waiting", "timedOut"}
    assert states(asl)["ResumeCopy"]["Next"] == "FinalizeExport"
    assert states(asl)["ResumeRender"]["Next"] == "SubmitExport"
    init = states(asl)["Init"]["Parameters"]
    for name in ("ResumeCopy", "ResumeRender"):
        reset = states(asl)[name]["Parameters"]
        # A fresh token-refresh budget (SubmitExport gives the attempt a fresh queue); the job
        # (its polls and deadline) carries on: a render running at AI Studios is polled again
        # under a new slot, never submitted again (render_slots.start_render).
        assert set(reset) == {"request.$", "auth", "job.$"}, name
        assert reset["auth"] == init["auth"], name
        assert reset["job.$"] == "$.job" and reset["request.$"] == "$.request", name
    # The submit is entered first, after a wait for a slot, in a redrive, and after a refresh
    # of the token the submit itself was refused with, only.
    into_submit = {n for n, s in states(asl).items() if "SubmitExport" in set(targets(s))}
    assert into_submit == {"Init", "WaitForRenderSlot", "ResumeRender", "ResumeAfterRefresh"}
    (again,) = [
        c for c in states(asl)["ResumeAfterRefresh"]["Choices"] if c["Next"] == "SubmitExport"
    ]
    assert again["Variable"] == "$.auth.resume"
    writes = {n for n, s in states(asl).items() if s.get("Result") == again["StringEquals"]}
    assert writes == {"AuthFailedInSubmitExport"}
    # The redrives that resume are bounded (the history's budget counts them).
    assert choice["Choices"][0]["Variable"] == "$.redrive.redriveCount"
    assert choice["Choices"][0]["NumericGreaterThan"] >= 1
