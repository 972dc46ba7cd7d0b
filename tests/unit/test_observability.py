"""observability: the SDK's loggers never log bodies, whatever level the root logger is at."""

from __future__ import annotations

import json
import logging
import pathlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import urllib3

from aistudios_export import observability
from aistudios_export.observability import Metric
from tests.unit._fixtures import fake_aws

SECRET = "tok-DEBUG-5ecret"


@pytest.fixture
def quiet_loggers_restored() -> Iterator[None]:
    """Undo the hygiene after the test (loggers are process-wide)."""
    saved = {name: logging.getLogger(name).level for name in observability.QUIET_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def secrets_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_aws(monkeypatch):
        sm = boto3.client("secretsmanager")
        sm.create_secret(Name="token", SecretString=f'{{"token": "{SECRET}"}}')
        sm.get_secret_value(SecretId="token")


@pytest.mark.parametrize("hygiene", [False, True])
def test_botocore_logs_no_secret_at_debug_only_with_the_hygiene(
    hygiene: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    quiet_loggers_restored: None,
) -> None:
    for name in observability.QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    if hygiene:
        observability.install_log_hygiene()
    caplog.set_level(logging.DEBUG)  # the root logger, as AWS_LAMBDA_LOG_LEVEL=DEBUG sets it
    secrets_calls(monkeypatch)
    leaked = [r.name for r in caplog.records if SECRET in r.getMessage()]
    if hygiene:
        assert leaked == []
    else:
        assert leaked, "without the hygiene botocore logs request and answer bodies at DEBUG"


def test_a_level_set_higher_is_kept(quiet_loggers_restored: None) -> None:
    logging.getLogger("botocore").setLevel(logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.NOTSET)
    observability.install_log_hygiene()
    assert logging.getLogger("botocore").level == logging.ERROR
    assert logging.getLogger("urllib3").level == logging.INFO


# --- metrics ---------------------------------------------------------------------------------


def emf_values(out: str) -> list[dict[str, list[float]]]:
    """The metric values of each EMF record printed."""
    found = []
    for line in out.splitlines():
        record = json.loads(line)
        names = [m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        found.append({name: record[name] for name in names})
    return found


def test_outside_an_invocation_a_record_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    observability.record(Metric.EXPORTS_STARTED, 1)
    observability.record(Metric.EXPORTS_FAILED, 1, dimension="ExportFailed")
    assert capsys.readouterr().out == ""


def test_an_invocation_that_raises_still_flushes_what_it_recorded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @observability.collect_metrics
    def handler(event: Any, context: Any) -> None:
        observability.record(Metric.BYTES_COPIED, 5)
        raise RuntimeError("after the copy")

    with pytest.raises(RuntimeError):
        handler({}, None)
    assert emf_values(capsys.readouterr().out) == [{"BytesCopied": [5.0]}]


def test_an_invocation_that_records_nothing_prints_nothing(
    capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    observability.collect_metrics(lambda event, context: None)({}, None)
    assert capsys.readouterr().out == ""
    assert len(recwarn) == 0


def test_concurrent_invocations_keep_their_own_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    # The local stack runs invocations on threads of one process: none may flush another's.
    both_recorded = threading.Barrier(2, timeout=10)

    @observability.collect_metrics
    def handler(event: Any, context: Any) -> None:
        observability.record(Metric.BYTES_COPIED, event)
        both_recorded.wait()

    threads = [threading.Thread(target=handler, args=(size, None)) for size in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    printed = emf_values(capsys.readouterr().out)
    assert sorted(printed, key=str) == [{"BytesCopied": [1.0]}, {"BytesCopied": [2.0]}]


def test_a_dimension_goes_only_with_the_metrics_that_have_one() -> None:
    @observability.collect_metrics
    def handler(event: Any, context: Any) -> None:
        observability.record(Metric.EXPORTS_STARTED, 1, dimension="ExportFailed")

    with pytest.raises(ValueError, match="no dimension"):
        handler({}, None)
    # Outside an invocation too: a library test finds the mistake.
    with pytest.raises(ValueError, match="the dimension Kind"):
        observability.record(Metric.AI_STUDIOS_ERRORS, 1)


def test_every_metric_has_a_unit_and_the_names_are_the_enum() -> None:
    assert set(observability.UNITS) == set(Metric)
    assert tuple(m.value for m in Metric) == observability.METRIC_NAMES
    assert set(observability.DIMENSIONS) <= set(Metric)


def test_every_urllib3_module_logger_has_its_urls_redacted() -> None:
    # A filter on "urllib3" would not see its children's records: each module logger is named.
    package = pathlib.Path(urllib3.__file__).parent
    logging_modules = {
        "urllib3." + ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.rglob("*.py")
        if path.name != "__init__.py"
        and re.search(r"getLogger\(__name__\)", path.read_text(encoding="utf-8"))
    }
    browser_only = {name for name in logging_modules if ".emscripten." in name}
    assert "urllib3.connection" in logging_modules
    assert logging_modules - browser_only <= set(observability.URLLIB3_LOGGERS)
