"""Manifests uploaded to the local bucket: the template's rule starts the batch state machine.

Every batch here is started the way AWS starts it: an object lands under the manifest prefix,
the template's EventBridge rule matches it and starts ``statemachine/batch.asl.json`` with the
rule's input transformer. Each test checks what is in the bucket afterwards and what the
AI Studios simulator was asked to do.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from aistudios_export import batches
from aistudios_local.batch import BatchRun, upload_and_wait, upload_manifest, wait_batch
from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_bytes
from aistudios_local.stack import LocalStack
from tests.unit.test_manifests import assert_safe_to_show

from .conftest import assert_no_secrets

pytestmark = pytest.mark.integration

P1 = "65fa6b07dca2e367461a2925"
P2 = "65fa6b07dca2e367461a2926"
P3 = "65fa6b07dca2e367461a2927"
DEADLINE = 60


@pytest.fixture
def stack(simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]) -> Iterator[LocalStack]:
    # Rows of a CSV cannot set pollSeconds: the template's default makes the exports fast.
    with LocalStack(simulator=simulator, parameters={"DefaultPollSeconds": "0"}) as local:
        yield local
        assert_no_secrets(local, simulator, capfd)


def batch(stack: LocalStack, text: str | bytes, name: str = "batch.csv") -> BatchRun:
    data = text.encode() if isinstance(text, str) else text
    return upload_and_wait(stack, data, name, deadline_seconds=DEADLINE)


def export_posts(sim: AiStudiosSimulator) -> list[Any]:
    return [c.body for c in sim.calls if c.method == "POST" and c.path.endswith("/project/export")]


def videos(stack: LocalStack) -> dict[str, bytes]:
    """Every version of every exported video, by key."""
    s3 = boto3.client("s3")
    found: dict[str, bytes] = {}
    for version in s3.list_object_versions(Bucket=stack.bucket, Prefix="exports/").get(
        "Versions", []
    ):
        assert version["Key"] not in found, "a video was written twice"
        found[version["Key"]] = s3.get_object(
            Bucket=stack.bucket, Key=version["Key"], VersionId=version["VersionId"]
        )["Body"].read()
    return found


def assert_videos(stack: LocalStack, expected: dict[tuple[str, str], bytes]) -> None:
    """Exactly one video per (project, resolution), with the simulator's bytes."""
    found = {tuple(key.split("/")[1:3]): body for key, body in videos(stack).items()}
    assert set(found) == set(expected)
    for key, body in expected.items():
        assert hashlib.sha256(found[key]).hexdigest() == hashlib.sha256(body).hexdigest(), key


def map_items(execution_arn: str) -> dict[str, int]:
    """The Distributed Map's item counts of a batch execution."""
    sfn = boto3.client("stepfunctions")
    [run] = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
    counts = sfn.describe_map_run(mapRunArn=run["mapRunArn"])["itemCounts"]
    return {"total": counts["total"], "succeeded": counts["succeeded"], "failed": counts["failed"]}


def by_project(run: BatchRun) -> dict[str, dict[str, Any]]:
    return {row["projectId"]: row for row in run.rows}


# --- manifests that work ---------------------------------------------------------------------


def test_three_row_csv_with_a_bad_row(stack: LocalStack, simulator: AiStudiosSimulator) -> None:
    result = batch(stack, f"projectId,resolution\n{P1},720\n{P2},8k\n{P3},480\n")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert_videos(stack, {(P1, "720"): video_bytes(P1, "720"), (P3, "480"): video_bytes(P3, "480")})
    rows = by_project(result)
    assert rows[P2] == {
        "projectId": P2,
        "status": "REJECTED",
        "row": 2,
        "error": "invalid request: resolution: must be one of 4k | 1080 | 720 | 480",
    }
    for project, resolution in ((P1, "720"), (P3, "480")):
        row = rows[project]
        assert row["status"] == "SUCCEEDED"
        assert (
            row["video"]["sha256"] == hashlib.sha256(video_bytes(project, resolution)).hexdigest()
        )
        assert row["video"]["size"] == len(video_bytes(project, resolution))
    assert sorted(export_posts(simulator), key=str) == [
        {"projectId": P1, "resolution": "720"},
        {"projectId": P3, "resolution": "480"},
    ]
    assert result.report is not None
    assert result.report["counts"] == {
        "rows": 3,
        "accepted": 2,
        "rejected": 1,
        "duplicates": 0,
        "succeeded": 2,
        "failed": 0,
    }
    assert result.execution_arn is not None
    assert map_items(result.execution_arn) == {"total": 2, "succeeded": 2, "failed": 0}


