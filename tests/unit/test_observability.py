"""observability: the SDK's loggers never log bodies, whatever level the root logger is at."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import boto3
import pytest

from aistudios_export import observability
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
