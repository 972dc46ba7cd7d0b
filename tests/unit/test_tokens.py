"""The token secret: its record, cached reads and the credentials (on moto)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from aistudios_export.errors import ConfigurationError
from aistudios_export.tokens import (
    Credentials,
    TokenStore,
    read_credentials,
    token_record,
)
from tests.unit._fixtures import T0
from tests.unit._secrets import (
    APP_ID,
    CREDENTIALS_SECRET,
    TOKEN_SECRET,
    USER_KEY,
    secrets_on_moto,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerClient]:
    with secrets_on_moto(monkeypatch) as client:
        yield client


def count_reads(client: SecretsManagerClient) -> list[str]:
    """Record the SecretId of every GetSecretValue call the client makes."""
    seen: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        seen.append(params["SecretId"])

    client.meta.events.register("provide-client-params.secrets-manager.GetSecretValue", hook)
    return seen


# --- TokenStore ----------------------------------------------------------------------------


def test_token_store_caches_and_force_re_reads(sm: SecretsManagerClient) -> None:
    reads = count_reads(sm)
    store = TokenStore(TOKEN_SECRET, client=sm)
    assert store.get() == "tok-0"
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=token_record("tok-1", T0))
    assert store.get() == "tok-0"  # cached: AWS not asked again
    assert reads == [TOKEN_SECRET]
    assert store.get(fresh=True) == "tok-1"
    assert reads == [TOKEN_SECRET, TOKEN_SECRET]
    assert store.get() == "tok-1"  # the forced read refreshed the cache
    assert len(reads) == 2


def test_token_store_max_age_zero_always_reads(sm: SecretsManagerClient) -> None:
    reads = count_reads(sm)
    store = TokenStore(TOKEN_SECRET, client=sm, max_age=0)
    store.get()
    store.get()
    assert len(reads) == 2


def test_token_store_returns_empty_before_the_first_mint(sm: SecretsManagerClient) -> None:
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString='{"token": "", "placeholder": "x"}')
    assert TokenStore(TOKEN_SECRET, client=sm).get() == ""


@pytest.mark.parametrize(
    "secret_string", ['{"issuedAt": 1}', '{"token": 5}', '["tok"]', "not json"]
)
def test_token_store_rejects_a_malformed_secret(
    sm: SecretsManagerClient, secret_string: str
) -> None:
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=secret_string)
    with pytest.raises(ConfigurationError, match=TOKEN_SECRET):
        TokenStore(TOKEN_SECRET, client=sm).get()


def test_token_store_missing_secret_is_a_configuration_error(sm: SecretsManagerClient) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the token secret nope: "):
        TokenStore("nope", client=sm).get()


# --- credentials -------------------------------------------------------------------------


def test_read_credentials(sm: SecretsManagerClient) -> None:
    credentials = read_credentials(sm, CREDENTIALS_SECRET)
    assert credentials == Credentials(APP_ID, USER_KEY)
    assert APP_ID not in repr(credentials) and USER_KEY not in repr(credentials)


def test_missing_credentials_secret_is_a_configuration_error(sm: SecretsManagerClient) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the credentials secret nope"):
        read_credentials(sm, "nope")
