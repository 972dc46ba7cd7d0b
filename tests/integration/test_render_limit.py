"""One account-wide render limit, shared by batches and API starts, on the local stack.

Three manifests and a burst of direct starts run at once with ``MaxRendersInFlight`` 3. The
renders in flight are read from each execution's own history: from the ``SubmitExport`` that
took a slot to the check that found the render done or a release step (or the execution's
end, for one that was stopped), so a render counts while the export surely held its slot.
The semaphore lives in DynamoDB on moto; releases of executions that end without their own
come through the template's EventBridge rule on Step Functions status changes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest

from aistudios_local.batch import upload_manifest, wait_batch
from aistudios_local.serve import LocalGateway
from aistudios_local.simulator import AiStudiosSimulator, Scenario
from aistudios_local.stack import LocalStack, wait_for_execution

from .conftest import assert_no_secrets

pytestmark = pytest.mark.integration

LIMIT = 3
DEADLINE = 180
RELEASES = {"ReleaseRenderSlotAfterFailure"}
FAST = Scenario(progress_steps=(0.0, 60.0, 100.0))


def project(n: int) -> str:
    return f"65fa6b07dca2e3674619{n:04x}"


@pytest.fixture
def stack(simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]) -> Iterator[LocalStack]:
    parameters = {
        "MaxRendersInFlight": str(LIMIT),
        "DefaultPollSeconds": "1",
        "BatchMaxConcurrency": "4",
        "LogLevel": "WARNING",
    }
    with LocalStack(simulator=simulator, parameters=parameters) as local:
        yield local
        assert_no_secrets(local, simulator, capfd)


def history(arn: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    events: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(100):
        more: dict[str, Any] = {"nextToken": token} if token else {}
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **more)
        events += [dict(e) for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            return events
    raise AssertionError(f"{arn}: history longer than 100 pages")


def render_interval(arn: str) -> tuple[datetime, datetime] | None:
    """When the export surely held a render slot, or None if it never took one.

    From the end of the ``SubmitExport`` that took the slot (one that answered ``queued`` took
    none) to the start of the ``CheckProgress`` that found the render done (it frees the slot),
    of a release step, or the execution's end: both inside the hold, so that two exports that
    follow each other on one slot never seem to overlap.
    """
    events = history(arn)
    start: datetime | None = None
    checking: datetime | None = None
    for e in events:
        if "stateEnteredEventDetails" in e:
            name = e["stateEnteredEventDetails"]["name"]
            if name == "CheckProgress":
                checking = e["timestamp"]
            elif name in RELEASES and start is not None:
                return start, e["timestamp"]
        elif "stateExitedEventDetails" in e:
            details = e["stateExitedEventDetails"]
            job = json.loads(details.get("output") or "{}").get("job") or {}
            if details["name"] == "SubmitExport" and job.get("outcome") != "queued":
                start = start or e["timestamp"]
            elif details["name"] == "CheckProgress" and job.get("outcome") == "done":
                assert start is not None and checking is not None
                return start, checking
    if start is None:
        return None
    ended = boto3.client("stepfunctions").describe_execution(executionArn=arn)
    return start, ended.get("stopDate") or events[-1]["timestamp"]


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    # Ends sort before starts at the same instant: a slot freed and taken in one moment is one.
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def held(stack: LocalStack) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(
        TableName=stack.ref("RenderSlotsTable"), Key={"pk": {"S": "renders"}}, ConsistentRead=True
    )
    holders = item.get("Item", {}).get("holders", {}).get("M", {})
    return dict(holders)


def wait_until(condition: Any, what: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_batches_and_api_starts_share_one_limit_and_leave_no_slot_held(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    sfn = boto3.client("stepfunctions")
    manifests: list[tuple[str, bytes, list[str]]] = []
    for b in range(3):
        rows = [project(b * 10 + r) for r in range(4)]
        for p in rows:
            simulator.set_scenario(p, FAST)
        text = "projectId\n" + "\n".join(rows) + "\n"
        manifests.append((f"batch-{b}.csv", text.encode(), rows))
    failing = manifests[1][2][0]
    simulator.set_scenario(failing, Scenario(progress_steps=(0.0, 20.0), fail_at_poll=2))

    direct = [project(100 + n) for n in range(4)]
    for p in direct:
        simulator.set_scenario(p, FAST)
    stalled, stopped = project(200), project(201)
    simulator.set_scenario(stalled, Scenario(progress_steps=(10.0,)))
    simulator.set_scenario(stopped, Scenario(progress_steps=tuple(float(n) for n in range(99))))

    # Everything at once: the three uploads and the direct starts.
    batches = [(upload_manifest(stack, data, name), data) for name, data, _ in manifests]
    starts = {p: stack.start_export({"projectId": p, "pollSeconds": 1}) for p in direct}
    starts[stalled] = stack.start_export(
        {"projectId": stalled, "pollSeconds": 1, "stallSeconds": 2}
    )
    starts[stopped] = stack.start_export({"projectId": stopped, "pollSeconds": 1})

    # Stop one export while its render is in flight (it holds a slot by then).
    wait_until(lambda: simulator.poll_count(stopped) >= 1, "the stopped export's first poll")
    sfn.stop_execution(executionArn=starts[stopped], error="Operator", cause="stopped by a test")

    for (key, arn), data in batches:
        assert arn is not None
        run = wait_batch(
            stack,
            arn,
            manifest_key=key,
            manifest_sha256=hashlib.sha256(data).hexdigest(),
            deadline_seconds=DEADLINE,
        )
        assert run.status in ("SUCCEEDED", "FAILED"), (key, run.error, run.cause)
    ended = {p: wait_for_execution(arn, deadline_seconds=DEADLINE) for p, arn in starts.items()}
    stack.settle(timeout=30)

    # Every export of the account, however it was started.
    exports = sfn.list_executions(stateMachineArn=stack.ref("ExportStateMachine"))["executions"]
    assert len(exports) == 3 * 4 + len(starts)
    statuses = {e["executionArn"]: e["status"] for e in exports}
    intervals = [i for e in exports if (i := render_interval(e["executionArn"])) is not None]
    assert len(intervals) == len(exports)
    assert most_at_once(intervals) == LIMIT  # the limit was reached, and never passed
    queued = [
        arn
        for arn in statuses
        if any(
            e.get("stateEnteredEventDetails", {}).get("name") == "WaitForRenderSlot"
            for e in history(arn)
        )
    ]
    assert queued, "with 18 exports and 3 slots, some waited"

    # The ends: success, failure, a budget that ran out, and a stop.
    assert sorted(statuses.values()).count("SUCCEEDED") == 3 * 4 - 1 + len(direct)
    assert ended[stalled]["status"] == "FAILED" and ended[stalled]["error"] == "ExportTimedOut"
    assert ended[stopped]["status"] == "ABORTED"
    failed = [e for e in exports if e["name"].startswith(failing)]
    assert [statuses[e["executionArn"]] for e in failed] == ["FAILED"]

    # No slot outlives its export: the stopped one was freed by the status-change rule.
    assert held(stack) == {}
    released = [
        d
        for d in stack.lambda_deliveries
        if json.loads(d.input)["detail"]["executionArn"] == starts[stopped]
    ]
    assert [(d.succeeded, d.result) for d in released] == [
        (True, {"holder": starts[stopped].rsplit(":", 1)[1], "released": True})
    ]


def test_an_export_waiting_for_a_slot_is_queued_in_the_api_until_it_gets_one(
    simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    first, second = project(300), project(301)
    simulator.set_scenario(
        first, Scenario(progress_steps=tuple(float(n) for n in range(0, 101, 10)))
    )
    simulator.set_scenario(second, FAST)
    parameters = {"MaxRendersInFlight": "1", "DefaultPollSeconds": "1", "LogLevel": "WARNING"}
    with LocalStack(simulator=simulator, parameters=parameters) as stack:
        gateway = LocalGateway(stack)

        def request(method: str, target: str, body: Any = None) -> Any:
            raw = json.dumps(body).encode() if body is not None else b""
            status, _, payload = gateway.handle(method, target, [("Host", "127.0.0.1")], raw)
            assert status in (200, 202), payload
            return json.loads(payload)

        one = request("POST", "/exports", {"projectId": first})["exportId"]
        wait_until(lambda: simulator.poll_count(first) >= 1, "the first export's render")
        two = request("POST", "/exports", {"projectId": second})["exportId"]
        wait_until(
            lambda: any(
                e.get("stateEnteredEventDetails", {}).get("name") == "WaitForRenderSlot"
                for e in history(
                    stack.ref("ExportStateMachine").replace(":stateMachine:", ":execution:")
                    + f":{two}"
                )
            ),
            "the second export to queue",
        )
        queued = request("GET", f"/exports/{two}")
        assert (queued["status"], queued["state"], queued["progress"]) == ("RUNNING", "queued", 0)
        assert simulator.poll_count(second) == 0 and not [
            c
            for c in simulator.calls
            if c.method == "POST" and c.body and c.body.get("projectId") == second
        ]
        prefix = stack.ref("ExportStateMachine").replace(":stateMachine:", ":execution:")
        for export_id in (one, two):
            assert (
                wait_for_execution(f"{prefix}:{export_id}", deadline_seconds=DEADLINE)["status"]
                == "SUCCEEDED"
            )
        done = request("GET", f"/exports/{two}")
        assert (done["status"], done["progress"]) == ("SUCCEEDED", 100)
        assert held(stack) == {}
        assert_no_secrets(stack, simulator, capfd)
