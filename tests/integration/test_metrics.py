"""The metrics of whole exports on the local stack: what CloudWatch would read from the logs.

The handlers print their EMF records to stdout, as in Lambda; the test reads them back from
the captured output of a real export through the state machine, handlers and simulator.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_bytes
from aistudios_local.stack import LocalStack

from .conftest import PROJECT, assert_stored, run

pytestmark = pytest.mark.integration

NAMESPACE = "AiStudiosExport"
SERVICE = "aistudios-export"


def emitted(out: str) -> list[dict[str, Any]]:
    """Every EMF record printed, as ``{"namespace", "dimensions", "values"}``."""
    found = []
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        [directive] = record["_aws"]["CloudWatchMetrics"]
        [names] = directive["Dimensions"]
        found.append(
            {
                "namespace": directive["Namespace"],
                "dimensions": {name: record[name] for name in names},
                "values": {m["Name"]: record[m["Name"]] for m in directive["Metrics"]},
            }
        )
    return found


def values(records: list[dict[str, Any]], metric: str) -> list[float]:
    return [v for r in records for v in r["values"].get(metric, [])]


def test_a_successful_export_counts_once_with_the_bytes_it_stored(
    stack: LocalStack, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run(stack)
    head = assert_stored(stack, result, video_bytes(PROJECT, "1080"))
    records = emitted(capfd.readouterr().out)
    assert {r["namespace"] for r in records} == {NAMESPACE}
    assert all(r["dimensions"] == {"service": SERVICE} for r in records)
    assert values(records, "ExportsStarted") == [1.0]
    assert values(records, "ExportsSucceeded") == [1.0]
    assert values(records, "BytesCopied") == [float(head["ContentLength"])]
    assert head["ContentLength"] == len(video_bytes(PROJECT, "1080"))
    [to_url] = values(records, "TimeToDownloadUrl")
    [duration] = values(records, "ExportDuration")
    assert 0 < to_url <= duration
    assert values(records, "ExportsFailed") == []


def test_a_failed_export_counts_once_by_its_error_name(
    stack: LocalStack, simulator: AiStudiosSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    simulator.set_scenario(PROJECT, Scenario(fail_at_poll=2, failure_state="failed"))
    result = run(stack)
    assert (result.status, result.error) == ("FAILED", "ExportFailed")
    stack.settle(timeout=30)  # the status-change event's delivery to RenderSlot
    records = emitted(capfd.readouterr().out)
    failures = Counter(
        r["dimensions"]["ErrorName"] for r in records for _ in r["values"].get("ExportsFailed", [])
    )
    assert failures == {"ExportFailed": 1}
    assert values(records, "ExportsStarted") == [1.0]
    assert values(records, "ExportsSucceeded") == []
