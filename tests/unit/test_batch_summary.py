"""aistudios_export.batches, SummarizeBatch's step: every row's outcome, the report, the verdict.

The batch is prepared on moto's S3 (as tests/unit/test_batches.py does); each row's outcome is
written as a Distributed Map's ``ResultWriter`` writes it (a manifest and result files).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from aistudios_export.batches import REPORTED_REJECTIONS, summarize_batch
from aistudios_export.errors import (
    ConfigurationError,
    ExportError,
    ResultsUnreadable,
    StorageError,
)
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

ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:stack-export:"
MAP_RUN = "arn:aws:states:us-east-1:123456789012:mapRun:stack-batch/ExportRows:run-1"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    with stack_bucket(monkeypatch) as client:
        yield client


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


def succeeded(project_id: str) -> dict[str, Any]:
    """A row whose export succeeded: the item's output is ``{"export": <its output>}``."""
    output = {"projectId": project_id, "resolution": "1080", "video": video(project_id)}
    return {"Status": "SUCCEEDED", "Output": json.dumps({"export": output})}


def export_ended(status: str, **error: str) -> dict[str, Any]:
    """A row whose export ended otherwise: a failed .sync task's cause is its description."""
    described = {"ExecutionArn": ARN_PREFIX + "x", "Status": status, **error}
    return {"Status": "FAILED", "Error": "States.TaskFailed", "Cause": json.dumps(described)}


PENDING = {"Status": "PENDING"}


def write_results(
    s3: S3Client,
    items: list[dict[str, Any]],
    outcomes: Mapping[int, dict[str, Any]],
    *,
    prefix: str = "results/map-runs/run-1/",
    map_run: str = MAP_RUN,
) -> dict[str, Any]:
    """Write a map run's results under ``prefix`` as Step Functions does; return its result."""
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for index, outcome in sorted(outcomes.items()):
        entry = {
            "ExecutionArn": f"arn:aws:states:us-east-1:123456789012:execution:b/ExportRows:{index}",
            "Input": json.dumps(items[index]),
            "InputDetails": {"Included": True},
            "Name": str(index),
            **outcome,
        }
        files[outcome["Status"] if outcome["Status"] in files else "FAILED"].append(entry)
    listed: dict[str, list[dict[str, Any]]] = {}
    for kind, entries in files.items():
        listed[kind] = []
        if entries:
            body = json.dumps(entries).encode()
            key = f"{prefix}{kind}_0.json"
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            listed[kind].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": BUCKET, "MapRunArn": map_run, "ResultFiles": listed}
    s3.put_object(Bucket=BUCKET, Key=prefix + "manifest.json", Body=json.dumps(manifest).encode())
    return {
        "MapRunArn": map_run,
        "ResultWriterDetails": {"Bucket": BUCKET, "Key": prefix + "manifest.json"},
    }