def test_the_same_manifest_uploaded_again_exports_nothing_twice(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    manifest = f"projectId,resolution\n{P1},720\n{P2},1080\n"
    first = batch(stack, manifest)
    second = batch(stack, manifest)
    assert first.status == second.status == "SUCCEEDED", (second.error, second.cause)
    expected = {(P1, "720"): video_bytes(P1, "720"), (P2, "1080"): video_bytes(P2, "1080")}
    assert_videos(stack, expected)
    assert len(export_posts(simulator)) == 2
    # The second batch answered each row from the first upload's export.
    assert [r["video"] for r in second.rows] == [r["video"] for r in first.rows]
    assert second.execution_arn is not None
    assert map_items(second.execution_arn) == {"total": 2, "succeeded": 2, "failed": 0}
    assert len(stack.rule_deliveries) == 2


def test_the_same_manifest_delivered_twice_at_once(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    data = f"projectId\n{P1}\n{P2}\n".encode()
    key, first = upload_manifest(stack, data, "twice.csv")
    _, second = upload_manifest(stack, data, "twice.csv")
    assert first and second and first != second
    digest = hashlib.sha256(data).hexdigest()
    runs = [
        wait_batch(stack, arn, manifest_key=key, manifest_sha256=digest, deadline_seconds=DEADLINE)
        for arn in (first, second)
    ]
    assert [r.status for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
    assert_videos(stack, {(P1, "1080"): video_bytes(P1), (P2, "1080"): video_bytes(P2)})
    assert sorted(p["projectId"] for p in export_posts(simulator)) == [P1, P2]


def test_json_manifest(stack: LocalStack, simulator: AiStudiosSimulator) -> None:
    rows = [
        {"projectId": P1, "resolution": "4k", "outputPrefix": "team-a"},
        {"projectId": P2},
        {"projectId": P3, "resolution": "720", "colour": "red"},
    ]
    result = batch(stack, json.dumps(rows), "batch.json")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert sorted(k.rsplit("/", 1)[0] for k in videos(stack)) == [
        f"exports/{P2}/1080",
        f"exports/team-a/{P1}/4k",
    ]
    assert by_project(result)[P3]["status"] == "REJECTED"
    assert by_project(result)[P3]["error"] == "invalid request: unknown field(s): colour"
    assert len(export_posts(simulator)) == 2


def test_bom_and_crlf_csv(stack: LocalStack) -> None:
    data = f"\ufeffprojectId,resolution\r\n{P1},720\r\n{P2},480\r\n".encode()
    result = batch(stack, data)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert_videos(stack, {(P1, "720"): video_bytes(P1, "720"), (P2, "480"): video_bytes(P2, "480")})


def test_duplicate_rows_are_exported_once(stack: LocalStack, simulator: AiStudiosSimulator) -> None:
    result = batch(stack, f"projectId,resolution\n{P1},720\n{P1},720\n{P1.upper()}, 720\n")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert_videos(stack, {(P1, "720"): video_bytes(P1, "720")})
    assert export_posts(simulator) == [{"projectId": P1, "resolution": "720"}]
    assert result.report is not None
    assert result.report["counts"]["duplicates"] == 2
    assert [r["status"] for r in result.rows] == ["SUCCEEDED"]


def test_formula_cells_come_back_in_the_report_as_text(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    formulas = ['=HYPERLINK("http://evil.example/","x")', "+1+1", "-2+3", "@SUM(1)", "\t=1"]
    quoted = [f'"{f.replace(chr(34), chr(34) * 2)}"' for f in formulas]
    lines = [f"{q},{q},{q},{q}" for q in quoted] + [f"{P2},{q},ws,{q}" for q in quoted]
    columns = "projectId,resolution,workspaceId,outputPrefix"
    result = batch(stack, "\n".join([columns, f"{P1},720,,", *lines]) + "\n")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert export_posts(simulator) == [{"projectId": P1, "resolution": "720"}]
    assert result.report is not None
    hints = [r.get("projectId") for r in result.report["rejected"]]
    assert hints == ["'" + f.strip() for f in formulas] + [P2] * len(formulas)
    # Every string of the report (and of the rows the CLI prints) opens as text, and prints.
    assert_safe_to_show([result.report, result.to_json()])


# --- manifests that do not ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"", "manifest manifests/bad.csv is empty"),
        (f"{P1},720\n".encode(), "manifest manifests/bad.csv has no header row"),
        (b"projectId,priority\n", "manifest manifests/bad.csv has unknown column(s) 'priority'"),
        (b"projectId\n\xff\xfe\n", "manifest manifests/bad.csv is not UTF-8 text: byte 0xff"),
    ],
)
def test_a_bad_manifest_fails_clearly_and_exports_nothing(
    stack: LocalStack, simulator: AiStudiosSimulator, data: bytes, cause: str
) -> None:
    result = batch(stack, data, "bad.csv")
    assert result.status == "FAILED"
    assert result.error == "ManifestInvalid"
    assert result.cause is not None and result.cause.startswith(cause)
    assert result.report is not None and result.report["cause"] == result.cause
    assert result.rows == []
    assert videos(stack) == {}
    assert export_posts(simulator) == []


def test_results_and_videos_never_start_a_batch(stack: LocalStack) -> None:
    result = batch(stack, f"projectId\n{P1}\n")
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    s3 = boto3.client("s3")
    written = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket)["Contents"]]
    # The batch wrote JSON files and a video of its own, and none of them matched the rule.
    assert [k for k in written if k.startswith("results/") and k.endswith(".json")]
    assert [k for k in written if k.startswith("exports/")]
    for key in ("results/other.csv", "exports/list.json", "manifests/notes.txt", "manifests.csv"):
        s3.put_object(Bucket=stack.bucket, Key=key, Body=f"projectId\n{P2}\n".encode())
    assert [json.loads(d.input) for d in stack.rule_deliveries] == [
        {"bucket": stack.bucket, "key": "manifests/batch.csv"}
    ]


