"""aistudios_export.manifests and the PrepareManifest/SummarizeBatch handlers.

Parsing is checked on bytes; the batch steps run against moto's S3 and a fake Step Functions
that answers DescribeExecution from a table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from aistudios_export.errors import ManifestInvalid, readable_cause
from aistudios_export.manifests import (
    MAX_MANIFEST_BYTES,
    MAX_ROWS,
    BatchSettings,
    batch_location,
    parse_manifest,
    prepare_batch,
    summarize_batch,
)
from aistudios_export.naming import is_export_id
from tests.events import load_event
from tests.unit._fixtures import LambdaContextStub, fake_aws, load_handler

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

P1 = "65fa6b07dca2e367461a2925"
P2 = "65fa6b07dca2e367461a2926"
P3 = "65fa6b07dca2e367461a2927"
DEFAULTS = {"pollSeconds": "15", "timeoutSeconds": "1800", "stallSeconds": "600"}
BUCKET = "aistudios-export-output"
SETTINGS = BatchSettings(bucket=BUCKET, manifest_prefix="manifests/", results_prefix="results/")
ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:stack-export:"


def parse(text: str | bytes, key: str = "manifests/m.csv", **kwargs: Any) -> Any:
    data = text.encode() if isinstance(text, str) else text
    return parse_manifest(data, key, defaults=DEFAULTS, **kwargs)


# --- parsing -------------------------------------------------------------------------------


def test_csv_columns_in_any_order_and_subset() -> None:
    manifest = parse(f"resolution,projectId\n720,{P1}\n,{P2}\n")
    assert [i["input"] for i in manifest.items] == [
        {
            "projectId": P1,
            "resolution": "720",
            "pollSeconds": 15,
            "timeoutSeconds": 1800,
            "stallSeconds": 600,
        },
        {
            "projectId": P2,
            "resolution": "1080",  # an empty cell is "not given": the default applies
            "pollSeconds": 15,
            "timeoutSeconds": 1800,
            "stallSeconds": 600,
        },
    ]
    assert manifest.rows == 2 and manifest.rejected == () and manifest.duplicates == 0
    assert all(is_export_id(i["name"]) for i in manifest.items)


def test_every_csv_column() -> None:
    [item] = parse(f"projectId,resolution,workspaceId,outputPrefix\n{P1},4K,ws_1,team-a\n").items
    assert item["input"]["workspaceId"] == "ws_1"
    assert item["input"]["outputPrefix"] == "team-a/"
    assert item["input"]["resolution"] == "4k"
    assert item["name"].startswith(f"{P1}-4k-")


def test_bom_crlf_blank_lines_and_padding_are_tolerated() -> None:
    plain = parse(f"projectId,resolution\n{P1},720\n{P2},480\n")
    messy = parse(
        f"\ufeff projectId , Resolution \r\n\r\n {P1} , 720 \r\n{P2},480\r\n\r\n".encode()
    )
    assert [i["input"] for i in messy.items] == [i["input"] for i in plain.items]
    assert messy.rows == 2


def test_bad_rows_are_reported_with_their_field_while_good_rows_proceed() -> None:
    manifest = parse(f"projectId,resolution\n{P1},720\nnot-an-id,1080\n{P2},8k\n{P3},480,extra\n")
    assert [i["input"]["projectId"] for i in manifest.items] == [P1]
    assert [r.to_dict() for r in manifest.rejected] == [
        {
            "row": 2,
            "projectId": "not-an-id",
            "error": "invalid request: projectId: must be a 24-character hexadecimal ObjectId",
        },
        {
            "row": 3,
            "projectId": P2,
            "error": "invalid request: resolution: must be one of 4k | 1080 | 720 | 480",
        },
        {
            "row": 4,
            "projectId": P3,
            "error": "the row has 3 fields but the header names 2 columns",
        },
    ]


def test_duplicate_rows_are_exported_once() -> None:
    manifest = parse(f"projectId,resolution\n{P1},720\n{P1.upper()},720\n{P1},1080\n{P1}, 720\n")
    assert [i["input"]["resolution"] for i in manifest.items] == ["720", "1080"]
    assert manifest.duplicates == 2
    assert manifest.rows == 4


def test_names_depend_on_the_bytes_and_the_scope() -> None:
    text = f"projectId\n{P1}\n"
    [a] = parse(text).items
    [b] = parse(text).items
    [c] = parse(text + "\n").items  # other bytes: another manifest
    [d] = parse(text, scope="2026-01-02T03:00:00Z").items
    assert a == b
    assert a["input"] == c["input"] == d["input"]
    assert len({a["name"], c["name"], d["name"]}) == 3
    assert parse(text).sha256 == parse(text).sha256 != parse(text + "\n").sha256


def test_json_manifest_takes_request_objects() -> None:
    body = [
        {"projectId": P1, "resolution": "720", "webhookUrl": "https://hooks.example.com/x"},
        {"projectId": P2, "pollSeconds": 5},
        {"projectId": P1, "resolution": "720", "webhookUrl": "https://hooks.example.com/x"},
        {"projectId": P3, "colour": "red"},
        "not an object",
    ]
    manifest = parse(json.dumps(body), key="manifests/m.json")
    assert [i["input"]["projectId"] for i in manifest.items] == [P1, P2]
    assert manifest.items[0]["input"]["webhookUrl"] == "https://hooks.example.com/x"
    assert manifest.items[1]["input"]["pollSeconds"] == 5
    assert manifest.duplicates == 1
    assert [(r.row, r.error) for r in manifest.rejected] == [
        (4, "invalid request: unknown field(s): colour"),
        (5, "the request must be a JSON object"),
    ]


def test_json_with_a_bom() -> None:
    manifest = parse(("\ufeff" + json.dumps([{"projectId": P1}])).encode(), key="x/m.JSON")
    assert len(manifest.items) == 1


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        (b"", "m.csv", "manifest m.csv is empty"),
        (b" \r\n\n", "m.csv", "manifest m.csv is empty"),
        (b"\xef\xbb\xbf", "m.json", "manifest m.json is empty"),
        (b"projectId,resolution\r\n", "m.csv", "manifest m.csv has no rows"),
        (
            f"{P1},720\n".encode(),
            "m.csv",
            "manifest m.csv has no header row: the first line must name the columns (some of "
            f"projectId,resolution,workspaceId,outputPrefix), but it is '{P1},720'",
        ),
        (
            b"projectId,resolution,priority\n",
            "m.csv",
            "manifest m.csv has unknown column(s) 'priority'; the columns may be "
            "projectId,resolution,workspaceId,outputPrefix",
        ),
        (b"projectId,\n", "m.csv", "manifest m.csv has unknown column(s) ''"),
        (b"projectId,ProjectID\n", "m.csv", "manifest m.csv names column(s) projectId twice"),
        (b"resolution\n720\n", "m.csv", "manifest m.csv has no projectId column (it is required)"),
        (
            b"projectId\n65fa6b07dca2e367461a2925\n\xe9t\xe9\n",
            "m.csv",
            "manifest m.csv is not UTF-8 text: byte 0xe9 at offset 35 cannot be decoded "
            "(save the file as UTF-8)",
        ),
        (
            b'{"projectId": "x"}',
            "m.json",
            "manifest m.json must be a JSON array of request objects, not a JSON object",
        ),
        (b"[{", "m.json", "manifest m.json is not valid JSON: Expecting property name"),
        (b"[]", "m.json", "manifest m.json has no rows"),
        (b"projectId\n", "m.txt", "manifest m.txt: the file name must end in .csv or .json"),
        (
            b"projectId\nnope\n",
            "m.csv",
            "manifest m.csv has no valid row: row 1: invalid request: projectId: must be a "
            "24-character hexadecimal ObjectId",
        ),
    ],
)
def test_unusable_manifests_fail_clearly(data: bytes, key: str, message: str) -> None:
    with pytest.raises(ManifestInvalid) as raised:
        parse_manifest(data, key, defaults=DEFAULTS)
    assert str(raised.value).startswith(message)


def test_size_and_row_bounds() -> None:
    with pytest.raises(ManifestInvalid, match=f"at most {MAX_MANIFEST_BYTES} are allowed"):
        parse(b"projectId\n" + b" " * MAX_MANIFEST_BYTES)
    rows = "".join(f"{i:024x}\n" for i in range(MAX_ROWS + 1))
    with pytest.raises(ManifestInvalid, match=f"has more than {MAX_ROWS} rows"):
        parse("projectId\n" + rows)
    with pytest.raises(ManifestInvalid, match=f"has more than {MAX_ROWS} rows"):
        parse(json.dumps([{"projectId": P1}] * (MAX_ROWS + 1)), key="m.json")
    assert len(parse("projectId\n" + rows[: 25 * MAX_ROWS]).items) == MAX_ROWS


def test_many_rejections_are_summarised_in_the_message() -> None:
    with pytest.raises(ManifestInvalid, match=r"row 5: .*; and 2 more$"):
        parse("projectId\n" + "x\n" * 7)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_manifest_or_manifest_invalid(data: bytes) -> None:
    for key in ("m.csv", "m.json"):
        try:
            manifest = parse_manifest(data, key, defaults=DEFAULTS)
        except ManifestInvalid:
            continue
        assert manifest.items and all(is_export_id(i["name"]) for i in manifest.items)


def test_readable_cause() -> None:
    lambda_cause = json.dumps({"errorMessage": "it broke", "errorType": "X", "stackTrace": []})
    assert readable_cause(lambda_cause) == "it broke"
    assert readable_cause("plain words") == "plain words"
    assert readable_cause('["json", "list"]') == '["json", "list"]'
    assert readable_cause(None) is None
    assert readable_cause("") is None


# --- PrepareManifest -----------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    with fake_aws(monkeypatch):
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def stored(s3: S3Client, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def prepare(s3: S3Client, key: str, **request: Any) -> dict[str, Any]:
    return prepare_batch(
        {"bucket": BUCKET, "key": key, **request},
        settings=SETTINGS,
        defaults=DEFAULTS,
        s3_client=s3,
    )


def test_prepare_writes_the_rows_and_returns_a_small_plan(s3: S3Client) -> None:
    data = f"projectId,resolution\n{P1},720\nbad,720\n{P1},720\n".encode()
    s3.put_object(Bucket=BUCKET, Key="manifests/jan/a.csv", Body=data)
    plan = prepare(s3, "manifests/jan/a.csv")
    manifest = parse_manifest(data, "manifests/jan/a.csv", defaults=DEFAULTS)
    batch_id, prefix = batch_location(SETTINGS, "manifests/jan/a.csv", manifest.sha256)
    assert prefix == f"results/jan/a.csv/{batch_id}/"
    assert plan["batchId"] == batch_id == manifest.sha256[:16]
    assert plan["manifest"]["sha256"] == manifest.sha256
    assert plan["manifest"]["key"] == "manifests/jan/a.csv"
    assert plan["itemsKey"] == prefix + "items.json"
    assert plan["reportKey"] == prefix + "report.json"
    assert plan["counts"] == {"rows": 3, "accepted": 1, "rejected": 1, "duplicates": 1}
    assert plan["rejected"] == [r.to_dict() for r in manifest.rejected]
    assert stored(s3, plan["itemsKey"]) == list(manifest.items)
    assert stored(s3, plan["rejectedKey"]) == plan["rejected"]
    assert len(json.dumps(plan)) < 2048


def test_prepare_with_a_scope_uses_its_own_place_and_names(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=f"projectId\n{P1}\n".encode())
    first = prepare(s3, "manifests/a.csv", scope="2026-01-01T03:00:00Z")
    second = prepare(s3, "manifests/a.csv", scope="2026-01-02T03:00:00Z")
    plain = prepare(s3, "manifests/a.csv")
    assert len({first["itemsKey"], second["itemsKey"], plain["itemsKey"]}) == 3
    names = {stored(s3, p["itemsKey"])[0]["name"] for p in (first, second, plain)}
    assert len(names) == 3
    assert first["manifest"]["scope"] == "2026-01-01T03:00:00Z"


def test_prepare_reports_an_invalid_manifest_then_fails(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=b"projectId,colour\n")
    with pytest.raises(ManifestInvalid, match="unknown column"):
        prepare(s3, "manifests/a.csv")
    [report_key] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        if o["Key"].startswith("results/")
    ]
    report = stored(s3, report_key)
    assert report["status"] == "FAILED" and report["error"] == "ManifestInvalid"
    assert "unknown column(s) 'colour'" in report["cause"]
    assert report["rows"] == []


def test_prepare_finds_a_url_encoded_key(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/team a/b+c.csv", Body=f"projectId\n{P1}\n".encode())
    plan = prepare(s3, "manifests/team+a/b%2Bc.csv")
    assert plan["manifest"]["key"] == "manifests/team a/b+c.csv"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ("manifests/a.csv", 'the batch input must be a JSON object {"bucket", "key"}'),
        ({"bucket": BUCKET}, 'the batch input must name the manifest: {"bucket", "key"}'),
        (
            {"bucket": "other", "key": "manifests/a.csv"},
            "manifest bucket other is not this stack's",
        ),
        (
            {"bucket": BUCKET, "key": "uploads/a.csv"},
            "manifest uploads/a.csv is not under manifests/",
        ),
        (
            {"bucket": BUCKET, "key": "manifests/a.csv", "scope": "x" * 129},
            "scope: must be a string",
        ),
        ({"bucket": BUCKET, "key": "manifests/a.txt"}, "manifest manifests/a.txt: the file name"),
        (
            {"bucket": BUCKET, "key": "manifests/gone.csv"},
            "manifest s3://aistudios-export-output/manifests/gone.csv does not exist",
        ),
    ],
)
def test_prepare_refuses_what_is_not_a_manifest_of_this_stack(
    s3: S3Client, request_: Any, message: str
) -> None:
    with pytest.raises(ManifestInvalid) as raised:
        prepare_batch(request_, settings=SETTINGS, defaults=DEFAULTS, s3_client=s3)
    assert str(raised.value).startswith(message)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)  # no report, no work file


def test_prepare_never_reads_its_own_files_even_when_prefixes_nest(s3: S3Client) -> None:
    nested = BatchSettings(bucket=BUCKET, manifest_prefix="data/", results_prefix="data/results/")
    s3.put_object(Bucket=BUCKET, Key="data/results/x/report.json", Body=b"[]")
    with pytest.raises(ManifestInvalid, match="is a batch file under data/results/"):
        prepare_batch(
            {"bucket": BUCKET, "key": "data/results/x/report.json"},
            settings=nested,
            defaults=DEFAULTS,
            s3_client=s3,
        )
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [
        "data/results/x/report.json"
    ]


def test_prepare_refuses_a_too_big_object_without_reading_it(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/big.csv", Body=b"x" * (MAX_MANIFEST_BYTES + 1))
    with pytest.raises(ManifestInvalid, match=f"is {MAX_MANIFEST_BYTES + 1} bytes"):
        prepare(s3, "manifests/big.csv")


# --- SummarizeBatch ------------------------------------------------------------------------


class FakeStepFunctions:
    """Answers DescribeExecution from a table of execution name → description."""

    def __init__(self, executions: dict[str, dict[str, Any]]) -> None:
        self.executions = executions
        self.described: list[str] = []

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.described.append(executionArn)
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


# --- handlers ------------------------------------------------------------------------------


def test_prepare_manifest_handler(s3: S3Client) -> None:
    event = load_event("prepare_manifest")
    data = f"projectId,resolution\n{P1},720\nbad,720\n".encode()
    s3.put_object(Bucket=BUCKET, Key=event["request"]["key"], Body=data)
    plan = load_handler("prepare_manifest")(event, LambdaContextStub())
    json.dumps(plan)
    assert plan["counts"] == {"rows": 2, "accepted": 1, "rejected": 1, "duplicates": 0}
    assert stored(s3, plan["itemsKey"])[0]["input"]["pollSeconds"] == 15


def test_prepare_manifest_handler_raises_manifest_invalid(s3: S3Client) -> None:
    event = load_event("prepare_manifest")
    s3.put_object(Bucket=BUCKET, Key=event["request"]["key"], Body=b"")
    with pytest.raises(ManifestInvalid, match="is empty"):
        load_handler("prepare_manifest")(event, LambdaContextStub())


def test_summarize_batch_handler(s3: S3Client) -> None:
    event = load_event("summarize_batch")
    s3.put_object(
        Bucket=BUCKET,
        Key=event["batch"]["itemsKey"],
        Body=json.dumps(
            [{"name": f"{P1}-1080-{'0' * 20}", "input": {"projectId": P1, "resolution": "1080"}}]
        ),
    )
    s3.put_object(Bucket=BUCKET, Key=event["batch"]["rejectedKey"], Body=b"[]")
    summary = load_handler("summarize_batch")(event, LambdaContextStub())
    json.dumps(summary)
    # The export never ran on this (empty) account: the row is reported, the batch fails.
    assert summary["status"] == "FAILED" and summary["error"] == "ExportsFailed"
    report = stored(s3, event["batch"]["reportKey"])
    assert report["rows"][0]["status"] == "NOT_STARTED"
