"""One export through the real state machine, handlers and simulator: every behaviour of issue #2.

Each test asserts what is in the bucket afterwards: the right bytes once, or nothing at all.
"""

from __future__ import annotations

import json
import re

import pytest

from aistudios_local.simulator import NO_PROJECT, AiStudiosSimulator, Scenario, video_bytes
from aistudios_local.stack import LocalStack

from .conftest import PROJECT, MakeStack, assert_nothing_stored, assert_stored, run

pytestmark = pytest.mark.integration


def export_posts(sim: AiStudiosSimulator) -> list[dict[str, object] | None]:
    return [c.body for c in sim.calls if c.method == "POST" and c.path.endswith("/project/export")]


def test_success_stores_the_exact_video_and_publishes_an_event(stack: LocalStack) -> None:
    result = run(stack)
    head = assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert result.video is not None
    assert result.video["key"].startswith(f"exports/{PROJECT}/1080/")
    assert result.video["key"].endswith(".mp4")
    assert head["Metadata"]["resolution"] == "1080"
    [event] = stack.events
    assert event["DetailType"] == "Export Completed"
    assert result.video["sha256"] in event["Detail"]
    assert result.state_transitions > 0


@pytest.mark.parametrize("resolution", ["4k", "1080", "720", "480"])
def test_each_resolution(stack: LocalStack, simulator: AiStudiosSimulator, resolution: str) -> None:
    result = run(stack, resolution=resolution)
    assert_stored(stack, result, video_bytes(PROJECT, resolution))
    assert result.video is not None
    assert f"/{resolution}/" in result.video["key"]
    assert export_posts(simulator) == [{"projectId": PROJECT, "resolution": resolution}]


def test_token_expiry_mid_export_refreshes_exactly_once(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    # Submit and the first poll succeed, then every token minted so far stops working.
    simulator.set_scenario(PROJECT, Scenario(revoke_token_after=2))
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert simulator.tokens_minted == 1
    refreshes = [i for i in stack.invocations if i.function == "RefreshTokenFunction"]
    assert len(refreshes) == 1 and refreshes[0].result["minted"] is True


def test_first_export_mints_the_first_token(
    make_stack: MakeStack, simulator: AiStudiosSimulator
) -> None:
    stack = make_stack(seed_token=False)
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert simulator.tokens_minted == 1


def test_wrong_credentials_fail_clearly_without_minting_in_a_loop(
    make_stack: MakeStack, simulator: AiStudiosSimulator
) -> None:
    stack = make_stack(credentials=("wrong-app", "wrong-key"), seed_token=False)
    result = run(stack)
    assert result.status == "FAILED"
    assert result.error == "Unauthorized"
    assert_nothing_stored(result, stack)
    assert simulator.tokens_minted == 0
    token_calls = [c for c in simulator.calls if c.path.endswith("/auth/token")]
    assert len(token_calls) == 1
    assert export_posts(simulator) == []


def test_transient_submit_failures_are_retried(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(submit_failures=(503, 429)))
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    statuses = [c.status for c in simulator.calls if c.path.endswith("/project/export")]
    assert statuses == [503, 429, 200]


def test_rejected_submit_is_final_and_its_code_reaches_the_cause(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(
        PROJECT, Scenario(reject_submit=("PROJECT_LOCKED", "project is being edited"))
    )
    result = run(stack)
    assert result.status == "FAILED"
    assert result.error == "RequestRejected"
    assert result.cause is not None
    assert "PROJECT_LOCKED" in result.cause and "project is being edited" in result.cause
    assert len(export_posts(simulator)) == 1, "a final error is not retried"
    assert_nothing_stored(result, stack)


def test_malformed_progress_answers_are_transient(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(progress_failures=("malformed", "reset")))
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))


@pytest.mark.parametrize("state", ["failed", "Error", "CANCELLED"])
def test_failed_export_ends_within_one_poll(
    stack: LocalStack, simulator: AiStudiosSimulator, state: str
) -> None:
    simulator.set_scenario(PROJECT, Scenario(fail_at_poll=2, failure_state=state))
    result = run(stack)
    assert result.status == "FAILED"
    assert result.error == "ExportFailed"
    assert result.cause is not None and state in result.cause
    assert simulator.poll_count(PROJECT) == 2
    assert_nothing_stored(result, stack)
    [event] = stack.events
    assert event["DetailType"] == "Export Failed"


