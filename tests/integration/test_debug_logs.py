"""At DEBUG, as ``AWS_LAMBDA_LOG_LEVEL=DEBUG`` sets the root logger, no secret is logged.

The export mints two tokens (none is stored at first, and the first is revoked mid-export) and
refreshes an expired download URL: every credential, token and URL signature the simulator
issued passes through the functions, Secrets Manager and the HTTP clients, with every logger
at DEBUG. The secret watch (conftest) then greps every log line, the printed output, the
executions' history and the events.
"""

from __future__ import annotations

import logging

import pytest

from aistudios_local.simulator import AiStudiosSimulator, Scenario
from aistudios_local.stack import LocalStack

from .conftest import PROJECT, MakeStack, SecretWatch, run

pytestmark = pytest.mark.integration


def test_an_export_at_debug_logs_no_secret(
    make_stack: MakeStack,
    simulator: AiStudiosSimulator,
    secret_watch: SecretWatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    simulator.set_scenario(PROJECT, Scenario(revoke_token_after=2, expired_urls=1))
    stack = make_stack(seed_token=False, parameters={"LogLevel": "DEBUG"})
    result = run(stack)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert simulator.tokens_minted == 2
    # The root logger really was at DEBUG throughout; what the SDK may log there is held back
    # by the functions' log hygiene, and everything that was logged is searched.
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("botocore.endpoint").isEnabledFor(logging.DEBUG)
    assert caplog.records, "the captured log is not empty"
    secret_watch.output.append(caplog.text)


def test_a_stopped_stack_gives_moto_its_log_level_back() -> None:
    # The stack quiets moto while it runs; a process that goes on (a test run, a notebook)
    # gets its own level back.
    moto = logging.getLogger("moto")
    before = moto.level
    moto.setLevel(logging.INFO)
    try:
        with LocalStack(api_url="http://127.0.0.1:9"):
            assert moto.level == logging.CRITICAL
        assert moto.level == logging.INFO
    finally:
        moto.setLevel(before)
