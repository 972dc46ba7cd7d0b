"""aistudios_export.batches, SummarizeBatch's step: every row's outcome, the report, the verdict.

The batch is prepared on moto's S3 (as tests/unit/test_batches.py does); a fake Step Functions
answers DescribeExecution from a table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError

from aistudios_export.batches import REPORTED_REJECTIONS, summarize_batch
from aistudios_export.errors import ConfigurationError, ExportError, StorageError
from tests.events import load_event
from tests.unit.test_batches import (
    BUCKET,
    P1,
    P2,
    P3,
    client_error,
    prepare,
    raising,
    stack_bucket,
    stored,
)
from tests.unit.test_manifests import FORMULAS, assert_safe_to_show

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:stack-export:"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    with stack_bucket(monkeypatch) as client:
        yield client


class FakeStepFunctions:
    """Answers DescribeExecution from a table of execution name → description, or fails."""

    def __init__(
        self, executions: dict[str, dict[str, Any]], failure: ClientError | None = None
    ) -> None:
        self.executions = executions
        self.failure = failure
        self.described: list[str] = []

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.described.append(executionArn)
        if self.failure is not None:
            raise self.failure
        name = executionArn.removeprefix(ARN_PREFIX)
        if name not in self.executions:
            error = {"Error": {"Code": "ExecutionDoesNotExist", "Message": "no"}}
            raise ClientError(error, "DescribeExecution")  # type: ignore[arg-type]
        return {"executionArn": executionArn, **self.executions[name]}


def video(project_id: str) -> dict[str, Any]:
    return {
        "bucket": BUCKET,
        "key": f"exports/{project_id}/1080/20260101T000000Z.mp4",
        "size": 3,
        "sha256": "ab" * 32,
        "contentType": "video/mp4",
        "s3Uri": f"s3://{BUCKET}/exports/{project_id}/1080/20260101T000000Z.mp4",
        "versionId": "v1",
    }


def summarize(
    s3: S3Client,
    executions: dict[str, dict[str, Any]],
    *,
    rows: str = f"projectId\n{P1}\n{P2}\n{P3}\nbad\n",
    map_run: dict[str, Any] | None = None,
    tolerance: float = 10,
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Prepare a batch of P1..P3, then summarize it with the given executions."""
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=rows.encode())
    plan = prepare(s3, "manifests/a.csv")
    names = [i["name"] for i in stored(s3, plan["itemsKey"])]
    table = {names[int(k)]: v for k, v in executions.items()}
    sfn = FakeStepFunctions(table)
    summary = summarize_batch(
        plan,
        map_run,
        tolerated_failure_percentage=tolerance,
        execution_arn_prefix=ARN_PREFIX,
        s3_client=s3,
        sfn_client=cast("SFNClient", sfn),
    )
    assert sfn.described == [ARN_PREFIX + n for n in names]
    return summary, stored(s3, plan["reportKey"]), names


def succeeded(project_id: str) -> dict[str, Any]:
    return {
        "status": "SUCCEEDED",
        "output": json.dumps(
            {"projectId": project_id, "resolution": "1080", "video": video(project_id)}
        ),
    }


def test_summary_reports_every_row_from_its_export(s3: S3Client) -> None:
    failure = {
        "status": "FAILED",
        "error": "ExportFailed",
        "cause": json.dumps(
            {"errorMessage": "AI Studios reported state 'failed'", "errorType": "X"}
        ),
    }
    summary, report, names = summarize(
        s3, {"0": succeeded(P1), "1": failure, "2": succeeded(P3)}, tolerance=50
    )
    assert summary == {
        "status": "SUCCEEDED",
        "reportKey": summary["reportKey"],
        "counts": {
            "rows": 4,
            "accepted": 3,
            "rejected": 1,
            "duplicates": 0,
            "succeeded": 2,
            "failed": 1,
        },
    }
    assert report["status"] == "SUCCEEDED"
    assert report["rows"] == [
        {
            "projectId": P1,
            "resolution": "1080",
            "exportId": names[0],
            "status": "SUCCEEDED",
            "video": video(P1),
        },
        {
            "projectId": P2,
            "resolution": "1080",
            "exportId": names[1],
            "status": "FAILED",
            "error": "ExportFailed",
            "cause": "AI Studios reported state 'failed'",
        },
        {
            "projectId": P3,
            "resolution": "1080",
            "exportId": names[2],
            "status": "SUCCEEDED",
            "video": video(P3),
        },
    ]
    assert report["rejected"] == [
        {
            "row": 4,
            "projectId": "bad",
            "error": "invalid request: projectId: must be a 24-character hexadecimal ObjectId",
        }
    ]
    assert report["manifest"]["key"] == "manifests/a.csv"


def test_summary_fails_the_batch_beyond_the_tolerated_share(s3: S3Client) -> None:
    timed_out = {"status": "TIMED_OUT"}
    summary, report, _ = summarize(s3, {"0": succeeded(P1), "1": timed_out, "2": succeeded(P3)})
    assert summary["status"] == "FAILED"
    assert summary["error"] == "ExportsFailed"
    assert summary["cause"] == "1 of 3 exports did not succeed (more than the tolerated 10%)"
    assert report["status"] == "FAILED" and report["cause"] == summary["cause"]
    assert report["rows"][1]["status"] == "TIMED_OUT" and report["rows"][1]["error"] == "TIMED_OUT"