def test_stalled_export_times_out(stack: LocalStack, simulator: AiStudiosSimulator) -> None:
    simulator.set_scenario(PROJECT, Scenario(progress_steps=(0.0, 20.0)))
    result = run(stack, pollSeconds=1, stallSeconds=2)
    assert result.status == "FAILED"
    assert result.error == "ExportTimedOut"
    assert result.cause is not None and "stalled" in result.cause and "20%" in result.cause
    assert_nothing_stored(result, stack)


def test_export_that_never_finishes_ends_within_its_budget(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(progress_steps=tuple(float(p) for p in range(0, 100))))
    result = run(stack, pollSeconds=1, timeoutSeconds=2)
    assert result.status == "FAILED"
    assert result.error == "ExportTimedOut"
    assert result.cause is not None and "did not finish within 2 s" in result.cause
    assert simulator.poll_count(PROJECT) <= 4
    assert_nothing_stored(result, stack)


def project_gets(sim: AiStudiosSimulator) -> int:
    return sum(1 for c in sim.calls if c.method == "GET" and c.path.endswith(f"/project/{PROJECT}"))


def test_progress_100_without_url_is_rechecked_then_succeeds(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(url_missing_polls=2, project_url_missing=True))
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))


def test_progress_100_without_url_takes_the_url_of_get_project(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    # The progress answer never has a downloadUrl; get-project's data.project.download_url does.
    simulator.set_scenario(PROJECT, Scenario(url_missing_polls=-1, done_state="exported"))
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert simulator.poll_count(PROJECT) == 4 + 1  # (0, 35.5, 72, 100), then FinalizeExport's
    assert project_gets(simulator) == 2  # once by CheckProgress, once by FinalizeExport
    assert simulator.download_count(PROJECT) == 1


def test_progress_100_without_url_fails_after_bounded_rechecks(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(url_missing_polls=-1, project_url_missing=True))
    result = run(stack)
    assert result.status == "FAILED"
    assert result.error == "DownloadUrlMissing"
    assert result.cause is not None and "no downloadUrl" in result.cause
    assert "get-project" in result.cause
    polls_at_100 = simulator.poll_count(PROJECT) - 3  # (0, 35.5, 72) come first
    assert polls_at_100 == project_gets(simulator) == 4
    assert_nothing_stored(result, stack)


def test_an_unknown_project_fails_at_submit_with_project_not_found(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    result = run(stack, projectId=NO_PROJECT)
    assert result.status == "FAILED"
    assert result.error == "ProjectNotFound"
    assert result.cause is not None
    assert result.cause.startswith(f"AI Studios does not know project {NO_PROJECT} ")
    assert "PROJECT_NOT_FOUND" in result.cause
    assert "a render may still be running" not in result.cause  # nothing was accepted
    # Refused once, never retried, never polled.
    calls = [(c.method, c.path.rsplit("/", 2)[-2], c.status) for c in simulator.calls]
    assert calls == [("POST", "project", 404)]
    submits = [i for i in stack.invocations if i.function == "SubmitExportFunction"]
    assert len(submits) == 1
    [event] = stack.events
    assert event["DetailType"] == "Export Failed"
    assert "ProjectNotFound" in event["Detail"]
    assert_nothing_stored(result, stack)


def test_expired_download_url_is_replaced_by_a_fresh_one(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(expired_urls=2))  # the first URL went to CheckProgress
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    downloads = [c.status for c in simulator.calls if c.path.startswith("/downloads/")]
    assert downloads == [403, 200]


def test_download_url_that_never_stops_expiring_fails_clearly(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(expired_urls=100))
    result = run(stack)
    assert result.status == "FAILED"
    assert result.error == "DownloadUrlExpired"
    assert_nothing_stored(result, stack)


def test_download_cut_halfway_is_retried_and_leaves_no_partial_object(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(cut_downloads=1))
    result = run(stack)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert simulator.download_count(PROJECT) == 2


def test_download_cut_every_time_fails_with_nothing_in_the_bucket(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(cut_downloads=100))
    result = run(stack)
    assert result.status == "FAILED"
    assert result.error == "DownloadInterrupted"
    assert simulator.download_count(PROJECT) == 4, "one try and three retries"
    assert_nothing_stored(result, stack)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:{port}/downloads/x.mp4",
        "http://[::1]:{port}/downloads/x.mp4",
        "http://2130706433:{port}/downloads/x.mp4",
        "http://127.0.0.1:{other}/downloads/x.mp4",
        "http://user:pass@127.0.0.1:{port}/downloads/x.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_forbidden_download_url_is_refused_before_any_byte(
    stack: LocalStack, simulator: AiStudiosSimulator, url: str
) -> None:
    port = int(simulator.base_url.rsplit(":", 1)[1])
    simulator.set_scenario(PROJECT, Scenario(download_url=url.format(port=port, other=port + 1)))
    result = run(stack)
    assert result.status == "FAILED"
    assert result.error == "ForbiddenDownloadUrl"
    assert not [c for c in simulator.calls if c.path.startswith("/downloads/")]
    assert_nothing_stored(result, stack)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"projectId": "65fa6b07dca2e367461a292"}, "projectId"),
        ({"projectId": "zzfa6b07dca2e367461a2925"}, "projectId"),
        ({"projectId": 12345}, "projectId"),
        ({}, "projectId"),
        ({"projectId": PROJECT, "resolution": "1440"}, "resolution"),
        ({"projectId": PROJECT, "resolution": ""}, "resolution"),
        ({"projectId": PROJECT, "webhookUrl": "http://example.com/hook"}, "webhookUrl"),
        ({"projectId": PROJECT, "colour": "blue"}, "colour"),
    ],
)
def test_invalid_input_fails_at_once_naming_the_field(
    stack: LocalStack, simulator: AiStudiosSimulator, request_: dict[str, object], field: str
) -> None:
    result = stack.run_export(request_, deadline_seconds=60)
    assert result.status == "FAILED"
    assert result.error == "InvalidRequest"
    assert result.cause is not None and field in result.cause
    assert simulator.calls == [], "nothing is sent to AI Studios"
    assert_nothing_stored(result, stack)
    [event] = stack.events
    assert event["DetailType"] == "Export Failed"