# --- schedules -----------------------------------------------------------------------------


def test_a_schedule_runs_the_manifest_at_its_key(
    stack: LocalStack, simulator: AiStudiosSimulator
) -> None:
    key = stack.parameter("BatchScheduleManifestKey")
    data = f"projectId,resolution\n{P1},720\n".encode()
    uploaded = batch(stack, data, key.rsplit("/", 1)[1])
    assert uploaded.status == "SUCCEEDED" and uploaded.manifest_key == key

    target, payload = stack.schedule_target("BatchSchedule", scheduled_time="2026-01-02T03:00:00Z")
    assert target == stack.ref("BatchStateMachine")
    assert payload == {"bucket": stack.bucket, "key": key, "scope": "2026-01-02T03:00:00Z"}
    runs = []
    for _ in range(2):  # a run, then the scheduler's retry of the same run
        arn = stack.fire_schedule("BatchSchedule", scheduled_time="2026-01-02T03:00:00Z")
        runs.append(
            wait_batch(
                stack,
                arn,
                manifest_key=key,
                manifest_sha256=hashlib.sha256(data).hexdigest(),
                scope="2026-01-02T03:00:00Z",
                deadline_seconds=DEADLINE,
            )
        )
    assert [r.status for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
    assert runs[0].rows[0]["status"] == "SUCCEEDED"
    # The scheduled run exported again (a new export of the same row); its retry did not.
    assert runs[0].rows[0]["exportId"] != uploaded.rows[0]["exportId"]
    assert runs[1].rows == runs[0].rows
    assert export_posts(simulator) == [{"projectId": P1, "resolution": "720"}] * 2
    assert len(stack.rule_deliveries) == 1


@pytest.mark.parametrize(("identity", "posts"), [("manifest", 2), ("request", 1)])
def test_a_row_another_manifest_exported_is_exported_again_only_if_asked(
    simulator: AiStudiosSimulator, identity: str, posts: int
) -> None:
    # Two different files name the same request. By default (manifest) each file is its own
    # batch of exports; with BatchRowIdentity=request the second is answered from the first.
    parameters = {"DefaultPollSeconds": "0", "BatchRowIdentity": identity}
    with LocalStack(simulator=simulator, parameters=parameters) as local:
        first = batch(local, f"projectId,resolution\n{P1},720\n", name="monday.csv")
        second = batch(local, f"resolution,projectId\n720,{P1}\n", name="tuesday.csv")
        assert first.status == second.status == "SUCCEEDED", (second.error, second.cause)
        assert len(export_posts(simulator)) == posts
        same = [r["exportId"] for r in first.rows] == [r["exportId"] for r in second.rows]
        assert same is (identity == "request")
        keys = {k.split("#")[0] for k in videos(local)}
        assert len(keys) == posts, "one video per export, none overwritten"


# --- the report at volume ------------------------------------------------------------------


def test_the_report_is_read_from_the_map_results_without_describing_exports(
    stack: LocalStack, simulator: AiStudiosSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every AWS call SummarizeBatch makes, counted at boto3's level on the thread it runs on.
    summarizing: set[int] = set()
    calls: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        if threading.get_ident() in summarizing:
            calls.append(event_name.removeprefix("before-call."))

    boto3._get_default_session().events.register("before-call", record)
    original = batches.summarize_batch

    def summarize_batch(*args: Any, **kwargs: Any) -> dict[str, Any]:
        summarizing.add(threading.get_ident())
        try:
            return original(*args, **kwargs)
        finally:
            summarizing.discard(threading.get_ident())

    monkeypatch.setattr(batches, "summarize_batch", summarize_batch)
    simulator.set_scenario(P2, Scenario(fail_at_poll=1))
    result = batch(stack, f"projectId\n{P1}\n{P2}\n{P3}\n")
    # 1 of 3 is more than the tolerated 10%: the Map fails, after the rows it had started.
    assert result.status == "FAILED" and result.error == "BatchFailed", result.cause
    assert result.cause and "States.ExceedToleratedFailureThreshold" in result.cause
    rows = by_project(result)
    assert [rows[p]["status"] for p in (P1, P2, P3)] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    assert rows[P2]["error"] == "ExportFailed" and rows[P2]["cause"]
    assert rows[P1]["video"]["sha256"] == hashlib.sha256(video_bytes(P1)).hexdigest()
    assert result.report is not None and result.report_key is not None
    [found] = result.report["mapRun"]["ResultsFound"]
    assert found["Key"].startswith(result.report_key.removesuffix("report.json") + "map-runs/")
    # items, rejected rows; the listing of the batch's map runs (the failed Map said nothing
    # of its results), the manifest and its two files (SUCCEEDED, FAILED); the report.
    assert [c for c in calls if not c.startswith("s3.")] == []
    assert calls == ["s3.GetObject"] * 2 + ["s3.ListObjectsV2"] + ["s3.GetObject"] * 3 + [
        "s3.PutObject"
    ]


def test_a_batch_whose_map_fails_reports_every_rows_real_outcome(
    simulator: AiStudiosSimulator,
) -> None:
    # One row at a time: P1 exports, P2 fails (1 of 3, past the tolerated 10%), so the Map
    # stops before P3 starts. Its Catch hands SummarizeBatch no results: they are found.
    simulator.set_scenario(P2, Scenario(fail_at_poll=1))
    parameters = {"DefaultPollSeconds": "0", "BatchMaxConcurrency": "1"}
    with LocalStack(simulator=simulator, parameters=parameters) as local:
        result = batch(local, f"projectId\n{P1}\n{P2}\n{P3}\n")
        assert result.status == "FAILED" and result.error == "BatchFailed", result.cause
        assert result.cause and "States.ExceedToleratedFailureThreshold" in result.cause
        rows = by_project(result)
        assert [rows[p]["status"] for p in (P1, P2, P3)] == ["SUCCEEDED", "FAILED", "NOT_STARTED"]
        assert rows[P1]["video"]["sha256"] == hashlib.sha256(video_bytes(P1)).hexdigest()
        assert (rows[P2]["error"], rows[P3]["error"]) == ("ExportFailed", "NotStarted")
        # The row's cause is the export's message, not the JSON its failing function ended with.
        assert rows[P2]["cause"].startswith("AI Studios reported state 'failed'"), rows[P2]["cause"]
        assert result.report is not None
        assert result.report["counts"] | {"succeeded": 1, "failed": 2} == result.report["counts"]
        # What the rows say is what happened: P3 was never exported.
        assert_videos(local, {(P1, "1080"): video_bytes(P1)})
        assert len(export_posts(simulator)) == 2
