"""The API token's life on the local stack: a refused token is always replaced, once.

AI Studios may refuse a token long before its documented 24 hours (another mint for the same
account may revoke it). Whatever its age, a token that was refused is replaced by exactly one
mint, and an export with good credentials never fails ``Unauthorized``.
"""

from __future__ import annotations

import socket

import pytest

from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_bytes
from aistudios_local.stack import LocalStack

from .conftest import PROJECT, assert_stored, run

pytestmark = pytest.mark.integration


def test_a_token_refused_seconds_after_it_was_minted_is_replaced(
    simulator: AiStudiosSimulator,
) -> None:
    # The first mint happens in this export (no token yet); two calls later AI Studios revokes
    # that token, seconds after it was minted: the export must mint again and succeed.
    simulator.set_scenario(PROJECT, Scenario(revoke_token_after=2))
    with LocalStack(simulator=simulator, seed_token=False) as stack:
        result = run(stack)
        assert_stored(stack, result, video_bytes(PROJECT, "1080"))
        refreshes = [i for i in stack.invocations if i.function == "RefreshTokenFunction"]
    assert simulator.tokens_minted == 2
    assert [r.result["minted"] for r in refreshes] == [True, True]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_api_fails_the_export_with_a_network_error_naming_the_host() -> None:
    # Nothing listens there: the first call (the token mint, as no token exists yet) is refused.
    url = f"http://127.0.0.1:{_closed_port()}"
    with LocalStack(api_url=url) as stack:
        result = run(stack)
        refreshes = [i for i in stack.invocations if i.function == "RefreshTokenFunction"]
    assert result.status == "FAILED"
    assert result.error == "NetworkError"
    assert result.cause is not None
    assert f"POST {url}/api/odin/v3/auth/token failed" in result.cause
    assert "connection was refused" in result.cause
    # One refresh, retried by the state machine; never blocked by its own lease.
    assert {r.error_type for r in refreshes} == {"NetworkError"}
    assert all("another refresher" not in str(r.result) for r in refreshes)
