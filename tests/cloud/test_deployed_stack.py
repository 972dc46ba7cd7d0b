"""Against a deployed stack: one real export, verified in the real bucket.

Skipped unless ``AWS_SAM_STACK_NAME`` names a deployed stack and ``AISTUDIOS_TEST_PROJECT_ID`` a
project of the account whose credentials the stack holds. Run with network access:
``AWS_SAM_STACK_NAME=my-stack AISTUDIOS_TEST_PROJECT_ID=... pytest tests/cloud -p no:socket``.
"""

from __future__ import annotations

import hashlib
import json
import os

import boto3
import pytest

from aistudios_local.stack import wait_for_execution

STACK = os.environ.get("AWS_SAM_STACK_NAME", "")
PROJECT = os.environ.get("AISTUDIOS_TEST_PROJECT_ID", "")

pytestmark = [
    pytest.mark.cloud,
    pytest.mark.skipif(
        not (STACK and PROJECT), reason="set AWS_SAM_STACK_NAME and AISTUDIOS_TEST_PROJECT_ID"
    ),
]


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    stack = boto3.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def test_one_export_lands_verified_in_the_bucket(outputs: dict[str, str]) -> None:
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=outputs["ExportStateMachineArn"],
        input=json.dumps({"projectId": PROJECT, "resolution": "480"}),
    )["executionArn"]
    # A deployed export takes minutes: poll the real API every 15 s, stop it after 30 min.
    description = wait_for_execution(arn, deadline_seconds=1800, interval=15)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    video = json.loads(description["output"])["video"]
    body = boto3.client("s3").get_object(Bucket=video["bucket"], Key=video["key"])
    digest = hashlib.sha256()
    for chunk in body["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == video["sha256"] == body["Metadata"]["sha256"]
    assert body["ContentType"] == "video/mp4"


def test_the_operator_commands_export_and_follow_on_the_deployed_stack(
    outputs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from aistudios_local.cli import main

    wait = ["--wait", "--interval", "15", "--wait-seconds", "1800"]
    status = main(["--stack", STACK, "--json", "start", "--project-id", PROJECT, *wait])
    result = json.loads(capsys.readouterr().out)
    assert status == 0 and result["status"] == "SUCCEEDED", result.get("cause")
    video = result["video"]
    assert video["bucket"] == outputs["OutputBucketName"]
    body = boto3.client("s3").get_object(Bucket=video["bucket"], Key=video["key"])
    digest = hashlib.sha256()
    for chunk in body["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == video["sha256"]
    assert main(["--stack", STACK, "--json", "logs", result["exportId"]]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert events[0]["type"] == "ExecutionStarted" and events[-1]["type"] == "ExecutionSucceeded"
