"""The HTTP API on the local stack: the real handler, state machine and simulator.

Requests go through :class:`LocalGateway` (what ``aistudios-export local serve`` does with each
HTTP request), and over real HTTP on 127.0.0.1 for the server itself.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import StringIO
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest

from aistudios_local.cli import build_parser
from aistudios_local.serve import ApiServer, LocalGateway, announce
from aistudios_local.simulator import NO_PROJECT, AiStudiosSimulator, Scenario, video_sha256
from aistudios_local.stack import LocalStack

from .conftest import PROJECT, assert_no_secrets

pytestmark = pytest.mark.integration

EXPORT_MACHINE = "ExportStateMachine"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


class Client:
    """Requests to the API as API Gateway would pass them on."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.gateway = LocalGateway(stack)

    def request(
        self,
        method: str,
        target: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        raw = (
            body.encode()
            if isinstance(body, str)
            else b""
            if body is None
            else json.dumps(body).encode()
        )
        pairs = [("Host", "127.0.0.1:3000"), *(headers or {}).items()]
        status, answer_headers, payload = self.gateway.handle(method, target, pairs, raw)
        return Answer(status, dict(answer_headers), json.loads(payload) if payload else None)

    def executions(self) -> list[str]:
        sfn = boto3.client("stepfunctions")
        listed = sfn.list_executions(stateMachineArn=self.stack.ref(EXPORT_MACHINE))["executions"]
        return [e["name"] for e in listed]

    def wait_all(self) -> None:
        """Let every export end, so nothing runs on after the stack stops."""
        prefix = self.stack.ref(EXPORT_MACHINE).replace(":stateMachine:", ":execution:")
        for name in self.executions():
            self.stack.wait(f"{prefix}:{name}", deadline_seconds=60)


@pytest.fixture
def api(simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]) -> Iterator[Client]:
    # Done at the first poll, one second after submitting: a whole export takes seconds.
    simulator.set_scenario(PROJECT, Scenario(progress_steps=(100.0,)))
    parameters = {"DefaultPollSeconds": "1", "LogLevel": "WARNING"}
    with LocalStack(simulator=simulator, parameters=parameters) as stack:
        client = Client(stack)
        yield client
        client.wait_all()
        assert_no_secrets(stack, simulator, capfd)


def export_posts(simulator: AiStudiosSimulator) -> int:
    return sum(1 for c in simulator.calls if c.path.endswith("/project/export"))


def test_post_then_get_until_done_gives_the_verified_video(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    # As curl -d sends it.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    posted = api.request("POST", "/exports", json.dumps({"projectId": PROJECT}), form)
    assert posted.status == 202
    export_id = posted.body["exportId"]
    assert posted.body["statusUrl"] == f"http://127.0.0.1:3000/exports/{export_id}"
    assert api.request("GET", f"/exports/{export_id}").body["status"] in ("RUNNING", "SUCCEEDED")

    api.wait_all()
    answer = api.request("GET", f"/exports/{export_id}")
    assert answer.status == 200
    body = answer.body
    assert (body["status"], body["progress"], body["error"]) == ("SUCCEEDED", 100.0, None)
    assert body["stoppedAt"] is not None
    video = body["video"]
    bucket, key = video["s3Uri"].removeprefix("s3://").split("/", 1)
    stored = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert video["sha256"] == video_sha256(PROJECT, "1080") == hashlib.sha256(stored).hexdigest()
    assert video["size"] == len(stored)
    url = urlsplit(video["downloadUrl"])
    query = parse_qs(url.query)
    assert (url.scheme, url.hostname, url.path) == (
        "https",
        f"{bucket}.s3.amazonaws.com",
        f"/{key}",
    )
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]  # the template's DownloadLinkSeconds
    assert query["X-Amz-Signature"]

    # The same request again in the window: the finished export, nothing new.
    again = api.request("POST", "/exports", {"projectId": PROJECT})
    assert (again.status, again.body["exportId"], again.body["status"]) == (
        202,
        export_id,
        "SUCCEEDED",
    )
    assert api.executions() == [export_id]
    assert export_posts(simulator) == 1