def test_request_that_is_not_an_object_fails_clearly(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    result = stack.run_export(["65fa6b07dca2e367461a2925"], deadline_seconds=60)  # type: ignore[arg-type]
    assert result.status == "FAILED"
    assert result.error == "InvalidRequest"
    assert simulator.calls == []


SUBMITTED_NOTE = "the export was submitted to AI Studios at"


def failed_event_cause(stack: LocalStack) -> str:
    [event] = stack.events
    assert event["DetailType"] == "Export Failed"
    cause: str = json.loads(event["Detail"])["cause"]
    return cause


def test_a_failure_after_submit_says_a_render_may_still_be_running(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(fail_at_poll=1))
    result = run(stack)
    assert result.status == "FAILED" and result.error == "ExportFailed"
    assert result.cause is not None
    assert "'failed'" in result.cause, "the original cause comes first"
    assert SUBMITTED_NOTE in result.cause and "a render may still be running" in result.cause
    assert re.search(r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ;", result.cause)
    assert failed_event_cause(stack) == result.cause
    assert_nothing_stored(result, stack)


def test_a_function_error_after_submit_keeps_its_message_and_gets_the_note(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    # A 400 envelope on the first progress call: CheckProgress raises RequestRejected.
    simulator.set_scenario(PROJECT, Scenario(progress_failures=(400,)))
    result = run(stack)
    assert result.status == "FAILED" and result.error == "RequestRejected"
    assert result.cause is not None and SUBMITTED_NOTE in result.cause
    assert "stackTrace" not in result.cause and "errorMessage" not in result.cause
    assert failed_event_cause(stack) == result.cause


def test_a_failure_before_submit_has_no_such_note(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    result = stack.run_export({"projectId": "nope"}, deadline_seconds=60)
    assert result.status == "FAILED" and result.error == "InvalidRequest"
    assert result.cause is not None and "projectId" in result.cause
    assert "submitted" not in result.cause
    assert "submitted" not in failed_event_cause(stack)
    assert simulator.calls == []


def test_each_export_stores_its_video_under_a_key_of_its_own(stack: LocalStack) -> None:
    first, second = run(stack), run(stack)
    keys = []
    for result in (first, second):
        assert result.video is not None
        name = result.execution_arn.rsplit(":", 1)[1]
        assert result.video["key"].endswith(f"-{name}.mp4")
        keys.append(result.video["key"])
    assert keys[0] != keys[1]
    assert {o["key"] for o in first.objects + second.objects} == set(keys), "both are kept"
