"""What the real handlers write beside their answers: EMF metrics and logs correlated by export id.

Each handler runs with its sample event on moto (AI Studios the local simulator on loopback),
and its stdout, where Lambda's runtime collects both, is parsed: the EMF records' namespace,
metric names, dimensions and values, and the Powertools log records' ``correlation_id``.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.jmespath_utils import query

from aistudios_export import observability
from aistudios_export.client import PROGRESS_PATH
from aistudios_export.observability import DIMENSIONS, METRIC_NAMES, Metric
from aistudios_local.simulator import Scenario
from tests.events import load_event
from tests.unit import test_handlers as handlers
from tests.unit._fixtures import (
    PROJECT_ID,
    LambdaContextStub,
    create_render_slots_table,
    load_handler,
)

stack = handlers.stack
"""The handlers' stack: moto, the secrets, the bucket and AI Studios on loopback."""

NAMESPACE = "TestExports"
SERVICE = "aistudios-export"
EXPORT_ID = "65fa6b07dca2e367461a2925-1080-0123456789abcdefghij"
TABLE = "render-slots"


def records(out: str) -> list[dict[str, Any]]:
    """The JSON objects of the captured stdout, one a line (anything else is skipped)."""
    found = []
    for line in out.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def metrics_of(out: str) -> list[dict[str, Any]]:
    """Each EMF record's metrics as ``{"namespace", "dimensions", "values"}``."""
    found = []
    for record in records(out):
        if "_aws" not in record:
            continue
        [directive] = record["_aws"]["CloudWatchMetrics"]
        [dimension_names] = directive["Dimensions"]
        found.append(
            {
                "namespace": directive["Namespace"],
                "dimensions": {name: record[name] for name in dimension_names},
                "values": {m["Name"]: record[m["Name"]] for m in directive["Metrics"]},
            }
        )
    return found


def correlation_ids(out: str) -> set[str | None]:
    """The ``correlation_id`` of every Powertools log record of the captured stdout."""
    return {r.get("correlation_id") for r in records(out) if "level" in r and "message" in r}


@pytest.fixture
def out(
    stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> pytest.CaptureFixture[str]:
    """The handlers' stack with a metrics namespace, logs at INFO and stdout captured."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    monkeypatch.setenv("RENDER_SLOTS_TABLE", TABLE)
    create_render_slots_table(TABLE)
    capsys.readouterr()
    return capsys


@pytest.fixture(autouse=True)
def service_logs_at_info() -> Iterator[None]:
    """Log at INFO whatever an earlier local run in this process left behind.

    Powertools sets the level of the service's logger and of each child logger once per process,
    from the environment of the first ``Logger()``: a local run at WARNING keeps them there.
    """
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name == SERVICE or name.startswith(SERVICE + ".")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def run(function_dir: str, event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a handler with its logs on the captured stdout, as Lambda collects them."""
    handler = load_handler(function_dir)
    # Powertools' handler keeps the stream of the first Logger() of the service.
    for log_handler in logging.getLogger(SERVICE).handlers:
        if isinstance(log_handler, logging.StreamHandler):
            monkeypatch.setattr(log_handler, "stream", sys.stdout)
    result = handler(event, LambdaContextStub(function_name=function_dir))
    json.dumps(result)
    return result


def write_map_results(stack: handlers.Stack, event: dict[str, Any]) -> None:
    """The files a batch's Distributed Map leaves: one row it never started."""
    bucket, batch = handlers.BUCKET, event["batch"]
    rows = [{"name": f"{PROJECT_ID}-1080-{'0' * 20}", "input": {"projectId": PROJECT_ID}}]
    stack.s3.put_object(Bucket=bucket, Key=batch["itemsKey"], Body=json.dumps(rows))
    stack.s3.put_object(Bucket=bucket, Key=batch["rejectedKey"], Body=b"[]")
    manifest_key = event["mapRun"]["ResultWriterDetails"]["Key"]
    pending_key = manifest_key.replace("manifest.json", "PENDING_0.json")
    pending = [{"Input": json.dumps(rows[0]), "Status": "PENDING"}]
    stack.s3.put_object(Bucket=bucket, Key=pending_key, Body=json.dumps(pending))
    files = {"FAILED": [], "SUCCEEDED": [], "PENDING": [{"Key": pending_key, "Size": 1}]}
    manifest = {"DestinationBucket": bucket, "ResultFiles": files}
    stack.s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest))


