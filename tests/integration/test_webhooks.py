"""The fast path: AI Studios' webhook wakes the waiting execution, which checks for itself.

Exports here progress linearly with wall time (`Scenario.linear_seconds`), and the simulator calls
the export's ``webhookUrl`` as the scenario says. Timing is read from the execution's history.
A request's own webhook gets the confirmed progress relayed: an HTTPS receiver on loopback, the one
origin the stack's ``TrustedWebhookOrigin`` lets the relay reach.
"""

from __future__ import annotations

import io
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from aistudios_export.webhooks import WAIT_RESOURCE
from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_bytes
from aistudios_local.stack import EXPORT_STATE_MACHINE, LocalStack
from tests.unit._downloads import ServerThread
from tests.unit._tls import self_signed

from .conftest import PROJECT, MakeStack, assert_stored

pytestmark = pytest.mark.integration


def waits_of(seconds: int) -> dict[str, str]:
    """Parameters under which every wait lasts ``seconds`` unless a webhook ends it.

    With webhooks, waits are ``WebhookPollSeconds`` (no prediction), at least the floor.
    """
    return {"MinPollSeconds": str(seconds), "WebhookPollSeconds": str(seconds)}


SLOW_POLLS = waits_of(30)
"""Every wait lasts 30 s unless a webhook ends it: only a webhook can find the video soon."""


def history(arn: str) -> list[dict[str, Any]]:
    events: list[Any] = boto3.client("stepfunctions").get_execution_history(
        executionArn=arn, maxResults=1000
    )["events"]
    return sorted(events, key=lambda e: e["id"])


def entered(arn: str, state: str) -> list[datetime]:
    return [
        e["timestamp"]
        for e in history(arn)
        if e["type"].endswith("StateEntered") and e["stateEnteredEventDetails"]["name"] == state
    ]


def waits(arn: str) -> list[str]:
    """How each callback wait ended: TaskSucceeded (a webhook) or TaskTimedOut."""
    events = history(arn)
    ids = {
        e["id"]
        for e in events
        if e["type"] == "TaskScheduled"
        and e["taskScheduledEventDetails"]["resource"] == WAIT_RESOURCE
    }
    ended: list[str] = []
    for e in events:
        before = [i for i in ids if i < e["id"]]
        ends = e["type"] in ("TaskSucceeded", "TaskTimedOut", "TaskFailed")
        if ends and before and e["id"] - max(before) <= 4:
            ended.append(e["type"])
    return ended


