"""Cancel and redrive through the HTTP API on the local stack: the real handler, state machine and
simulator (and the local stack's RedriveExecution, :mod:`aistudios_local.redrive`).

Requests go through :class:`LocalGateway`, what ``aistudios-export local serve`` does with each
HTTP request. The render slot a cancelled export held is freed by the template's status-change
rule (``RenderSlotReleaseRule``), not by the route.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from aistudios_local.serve import LocalGateway
from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_bytes
from aistudios_local.stack import LocalStack, wait_for_execution

from .conftest import PROJECT, assert_no_secrets

pytestmark = pytest.mark.integration

DEADLINE = 60
SLOW = Scenario(progress_steps=tuple(float(n) for n in range(99)))
"""An export that stays in flight (its render is running) for as long as the test needs."""


class Client:
    """Requests to the API as API Gateway would pass them on."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.gateway = LocalGateway(stack)

    def request(self, method: str, target: str, body: Any = None) -> tuple[int, Any]:
        raw = b"" if body is None else json.dumps(body).encode()
        status, _, payload = self.gateway.handle(method, target, [("Host", "127.0.0.1:3000")], raw)
        return status, json.loads(payload) if payload else None

    def arn(self, export_id: str) -> str:
        machine = self.stack.ref("ExportStateMachine")
        return f"{machine.replace(':stateMachine:', ':execution:')}:{export_id}"


@pytest.fixture
def api(simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]) -> Iterator[Client]:
    parameters = {"DefaultPollSeconds": "1", "LogLevel": "WARNING"}
    with LocalStack(simulator=simulator, parameters=parameters) as stack:
        client = Client(stack)
        yield client
        assert_no_secrets(stack, simulator, capfd)


def held(stack: LocalStack) -> dict[str, Any]:
    """The render slots' holders now (as tests/integration/test_render_limit.py reads them)."""
    item = boto3.client("dynamodb").get_item(
        TableName=stack.ref("RenderSlotsTable"), Key={"pk": {"S": "renders"}}, ConsistentRead=True
    )
    return dict(item.get("Item", {}).get("holders", {}).get("M", {}))


def wait_until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_cancelled_export_ends_aborted_frees_its_slot_and_writes_no_video(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, SLOW)
    status, posted = api.request("POST", "/exports", {"projectId": PROJECT})
    assert status == 202
    export_id = posted["exportId"]
    # Its render is in flight at AI Studios, and it holds a slot.
    wait_until(lambda: simulator.poll_count(PROJECT) >= 1, "the export's first poll")
    assert export_id in held(api.stack)

    status, cancelled = api.request("POST", f"/exports/{export_id}/cancel")
    # Stopping: the engine ends it once the task in flight returns (AWS does it at once).
    assert (status, cancelled["exportId"]) == (202, export_id)
    assert cancelled["status"] in ("RUNNING", "ABORTED")
    ended = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    assert ended["status"] == "ABORTED"
    api.stack.settle(timeout=30)

    assert held(api.stack) == {}, "the cancelled export's slot is still held"
    listed = boto3.client("s3").list_objects_v2(Bucket=api.stack.ref("OutputBucket"))
    assert listed["KeyCount"] == 0, "a cancelled export wrote a video"
    polls = simulator.poll_count(PROJECT)

    # Idempotent: the same answer again, now that it ended, and the export stays as it was.
    assert api.request("POST", f"/exports/{export_id}/cancel") == (
        202,
        {**cancelled, "status": "ABORTED"},
    )
    status, got = api.request("GET", f"/exports/{export_id}")
    assert (status, got["status"], got["video"]) == (200, "ABORTED", None)
    api.stack.settle(timeout=30)
    assert simulator.poll_count(PROJECT) == polls  # nothing polls a cancelled export


def test_cancelling_a_finished_export_is_409_and_changes_nothing(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(progress_steps=(100.0,)))
    _, posted = api.request("POST", "/exports", {"projectId": PROJECT})
    export_id = posted["exportId"]
    assert wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)["status"] == (
        "SUCCEEDED"
    )
    status, refused = api.request("POST", f"/exports/{export_id}/cancel")
    assert status == 409
    assert refused["message"] == (
        "the export already ended SUCCEEDED: only a running one can be cancelled (status SUCCEEDED)"
    )
    status, got = api.request("GET", f"/exports/{export_id}")
    assert (got["status"], got["video"]["sha256"] is not None) == ("SUCCEEDED", True)
    api.stack.settle(timeout=30)
    assert held(api.stack) == {}


