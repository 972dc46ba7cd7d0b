"""local/aistudios_local/result_writer.py: a Distributed Map's results, written as AWS writes them.

A tiny machine maps over five items in a Distributed Map whose items succeed or fail by their
value, with a ``ResultWriter``. moto alone writes an empty stub manifest; with the shim the
manifest lists the result files and every item is in one of them, as in AWS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aistudios_local import result_writer
from aistudios_local.stack import wait_for_execution
from tests.unit._fixtures import ACCOUNT, REGION, fresh_boto3_session

ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
BUCKET = "result-writer-test"
ITEMS = [{"n": n, "fail": n % 2 == 1} for n in range(5)]
MACHINE = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Decide",
                "States": {
                    "Decide": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "No"}],
                        "Default": "Yes",
                    },
                    "Yes": {
                        "Type": "Pass",
                        "Parameters": {"double.$": "States.MathAdd($.n, $.n)"},
                        "End": True,
                    },
                    "No": {"Type": "Fail", "Error": "Odd", "Cause": "an odd item"},
                },
            },
            "ResultWriter": {
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": BUCKET, "Prefix": "runs"},
            },
            "End": True,
        }
    },
}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto running real ASL, a clean default session and the results bucket."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", fresh_boto3_session())
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def shim(engine: None) -> Iterator[None]:
    result_writer.install()
    try:
        yield
    finally:
        result_writer.uninstall()


def run_map() -> dict[str, Any]:
    """Run the machine; return the Map's result (``{"MapRunArn", "ResultWriterDetails"}``)."""
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="m", definition=json.dumps(MACHINE), roleArn=ROLE)[
        "stateMachineArn"
    ]
    started = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": ITEMS}))
    ended = wait_for_execution(started["executionArn"], deadline_seconds=10, interval=0.02)
    assert ended["status"] == "SUCCEEDED", ended.get("cause")
    output: dict[str, Any] = json.loads(ended["output"])
    return output


def read(key: str) -> Any:
    return json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_without_the_shim_moto_writes_an_empty_manifest(engine: None) -> None:
    details = run_map()["ResultWriterDetails"]
    assert read(details["Key"])["ResultFiles"] == {"FAILED": [], "PENDING": [], "SUCCEEDED": []}


def test_with_the_shim_every_item_is_in_a_result_file(
    shim: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result_writer, "ENTRIES_PER_FILE", 2)
    result = run_map()
    details = result["ResultWriterDetails"]
    run_id = result["MapRunArn"].split(":")[-1]
    assert details == {"Bucket": BUCKET, "Key": f"runs/{run_id}/manifest.json"}
    manifest = read(details["Key"])
    assert manifest["DestinationBucket"] == BUCKET and manifest["MapRunArn"] == result["MapRunArn"]
    files = manifest["ResultFiles"]
    assert [f["Key"] for f in files["SUCCEEDED"]] == [
        f"runs/{run_id}/SUCCEEDED_0.json",
        f"runs/{run_id}/SUCCEEDED_1.json",
    ]
    assert [f["Key"] for f in files["FAILED"]] == [f"runs/{run_id}/FAILED_0.json"]
    assert files["PENDING"] == []
    s3 = boto3.client("s3")
    for listed in files["SUCCEEDED"] + files["FAILED"]:
        head = s3.head_object(Bucket=BUCKET, Key=listed["Key"])
        assert head["ContentLength"] == listed["Size"]

    succeeded = [e for f in files["SUCCEEDED"] for e in read(f["Key"])]
    failed = [e for f in files["FAILED"] for e in read(f["Key"])]
    # Input and Output are JSON text, as AWS writes them.
    assert sorted(json.loads(e["Input"])["n"] for e in succeeded) == [0, 2, 4]
    assert {e["Status"] for e in succeeded} == {"SUCCEEDED"}
    for entry in succeeded:
        assert json.loads(entry["Output"]) == {"double": 2 * json.loads(entry["Input"])["n"]}
    assert sorted(json.loads(e["Input"])["n"] for e in failed) == [1, 3]
    for entry in failed:
        assert (entry["Status"], entry["Error"], entry["Cause"]) == ("FAILED", "Odd", "an odd item")
        assert "Output" not in entry
    arns = {e["ExecutionArn"] for e in succeeded + failed}
    assert len(arns) == len(ITEMS)
    assert all(":execution:m/" in a for a in arns)


def test_uninstall_restores_moto(engine: None) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (  # noqa: E501
        ResourceEvalS3,
    )

    before = vars(ResourceEvalS3)["_handle_put_object"]
    result_writer.install()
    result_writer.install()  # idempotent
    assert vars(ResourceEvalS3)["_handle_put_object"] is not before
    result_writer.uninstall()
    assert vars(ResourceEvalS3)["_handle_put_object"] is before
    assert run_map()["ResultWriterDetails"]  # moto's own writer runs again
