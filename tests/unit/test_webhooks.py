"""The export webhook: its token, which calls wake an execution, and the route AI Studios calls."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from aistudios_export.settings import HttpApiSettings
from aistudios_export.webhooks import (
    MAX_BODY_BYTES,
    WAIT_RESOURCE,
    WebhookKey,
    WebhookWaker,
    open_wait,
    webhook_url,
    worth_waking,
)
from tests.events import load_event
from tests.unit import _api
from tests.unit._api import Api, load_api

aws, loaded_api = _api.aws, _api.loaded_api  # the fixtures, by their names

KEY = WebhookKey.of_bytes(b"0123456789abcdef0123456789abcdef")
EXPORT_ID = "65fa6b07dca2e367461a2925-1080-0123456789abcdefghij"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:m"


def event(number: int, kind: str, **details: Any) -> Any:
    return {"id": number, "type": kind, "timestamp": datetime.now(UTC), **details}


def scheduled(number: int, token: str = "tok-1", resource: str = WAIT_RESOURCE) -> Any:
    entries = [{"Detail": {"exportId": EXPORT_ID, "taskToken": token}}]
    details = {"resource": resource, "parameters": json.dumps({"Entries": entries})}
    return event(number, "TaskScheduled", taskScheduledEventDetails=details)


# --- the token -------------------------------------------------------------------------


def test_a_token_is_the_exports_own_and_unguessable() -> None:
    token = KEY.token(EXPORT_ID)
    assert len(token) == 64 and int(token, 16) >= 0
    assert KEY.verify(EXPORT_ID, token)
    assert not KEY.verify(EXPORT_ID + "x", token)
    assert not KEY.verify(EXPORT_ID, "0" * 64)
    assert not KEY.verify(EXPORT_ID, token[:-1])
    assert not WebhookKey.of_bytes(b"another key, just as long as it").verify(EXPORT_ID, token)


def test_the_url_names_the_export_and_its_token() -> None:
    url = webhook_url("https://abc.execute-api.us-east-1.amazonaws.com/v1/", EXPORT_ID, KEY)
    assert url == (
        f"https://abc.execute-api.us-east-1.amazonaws.com/v1/webhooks/{EXPORT_ID}/"
        + KEY.token(EXPORT_ID)
    )


def test_the_secret_gives_the_url_only_when_it_names_a_base(aws: None) -> None:
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="hook-a", SecretString=json.dumps({"key": "k" * 32}))
    secrets.create_secret(
        Name="hook-b", SecretString=json.dumps({"key": "k" * 32, "baseUrl": "https://h/v1"})
    )
    assert WebhookKey("hook-a").url(EXPORT_ID) is None
    url = WebhookKey("hook-b").url(EXPORT_ID)
    assert url is not None and url.startswith(f"https://h/v1/webhooks/{EXPORT_ID}/")
    assert WebhookKey("hook-b").verify(EXPORT_ID, url.rsplit("/", 1)[1])


# --- which calls wake --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "wakes"),
    [
        (b"", True),
        (b"not json", True),
        (b"[1, 2]", True),
        (b'{"progress": 100, "download_url": "https://cdn/x.mp4"}', True),
        (b'{"progress": "100"}', True),
        (b'{"progress": 35}', False),
        (b'{"progress": 99.9, "credit": 0}', False),
        (b'{"progress": 35, "state": "failed"}', True),
        (b'{"progress": true}', True),
    ],
)
def test_only_a_body_saying_still_running_skips_the_wake(body: bytes, wakes: bool) -> None:
    assert worth_waking(body) is wakes


def test_the_open_wait_is_the_newest_callback_not_yet_ended() -> None:
    started = [event(1, "ExecutionStarted"), scheduled(2), event(3, "TaskStarted")]
    assert open_wait(started) == ("tok-1", False)
    # Any order: moto returns the history oldest first whatever reverseOrder says.
    assert open_wait(list(reversed(started))) == ("tok-1", False)
    timed_out = [*started, event(4, "TaskTimedOut"), event(5, "TaskStateExited")]
    assert open_wait(timed_out) == (None, False)
    checking = [*timed_out, event(6, "TaskStateEntered"), event(7, "LambdaFunctionScheduled")]
    assert open_wait(checking) == (None, False)
    again = [*checking, event(8, "TaskStateExited"), scheduled(9, "tok-2")]
    assert open_wait(again) == ("tok-2", False)
    assert open_wait([*again, event(10, "ExecutionAborted")]) == (None, True)
    assert open_wait([scheduled(1, resource="invoke")]) == (None, False)


class FakeSfn:
    """Step Functions as the waker uses it: the newest events, and task tokens sent back."""

    def __init__(self, *histories: list[dict[str, Any]], send_error: str | None = None) -> None:
        self.histories = list(histories)
        self.sent: list[str] = []
        self.send_error = send_error

    def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["reverseOrder"] is True and kwargs["maxResults"] <= 20
        if not self.histories:
            raise ClientError({"Error": {"Code": "ExecutionDoesNotExist"}}, "GetExecutionHistory")
        history = self.histories.pop(0) if len(self.histories) > 1 else self.histories[0]
        return {"events": history}

    def send_task_success(self, *, taskToken: str, output: str) -> None:  # noqa: N803
        assert output == "{}"  # nothing of the call reaches the execution
        if self.send_error:
            raise ClientError({"Error": {"Code": self.send_error}}, "SendTaskSuccess")
        self.sent.append(taskToken)


def waker(sfn: FakeSfn) -> WebhookWaker:
    return WebhookWaker(HttpApiSettings(state_machine_arn=MACHINE), sfn=sfn)  # type: ignore[arg-type]


def test_a_waiting_execution_is_woken_with_its_token() -> None:
    sfn = FakeSfn([event(1, "ExecutionStarted"), scheduled(2, "tok-9")])
    assert waker(sfn).wake(EXPORT_ID, sleep=lambda _: None)
    assert sfn.sent == ["tok-9"]


def test_a_checking_execution_is_looked_at_again_a_moment_later() -> None:
    checking = [scheduled(2), event(3, "TaskTimedOut"), event(4, "TaskStateExited")]
    waiting = [*checking, scheduled(5, "tok-next")]
    sfn, naps = FakeSfn(checking, waiting), list[float]()
    assert waker(sfn).wake(EXPORT_ID, sleep=naps.append)
    assert sfn.sent == ["tok-next"] and len(naps) == 1


def test_nothing_is_woken_when_the_execution_ended_or_never_was() -> None:
    ended = FakeSfn([scheduled(2), event(3, "TaskTimedOut"), event(9, "ExecutionSucceeded")])
    assert not waker(ended).wake(EXPORT_ID, sleep=lambda _: None)
    assert not waker(FakeSfn()).wake(EXPORT_ID, sleep=lambda _: None)
    assert ended.sent == []


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_a_wait_that_ended_meanwhile_is_no_error(code: str) -> None:
    sfn = FakeSfn([scheduled(2)], send_error=code)
    assert not waker(sfn).wake(EXPORT_ID, sleep=lambda _: None)


# --- the route -----------------------------------------------------------------------------


def webhook_event(export_id: str, token: str, body: str | None) -> dict[str, Any]:
    """AI Studios' call of an export's webhook URL, as API Gateway passes it on."""
    event = load_event("api_webhook")
    path = f"/webhooks/{export_id}/{token}"
    event["path"], event["requestContext"]["path"] = path, "/v1" + path
    event["pathParameters"] = {"exportId": export_id, "token": token}
    event["body"] = body
    return event


@pytest.fixture
def hooked(aws: None, monkeypatch: pytest.MonkeyPatch) -> Api:
    secret = {"key": "k" * 32, "baseUrl": "https://h/v1"}
    name = "hook-route"
    secrets = boto3.client("secretsmanager")
    with contextlib.suppress(ClientError):  # made by an earlier test of this module
        secrets.create_secret(Name=name, SecretString=json.dumps(secret))
    api = load_api(monkeypatch, WEBHOOK_SECRET_ID=name)
    api.module["_services"].cache_clear()
    return api


def test_a_wrong_token_is_no_webhook(hooked: Api) -> None:
    for token in ("0" * 64, "nothex", KEY.token(EXPORT_ID)):
        answer = hooked.call(webhook_event(EXPORT_ID, token, '{"progress": 100}'))
        assert answer.status == 404, token
        assert "progress" not in json.dumps(answer.body)


def test_a_right_token_is_accepted_whatever_the_export_does(hooked: Api) -> None:
    token = WebhookKey.of_bytes(b"k" * 32).token(EXPORT_ID)
    # No such execution: the same answer as a woken one, so a call learns nothing.
    for body in ('{"progress": 100}', '{"progress": 10}', "garbage", None):
        answer = hooked.call(webhook_event(EXPORT_ID, token, body))
        assert (answer.status, answer.body) == (202, {"status": "accepted"}), body


def test_a_large_body_is_refused_after_the_token(hooked: Api) -> None:
    token = WebhookKey.of_bytes(b"k" * 32).token(EXPORT_ID)
    big = json.dumps({"progress": 100, "pad": "x" * MAX_BODY_BYTES})
    assert hooked.call(webhook_event(EXPORT_ID, token, big)).status == 413
    assert hooked.call(webhook_event(EXPORT_ID, "0" * 64, big)).status == 404


def test_without_a_webhook_secret_every_call_is_no_webhook(loaded_api: Api) -> None:
    loaded_api.module["_services"].cache_clear()
    token = WebhookKey.of_bytes(b"k" * 32).token(EXPORT_ID)
    assert loaded_api.call(webhook_event(EXPORT_ID, token, "{}")).status == 404