def until_waiting(arn: str, count: int = 1, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduled = [
            e
            for e in history(arn)
            if e["type"] == "TaskScheduled"
            and e["taskScheduledEventDetails"]["resource"] == WAIT_RESOURCE
        ]
        if len(scheduled) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{arn} did not reach wait {count}")


def start(stack: LocalStack, **request: Any) -> str:
    return stack.start_export({"projectId": PROJECT, "pollSeconds": 60, **request})


def test_a_finish_webhook_ends_the_wait_and_finalize_starts_within_two_seconds(
    make_stack: MakeStack, simulator: AiStudiosSimulator
) -> None:
    stack = make_stack(parameters=SLOW_POLLS, webhooks=True)
    # A warm API, as after its first call (a cold start of its function takes a second here).
    assert simulator.send_webhook(stack.webhook_url("warm-up", token="0" * 64), {}) == 404
    simulator.set_scenario(PROJECT, Scenario(linear_seconds=2, webhook="finish"))
    arn = start(stack)
    result = stack.wait(arn, deadline_seconds=25)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    ready = simulator.submitted_at(PROJECT) + 2
    [finalize] = entered(arn, "FinalizeExport")
    assert finalize.timestamp() - ready <= 2.0
    assert waits(arn) == ["TaskSucceeded"]  # the one wait, ended by the webhook
    assert [c.status for c in simulator.webhook_calls] == [404, 202]  # the warm-up, the call


def test_a_forged_webhook_is_refused_and_without_webhooks_the_timeout_polls(
    make_stack: MakeStack, simulator: AiStudiosSimulator
) -> None:
    stack = make_stack(parameters=waits_of(3), webhooks=True)
    simulator.set_scenario(PROJECT, Scenario(linear_seconds=2))  # AI Studios never calls
    arn = start(stack)
    export_id = arn.rsplit(":", 1)[1]
    until_waiting(arn)
    real = stack.webhook_url(export_id)
    forged = [
        stack.webhook_url(export_id, token="0" * 64),
        stack.webhook_url(export_id, token=stack.webhook_url(export_id + "x").rsplit("/", 1)[1]),
        # The real token with its last digit changed (to another digit: a token that already
        # ends in 0 would otherwise be sent unchanged).
        real[:-1] + ("1" if real.endswith("0") else "0"),
    ]
    assert real not in forged
    for url in forged:
        assert simulator.send_webhook(url, {"progress": 100}) == 404
    assert all(c.status == 404 for c in simulator.webhook_calls)
    result = stack.wait(arn, deadline_seconds=25)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert set(waits(arn)) == {"TaskTimedOut"}  # nothing woke a wait: each timed out


def test_a_webhook_of_an_unfinished_export_only_makes_it_check(
    make_stack: MakeStack, simulator: AiStudiosSimulator
) -> None:
    stack = make_stack(parameters=waits_of(4), webhooks=True)
    simulator.set_scenario(PROJECT, Scenario(linear_seconds=6))
    arn = start(stack)
    until_waiting(arn)
    # A call with the right token that lies: the export is far from done.
    url = stack.webhook_url(arn.rsplit(":", 1)[1])
    assert simulator.send_webhook(url, {"progress": 100, "download_url": "https://x/y.mp4"}) == 202
    until_waiting(arn, count=2)
    assert waits(arn)[0] == "TaskSucceeded"
    assert entered(arn, "FinalizeExport") == []
    result = stack.wait(arn, deadline_seconds=30)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    [finalize] = entered(arn, "FinalizeExport")
    assert finalize.timestamp() >= simulator.submitted_at(PROJECT) + 6


def test_a_strangers_call_halfway_is_refused_and_finalizes_nothing(
    make_stack: MakeStack, simulator: AiStudiosSimulator
) -> None:
    stack = make_stack(parameters=waits_of(3), webhooks=True)
    simulator.set_scenario(PROJECT, Scenario(linear_seconds=2, webhook="forged"))
    arn = start(stack)
    result = stack.wait(arn, deadline_seconds=25)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert [c.status for c in simulator.webhook_calls] == [404]
    assert set(waits(arn)) == {"TaskTimedOut"}
    [finalize] = entered(arn, "FinalizeExport")
    assert finalize.timestamp() >= simulator.submitted_at(PROJECT) + 2


@pytest.mark.parametrize("mode", ["duplicated", "late", "each-step"])
def test_duplicated_late_and_frequent_webhooks_are_harmless(
    make_stack: MakeStack, simulator: AiStudiosSimulator, mode: str
) -> None:
    stack = make_stack(parameters=waits_of(2), webhooks=True)
    simulator.set_scenario(PROJECT, Scenario(linear_seconds=2, webhook=mode, webhook_delay=0.5))
    result = stack.wait(start(stack), deadline_seconds=25)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    time.sleep(1.0)  # the late and duplicated calls land after the end: still harmless
    assert {c.status for c in simulator.webhook_calls} == {202}
    [event] = stack.events
    assert event["DetailType"] == "Export Completed"


def test_the_served_api_takes_the_webhooks_of_the_exports_started_through_it(
    make_stack: MakeStack, simulator: AiStudiosSimulator
) -> None:
    # As `aistudios-export local serve` starts it: a stack without an API, then its API served.
    stack = make_stack(parameters=SLOW_POLLS)
    with stack.serve_api(log=io.StringIO()) as server:
        assert simulator.send_webhook(f"{server.url}/webhooks/warm-up/{'0' * 64}", {}) == 404
        simulator.set_scenario(PROJECT, Scenario(linear_seconds=2, webhook="finish"))
        posted = requests.post(f"{server.url}/exports", json={"projectId": PROJECT}, timeout=30)
        assert posted.status_code == 202, posted.text
        machine = stack.ref(EXPORT_STATE_MACHINE)
        arn = f"{machine.replace(':stateMachine:', ':execution:')}:{posted.json()['exportId']}"
        result = stack.wait(arn, deadline_seconds=25)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    assert waits(arn) == ["TaskSucceeded"]  # a 30 s wait, ended by the webhook on the served API
    assert [c.status for c in simulator.webhook_calls] == [404, 202]


@dataclass(frozen=True)
class Hook:
    """One POST a webhook receiver got."""

    path: str
    content_type: str
    body: dict[str, Any]


class HookReceiver:
    """A caller's own webhook: HTTPS on 127.0.0.1 (a certificate for that address), 204 to POSTs."""

    def __init__(self, directory: Path) -> None:
        self.cert_file, key_file = self_signed(directory, "127.0.0.1")
        self.hooks: list[Hook] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook = Hook(self.path, self.headers.get("Content-Type", ""), json.loads(raw))
                with lock:
                    receiver.hooks.append(hook)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, key_file)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self.origin = f"https://127.0.0.1:{httpd.server_address[1]}"
        self.serving = ServerThread(httpd)
        self.serving.start()

    def stop(self) -> None:
        self.serving.stop()


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HookReceiver]:
    """A caller's webhook receiver whose certificate the stack's functions trust."""
    hook = HookReceiver(tmp_path)
    # Read when the relay's connections are made; the stack's functions get this environment.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(hook.cert_file))
    yield hook
    hook.stop()


