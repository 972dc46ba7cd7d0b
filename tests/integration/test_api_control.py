"""Cancel through the HTTP API on the local stack: the real handler, state machine and simulator.

Requests go through :class:`LocalGateway`, what ``aistudios-export local serve`` does with each
HTTP request. The render slot a cancelled export held is freed by the template's status-change
rule (``RenderSlotReleaseRule``), not by the route.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from aistudios_local.serve import LocalGateway
from aistudios_local.simulator import AiStudiosSimulator, Scenario
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