def summarize(
    s3: S3Client,
    outcomes: dict[str, dict[str, Any]],
    *,
    rows: str = f"projectId\n{P1}\n{P2}\n{P3}\nbad\n",
    map_run: dict[str, Any] | None = None,
    tolerance: float = 10,
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Prepare a batch of P1..P3, write the Map's results for it, then summarize it.

    ``map_run`` replaces the Map's result (a failed Map has no results).
    """
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=rows.encode())
    plan = prepare(s3, "manifests/a.csv")
    items = stored(s3, plan["itemsKey"])
    written = write_results(s3, items, {int(k): v for k, v in outcomes.items()})
    summary = summarize_batch(
        plan,
        written if map_run is None else map_run,
        tolerated_failure_percentage=tolerance,
        s3_client=s3,
    )
    return summary, stored(s3, plan["reportKey"]), [i["name"] for i in items]


def test_summary_reports_every_row_from_its_export(s3: S3Client) -> None:
    failure = export_ended(
        "FAILED",
        Error="ExportFailed",
        Cause=json.dumps({"errorMessage": "AI Studios reported state 'failed'", "errorType": "X"}),
    )
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
    timed_out = export_ended("TIMED_OUT")
    summary, report, _ = summarize(s3, {"0": succeeded(P1), "1": timed_out, "2": succeeded(P3)})
    assert summary["status"] == "FAILED"
    assert summary["error"] == "ExportsFailed"
    assert summary["cause"] == "1 of 3 exports did not succeed (more than the tolerated 10%)"
    assert report["status"] == "FAILED" and report["cause"] == summary["cause"]
    assert report["rows"][1]["status"] == "TIMED_OUT" and report["rows"][1]["error"] == "TIMED_OUT"


def test_rows_the_map_never_started_are_reported_as_such(s3: S3Client) -> None:
    summary, report, _ = summarize(
        s3, {"0": succeeded(P1), "1": PENDING, "2": PENDING}, tolerance=100
    )
    assert [r["status"] for r in report["rows"]] == ["SUCCEEDED", "NOT_STARTED", "NOT_STARTED"]
    assert report["rows"][1]["error"] == "NotStarted"
    assert report["rows"][1]["cause"] == "the batch ended before this export started"
    assert summary["counts"]["failed"] == 2


def test_summary_of_a_failed_map_names_the_batch_failure(s3: S3Client) -> None:
    # A Map caught by its Catch hands over {Error, Cause}: no results to read.
    map_error = {"Error": "States.ExceedToleratedFailureThreshold", "Cause": "too many failed"}
    summary, report, names = summarize(s3, {"0": succeeded(P1)}, map_run=map_error, tolerance=100)
    assert summary["error"] == "BatchFailed"
    assert summary["cause"] == (
        "the exports stopped with States.ExceedToleratedFailureThreshold: too many failed"
    )
    assert [r["status"] for r in report["rows"]] == ["UNKNOWN"] * 3
    assert [r["exportId"] for r in report["rows"]] == names
    assert report["rows"][0]["error"] == "ResultMissing"
    assert report["rows"][0]["cause"].startswith(
        "the Map stopped with States.ExceedToleratedFailureThreshold before writing its results"
    )
    assert summary["counts"]["failed"] == 3


MAP_ERROR = {"Error": "States.ExceedToleratedFailureThreshold", "Cause": "too many failed"}


def failed_map_run(
    s3: S3Client, runs: list[dict[int, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Prepare P1..P3, write ``runs`` (oldest first) where its Map writes; summarize it failed."""
    s3.put_object(
        Bucket=BUCKET, Key="manifests/a.csv", Body=f"projectId\n{P1}\n{P2}\n{P3}\n".encode()
    )
    plan = prepare(s3, "manifests/a.csv")
    items = stored(s3, plan["itemsKey"])
    for number, outcomes in enumerate(runs):
        run_id = f"run-{number}"
        write_results(
            s3,
            items,
            outcomes,
            prefix=f"{plan['mapRunsPrefix']}/{run_id}/",
            map_run=MAP_RUN.replace("run-1", run_id),
        )
    # Another batch's results beside them are not this batch's.
    write_results(s3, items, {0: PENDING, 1: PENDING, 2: PENDING})
    summary = summarize_batch(plan, MAP_ERROR, tolerated_failure_percentage=10, s3_client=s3)
    return summary, stored(s3, plan["reportKey"]), [i["name"] for i in items]


def test_a_failed_map_still_reports_each_rows_real_outcome(s3: S3Client) -> None:
    # More rows failed than tolerated: the Map stopped, its Catch handed over {Error, Cause}.
    failure = export_ended("FAILED", Error="ExportFailed", Cause="AI Studios said failed")
    summary, report, names = failed_map_run(s3, [{0: succeeded(P1), 1: failure, 2: PENDING}])
    assert summary["status"] == "FAILED" and summary["error"] == "BatchFailed"
    assert summary["cause"] == (
        "the exports stopped with States.ExceedToleratedFailureThreshold: too many failed"
    )
    rows = report["rows"]
    assert [r["exportId"] for r in rows] == names
    assert [r["status"] for r in rows] == ["SUCCEEDED", "FAILED", "NOT_STARTED"]
    assert rows[0]["video"] == video(P1)
    assert (rows[1]["error"], rows[1]["cause"]) == ("ExportFailed", "AI Studios said failed")
    assert rows[2]["error"] == "NotStarted"
    assert summary["counts"]["succeeded"] == 1 and summary["counts"]["failed"] == 2
    assert report["mapRun"]["Error"] == MAP_ERROR["Error"]
    [found] = report["mapRun"]["ResultsFound"]
    assert found["Key"].endswith("/run-0/manifest.json")


def test_several_map_runs_of_a_batch_merge_with_the_latest_start_winning(s3: S3Client) -> None:
    # The same manifest uploaded again while its first batch ran: two map runs, one prefix.
    older = {0: succeeded(P1), 1: export_ended("FAILED", Error="ExportFailed"), 2: PENDING}
    newer = {0: PENDING, 1: succeeded(P2), 2: export_ended("TIMED_OUT")}
    _, report, _ = failed_map_run(s3, [older, newer])
    assert [r["status"] for r in report["rows"]] == ["SUCCEEDED", "SUCCEEDED", "TIMED_OUT"]
    assert report["rows"][0]["video"] == video(P1)  # the newer run never started it
    assert len(report["mapRun"]["ResultsFound"]) == 2


def test_a_failed_map_without_result_files_leaves_its_rows_unknown(s3: S3Client) -> None:
    _, report, _ = failed_map_run(s3, [])
    assert [r["status"] for r in report["rows"]] == ["UNKNOWN"] * 3
    assert report["rows"][0]["cause"].startswith(
        "the Map stopped with States.ExceedToleratedFailureThreshold before writing its results"
    )
    assert "mapRun" not in report  # nothing was found: the report's cause names the error


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [("SlowDown", 503, StorageError), ("AccessDenied", 403, ConfigurationError)],
)
def test_a_failed_listing_of_a_failed_maps_results(
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    status: int,
    expected: type[ExportError],
) -> None:
    plan = planned(s3)
    monkeypatch.setattr(s3, "list_objects_v2", raising(client_error(code, status, "ListObjectsV2")))
    with pytest.raises(ExportError) as raised:
        summarize_batch(plan, MAP_ERROR, tolerated_failure_percentage=0, s3_client=s3)
    assert type(raised.value) is expected
    assert str(raised.value) == f"could not list {plan['mapRunsPrefix']}/: {code}"