def confirmed_progress(arn: str) -> list[float]:
    """The progress CheckProgress confirmed with AI Studios at each of its polls, in order."""
    return [
        json.loads(e["stateExitedEventDetails"]["output"])["job"]["progress"]
        for e in history(arn)
        if e["type"] == "TaskStateExited"
        and e["stateExitedEventDetails"]["name"] == "CheckProgress"
    ]


def test_a_requests_own_webhook_gets_the_confirmed_progress_relayed(
    make_stack: MakeStack, simulator: AiStudiosSimulator, receiver: HookReceiver
) -> None:
    stack = make_stack(
        parameters={**waits_of(2), "TrustedWebhookOrigin": receiver.origin}, webhooks=True
    )
    # AI Studios calls at every 10 %: each call wakes the execution, which polls for itself.
    simulator.set_scenario(PROJECT, Scenario(linear_seconds=3, webhook="each-step"))
    own = f"{receiver.origin}/hook?caller=1"
    arn = start(stack, webhookUrl=own)
    export_id = arn.rsplit(":", 1)[1]
    until_waiting(arn)
    # A call that lies (done, with a video elsewhere) only makes the execution check.
    lie = {"progress": 100, "download_url": "https://x/y.mp4"}
    assert simulator.send_webhook(stack.webhook_url(export_id), lie) == 202
    result = stack.wait(arn, deadline_seconds=25)
    assert_stored(stack, result, video_bytes(PROJECT, "1080"))

    # AI Studios was given the stack's webhook, never the caller's.
    [submitted] = [c.body for c in simulator.calls if c.body is not None]
    assert submitted["webhookUrl"] == stack.webhook_url(export_id)
    assert own not in json.dumps([c.body for c in simulator.calls])

    # One POST per change of the progress CheckProgress confirmed, in order, and nothing else.
    confirmed = confirmed_progress(arn)
    changes = [p for i, p in enumerate(confirmed) if i == 0 or p != confirmed[i - 1]]
    hooks = receiver.hooks
    assert [h.body["progress"] for h in hooks] == [int(p) for p in changes]
    assert all(h.path == "/hook?caller=1" for h in hooks)
    assert all(h.content_type == "application/json" for h in hooks)
    assert all(h.body["projectId"] == PROJECT for h in hooks)
    progress = [h.body["progress"] for h in hooks]
    assert progress == sorted(progress)  # never back (two changes may round to one whole percent)
    *before, last = hooks
    assert before, "progress before the end was relayed too"
    assert all(h.body["progress"] < 100 and "download_url" not in h.body for h in before)
    assert last.body["progress"] == 100
    assert last.body["download_url"].startswith(simulator.base_url)
