"""The token and credentials secrets on moto, shared by the token tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from aistudios_export.tokens import token_record
from aistudios_local.moto_shims import atomic_requests
from tests.unit._fixtures import T0, fake_aws

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

TOKEN_SECRET = "aistudios-export/TokenSecret"
CREDENTIALS_SECRET = "aistudios-export/CredentialsSecret"
APP_ID = "app-1d-5ecret"
USER_KEY = "user-key-5ecret"


@contextmanager
def secrets_on_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerClient]:
    """Both secrets, the token minted an hour ago; moto answers each request atomically."""
    with fake_aws(monkeypatch), atomic_requests():
        client = boto3.client("secretsmanager")
        client.create_secret(
            Name=CREDENTIALS_SECRET, SecretString=json.dumps({"appId": APP_ID, "userKey": USER_KEY})
        )
        client.create_secret(Name=TOKEN_SECRET, SecretString=token_record("tok-0", T0 - 3600))
        yield client


def current(client: SecretsManagerClient) -> dict[str, Any]:
    """The token secret's current value."""
    value: dict[str, Any] = json.loads(
        client.get_secret_value(SecretId=TOKEN_SECRET)["SecretString"]
    )
    return value


def stages(client: SecretsManagerClient) -> dict[str, list[str]]:
    """The token secret's versions and their staging labels."""
    return client.describe_secret(SecretId=TOKEN_SECRET)["VersionIdsToStages"]
