"""local/aistudios_local/result_writer.py: a Distributed Map's results, written as AWS writes them.

A tiny machine maps over five items in a Distributed Map whose items succeed or fail by their
value, with a ``ResultWriter``. moto alone writes an empty stub manifest; with the shim the
manifest lists the result files and every item is in one of them, as in AWS. With less
tolerance than failures, moto alone never fails the Map; with the shim it fails as AWS's does
and its results are written all the same.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from aistudios_local import result_writer
from aistudios_local.stack import wait_for_execution
from tests.unit._fixtures import ACCOUNT, fake_aws

ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
BUCKET = "result-writer-test"
ITEMS = [{"n": n, "fail": n % 2 == 1} for n in range(5)]
MACHINE: dict[str, Any] = {
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
            "ToleratedFailurePercentage": 100.0,  # moto's parser refuses an integer
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
            "End": True,
        },
        "Caught": {"Type": "Pass", "End": True},
    },
}


def intolerant_machine() -> dict[str, Any]:
    """The machine, one item at a time, failing beyond 20% (the second odd item, n = 3)."""
    machine = copy.deepcopy(MACHINE)
    del machine["States"]["Each"]["ToleratedFailurePercentage"]
    machine["States"]["Each"] |= {"MaxConcurrency": 1, "ToleratedFailurePercentagePath": "$.t"}
    return machine


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto running real ASL, a clean default session and the results bucket."""
    with fake_aws(monkeypatch, run_state_machines=True):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def shim(engine: None) -> Iterator[None]:
    result_writer.install()
    try:
        yield
    finally:
        result_writer.uninstall()


def run_map(machine: dict[str, Any] = MACHINE) -> dict[str, Any]:
    """Run the machine; return the Map's result (``{"MapRunArn", "ResultWriterDetails"}``).

    A Map that failed returns the execution's output, the Catch's ``error`` in it.
    """
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="m", definition=json.dumps(machine), roleArn=ROLE)[
        "stateMachineArn"
    ]
    given = {"items": ITEMS, "prefix": "runs", "t": 20}
    started = sfn.start_execution(stateMachineArn=arn, input=json.dumps(given))
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
    def patched() -> list[Any]:
        return [vars(owner).get(name) for owner, name, _ in result_writer.patches()]

    before = patched()
    result_writer.install()
    result_writer.install()  # idempotent
    assert all(now is not then for now, then in zip(patched(), before, strict=True))
    result_writer.uninstall()
    assert all(now is then for now, then in zip(patched(), before, strict=True))
    assert run_map()["ResultWriterDetails"]  # moto's own writer runs again


def test_without_the_shim_moto_never_fails_a_map_on_its_tolerance(engine: None) -> None:
    output = run_map(intolerant_machine())
    assert "error" not in output and output["ResultWriterDetails"]


def test_a_map_past_its_tolerance_fails_and_still_writes_its_results(shim: None) -> None:
    output = run_map(intolerant_machine())
    # The Catch sees what AWS hands it: {Error, Cause}, not where the results went.
    assert set(output["error"]) == {"Error", "Cause"}
    assert output["error"]["Error"] == "States.ExceedToleratedFailureThreshold"
    assert output["error"]["Cause"] == "2 of 5 items failed, more than the tolerated 20%"
    [manifest_key] = [
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="runs/")["Contents"]
        if o["Key"].endswith("/manifest.json")
    ]
    files = read(manifest_key)["ResultFiles"]
    numbers = {
        kind: sorted(json.loads(e["Input"])["n"] for f in files[kind] for e in read(f["Key"]))
        for kind in files
    }
    # One at a time: 0..3 ran, the second failure (3) stopped the run, 4 never started.
    assert numbers == {"SUCCEEDED": [0, 2], "FAILED": [1, 3], "PENDING": [4]}
    [pending] = [e for f in files["PENDING"] for e in read(f["Key"])]
    assert pending["Status"] == "PENDING" and "ExecutionArn" not in pending


def prefix_from_input() -> dict[str, Any]:
    """The machine, its ResultWriter's prefix read from the execution's input."""
    machine = copy.deepcopy(MACHINE)
    machine["States"]["Each"]["ResultWriter"]["Parameters"] = {
        "Bucket": BUCKET,
        "Prefix.$": "$.prefix",
    }
    return machine


def test_without_the_shim_the_writers_paths_read_the_items_outputs(engine: None) -> None:
    output = run_map(prefix_from_input())
    assert "JSONPath '$.prefix' could not be found" in output["error"]["Cause"]
    assert '[{"double": 0}, null' in output["error"]["Cause"]  # the items' outputs


def test_with_the_shim_the_writers_paths_read_the_maps_input(shim: None) -> None:
    result = run_map(prefix_from_input())
    run_id = result["MapRunArn"].split(":")[-1]
    assert result["ResultWriterDetails"]["Key"] == f"runs/{run_id}/manifest.json"


def test_a_map_within_its_tolerance_succeeds(shim: None) -> None:
    machine = intolerant_machine()
    del machine["States"]["Each"]["ToleratedFailurePercentagePath"]
    machine["States"]["Each"]["ToleratedFailurePercentage"] = 40.0  # 2 of 5 failed: not more
    output = run_map(machine)
    assert "error" not in output and output["ResultWriterDetails"]