def test_summary_of_a_failed_map_names_the_batch_failure(s3: S3Client) -> None:
    map_error = {"Error": "States.ExceedToleratedFailureThreshold", "Cause": "too many failed"}
    summary, report, _ = summarize(s3, {"0": succeeded(P1)}, map_run=map_error, tolerance=100)
    assert summary["error"] == "BatchFailed"
    assert summary["cause"] == (
        "the exports stopped with States.ExceedToleratedFailureThreshold: too many failed"
    )
    assert [r["status"] for r in report["rows"]] == ["SUCCEEDED", "NOT_STARTED", "NOT_STARTED"]
    assert report["rows"][1]["cause"] == "the batch ended before this export started"


def test_summary_keeps_the_result_writer_location(s3: S3Client) -> None:
    map_run = load_event("summarize_batch")["mapRun"]
    _, report, _ = summarize(
        s3, {str(i): succeeded(p) for i, p in enumerate((P1, P2, P3))}, map_run=map_run
    )
    assert report["status"] == "SUCCEEDED"
    assert report["mapRun"] == map_run


def test_the_report_lists_every_rejected_row(s3: S3Client) -> None:
    bad = [f"bad-{i}" for i in range(REPORTED_REJECTIONS + 3)]
    summary, report, _ = summarize(
        s3,
        {str(i): succeeded(p) for i, p in enumerate((P1, P2, P3))},
        rows="\n".join(["projectId", P1, P2, P3, *bad]),
    )
    assert [(r["row"], r["projectId"]) for r in report["rejected"]] == [
        (i + 4, b) for i, b in enumerate(bad)
    ]
    assert summary["counts"]["rejected"] == report["counts"]["rejected"] == len(bad)


def test_a_report_of_formula_cells_starts_no_value_with_a_formula(s3: S3Client) -> None:
    quoted = [f'"{f.replace(chr(34), chr(34) * 2)}"' for f in FORMULAS]
    lines = [f"{q},{q},{q},{q}" for q in quoted] + [f"{P1},{q},720,{q}" for q in quoted]
    rows = "\n".join(["projectId,resolution,workspaceId,outputPrefix", P1, P2, P3, *lines])
    _, report, _ = summarize(
        s3, {str(i): succeeded(p) for i, p in enumerate((P1, P2, P3))}, rows=rows
    )
    assert report["counts"]["rejected"] == 2 * len(FORMULAS)
    assert report["rejected"][0]["projectId"] == "'" + FORMULAS[0]
    assert_safe_to_show(report)


# --- AWS failures: StorageError is retried by the machine, ConfigurationError is final -------


def planned(s3: S3Client) -> dict[str, Any]:
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=f"projectId\n{P1}\n".encode())
    return prepare(s3, "manifests/a.csv")


def summarize_plan(s3: S3Client, plan: dict[str, Any], sfn: FakeStepFunctions) -> dict[str, Any]:
    return summarize_batch(
        plan,
        None,
        tolerated_failure_percentage=0,
        execution_arn_prefix=ARN_PREFIX,
        s3_client=s3,
        sfn_client=cast("SFNClient", sfn),
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 400, StorageError),
        ("502", 502, StorageError),
        ("AccessDeniedException", 400, ConfigurationError),
    ],
)
def test_a_failed_description_of_an_export(
    s3: S3Client, code: str, status: int, expected: type[ExportError]
) -> None:
    plan = planned(s3)
    [item] = stored(s3, plan["itemsKey"])
    sfn = FakeStepFunctions({}, client_error(code, status, "DescribeExecution"))
    with pytest.raises(ExportError) as raised:
        summarize_plan(s3, plan, sfn)
    assert type(raised.value) is expected
    assert str(raised.value) == f"could not describe export {item['name']}: {code}"
    assert plan["reportKey"] not in [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    ]


@pytest.mark.parametrize(
    ("method", "code", "status", "expected", "message"),
    [
        ("get_object", "500", 500, StorageError, "could not read {itemsKey}: 500"),
        ("get_object", "SlowDown", 503, StorageError, "could not read {itemsKey}: SlowDown"),
        (
            "put_object",
            "AccessDenied",
            403,
            ConfigurationError,
            "could not write {reportKey}: AccessDenied",
        ),
        ("put_object", "503", 503, StorageError, "could not write {reportKey}: 503"),
    ],
)
def test_a_failed_read_of_the_rows_or_write_of_the_report(
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    code: str,
    status: int,
    expected: type[ExportError],
    message: str,
) -> None:
    plan = planned(s3)
    operation = "GetObject" if method == "get_object" else "PutObject"
    monkeypatch.setattr(s3, method, raising(client_error(code, status, operation)))
    with pytest.raises(ExportError) as raised:
        summarize_plan(s3, plan, FakeStepFunctions({}))
    assert type(raised.value) is expected
    assert str(raised.value) == message.format(**plan)
