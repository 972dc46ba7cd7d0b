"""local/aistudios_local/redrive.py: RedriveExecution and $$.Execution.RedriveCount on moto.

A tiny machine reads an S3 object's head (``aws-sdk:s3:headObject``) after a first Pass state:
it fails while the object is missing, and a redrive once the object is there resumes it at the
failed read, with the input the read had, and ends as AWS would end it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from aistudios_local import redrive
from aistudios_local.stack import wait_for_execution
from tests.unit._fixtures import ACCOUNT, fake_aws

ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
BUCKET = "redrive-shim-bucket"
KEY = "ready.txt"
READ_THEN_COUNT = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Result": "once", "ResultPath": "$.first", "Next": "Read"},
        "Read": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:s3:headObject",
            "Parameters": {"Bucket": BUCKET, "Key": KEY},
            "ResultSelector": {"size.$": "$.ContentLength"},
            "ResultPath": "$.read",
            "Next": "Count",
        },
        "Count": {
            "Type": "Pass",
            "Parameters": {
                "first.$": "$.first",
                "read.$": "$.read",
                "redriveCount.$": "$$.Execution.RedriveCount",
                "executionInput.$": "$$.Execution.Input",
                "name.$": "$$.Execution.Name",
            },
            "End": True,
        },
    },
}
WAIT = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 1, "End": True}}}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with fake_aws(monkeypatch, run_state_machines=True):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def shim(engine: None) -> Iterator[None]:
    redrive.install()
    try:
        yield
    finally:
        redrive.uninstall()


def start(definition: dict[str, Any], name: str = "one") -> str:
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"m-{name}", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=machine, name=name, input='{"in": 1}')[
        "executionArn"
    ]


def finished(arn: str) -> dict[str, Any]:
    return dict(wait_for_execution(arn, deadline_seconds=20, interval=0.02))


def history(arn: str) -> list[dict[str, Any]]:
    answer = boto3.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)
    return [dict(e) for e in answer["events"]]


def test_a_failed_execution_resumes_at_the_failed_state_with_its_input(shim: None) -> None:
    arn = start(READ_THEN_COUNT)
    failed = finished(arn)
    assert failed["status"] == "FAILED"
    assert (failed["redriveCount"], failed["redriveStatus"]) == (0, "REDRIVABLE")
    before = history(arn)

    boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"12345")
    sfn = boto3.client("stepfunctions")
    answer = sfn.redrive_execution(executionArn=arn)
    running = sfn.describe_execution(executionArn=arn)
    assert running["status"] in ("RUNNING", "SUCCEEDED")
    assert running["redriveCount"] == 1
    assert running["redriveDate"] == answer["redriveDate"]

    ended = finished(arn)
    assert ended["status"] == "SUCCEEDED", ended
    assert "error" not in ended and "cause" not in ended
    assert json.loads(ended["output"]) == {
        "first": "once",
        "read": {"size": 5},
        "redriveCount": 1,
        "executionInput": {"in": 1},
        "name": "one",
    }
    after = history(arn)
    # The earlier events stay; the redrive, then the new attempt, follow with increasing ids.
    assert after[: len(before)] == before
    ids = [e["id"] for e in after]
    assert ids == list(range(1, len(after) + 1))
    new = [e["type"] for e in after[len(before) :]]
    assert new[0] == "ExecutionRedriven"
    assert after[len(before)]["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert new[1] == "TaskStateEntered" and new[-1] == "ExecutionSucceeded"
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in after if "stateEnteredEventDetails" in e
    ]
    assert entered == ["First", "Read", "Read", "Count"], "the succeeded state is not run again"
    # Succeeded now: not redrivable.
    assert ended["redriveStatus"] == "NOT_REDRIVABLE"


def test_redrive_count_is_zero_in_a_first_attempt(shim: None) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"1")
    ended = finished(start(READ_THEN_COUNT))
    assert ended["status"] == "SUCCEEDED"
    assert json.loads(ended["output"])["redriveCount"] == 0


def test_the_same_client_token_is_one_redrive(shim: None) -> None:
    arn = start(READ_THEN_COUNT)
    assert finished(arn)["status"] == "FAILED"
    sfn = boto3.client("stepfunctions")
    first = sfn.redrive_execution(executionArn=arn, clientToken="t-0")
    again = sfn.redrive_execution(executionArn=arn, clientToken="t-0")
    assert first["redriveDate"] == again["redriveDate"]
    # The object is still missing: the resumed read fails again, once.
    ended = finished(arn)
    assert (ended["status"], ended["redriveCount"]) == ("FAILED", 1)
    redriven = [e for e in history(arn) if e["type"] == "ExecutionRedriven"]
    assert len(redriven) == 1
    # A new token redrives again, counted.
    sfn.redrive_execution(executionArn=arn, clientToken="t-1")
    assert finished(arn)["redriveCount"] == 2


def test_an_aborted_execution_can_be_redriven(shim: None) -> None:
    arn = start(WAIT)
    sfn = boto3.client("stepfunctions")
    sfn.stop_execution(executionArn=arn)
    assert finished(arn)["status"] == "ABORTED"
    sfn.redrive_execution(executionArn=arn)
    assert finished(arn)["status"] == "SUCCEEDED"


def test_a_running_or_succeeded_execution_is_not_redrivable(shim: None) -> None:
    arn = start(WAIT)
    sfn = boto3.client("stepfunctions")
    with pytest.raises(ClientError) as running:
        sfn.redrive_execution(executionArn=arn)
    assert running.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert running.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert finished(arn)["status"] == "SUCCEEDED"
    with pytest.raises(ClientError) as succeeded:
        sfn.redrive_execution(executionArn=arn)
    assert succeeded.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert "SUCCEEDED" in succeeded.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unknown:
        sfn.redrive_execution(executionArn=arn.replace(":one", ":none"))
    assert unknown.value.response["Error"]["Code"] == "ExecutionDoesNotExist"


def test_without_the_shim_moto_cannot_redrive(engine: None) -> None:
    arn = start(READ_THEN_COUNT)
    assert finished(arn)["status"] == "FAILED"
    assert "redriveCount" not in boto3.client("stepfunctions").describe_execution(executionArn=arn)
    with pytest.raises(NotImplementedError, match="redrive_execution"):
        boto3.client("stepfunctions").redrive_execution(executionArn=arn)


def test_without_the_shim_redrive_count_is_missing(engine: None) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"1")
    ended = finished(start(READ_THEN_COUNT))
    assert ended["status"] == "FAILED"
    assert "RedriveCount" in str(ended.get("cause"))


def test_uninstall_restores_moto(shim: None) -> None:
    assert redrive.installed()
    redrive.uninstall()
    assert not redrive.installed()
    from moto.stepfunctions.responses import StepFunctionResponse

    assert "redrive_execution" not in vars(StepFunctionResponse)
    redrive.install()
