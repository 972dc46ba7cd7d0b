"""The HTTP API's handler on API Gateway proxy events, over moto: the harness its tests share.

The events start from the sample files ``tests/events/api_*.json`` (what API Gateway sends).
"""

from __future__ import annotations

import base64
import inspect
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from tests.events import load_event
from tests.unit._fixtures import ACCOUNT, LambdaContextStub, fake_aws, load_handler

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

MACHINE = "aistudios-export-ExportStateMachine"
BUCKET = "videos"
API_HOST = "abcdef1234.execute-api.us-east-1.amazonaws.com"
PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


@dataclass
class Answer:
    """A proxy integration's result, read."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Api:
    """The handler of functions/api over moto, and what it started."""

    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    sfn: SFNClient
    machine_arn: str
    module: Any

    def call(self, event: dict[str, Any]) -> Answer:
        result = self.handler(event, LambdaContextStub())
        headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ",".join(values)
        raw = result["body"]
        if result.get("isBase64Encoded"):
            raw = base64.b64decode(raw).decode()
        return Answer(result["statusCode"], headers, json.loads(raw) if raw else None)

    def post(self, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
        text = body if isinstance(body, str) or body is None else json.dumps(body)
        return self.call(post_event(text, headers))

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Answer:
        return self.call(get_event(path, query))

    def control(self, export_id: str, verb: str) -> Answer:
        """``POST /exports/{export_id}/{verb}``: ``cancel`` or ``redrive``."""
        return self.call(control_event(export_id, verb))

    def executions(self) -> list[str]:
        listed = self.sfn.list_executions(stateMachineArn=self.machine_arn)["executions"]
        return [e["name"] for e in listed]


def with_headers(event: dict[str, Any], headers: Mapping[str, str] | None) -> dict[str, Any]:
    for name, value in (headers or {}).items():
        for existing in [k for k in event["headers"] if k.lower() == name.lower()]:
            del event["headers"][existing]
            del event["multiValueHeaders"][existing]
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


def post_event(body: str | None, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    event = load_event("api_post_exports")
    event["body"] = body
    return with_headers(event, headers)


def get_event(path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A GET as API Gateway sends it: ``/exports`` or ``/exports/{exportId}``."""
    event = load_event("api_list_exports" if path == "/exports" else "api_get_export")
    event["path"] = path
    event["requestContext"]["path"] = "/v1" + path
    if path != "/exports":
        event["pathParameters"] = {"exportId": path.removeprefix("/exports/")}
    event["queryStringParameters"] = dict(query) if query else None
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return event


def control_event(export_id: str, verb: str) -> dict[str, Any]:
    """``POST /exports/{exportId}/cancel`` (or ``/redrive``) as API Gateway sends it."""
    event = load_event({"cancel": "api_cancel_export", "redrive": "api_redrive_export"}[verb])
    event["path"] = f"/exports/{export_id}/{verb}"
    event["requestContext"]["path"] = "/v1" + event["path"]
    event["pathParameters"] = {"exportId": export_id}
    return event


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    """moto for the whole module: the tests tell their exports apart by state machine."""
    with pytest.MonkeyPatch.context() as monkeypatch, fake_aws(monkeypatch):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


def new_machine(sfn: SFNClient) -> str:
    """Create a state machine of its own for one test; return its ARN."""
    return sfn.create_state_machine(
        name=f"{MACHINE}-{uuid.uuid4().hex[:8]}",
        definition=PASS_MACHINE,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
    )["stateMachineArn"]


def load_api(monkeypatch: pytest.MonkeyPatch, **env: str) -> Api:
    """Load functions/api with a state machine of its own and ``env``."""
    sfn = boto3.client("stepfunctions")
    arn = new_machine(sfn)
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    monkeypatch.setenv("OUTPUT_BUCKET", BUCKET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    handler = load_handler("api")
    return Api(handler, sfn, arn, inspect.unwrap(handler).__globals__)


@pytest.fixture(scope="module")
def loaded_api(aws: None) -> Iterator[Api]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield load_api(monkeypatch)


@pytest.fixture
def api(loaded_api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The module's handler, pointed at a new state machine (loading it anew is slow)."""
    sfn = loaded_api.sfn
    arn = new_machine(sfn)
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    loaded_api.module["_services"].cache_clear()
    yield Api(loaded_api.handler, sfn, arn, loaded_api.module)
