"""A cached secret is read once, then again when it is older than its max age or asked fresh."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from aistudios_export.secret_cache import CachedSecret


def _client_answering(*values: object) -> tuple[object, Stubber]:
    client = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    for value in values:
        stubber.add_response(
            "get_secret_value",
            {"Name": "s", "SecretString": json.dumps(value)},
            {"SecretId": "s"},
        )
    return client, stubber


def test_a_value_is_read_once_within_its_max_age_then_again() -> None:
    now = [100.0]
    client, stubber = _client_answering({"v": 1}, {"v": 2}, {"v": 3})
    secret = CachedSecret(client, "s", max_age=60, clock=lambda: now[0])  # type: ignore[arg-type]
    with stubber:
        assert secret.get() == {"v": 1}
        now[0] += 59.9
        assert secret.get() == {"v": 1}
        now[0] += 0.1
        assert secret.get() == {"v": 2}
        assert secret.get(fresh=True) == {"v": 3}
        stubber.assert_no_pending_responses()


def test_a_secret_that_is_no_json_raises_and_is_not_kept() -> None:
    client, stubber = _client_answering()
    stubber.add_response("get_secret_value", {"Name": "s", "SecretString": "{"}, {"SecretId": "s"})
    stubber.add_response(
        "get_secret_value", {"Name": "s", "SecretString": '{"v": 1}'}, {"SecretId": "s"}
    )
    secret = CachedSecret(client, "s", max_age=60)  # type: ignore[arg-type]
    with stubber:
        with pytest.raises(ValueError):
            secret.get()
        assert secret.get() == {"v": 1}
