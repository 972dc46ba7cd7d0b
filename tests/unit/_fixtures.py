"""Fakes and helpers shared by the unit tests of the library, the handlers and the local stack.

Fixtures live in the test modules and conftest.py; this module holds what they build on: fake
AWS credentials, a fake AI Studios API, a fake clock, a Lambda context, a handler loader and a
fake rotation function for moto. The template and its state machines are read by _template.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
import pytest
from moto import mock_aws

from aistudios_export import clients
from aistudios_export.client import AiStudiosClient, Progress, ProjectInfo
from aistudios_local.moto_shims import bytes_like_bodies

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ROOT = Path(__file__).resolve().parents[2]
PROJECT_ID = "65fa6b07dca2e367461a2925"
REGION = "us-east-1"
ACCOUNT = "123456789012"
ROTATION_LAMBDA_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:RefreshToken"
T0 = 1_767_225_600.0
"""2026-01-01T00:00:00Z: the fake clock's start."""


_LOADER = botocore.session.get_session().get_component("data_loader")


def fresh_boto3_session() -> boto3.Session:
    """Return a new boto3 session (no hooks of earlier tests) sharing the loaded service models.

    Loading the models is what makes a new session's first client slow (~0.1 s).
    """
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=core)


@contextmanager
def fake_aws(
    monkeypatch: pytest.MonkeyPatch, *, run_state_machines: bool = False
) -> Iterator[None]:
    """Run the body against moto with fake credentials and a fresh boto3 default session.

    ``run_state_machines`` makes moto's Step Functions engine run each execution's ASL. moto
    takes a part sent as its ``bytearray`` buffer only with :func:`bytes_like_bodies`.
    """
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config: Any = {"stepfunctions": {"execute_state_machine": True}} if run_state_machines else None
    with mock_aws(config=config), bytes_like_bodies():
        # A default session made by an earlier test may carry its hooks: start from a clean one
        # (moto drops the default session when it starts, so this comes after).
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", fresh_boto3_session())
        yield


def create_render_slots_table(table: str) -> DynamoDBClient:
    """Create the render limiter's table (partition key ``pk``) on moto; return its client."""
    client = clients.dynamodb()
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeApi(AiStudiosClient):
    """An AI Studios API that answers from a script and records every call.

    ``answers`` are returned in order by :meth:`get_progress`; the last one is repeated.
    :meth:`get_project` returns ``project`` (by default, one without a download URL).
    :meth:`mint_token` returns ``minted-1``, ``minted-2``, ... and calls ``on_mint`` first
    (to let a test run a "concurrent" refresher in the middle of a mint).
    """

    def __init__(self, answers: Iterable[Progress] = ()) -> None:
        super().__init__("https://aistudios.invalid")
        self.answers = list(answers)
        self.progress_calls: list[str] = []
        self.project = ProjectInfo(state="", progress=None, download_url=None)
        self.project_calls: list[str] = []
        self.submitted: list[dict[str, str]] = []
        self.mints: list[tuple[str, str]] = []
        self.on_mint: Callable[[], None] | None = None

    def get_progress(self, project_id: str) -> Progress:
        self.progress_calls.append(project_id)
        if not self.answers:
            raise AssertionError("get_progress was not expected")
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def get_project(self, project_id: str) -> ProjectInfo:
        self.project_calls.append(project_id)
        return self.project

    def submit_export(self, body: Mapping[str, str]) -> str:
        self.submitted.append(dict(body))
        return body["projectId"]

    def mint_token(self, app_id: str, user_key: str) -> str:
        self.mints.append((app_id, user_key))
        number = len(self.mints)
        if self.on_mint is not None:
            hook, self.on_mint = self.on_mint, None  # once: the hook may mint itself
            hook()
        return f"minted-{number}"


@dataclass
class LambdaContextStub:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name: str = "test-function"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler(function_dir: str) -> Any:
    """Import ``functions/<function_dir>/app.py`` under a name of its own; return the handler.

    A fresh module per call means fresh ``functools.cache`` state (clients, settings). As in
    Lambda (and the local stack), the handler's directory is on ``sys.path``, so modules beside
    ``app.py`` import by their own names.
    """
    path = ROOT / "functions" / function_dir / "app.py"
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(
        f"_handler_{function_dir}_{uuid.uuid4().hex}", path
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def install_rotation_lambda(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[dict[str, Any]], object]
) -> list[dict[str, Any]]:
    """Make moto's ``RotateSecret`` invoke ``run(event)`` for each rotation step.

    moto's Secrets Manager stages the new version as AWSPENDING (without a value) and then
    calls its Lambda backend's ``invoke`` with ``{"Step", "SecretId", "ClientRequestToken"}``
    for createSecret, setSecret, testSecret and finishSecret, as AWS does. Its Lambda needs
    Docker, so this replaces the backend's ``get_function``/``invoke`` with ``run``.
    Returns the list of events seen.
    """
    from moto.awslambda.models import LambdaBackend

    events: list[dict[str, Any]] = []

    def get_function(self: object, name: str, qualifier: str | None = None) -> object:
        assert name == ROTATION_LAMBDA_ARN
        return object()

    def invoke(
        self: object, function_name: str, qualifier: str | None, body: str, *a: Any, **k: Any
    ) -> bytes:
        event = json.loads(body)
        events.append(event)
        return json.dumps(run(event)).encode()

    monkeypatch.setattr(LambdaBackend, "get_function", get_function)
    monkeypatch.setattr(LambdaBackend, "invoke", invoke)
    return events