def test_an_unknown_project_shows_project_not_found_in_its_status(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    posted = api.request("POST", "/exports", {"projectId": NO_PROJECT})
    assert posted.status == 202
    api.wait_all()
    body = api.request("GET", f"/exports/{posted.body['exportId']}").body
    assert (body["status"], body["error"], body["video"]) == ("FAILED", "ProjectNotFound", None)
    assert body["cause"].startswith(f"AI Studios does not know project {NO_PROJECT} ")
    assert export_posts(simulator) == 1  # refused once, not retried


def test_the_same_post_twice_starts_one_execution_and_a_key_makes_another(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    first = api.request("POST", "/exports", {"projectId": PROJECT})
    second = api.request("POST", "/exports", {"projectId": PROJECT})
    keyed = api.request("POST", "/exports", {"projectId": PROJECT}, {"Idempotency-Key": "k-1"})
    keyed_again = api.request(
        "POST", "/exports", {"projectId": PROJECT}, {"idempotency-key": "k-1"}
    )
    assert {a.status for a in (first, second, keyed, keyed_again)} == {202}
    assert second.body["exportId"] == first.body["exportId"]
    assert keyed_again.body["exportId"] == keyed.body["exportId"] != first.body["exportId"]
    assert sorted(api.executions()) == sorted([first.body["exportId"], keyed.body["exportId"]])
    listed = api.request("GET", f"/exports?projectId={PROJECT}&limit=1")
    assert listed.status == 200 and len(listed.body["exports"]) == 1
    rest = api.request(
        "GET", f"/exports?projectId={PROJECT}&nextToken={quote(listed.body['nextToken'])}"
    )
    assert {e["exportId"] for e in listed.body["exports"] + rest.body["exports"]} == set(
        api.executions()
    )


INVALID_BODIES: list[tuple[Any, list[str]]] = [
    ({"projectId": "not-an-id"}, ["projectId"]),
    (
        {"projectId": PROJECT, "resolution": "8k", "webhookUrl": "http://x"},
        ["resolution", "webhookUrl"],
    ),
    ({"projectId": PROJECT, "outputPrefix": "../up", "extra": True}, ["extra", "outputPrefix"]),
    ("{not json", ["body"]),
    ("[]", ["body"]),
]


def _field(loc: list[Any]) -> str:
    return loc[1] if len(loc) > 1 and isinstance(loc[1], str) else str(loc[0])


def test_invalid_bodies_are_422_naming_each_field_and_start_nothing(
    api: Client, simulator: AiStudiosSimulator
) -> None:
    for body, fields in INVALID_BODIES:
        answer = api.request("POST", "/exports", body)
        assert answer.status == 422, body
        assert sorted(_field(d["loc"]) for d in answer.body["detail"]) == sorted(fields), body
    assert api.executions() == []
    assert export_posts(simulator) == 0


def test_unknown_or_malformed_ids_are_404(api: Client) -> None:
    for export_id in [
        f"{PROJECT}-1080-{'0' * 20}",
        "..%2Fetc",
        "%2e%2e%2fetc",
        "a" * 200,
        quote("\u00e9t\u00e9-\U0001f600"),
        quote(f"{PROJECT}-1080-{'0' * 20}\n"),
    ]:
        answer = api.request("GET", f"/exports/{export_id}")
        assert (answer.status, answer.body["statusCode"]) == (404, 404), export_id


def test_a_path_outside_the_api_is_404(api: Client) -> None:
    assert api.request("GET", "/exports/../etc").status == 404
    assert api.request("DELETE", "/exports").status == 404


# --- local serve over HTTP --------------------------------------------------------------


def _http(
    server: ApiServer, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    connection = http.client.HTTPConnection(host or "", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return (
            response.status,
            dict(response.getheaders()),
            json.loads(payload) if payload else None,
        )
    finally:
        connection.close()


def test_local_serve_answers_real_http_on_loopback(api: Client) -> None:
    with ApiServer(api.stack, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, headers, body = _http(
            server,
            "POST",
            "/exports",
            json.dumps({"projectId": PROJECT}).encode(),
            **{"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 202
        export_id = body["exportId"]
        assert headers["Location"] == f"{server.url}/exports/{export_id}" == body["statusUrl"]
        api.wait_all()
        status, _, body = _http(server, "GET", f"/exports/{export_id}")
        assert (status, body["status"]) == (200, "SUCCEEDED")
        assert body["video"]["sha256"] == video_sha256(PROJECT, "1080")
        status, _, body = _http(server, "GET", f"/exports?projectId={PROJECT}")
        assert [e["exportId"] for e in body["exports"]] == [export_id]
        assert _http(server, "POST", "/exports", b"{")[0] == 422
        assert _http(server, "GET", "/exports/../etc")[0] == 404
        assert _http(server, "GET", "/nothing")[0] == 404
        url = server.url
    # Stopped: the port no longer answers.
    with pytest.raises(OSError):
        http.client.HTTPConnection(
            urlsplit(url).hostname or "", urlsplit(url).port, timeout=5
        ).request("GET", "/exports")


def test_local_serve_says_authentication_is_not_enforced(api: Client) -> None:
    out = StringIO()
    with ApiServer(api.stack, port=0) as server:
        announce(server, api.stack, out)
    assert "Authentication is NOT enforced locally" in out.getvalue()
    assert server.url in out.getvalue()


def test_the_cli_keeps_local_and_adds_local_serve() -> None:
    parser = build_parser()
    run = parser.parse_args(["local", "--project-id", PROJECT, "--json", "--poll-seconds", "1"])
    assert (run.command, run.local_command, run.project_id, run.json) == (
        "local",
        None,
        PROJECT,
        True,
    )
    serve = parser.parse_args(["local", "serve", "--port", "0", "--api-url", "http://127.0.0.1:9"])
    assert (serve.local_command, serve.port, serve.serve_api_url) == (
        "serve",
        0,
        "http://127.0.0.1:9",
    )
    assert parser.parse_args(["local", "serve"]).port == 3000


def _too_large(server: ApiServer) -> int:
    """Announce a body of more than 10 MB and send none: the answer comes before it would."""
    connection = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    try:
        connection.putrequest("POST", "/exports")
        connection.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def test_local_serve_answers_hostile_requests_with_4xx_naming_what_is_wrong(api: Client) -> None:
    valid = json.dumps({"projectId": PROJECT}).encode()
    with ApiServer(api.stack, port=0) as server:
        status, _, body = _http(server, "POST", "/exports", b'{"projectId": "\xff"}')
        assert (status, body["detail"][0]["msg"]) == (422, "the body is not UTF-8 text")
        status, _, body = _http(server, "POST", "/exports", b'{"projectId": ' + b"9" * 5000 + b"}")
        assert status == 422
        assert body["detail"][0]["msg"].endswith("a number has more than 4300 digits")
        assert len(json.dumps(body)) < 1000  # no echo of the input
        status, _, body = _http(server, "POST", "/exports", b"[" * 100_000)
        assert (status, body["detail"][0]["msg"]) == (422, "the JSON is nested too deeply")
        assert _too_large(server) == 413
        key = {"Idempotency-Key": "k" * 5000}
        status, _, body = _http(server, "POST", "/exports", valid, **key)
        assert (status, body["detail"][0]["loc"]) == (422, ["header", "Idempotency-Key"])
        assert _http(server, "POST", "/exports", valid, **{"X-Odd": "\u00e9\u00ff"})[0] == 202
        for query, name in [
            ("limit=1e9", "limit"),
            ("limit=-1", "limit"),
            ("limit=5&limit=6", "limit"),
            ("nextToken=" + "A" * 5000, "nextToken"),
            ("nextToken=%FF%FE", "nextToken"),
            ("projectId=%00", "projectId"),
        ]:
            status, _, body = _http(server, "GET", f"/exports?{query}")
            assert (status, [d["loc"] for d in body["detail"]]) == (422, [["query", name]]), query
        for path in ["/exports/%2e%2e", "/exports/%2e%2e%2fetc", "/exports/" + "x" * 5000]:
            assert _http(server, "GET", path)[0] == 404, path
        assert _http(server, "PATCH", "/exports")[0] == 404
        api.wait_all()


def test_local_serve_takes_a_burst_of_fifty_simultaneous_posts(api: Client) -> None:
    # Fifty clients connect at the same moment; none may be refused or reset. The same request
    # names one export, so the burst costs one execution.
    body = json.dumps({"projectId": PROJECT}).encode()
    together = threading.Barrier(50)
    answers: list[tuple[int, str] | BaseException] = []
    lock = threading.Lock()

    def post() -> None:
        together.wait(timeout=30)
        try:
            status, _, payload = _http(server, "POST", "/exports", body)
            outcome: tuple[int, str] | BaseException = (status, payload["exportId"])
        except Exception as e:  # a reset or a refused connection is the failure we look for
            outcome = e
        with lock:
            answers.append(outcome)

    with ApiServer(api.stack, port=0) as server:
        threads = [threading.Thread(target=post) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        api.wait_all()
    assert len(answers) == 50
    assert [a for a in answers if isinstance(a, BaseException)] == []
    assert {a for a in answers if not isinstance(a, BaseException)} == {
        (202, answers[0][1])  # type: ignore[index]
    }
