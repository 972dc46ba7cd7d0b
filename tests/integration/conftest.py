"""Fixtures of the integration tests: the whole state machines on the embedded local stack.

Every local stack an integration test starts is watched, however it was built (the ``stack``
fixture, the ``make_stack`` factory, a ``LocalStack(...)`` of the test's own, or the CLI's):
before it stops, what it leaves behind (its executions' data and history, the events it
published) is kept, and once the test is over none of it, nor anything printed, may hold a
secret: the simulator's credentials, tokens and URL signatures, or any value the stack's
secrets ever held.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
import pytest

from aistudios_local.simulator import AiStudiosSimulator
from aistudios_local.stack import ExportRun, LocalStack

PROJECT = "65fa6b07dca2e367461a2925"
SECRET_FIELDS = ("appId", "userKey", "token")
"""The fields of the credentials and token secrets that hold a secret (DESIGN.md, Secrets)."""
URL_SIGNATURE_PARTS = ("signature=", "expires=")
"""The query of a signed download URL, which is as good as a secret while it lives."""


@dataclass
class Leftovers:
    """What one stack left behind where a secret must never be, and the secrets it knew."""

    texts: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)


@dataclass
class SecretWatch:
    """The leftovers of every local stack of one test, and everything the test printed."""

    stacks: list[Leftovers] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    running: list[LocalStack] = field(default_factory=list)

    def assert_no_secrets(self) -> None:
        """Fail if a secret or a download URL's signature is in any leftover or printed text."""
        haystack = "\n".join([*self.output, *(t for s in self.stacks for t in s.texts)])
        secrets = {secret for s in self.stacks for secret in s.secrets}
        for secret in secrets:
            assert secret not in haystack, "a secret leaked into execution data, an event or a log"
        for part in URL_SIGNATURE_PARTS:
            assert part not in haystack, "a signed download URL leaked"


def leftovers(stack: LocalStack) -> Leftovers:
    """Read, while the stack runs, what it left behind and the secrets it knew."""
    found = Leftovers(texts=[json.dumps(stack.events)])
    sfn = boto3.client("stepfunctions")
    for machine in sfn.list_state_machines()["stateMachines"]:
        for e in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
            arn = e["executionArn"]
            found.texts.append(json.dumps(sfn.describe_execution(executionArn=arn), default=str))
            history = sfn.get_execution_history(executionArn=arn, maxResults=1000)
            found.texts.append(json.dumps(history, default=str))
    if stack.simulator is not None:
        found.secrets |= set(stack.simulator.secrets_issued())
    secrets = boto3.client("secretsmanager")
    for secret in secrets.list_secrets()["SecretList"]:
        versions = secrets.list_secret_version_ids(SecretId=secret["ARN"], IncludeDeprecated=True)
        for version in versions["Versions"]:
            text = secrets.get_secret_value(SecretId=secret["ARN"], VersionId=version["VersionId"])
            value = json.loads(text.get("SecretString") or "{}")
            found.secrets |= {
                value[k] for k in SECRET_FIELDS if isinstance(value.get(k), str) and value[k]
            }
    return found


@pytest.fixture(autouse=True)
def secret_watch(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecretWatch]:
    """Watch every LocalStack the test starts; at the end, assert that no secret leaked.

    Output is read through the capture fixture the test uses (capfd unless it asks for capsys);
    what the test reads itself is kept too.
    """
    watch = SecretWatch()
    capture_name = "capsys" if "capsys" in request.fixturenames else "capfd"
    capture: pytest.CaptureFixture[str] = request.getfixturevalue(capture_name)
    read = capture.readouterr

    def read_and_keep() -> Any:
        result = read()
        watch.output.extend(result)
        return result

    monkeypatch.setattr(capture, "readouterr", read_and_keep)
    start, stop = LocalStack.start, LocalStack.stop

    def watched_start(self: LocalStack) -> LocalStack:
        watch.running.append(self)
        return start(self)

    def watched_stop(self: LocalStack) -> None:
        if self in watch.running:
            watch.running.remove(self)
            # A stack that failed to start stops inside its own error handling: nothing to read.
            if sys.exc_info()[0] is None:
                watch.stacks.append(leftovers(self))
        stop(self)

    monkeypatch.setattr(LocalStack, "start", watched_start)
    monkeypatch.setattr(LocalStack, "stop", watched_stop)
    yield watch
    for forgotten in list(watch.running):
        forgotten.stop()
    read_and_keep()
    watch.assert_no_secrets()


