"""A request's own webhookUrl: AI Studios gets this stack's, and the caller gets relayed calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aistudios_export import workflow
from aistudios_export.client import Progress
from aistudios_export.pinning import PinnedPools
from aistudios_export.relay import WebhookRelay
from aistudios_export.urlguard import UrlPolicy
from tests.unit._downloads import ServerThread, free_port
from tests.unit._fixtures import PROJECT_ID, T0, Clock, FakeApi

DEFAULTS = {"pollSeconds": "60", "timeoutSeconds": "1800", "stallSeconds": "600"}
OWN = "https://api.example/v1/webhooks/e1/" + "a" * 64
CALLERS = "https://hooks.example.com/aistudios?key=x"


def submit(raw: dict[str, Any], own: str | None) -> tuple[dict[str, Any], FakeApi]:
    api = FakeApi()
    job = workflow.submit_export(
        {"projectId": PROJECT_ID, **raw},
        DEFAULTS,
        api=api,
        export_id="e1",
        webhook=(lambda _: own) if own else None,
        now=lambda: T0,
    )
    return job, api


def test_ai_studios_gets_the_stacks_webhook_and_the_callers_is_kept_for_the_relay() -> None:
    job, api = submit({"webhookUrl": CALLERS}, OWN)
    assert api.submitted[0]["webhookUrl"] == OWN
    assert job["relayWebhookUrl"] == CALLERS


def test_without_the_stacks_webhook_the_callers_goes_to_ai_studios() -> None:
    job, api = submit({"webhookUrl": CALLERS}, None)
    assert api.submitted[0]["webhookUrl"] == CALLERS
    assert job["relayWebhookUrl"] is None
    job, api = submit({}, OWN)
    assert api.submitted[0]["webhookUrl"] == OWN
    assert job["relayWebhookUrl"] is None


def test_confirmed_progress_is_relayed_once_per_change_and_the_url_only_when_done() -> None:
    job, _ = submit({"webhookUrl": CALLERS}, OWN)
    sent: list[tuple[str, dict[str, Any]]] = []

    def relay(url: str, payload: dict[str, Any]) -> bool:
        sent.append((url, payload))
        return True

    clock = Clock(T0)
    answers = [
        Progress(state="exporting", progress=40.0, download_url=None),
        Progress(state="exporting", progress=40.0, download_url=None),
        Progress(state="completed", progress=100.0, download_url="https://cdn/v.mp4"),
    ]
    for answer in answers:
        clock.advance(10)
        job = workflow.check_progress(job, api=FakeApi([answer]), now=clock, relay=relay)
    assert job["outcome"] == "done"
    assert sent == [
        (CALLERS, {"progress": 40, "projectId": PROJECT_ID}),
        (CALLERS, {"progress": 100, "projectId": PROJECT_ID, "download_url": "https://cdn/v.mp4"}),
    ]
    assert "cdn" not in str(job)  # the download URL is never execution data


def test_a_failing_relay_never_fails_the_check() -> None:
    job, _ = submit({"webhookUrl": CALLERS}, OWN)
    job = workflow.check_progress(
        job,
        api=FakeApi([Progress(state="exporting", progress=5.0, download_url=None)]),
        now=Clock(T0 + 5),
        relay=lambda url, payload: False,
    )
    assert job["outcome"] == "waiting"


def test_the_relay_calls_public_https_addresses_only() -> None:
    for address in ("10.0.0.7", "127.0.0.1", "169.254.169.254"):

        def resolve(host: str, port: int, found: str = address) -> list[str]:
            return [found]

        assert WebhookRelay(UrlPolicy(resolver=resolve))(CALLERS, {"progress": 1}) is False
    assert WebhookRelay()("http://hooks.example.com/x", {"progress": 1}) is False


class HookServer:
    """A loopback webhook receiver: answers POSTs with ``status``; records what it was sent."""

    def __init__(self) -> None:
        self.status = 204
        self.calls: list[tuple[str, str, str, Any]] = []  # path, Host, Content-Type, JSON
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.calls.append(
                    (
                        self.path,
                        self.headers.get("Host", ""),
                        self.headers.get("Content-Type", ""),
                        json.loads(body),
                    )
                )
                self.send_response(server.status)
                if 300 <= server.status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.serving = ServerThread(self.httpd)
        self.serving.start()

    def stop(self) -> None:
        self.serving.stop()


@pytest.fixture
def hook() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.stop()


def loopback_relay(origin: str) -> WebhookRelay:
    """A relay allowed to call the loopback ``origin`` (a local simulator's exception)."""
    return WebhookRelay(UrlPolicy.from_trusted_origin(origin), PinnedPools())


def test_the_relay_posts_the_payload_as_json_and_reports_a_2xx(hook: HookServer) -> None:
    relayed = loopback_relay(hook.origin)(f"{hook.origin}/hook?key=x", {"progress": 40})

    assert relayed is True
    assert hook.calls == [
        ("/hook?key=x", hook.origin.removeprefix("http://"), "application/json", {"progress": 40})
    ]


@pytest.mark.parametrize("status", [302, 404, 500])
def test_an_answer_other_than_2xx_is_a_failed_relay_and_no_redirect_is_followed(
    hook: HookServer, status: int
) -> None:
    hook.status = status

    assert loopback_relay(hook.origin)(f"{hook.origin}/hook", {"progress": 1}) is False
    assert [path for path, *_ in hook.calls] == ["/hook"]


def test_a_closed_port_is_a_failed_relay_not_an_error() -> None:
    origin = f"http://127.0.0.1:{free_port()}"
    assert loopback_relay(origin)(f"{origin}/hook", {"progress": 1}) is False
