"""Fixtures of the integration tests: the whole export state machine on the embedded local stack."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from aistudios_local.simulator import AiStudiosSimulator
from aistudios_local.stack import ExportRun, LocalStack

PROJECT = "65fa6b07dca2e367461a2925"


@pytest.fixture
def simulator() -> Iterator[AiStudiosSimulator]:
    with AiStudiosSimulator() as sim:
        yield sim


@pytest.fixture
def stack(simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]) -> Iterator[LocalStack]:
    with LocalStack(simulator=simulator) as local:
        yield local
        # Whatever the test did: no secret reached the execution data, an event, or a log line.
        assert_no_secrets(local, simulator, capfd)


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
    """Check that the bucket holds exactly the expected video, once, with its metadata."""
    assert run_.status == "SUCCEEDED", (run_.error, run_.cause)
    assert run_.video is not None
    assert run_.incomplete_uploads == 0
    contents = bucket_contents(stack)
    assert list(contents.values()) == [expected], "exactly one version of one object"
    digest = hashlib.sha256(expected).hexdigest()
    assert run_.video["sha256"] == digest
    assert run_.video["size"] == len(expected)
    head = boto3.client("s3").head_object(Bucket=run_.video["bucket"], Key=run_.video["key"])
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"]["sha256"] == digest
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
    sfn = boto3.client("stepfunctions")
    texts: list[str] = [json.dumps(stack.events)]
    for arn in _executions(stack):
        texts.append(json.dumps(sfn.describe_execution(executionArn=arn), default=str))
        texts.append(
            json.dumps(sfn.get_execution_history(executionArn=arn, maxResults=1000), default=str)
        )
    out, err = capfd.readouterr()
    texts += [out, err]
    haystack = "\n".join(texts)
    for secret in simulator.secrets_issued():
        assert secret not in haystack, "a secret leaked into execution data, an event or a log"
    assert "signature=" not in haystack and "expires=" not in haystack


def _executions(stack: LocalStack) -> list[str]:
    sfn = boto3.client("stepfunctions")
    arns = []
    for machine in sfn.list_state_machines()["stateMachines"]:
        for e in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
            arns.append(e["executionArn"])
    return arns