# --- metrics ---------------------------------------------------------------------------------


def test_submit_emits_exports_started_in_the_namespace_with_the_service(
    out: pytest.CaptureFixture[str], stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("submit_export", load_event("submit_export"), monkeypatch)
    assert metrics_of(out.readouterr().out) == [
        {
            "namespace": NAMESPACE,
            "dimensions": {"service": SERVICE},
            "values": {"ExportsStarted": [1.0]},
        }
    ]


def test_finalize_emits_success_duration_and_the_bytes_it_copied(
    out: pytest.CaptureFixture[str], stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers.serve_finished_video(stack)
    video = run("finalize_export", load_event("finalize_export"), monkeypatch)["video"]
    [emf] = metrics_of(out.readouterr().out)
    assert (emf["namespace"], emf["dimensions"]) == (NAMESPACE, {"service": SERVICE})
    values = emf["values"]
    assert set(values) == {"ExportsSucceeded", "ExportDuration", "BytesCopied", "CopyThroughput"}
    assert values["ExportsSucceeded"] == [1.0]
    assert values["BytesCopied"] == [float(video["size"])] == [float(len(handlers.VIDEO))]
    [throughput], [duration] = values["CopyThroughput"], values["ExportDuration"]
    assert throughput > 0
    assert duration > 0  # the sample job was submitted on 2026-01-01


def test_a_retried_finalize_reuses_the_copy_and_counts_no_bytes(
    out: pytest.CaptureFixture[str], stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers.serve_finished_video(stack)
    run("finalize_export", load_event("finalize_export"), monkeypatch)
    out.readouterr()
    run("finalize_export", load_event("finalize_export"), monkeypatch)
    [emf] = metrics_of(out.readouterr().out)
    assert set(emf["values"]) == {"ExportsSucceeded", "ExportDuration"}


def test_check_progress_emits_time_to_download_url_only_when_it_appears(
    out: pytest.CaptureFixture[str], stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rendering at the first poll; done, with a download URL, at the second.
    handlers.start_render(stack, Scenario(progress_steps=(40.0, 100.0)))
    run("check_progress", load_event("check_progress"), monkeypatch)
    assert metrics_of(out.readouterr().out) == []
    run("check_progress", load_event("check_progress"), monkeypatch)
    [emf] = metrics_of(out.readouterr().out)
    assert list(emf["values"]) == ["TimeToDownloadUrl"]
    assert emf["values"]["TimeToDownloadUrl"][0] > 0


def test_ai_studios_errors_are_counted_by_kind_in_a_record_of_their_own(
    out: pytest.CaptureFixture[str], stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers.start_render(stack, Scenario(progress_failures=(503,)))
    with pytest.raises(Exception) as raised:
        run("check_progress", load_event("check_progress"), monkeypatch)
    assert metrics_of(out.readouterr().out) == [
        {
            "namespace": NAMESPACE,
            "dimensions": {"Kind": type(raised.value).__name__, "service": SERVICE},
            "values": {"AiStudiosErrors": [1.0]},
        }
    ]
    assert type(raised.value).__name__ == "ServiceUnavailable"
    progress = PROGRESS_PATH.format(project_id=PROJECT_ID)
    assert handlers.seen(stack.calls()) == [("GET", progress, 503, True)]


def test_a_refresh_counts_the_token_it_minted(
    out: pytest.CaptureFixture[str], stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers.refuse_stored_token(stack)
    result = run("refresh_token", load_event("refresh_token"), monkeypatch)
    assert result["minted"] is True
    [emf] = metrics_of(out.readouterr().out)
    assert emf["values"] == {"TokenRefreshes": [1.0]}


@pytest.mark.parametrize(
    ("status", "error", "counted"),
    [
        ("FAILED", "ExportFailed", "ExportFailed"),
        ("FAILED", None, "Unknown"),
        ("TIMED_OUT", None, "States.Timeout"),
        ("ABORTED", None, None),
        ("SUCCEEDED", None, None),
    ],
)
def test_an_export_that_ended_badly_counts_once_by_its_error_name(
    out: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    status: str,
    error: str | None,
    counted: str | None,
) -> None:
    event = load_event("render_slot_status_change")
    event["detail"] |= {"status": status, "error": error}
    run("render_slot", event, monkeypatch)
    expected = [
        {
            "namespace": NAMESPACE,
            "dimensions": {"ErrorName": counted, "service": SERVICE},
            "values": {"ExportsFailed": [1.0]},
        }
    ]
    assert metrics_of(out.readouterr().out) == (expected if counted else [])


def test_every_emitted_metric_is_a_named_one(
    out: pytest.CaptureFixture[str], stack: handlers.Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers.serve_finished_video(stack)
    run("finalize_export", load_event("finalize_export"), monkeypatch)
    for emf in metrics_of(out.readouterr().out):
        assert set(emf["values"]) <= set(METRIC_NAMES)
        own = {name for metric, name in DIMENSIONS.items() if metric.value in emf["values"]}
        assert set(emf["dimensions"]) == {"service"} | own


# --- correlation ids -------------------------------------------------------------------------


def with_export_id(event: dict[str, Any]) -> dict[str, Any]:
    return event | {"job": event["job"] | {"exportId": EXPORT_ID}}


@pytest.mark.parametrize(
    ("function_dir", "event", "correlation_id"),
    [
        (
            "submit_export",
            load_event("submit_export"),
            load_event("submit_export")["executionName"],
        ),
        ("check_progress", with_export_id(load_event("check_progress")), EXPORT_ID),
        ("check_progress", load_event("check_progress") | {"holder": EXPORT_ID}, EXPORT_ID),
        ("finalize_export", with_export_id(load_event("finalize_export")), EXPORT_ID),
        ("refresh_token", load_event("refresh_token") | {"holder": EXPORT_ID}, EXPORT_ID),
        ("render_slot", load_event("render_slot_release"), EXPORT_ID),
        ("render_slot", load_event("render_slot_status_change"), EXPORT_ID),
        ("summarize_batch", load_event("summarize_batch"), None),
    ],
)
def test_every_log_line_carries_the_export_id(
    out: pytest.CaptureFixture[str],
    stack: handlers.Stack,
    monkeypatch: pytest.MonkeyPatch,
    function_dir: str,
    event: dict[str, Any],
    correlation_id: str | None,
) -> None:
    handlers.serve_finished_video(stack)
    if function_dir == "refresh_token":  # the sample's refused token, so that it mints
        handlers.refuse_stored_token(stack)
    if function_dir == "summarize_batch":
        write_map_results(stack, event)
        correlation_id = event["batch"]["batchId"]
    run(function_dir, event, monkeypatch)
    assert correlation_ids(out.readouterr().out) == {correlation_id}


def test_a_metric_with_a_dimension_needs_its_value() -> None:
    @observability.collect_metrics
    def handler(event: Any, context: Any) -> None:
        observability.record(Metric.EXPORTS_FAILED, 1)

    with pytest.raises(ValueError, match="ErrorName"):
        handler({}, None)


def test_the_api_correlates_by_the_export_id_of_the_path_else_the_request_id(
    stack: handlers.Stack,
) -> None:
    api = inspect.unwrap(load_handler("api")).__globals__
    get, post = load_event("api_get_export"), load_event("api_post_exports")
    path = api["EXPORT_ID_OR_REQUEST_ID"]
    assert query(envelope=path, data=get) == get["pathParameters"]["exportId"]
    assert query(envelope=path, data=post) == post["requestContext"]["requestId"]


def test_a_post_logs_under_the_export_id_once_it_is_known(
    out: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="exports",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", machine)
    answer = run("api", load_event("api_post_exports"), monkeypatch)
    export_id = json.loads(answer["body"])["exportId"]
    # The record, not stdout: the routes' child logger hangs under the service named when the
    # module was first imported in this process, whose handler (if any) an earlier test made.
    requested = [r for r in caplog.records if r.getMessage() == "export requested"]
    assert [getattr(r, "correlation_id", None) for r in requested] == [export_id]