def test_a_row_missing_from_the_results_is_unknown_not_lost(s3: S3Client) -> None:
    summary, report, _ = summarize(s3, {"0": succeeded(P1), "2": succeeded(P3)}, tolerance=50)
    assert [r["status"] for r in report["rows"]] == ["SUCCEEDED", "UNKNOWN", "SUCCEEDED"]
    assert report["rows"][1]["cause"].startswith("the Map's results do not list it")
    assert summary["status"] == "SUCCEEDED" and summary["counts"]["failed"] == 1


def test_a_row_answered_from_an_earlier_failed_export_reports_that_export(s3: S3Client) -> None:
    # EarlierExportDidNotSucceed makes the earlier export's description the row's cause.
    earlier = {"ExecutionArn": ARN_PREFIX + "x", "Status": "ABORTED", "Input": "{}"}
    row = {"Status": "FAILED", "Error": "ExportNotSucceeded", "Cause": json.dumps(earlier)}
    _, report, _ = summarize(s3, {"0": succeeded(P1), "1": row, "2": succeeded(P3)}, tolerance=50)
    assert report["rows"][1]["status"] == "ABORTED" and report["rows"][1]["error"] == "ABORTED"


def test_a_row_that_failed_in_the_map_itself_keeps_that_error(s3: S3Client) -> None:
    row = {"Status": "FAILED", "Error": "States.Timeout", "Cause": "the row ran too long"}
    _, report, _ = summarize(s3, {"0": succeeded(P1), "1": row, "2": succeeded(P3)}, tolerance=50)
    assert {k: report["rows"][1][k] for k in ("status", "error", "cause")} == {
        "status": "FAILED",
        "error": "States.Timeout",
        "cause": "the row ran too long",
    }


def test_summary_keeps_the_result_writer_location(s3: S3Client) -> None:
    summary, report, _ = summarize(s3, {str(i): succeeded(p) for i, p in enumerate((P1, P2, P3))})
    assert report["status"] == summary["status"] == "SUCCEEDED"
    assert report["mapRun"]["ResultWriterDetails"]["Key"].endswith("/manifest.json")
    assert report["mapRun"]["MapRunArn"] == MAP_RUN


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


def summarize_plan(s3: S3Client, plan: dict[str, Any]) -> dict[str, Any]:
    written = write_results(s3, stored(s3, plan["itemsKey"]), {0: succeeded(P1)})
    return summarize_batch(plan, written, tolerated_failure_percentage=0, s3_client=s3)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, StorageError),
        ("502", 502, StorageError),
        ("AccessDenied", 403, ConfigurationError),
    ],
)
def test_a_failed_read_of_the_map_results(
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    status: int,
    expected: type[ExportError],
) -> None:
    plan = planned(s3)
    original = s3.get_object

    def get_object(**kwargs: Any) -> Any:
        if kwargs["Key"].startswith("results/map-runs/"):
            raise client_error(code, status, "GetObject")
        return original(**kwargs)

    monkeypatch.setattr(s3, "get_object", get_object)
    with pytest.raises(ExportError) as raised:
        summarize_plan(s3, plan)
    assert type(raised.value) is expected
    assert str(raised.value) == f"could not read results/map-runs/run-1/manifest.json: {code}"
    assert plan["reportKey"] not in [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    ]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"not json", "is not a map run's manifest"),
        (
            json.dumps({"ResultFiles": {"SUCCEEDED": [{"Key": "manifests/a.csv"}]}}).encode(),
            "outside its folder",
        ),
    ],
)
def test_results_that_are_not_what_step_functions_writes_are_refused(
    s3: S3Client, manifest: bytes, message: str
) -> None:
    plan = planned(s3)
    written = write_results(s3, stored(s3, plan["itemsKey"]), {0: succeeded(P1)})
    s3.put_object(Bucket=BUCKET, Key=written["ResultWriterDetails"]["Key"], Body=manifest)
    with pytest.raises(ResultsUnreadable, match=message):
        summarize_batch(plan, written, tolerated_failure_percentage=0, s3_client=s3)


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
    written = write_results(s3, stored(s3, plan["itemsKey"]), {0: succeeded(P1)})
    operation = "GetObject" if method == "get_object" else "PutObject"
    monkeypatch.setattr(s3, method, raising(client_error(code, status, operation)))
    with pytest.raises(ExportError) as raised:
        summarize_batch(plan, written, tolerated_failure_percentage=0, s3_client=s3)
    assert type(raised.value) is expected
    assert str(raised.value) == message.format(**plan)
