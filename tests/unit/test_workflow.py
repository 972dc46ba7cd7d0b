"""workflow.submit_export, check_progress (the poll decision) and object_key, with fakes only."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aistudios_export import errors, workflow
from aistudios_export.client import Progress, ProjectInfo
from aistudios_export.errors import InvalidRequest, RequestRejected
from aistudios_export.models import (
    MAX_UNKNOWN_STATES,
    MAX_URL_MISSING_CHECKS,
    ExportRequest,
    Job,
)
from tests.unit._fixtures import PROJECT_ID, T0, Clock, FakeApi

SIGNED_URL = (
    "https://cdn.example.com/exports/v.mp4?X-Amz-Signature=sig-5ecret&X-Amz-Credential=cred-5ecret"
)
DEFAULTS = {"pollSeconds": "15", "timeoutSeconds": "1800", "stallSeconds": "600"}


def new_job(**request: Any) -> dict[str, Any]:
    parsed = ExportRequest.parse({"projectId": PROJECT_ID, **request}, DEFAULTS)
    return Job.start(parsed, T0).to_dict()


def check(
    job: dict[str, Any], answer: Progress, clock: Clock, project_url: str | None = None
) -> tuple[dict[str, Any], FakeApi]:
    api = FakeApi([answer])
    api.project = ProjectInfo(state="exported", progress=100.0, download_url=project_url)
    return workflow.check_progress(job, api=api, now=clock), api


def exporting(progress: float, state: str = "exporting") -> Progress:
    return Progress(state=state, progress=progress, download_url=None)


# --- submit_export ---------------------------------------------------------------------


def test_submit_export_sends_the_body_and_returns_the_job() -> None:
    api = FakeApi()
    raw = {
        "projectId": PROJECT_ID.upper(),
        "resolution": "4K",
        "workspaceId": "ws1",
        "outputPrefix": "team",
    }
    job = workflow.submit_export(raw, DEFAULTS, api=api, now=Clock(T0))
    assert api.submitted == [{"projectId": PROJECT_ID, "resolution": "4k", "workspaceId": "ws1"}]
    assert job == Job.start(ExportRequest.parse(raw, DEFAULTS), T0).to_dict()
    # Nothing is known of the pace yet: the first check comes after the shortest wait.
    assert (job["submittedAt"], job["deadline"], job["nextPollSeconds"]) == (T0, T0 + 1800, 1)
    json.dumps(job)


@pytest.mark.parametrize(
    "raw", [{"projectId": "nope"}, {"projectId": PROJECT_ID, "extra": 1}, None, []]
)
def test_invalid_request_sends_nothing(raw: Any) -> None:
    api = FakeApi()
    with pytest.raises(InvalidRequest):
        workflow.submit_export(raw, DEFAULTS, api=api, now=Clock(T0))
    assert api.submitted == []


# --- waiting ---------------------------------------------------------------------------


def test_progress_moving_waits_poll_seconds() -> None:
    clock = Clock(T0 + 15)
    result, api = check(new_job(pollSeconds=15), exporting(10), clock)
    assert api.progress_calls == [PROJECT_ID]
    assert result["outcome"] == "waiting"
    assert result["nextPollSeconds"] == 15
    assert (result["polls"], result["progress"], result["state"], result["lastChangeAt"]) == (
        1,
        10.0,
        "exporting",
        T0 + 15,
    )
    assert result["error"] is None and result["cause"] is None


def test_unchanged_progress_keeps_the_last_change_time() -> None:
    job, _ = check(new_job(), exporting(10), Clock(T0 + 15))
    job, _ = check(job, exporting(10), Clock(T0 + 30))
    assert job["lastChangeAt"] == T0 + 15
    assert job["outcome"] == "waiting"


@settings(derandomize=True, database=None, max_examples=200)
@given(
    poll=st.integers(0, 900),
    timeout=st.integers(1, 5400),
    elapsed=st.floats(0, 5400, allow_nan=False),
)
def test_wait_never_reaches_past_the_deadline(poll: int, timeout: int, elapsed: float) -> None:
    job = new_job(pollSeconds=poll, timeoutSeconds=timeout, stallSeconds=5400)
    clock = Clock(T0 + min(elapsed, timeout - 0.001))
    result, _ = check(job, exporting(50), clock)
    assert result["outcome"] == "waiting"
    assert 0 <= result["nextPollSeconds"] <= poll
    # The wait ends at most one second after the deadline, so the next check reports the timeout.
    assert clock.t + result["nextPollSeconds"] <= job["deadline"] + 1


def test_wait_is_shortened_near_the_deadline() -> None:
    job = new_job(pollSeconds=60, timeoutSeconds=100)
    result, _ = check(job, exporting(50), Clock(T0 + 90))
    assert result["nextPollSeconds"] == 11


# --- with this stack's webhook ------------------------------------------------------------

HOOKED = DEFAULTS | {"minPollSeconds": "10", "webhookPollSeconds": "300"}


def own_webhook(export_id: str) -> str:
    return f"https://api.example/webhooks/{export_id}/token"


def test_with_a_webhook_every_wait_is_the_deployment_s_fall_back() -> None:
    api = FakeApi()
    job = workflow.submit_export(
        {"projectId": PROJECT_ID},
        HOOKED,
        api=api,
        export_id="e1",
        webhook=own_webhook,
        now=Clock(T0),
    )
    assert api.submitted[0]["webhookUrl"] == own_webhook("e1")
    # No early probe: the webhook announces the end, the wait is the fall-back for a lost one.
    assert (job["webhookPollSeconds"], job["nextPollSeconds"]) == (300, 300)
    # The pace is not predicted either, however steady: a check per wait, not per prediction.
    job, _ = check(job, exporting(50), Clock(T0 + 300))
    assert (job["outcome"], job["nextPollSeconds"], job["predictedDoneAt"]) == ("waiting", 300, 0)
    # Near the deadline the wait is shortened as any.
    job, _ = check(job, exporting(99), Clock(T0 + 1700))
    assert job["nextPollSeconds"] == 101


def test_without_a_webhook_or_with_no_waits_the_webhook_wait_does_not_apply() -> None:
    plain = workflow.submit_export(
        {"projectId": PROJECT_ID}, HOOKED, api=FakeApi(), export_id="e1", now=Clock(T0)
    )
    assert (plain["webhookPollSeconds"], plain["nextPollSeconds"]) == (0, 10)
    no_waits = workflow.submit_export(
        {"projectId": PROJECT_ID, "pollSeconds": 0},
        {"webhookPollSeconds": "300"},
        api=FakeApi(),
        export_id="e1",
        webhook=own_webhook,
        now=Clock(T0),
    )
    assert (no_waits["webhookPollSeconds"], no_waits["nextPollSeconds"]) == (0, 0)
    # The deployment's floor is a floor under the webhook's wait too.
    floored = workflow.submit_export(
        {"projectId": PROJECT_ID},
        HOOKED | {"webhookPollSeconds": "5"},
        api=FakeApi(),
        export_id="e1",
        webhook=own_webhook,
        now=Clock(T0),
    )
    assert floored["nextPollSeconds"] == 10


@pytest.mark.parametrize("value", ["-1", "901", "soon", True])
def test_a_bad_webhook_wait_of_the_deployment_is_refused(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="webhookPollSeconds"):
        workflow.submit_export(
            {"projectId": PROJECT_ID},
            DEFAULTS | {"webhookPollSeconds": value},
            api=FakeApi(),
            export_id="e1",
            webhook=own_webhook,
            now=Clock(T0),
        )


# --- done ------------------------------------------------------------------------------


def test_done_only_with_a_url_and_the_url_is_never_returned() -> None:
    result, _ = check(new_job(), Progress("completed", 100.0, SIGNED_URL), Clock(T0 + 60))
    assert result["outcome"] == "done"
    assert result["nextPollSeconds"] == 0
    text = json.dumps(result)
    assert "cdn.example.com" not in text and "5ecret" not in text


def test_url_before_100_percent_is_not_done() -> None:
    result, _ = check(new_job(), Progress("exporting", 99.9, SIGNED_URL), Clock(T0 + 60))
    assert result["outcome"] == "waiting"
    assert "5ecret" not in json.dumps(result)


def test_done_wins_over_the_deadline() -> None:
    result, _ = check(
        new_job(timeoutSeconds=60), Progress("completed", 100.0, SIGNED_URL), Clock(T0 + 600)
    )
    assert result["outcome"] == "done"


# --- failed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", ["failed", "Error", "CANCELLED", "canceled", "export_failed", "ERROR_TIMEOUT"]
)
def test_failure_states_fail_the_export(state: str) -> None:
    result, _ = check(new_job(), exporting(37.5, state), Clock(T0 + 60))
    assert result["outcome"] == "failed"
    assert result["error"] == "ExportFailed"
    assert (
        repr(state) in result["cause"]
        and PROJECT_ID in result["cause"]
        and "37.5%" in result["cause"]
    )
    assert result["nextPollSeconds"] == 0


def test_failure_state_wins_over_a_download_url() -> None:
    result, _ = check(new_job(), Progress("failed", 100.0, SIGNED_URL), Clock(T0 + 60))
    assert result["outcome"] == "failed"
    assert "5ecret" not in json.dumps(result)


def test_long_failure_state_is_cut_in_the_cause() -> None:
    result, _ = check(new_job(), exporting(5, "error:" + "x" * 500), Clock(T0 + 60))
    assert len(result["cause"]) < 200


# --- 100% without a download URL -------------------------------------------------------


def test_100_without_url_re_checks_then_fails() -> None:
    clock = Clock(T0)
    job = new_job(pollSeconds=15)
    for check_number in range(1, MAX_URL_MISSING_CHECKS + 1):
        clock.advance(2)
        job, _ = check(job, exporting(100, "completed"), clock)
        assert job["outcome"] == "waiting"
        assert job["urlMissingChecks"] == check_number
        assert job["nextPollSeconds"] == workflow.URL_MISSING_POLL_SECONDS
    clock.advance(2)
    job, _ = check(job, exporting(100, "completed"), clock)
    assert job["outcome"] == "failed"
    assert job["error"] == "DownloadUrlMissing"
    assert "no downloadUrl" in job["cause"] and PROJECT_ID in job["cause"]
    assert job["polls"] == MAX_URL_MISSING_CHECKS + 1


def test_url_appearing_on_a_re_check_is_done() -> None:
    job, _ = check(new_job(), exporting(100, "completed"), Clock(T0 + 10))
    job, _ = check(job, Progress("completed", 100.0, SIGNED_URL), Clock(T0 + 12))
    assert job["outcome"] == "done"


def test_url_missing_re_check_is_not_longer_than_poll_seconds() -> None:
    job, _ = check(new_job(pollSeconds=1), exporting(100, "completed"), Clock(T0 + 10))
    assert job["nextPollSeconds"] == 1


@pytest.mark.parametrize("state", ["exported", "EXPORTED", "complete", "Complete", "completed"])
def test_a_done_state_word_is_done_whatever_the_progress_says(state: str) -> None:
    job, api = check(new_job(), Progress(state, 97.5, SIGNED_URL), Clock(T0 + 10))
    assert (job["outcome"], job["progress"], job["nextPollSeconds"]) == ("done", 97.5, 0)
    assert api.project_calls == []  # the progress answer had the URL


def test_a_done_state_without_url_asks_get_project_and_is_done_with_its_url() -> None:
    job, api = check(new_job(), exporting(99, "exported"), Clock(T0 + 10), project_url=SIGNED_URL)
    assert job["outcome"] == "done"
    assert api.project_calls == [PROJECT_ID]
    assert "sig-5ecret" not in json.dumps(job)


def test_100_without_url_asks_get_project_and_is_done_with_its_url() -> None:
    job, api = check(new_job(), exporting(100, "completed"), Clock(T0 + 10), project_url=SIGNED_URL)
    assert (job["outcome"], job["urlMissingChecks"]) == ("done", 0)
    assert api.project_calls == [PROJECT_ID]


def test_get_project_is_asked_only_once_the_export_is_finished() -> None:
    _, api = check(new_job(), exporting(60), Clock(T0 + 10), project_url=SIGNED_URL)
    assert api.project_calls == []


def test_a_get_project_refusal_counts_as_a_missing_url(caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(FakeApi):
        def get_project(self, project_id: str) -> ProjectInfo:
            self.project_calls.append(project_id)
            raise RequestRejected("GET answered HTTP 404", status=404, code="NOT_FOUND")

    api = Refusing([exporting(100, "completed")])
    with caplog.at_level(logging.WARNING):
        job = workflow.check_progress(new_job(), api=api, now=Clock(T0 + 10))
    assert (job["outcome"], job["urlMissingChecks"]) == ("waiting", 1)
    assert api.project_calls == [PROJECT_ID]
    assert [r.getMessage() for r in caplog.records] == [
        "get-project refused; no download URL from it"
    ]


# --- timed out -------------------------------------------------------------------------


def test_deadline_times_the_export_out() -> None:
    job = new_job(timeoutSeconds=300)
    result, _ = check(job, exporting(60), Clock(T0 + 300))
    assert result["outcome"] == "timedOut"
    assert result["error"] == "ExportTimedOut"
    assert "did not finish within 300 s" in result["cause"] and "60%" in result["cause"]
    assert result["nextPollSeconds"] == 0


def test_stalled_progress_times_the_export_out() -> None:
    clock = Clock(T0)
    job = new_job(stallSeconds=120, timeoutSeconds=3600)
    clock.advance(30)
    job, _ = check(job, exporting(40), clock)
    clock.advance(119)
    job, _ = check(job, exporting(40), clock)
    assert job["outcome"] == "waiting"
    clock.advance(1)
    job, _ = check(job, exporting(40), clock)
    assert job["outcome"] == "timedOut"
    assert job["error"] == "ExportTimedOut"
    assert "stalled" in job["cause"] and "40%" in job["cause"] and "limit 120 s" in job["cause"]


def test_max_polls_ends_the_loop_when_the_clock_stands_still() -> None:
    job = new_job(pollSeconds=15, timeoutSeconds=60)
    clock = Clock(T0)  # never advances: only the poll count can end this loop
    progress = 0.0
    for _ in range(1000):
        progress += 0.01
        job, _ = check(job, exporting(progress), clock)
        if job["outcome"] != "waiting":
            break
    assert job["outcome"] == "timedOut"
    # 60 s at the shortest wait (1 s without a floor), plus 10.
    assert job["polls"] == job["maxPolls"] == 70


def test_every_loop_ends_within_max_polls() -> None:
    for answer in (exporting(0), exporting(100, "completed"), exporting(50, "rendering")):
        job = new_job(pollSeconds=0, timeoutSeconds=30, stallSeconds=5400)
        clock = Clock(T0)
        for _ in range(job["maxPolls"]):
            job, _ = check(job, answer, clock)
            if job["outcome"] != "waiting":
                break
        assert job["outcome"] in ("failed", "timedOut")


# --- states ----------------------------------------------------------------------------


def test_unknown_state_logs_a_warning_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        result, _ = check(new_job(), exporting(20, "rendering"), Clock(T0 + 15))
    assert result["outcome"] == "waiting"
    assert result["state"] == "rendering"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["unknown export state"]
    assert warnings[0].__dict__["state"] == "rendering"


def test_an_unknown_state_is_logged_once_per_export(caplog: pytest.LogCaptureFixture) -> None:
    clock, job = Clock(T0), new_job(stallSeconds=600)
    with caplog.at_level(logging.WARNING):
        for progress, state in (
            (10, "rendering"),
            (20, "rendering"),
            (30, "encoding"),
            (40, "rendering"),
        ):
            clock.advance(15)
            job, _ = check(job, exporting(progress, state), clock)
            assert job["outcome"] == "waiting"  # still working while progress moves
    assert [r.__dict__["state"] for r in caplog.records] == ["rendering", "encoding"]
    assert job["unknownStates"] == ["rendering", "encoding"]
    json.dumps(job)


def test_an_unknown_state_whose_progress_stands_still_times_out() -> None:
    clock, job = Clock(T0), new_job(stallSeconds=60, timeoutSeconds=3600)
    for _ in range(10):
        clock.advance(30)
        job, _ = check(job, exporting(40, "rendering"), clock)
        if job["outcome"] != "waiting":
            break
    assert (job["outcome"], job["error"]) == ("timedOut", "ExportTimedOut")


def test_the_unknown_states_remembered_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    clock, job = Clock(T0), new_job()
    with caplog.at_level(logging.WARNING):
        for n in range(MAX_UNKNOWN_STATES + 3):
            clock.advance(15)
            job, _ = check(job, exporting(n + 1, f"word-{n}-" + "x" * 100), clock)
    assert len(caplog.records) == len(job["unknownStates"]) == MAX_UNKNOWN_STATES
    assert all(len(word) == 40 for word in job["unknownStates"])


@pytest.mark.parametrize("state", ["", "exporting", "Processing", "QUEUED", "completed", "Done"])
def test_known_states_do_not_warn(caplog: pytest.LogCaptureFixture, state: str) -> None:
    with caplog.at_level(logging.INFO):
        check(new_job(), exporting(20, state), Clock(T0 + 15))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_error_names_the_workflow_reports_are_error_classes() -> None:
    for answer, clock in (
        (exporting(1, "failed"), Clock(T0 + 1)),
        (exporting(1), Clock(T0 + 99_999)),
    ):
        result, _ = check(new_job(), answer, clock)
        assert issubclass(getattr(errors, result["error"]), errors.FinalError)
    assert issubclass(errors.DownloadUrlMissing, errors.FinalError)


def test_malformed_job_is_rejected_before_polling() -> None:
    api = FakeApi([exporting(1)])
    with pytest.raises(InvalidRequest):
        workflow.check_progress({"projectId": "nope"}, api=api, now=Clock(T0))
    assert api.progress_calls == []


# --- object_key --------------------------------------------------------------------------


def test_object_key_format() -> None:
    job = Job.from_dict(new_job(outputPrefix="team/a", resolution="720"))
    assert (
        workflow.object_key("exports/", job)
        == f"exports/team/a/{PROJECT_ID}/720/20260101T000000Z.mp4"
    )
    assert workflow.object_key("", job) == f"team/a/{PROJECT_ID}/720/20260101T000000Z.mp4"


def test_object_key_depends_only_on_the_job() -> None:
    job = Job.from_dict(new_job())
    later = Job.from_dict(job.to_dict() | {"polls": 9, "progress": 100.0, "outcome": "done"})
    assert workflow.object_key("exports/", job) == workflow.object_key("exports/", later)
    assert workflow.object_key("exports/", job) == f"exports/{PROJECT_ID}/1080/20260101T000000Z.mp4"


def _exported(export_id: str, **request: Any) -> Job:
    parsed = ExportRequest.parse({"projectId": PROJECT_ID, **request}, DEFAULTS)
    return Job.start(parsed, T0, export_id=export_id)


def test_exports_of_the_same_project_in_the_same_second_get_their_own_keys() -> None:
    first, second = _exported(f"{PROJECT_ID}-1080-aaaa"), _exported(f"{PROJECT_ID}-1080-bbbb")
    assert workflow.object_key("exports/", first) != workflow.object_key("exports/", second)
    assert workflow.object_key("exports/", first) == (
        f"exports/{PROJECT_ID}/1080/20260101T000000Z-{PROJECT_ID}-1080-aaaa.mp4"
    )


def test_a_retried_finalize_of_one_export_writes_the_same_key() -> None:
    job = _exported("row-7")
    again = Job.from_dict(json.loads(json.dumps(job.to_dict())) | {"polls": 4})
    assert workflow.object_key("exports/", again) == workflow.object_key("exports/", job)
    assert workflow.object_key("", job) == f"{PROJECT_ID}/1080/20260101T000000Z-row-7.mp4"


def test_submit_export_carries_the_export_id_into_the_job() -> None:
    job = workflow.submit_export(
        {"projectId": PROJECT_ID}, DEFAULTS, api=FakeApi(), export_id="exec-1", now=Clock(T0)
    )
    assert job["exportId"] == "exec-1"


@pytest.mark.parametrize("name", ["ünïcode", "a/b", "..", "x" * 81])
def test_an_export_id_unfit_for_a_key_is_replaced_by_its_digest(name: str) -> None:
    job = _exported(name)
    assert re.fullmatch(r"[0-9a-f]{24}", job.exportId)
    assert job.exportId != _exported(name + "2").exportId
    assert Job.from_dict(job.to_dict()) == job


@pytest.mark.parametrize("bad", ["a/b", 7, None])
def test_job_from_dict_refuses_an_export_id_unfit_for_a_key(bad: Any) -> None:
    with pytest.raises(InvalidRequest, match="exportId"):
        Job.from_dict(new_job() | {"exportId": bad})


# --- the deployment's floor under pollSeconds -----------------------------------------------


def test_a_request_cannot_poll_more_often_than_the_deployment_allows() -> None:
    job = workflow.submit_export(
        {"projectId": PROJECT_ID, "pollSeconds": 0, "timeoutSeconds": 600},
        DEFAULTS | {"minPollSeconds": "5"},
        api=FakeApi(),
        now=Clock(T0),
    )
    assert (job["pollSeconds"], job["nextPollSeconds"], job["maxPolls"]) == (5, 5, 130)
    result, _ = check(job, exporting(10), Clock(T0 + 5))
    assert result["nextPollSeconds"] == 5


def test_a_request_above_the_floor_keeps_its_interval() -> None:
    job = workflow.submit_export(
        {"projectId": PROJECT_ID, "pollSeconds": 30},
        DEFAULTS | {"minPollSeconds": "5"},
        api=FakeApi(),
        now=Clock(T0),
    )
    # pollSeconds is the longest wait; the first one is the floor's.
    assert (job["pollSeconds"], job["nextPollSeconds"]) == (30, 5)


@pytest.mark.parametrize("floor", ["-1", "901", "five", 2.5])
def test_a_broken_floor_is_refused_before_anything_is_sent(floor: Any) -> None:
    api = FakeApi()
    with pytest.raises(InvalidRequest, match="minPollSeconds"):
        workflow.submit_export(
            {"projectId": PROJECT_ID}, DEFAULTS | {"minPollSeconds": floor}, api=api
        )
    assert api.submitted == []


@settings(derandomize=True, database=None, max_examples=200)
@given(
    poll=st.integers(0, 900),
    floor=st.integers(0, 900),
    timeout=st.integers(1, 5400),
    elapsed=st.floats(0, 5400, allow_nan=False),
)
def test_waits_stay_above_the_floor_until_the_last_one_before_the_deadline(
    poll: int, floor: int, timeout: int, elapsed: float
) -> None:
    raw = {"projectId": PROJECT_ID, "pollSeconds": poll, "timeoutSeconds": timeout}
    raw |= {"stallSeconds": 5400}
    job = workflow.submit_export(raw, {"minPollSeconds": str(floor)}, api=FakeApi(), now=Clock(T0))
    assert job["nextPollSeconds"] >= floor
    clock = Clock(T0 + min(elapsed, timeout - 0.001))
    result, _ = check(job, exporting(50), clock)
    assert result["outcome"] == "waiting"
    if result["nextPollSeconds"] < floor:
        assert clock.t + result["nextPollSeconds"] >= job["deadline"], "only the last wait"
