"""The secret watch of conftest.py: it sees every local stack, and a leak fails the test."""

from __future__ import annotations

import json

import boto3
import pytest

from aistudios_local.simulator import AiStudiosSimulator
from aistudios_local.stack import LocalStack

from .conftest import PROJECT, Leftovers, SecretWatch, run

pytestmark = pytest.mark.integration


def test_a_stack_the_test_builds_itself_is_watched(
    simulator: AiStudiosSimulator, secret_watch: SecretWatch
) -> None:
    with LocalStack(simulator=simulator, seed_token=False) as stack:
        assert run(stack).status == "SUCCEEDED"
        token = json.loads(
            boto3.client("secretsmanager").get_secret_value(SecretId=stack.ref("TokenSecret"))[
                "SecretString"
            ]
        )["token"]
    (seen,) = secret_watch.stacks
    assert token and token in seen.secrets, "the token the stack minted is a secret"
    assert set(simulator.credentials) <= seen.secrets
    assert any(PROJECT in text for text in seen.texts), "the execution's data is read"


@pytest.mark.parametrize(
    ("output", "text"),
    [
        ("INFO token user-key-42 refreshed", ""),
        ("", '{"input": "{\\"key\\": \\"user-key-42\\"}"}'),
        ("", "GET /downloads/a.mp4?expires=1&signature=abc"),
    ],
)
def test_a_secret_anywhere_fails_the_check(output: str, text: str) -> None:
    watch = SecretWatch(output=[output], stacks=[Leftovers(texts=[text], secrets={"user-key-42"})])
    with pytest.raises(AssertionError, match="leaked"):
        watch.assert_no_secrets()
    SecretWatch(
        output=["nothing"], stacks=[Leftovers(texts=["{}"], secrets={"user-key-42"})]
    ).assert_no_secrets()