# --- redrive -----------------------------------------------------------------------------------


def export_posts(simulator: AiStudiosSimulator) -> int:
    """How many export POSTs (renders asked for) the simulator answered."""
    return sum(1 for c in simulator.calls if c.method == "POST" and c.path.endswith("/export"))


def failed_then_redriven(api: Client, simulator: AiStudiosSimulator, failing: Scenario) -> str:
    """Start an export that fails under ``failing``; mend the simulator; redrive it; return its id.

    The failure reads as it always did (its error, a readable cause, no video), and the redrive
    answers 202.
    """
    simulator.set_scenario(PROJECT, failing)
    status, posted = api.request("POST", "/exports", {"projectId": PROJECT})
    assert status == 202
    export_id = posted["exportId"]
    assert wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)["status"] == "FAILED"
    status, got = api.request("GET", f"/exports/{export_id}")
    assert (status, got["status"], got["video"]) == (200, "FAILED", None)
    # The cause is the failure's message, never Lambda's JSON with a stack trace.
    assert got["cause"] and not got["cause"].startswith("{") and "stackTrace" not in got["cause"]
    assert "the export was submitted to AI Studios" in got["cause"]
    api.stack.settle(timeout=30)
    assert held(api.stack) == {}

    simulator.set_scenario(PROJECT, Scenario())
    status, redriven = api.request("POST", f"/exports/{export_id}/redrive")
    assert (status, redriven["exportId"], redriven["status"]) == (202, export_id, "RUNNING")
    return str(export_id)