@pytest.fixture
def simulator() -> Iterator[AiStudiosSimulator]:
    with AiStudiosSimulator() as sim:
        yield sim


class MakeStack(Protocol):
    """Start a local stack on the test's simulator; the ``make_stack`` fixture stops it."""

    def __call__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        seed_token: bool = True,
        parameters: Mapping[str, str] | None = None,
        webhooks: bool = False,
    ) -> LocalStack: ...


@pytest.fixture
def make_stack(simulator: AiStudiosSimulator, secret_watch: SecretWatch) -> Iterator[MakeStack]:
    """Start local stacks on the simulator with the given LocalStack options; stop them after."""
    started: list[LocalStack] = []

    def make(
        *,
        credentials: tuple[str, str] | None = None,
        seed_token: bool = True,
        parameters: Mapping[str, str] | None = None,
        webhooks: bool = False,
    ) -> LocalStack:
        stack = LocalStack(
            simulator=simulator,
            credentials=credentials,
            seed_token=seed_token,
            parameters=parameters,
            webhooks=webhooks,
        ).start()
        started.append(stack)
        return stack

    yield make
    for stack in reversed(started):
        stack.stop()


@pytest.fixture
def stack(make_stack: MakeStack) -> LocalStack:
    """A local stack on the simulator with the template's defaults."""
    return make_stack()


def run(stack: LocalStack, **request: Any) -> ExportRun:
    """Run one export with fast polling unless the test says otherwise."""
    request.setdefault("projectId", PROJECT)
    request.setdefault("pollSeconds", 0)
    return stack.run_export(request, deadline_seconds=120)


def bucket_contents(stack: LocalStack) -> dict[str, bytes]:
    """Every object (every version) in the output bucket, by key."""
    s3 = boto3.client("s3")
    versions = s3.list_object_versions(Bucket=stack.bucket)
    contents: dict[str, bytes] = {}
    for v in versions.get("Versions", []):
        body = s3.get_object(Bucket=stack.bucket, Key=v["Key"], VersionId=v["VersionId"])[
            "Body"
        ].read()
        contents[f"{v['Key']}#{len(contents)}"] = body
    assert not versions.get("DeleteMarkers"), (
        "a delete marker means an object was written then hidden"
    )
    return contents


def assert_stored(stack: LocalStack, run_: ExportRun, expected: bytes) -> Any:
    """Check that the bucket holds exactly the expected video, once, with its metadata and tag."""
    assert run_.status == "SUCCEEDED", (run_.error, run_.cause)
    assert run_.video is not None
    assert run_.incomplete_uploads == 0
    contents = bucket_contents(stack)
    assert list(contents.values()) == [expected], "exactly one version of one object"
    digest = hashlib.sha256(expected).hexdigest()
    assert run_.video["sha256"] == digest
    assert run_.video["size"] == len(expected)
    s3 = boto3.client("s3")
    head = s3.head_object(Bucket=run_.video["bucket"], Key=run_.video["key"])
    assert head["ContentType"] == "video/mp4"
    tags = s3.get_object_tagging(Bucket=run_.video["bucket"], Key=run_.video["key"])["TagSet"]
    assert tags == [{"Key": "sha256", "Value": digest}]
    assert head["Metadata"]["projectid"] == run_.video["key"].split("/")[1]
    assert run_.objects == [{"key": run_.video["key"], "size": len(expected)}]
    return head


def assert_nothing_stored(run_: ExportRun, stack: LocalStack) -> None:
    """The run left no object, no version and no open multipart upload."""
    assert run_.video is None
    assert run_.objects == []
    assert run_.incomplete_uploads == 0
    assert bucket_contents(stack) == {}


def assert_no_secrets(
    stack: LocalStack, simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Check a running stack now (``secret_watch`` checks every stack at the end anyway)."""
    now = SecretWatch(stacks=[leftovers(stack)], output=list(capfd.readouterr()))
    now.stacks[0].secrets |= set(simulator.secrets_issued())
    now.assert_no_secrets()