def assert_resumed_to_the_video(
    api: Client, simulator: AiStudiosSimulator, export_id: str, redrives: int = 1
) -> None:
    """The redriven export succeeded with the exact video, after one render, holding no slot."""
    ended = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    assert ended["status"] == "SUCCEEDED", (ended.get("error"), ended.get("cause"))
    status, got = api.request("GET", f"/exports/{export_id}")
    assert (status, got["status"], got["error"], got["cause"]) == (200, "SUCCEEDED", None, None)
    expected = video_bytes(PROJECT, "1080")
    s3 = boto3.client("s3")
    bucket = api.stack.ref("OutputBucket")
    assert got["video"]["s3Uri"].startswith(f"s3://{bucket}/")
    key = got["video"]["s3Uri"].removeprefix(f"s3://{bucket}/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == expected
    assert got["video"]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert got["video"]["size"] == len(expected)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert export_posts(simulator) == 1, "the redrive rendered the project a second time"
    api.stack.settle(timeout=30)
    assert held(api.stack) == {}, "the redriven export's slot is still held"
    history = boto3.client("stepfunctions").get_execution_history(
        executionArn=api.arn(export_id), maxResults=1000
    )["events"]
    assert [e["type"] for e in history].count("ExecutionRedriven") == redrives


def test_a_redrive_of_an_export_whose_copy_failed_copies_the_video_without_a_second_render(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    # Every download URL answers 403 (expired): the render is done, the copy fails.
    export_id = failed_then_redriven(api, simulator, Scenario(expired_urls=1000))
    status, got = api.request("GET", f"/exports/{export_id}")
    assert got["status"] in ("RUNNING", "SUCCEEDED")
    assert_resumed_to_the_video(api, simulator, export_id)
    # Idempotent: the export runs no more; redriving a success is 409.
    status, refused = api.request("POST", f"/exports/{export_id}/redrive")
    assert status == 409 and refused["message"].startswith("the export is SUCCEEDED")


def test_a_redrive_of_an_export_whose_polls_failed_polls_the_render_again(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    # AI Studios refuses the first progress call for good (400): the render is left running.
    export_id = failed_then_redriven(api, simulator, Scenario(progress_failures=(400,)))
    polls = simulator.poll_count(PROJECT)
    assert_resumed_to_the_video(api, simulator, export_id)
    assert simulator.poll_count(PROJECT) > polls, "the resumed export polled the same render"


def test_a_redrive_of_an_export_never_submitted_submits_it(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(reject_submit=("PROJECT_LOCKED", "being edited")))
    _, posted = api.request("POST", "/exports", {"projectId": PROJECT})
    export_id = posted["exportId"]
    failed = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    assert (failed["status"], failed["error"]) == ("FAILED", "RequestRejected")
    _, got = api.request("GET", f"/exports/{export_id}")
    assert "PROJECT_LOCKED" in got["cause"] and "being edited" in got["cause"]
    assert not got["cause"].startswith("{")
    assert export_posts(simulator) == 1
    simulator.set_scenario(PROJECT, Scenario())
    status, _ = api.request("POST", f"/exports/{export_id}/redrive")
    assert status == 202
    ended = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    assert ended["status"] == "SUCCEEDED", (ended.get("error"), ended.get("cause"))
    assert export_posts(simulator) == 2, "the refused submit, then the redrive's"
    api.stack.settle(timeout=30)
    assert held(api.stack) == {}


def test_a_redrive_does_not_resume_a_render_ai_studios_reported_failed(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(fail_at_poll=1))
    _, posted = api.request("POST", "/exports", {"projectId": PROJECT})
    export_id = posted["exportId"]
    failed = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    assert (failed["status"], failed["error"]) == ("FAILED", "ExportFailed")
    _, before = api.request("GET", f"/exports/{export_id}")
    simulator.set_scenario(PROJECT, Scenario())
    assert api.request("POST", f"/exports/{export_id}/redrive")[0] == 202
    ended = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    # It fails again at once with the same error, saying why: nothing is rendered again.
    assert (ended["status"], ended["error"]) == ("FAILED", "ExportFailed")
    _, got = api.request("GET", f"/exports/{export_id}")
    assert got["cause"].startswith(before["cause"])
    assert "redrive 1 did not resume the export" in got["cause"]
    assert "start a new export" in got["cause"]
    assert export_posts(simulator) == 1
    api.stack.settle(timeout=30)
    assert held(api.stack) == {}
    assert boto3.client("s3").list_objects_v2(Bucket=api.stack.ref("OutputBucket"))["KeyCount"] == 0


def test_a_redrive_of_a_timed_out_export_copies_a_render_finished_since(
    simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    parameters = {"DefaultPollSeconds": "1", "DefaultTimeoutSeconds": "3", "LogLevel": "WARNING"}
    with LocalStack(simulator=simulator, parameters=parameters) as stack:
        api = Client(stack)
        # The render outlasts the export's 3 s budget...
        simulator.set_scenario(PROJECT, SLOW)
        _, posted = api.request("POST", "/exports", {"projectId": PROJECT})
        export_id = posted["exportId"]
        failed = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
        assert (failed["status"], failed["error"]) == ("FAILED", "ExportTimedOut")
        # ...and finishes after the export gave up on it: a redrive polls it once more.
        simulator.set_scenario(PROJECT, Scenario(progress_steps=(100.0,)))
        assert api.request("POST", f"/exports/{export_id}/redrive")[0] == 202
        assert_resumed_to_the_video(api, simulator, export_id)
        assert_no_secrets(stack, simulator, capfd)


def test_a_redrive_that_fails_again_fails_with_its_own_error_and_can_be_redriven_again(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    simulator.set_scenario(PROJECT, Scenario(expired_urls=1000))
    _, posted = api.request("POST", "/exports", {"projectId": PROJECT})
    export_id = posted["exportId"]
    first = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    assert (first["status"], first["error"]) == ("FAILED", "DownloadUrlExpired")
    # Redriven before the cause is fixed: the second attempt fails as the first did.
    assert api.request("POST", f"/exports/{export_id}/redrive")[0] == 202
    second = wait_for_execution(api.arn(export_id), deadline_seconds=DEADLINE)
    assert (second["status"], second["error"], second["redriveCount"]) == (
        "FAILED",
        "DownloadUrlExpired",
        1,
    )
    _, got = api.request("GET", f"/exports/{export_id}")
    assert "did not resume" not in got["cause"] and not got["cause"].startswith("{")
    # Fixed, and redriven again: the video, after one render.
    simulator.set_scenario(PROJECT, Scenario())
    assert api.request("POST", f"/exports/{export_id}/redrive")[0] == 202
    assert_resumed_to_the_video(api, simulator, export_id, redrives=2)
