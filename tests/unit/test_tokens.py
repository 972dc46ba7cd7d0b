"""The token secret: cached reads, rare mints, and Secrets Manager's rotation protocol (on moto)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from aistudios_export import tokens
from aistudios_export.errors import ConfigurationError, ServiceUnavailable
from aistudios_export.tokens import (
    MIN_TOKEN_AGE_SECONDS,
    TOKEN_LIFETIME_SECONDS,
    Credentials,
    TokenStore,
    read_credentials,
    refresh_token,
    rotate,
    token_record,
)
from tests.unit._fixtures import (
    ROTATION_LAMBDA_ARN,
    T0,
    Clock,
    FakeApi,
    fake_aws,
    install_rotation_lambda,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

TOKEN_SECRET = "aistudios-export/TokenSecret"
CREDENTIALS_SECRET = "aistudios-export/CredentialsSecret"
APP_ID = "app-1d-5ecret"
USER_KEY = "user-key-5ecret"


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerClient]:
    with fake_aws(monkeypatch):
        client = boto3.client("secretsmanager")
        client.create_secret(
            Name=CREDENTIALS_SECRET, SecretString=json.dumps({"appId": APP_ID, "userKey": USER_KEY})
        )
        client.create_secret(Name=TOKEN_SECRET, SecretString=token_record("tok-0", T0 - 3600))
        yield client


def count_reads(client: SecretsManagerClient) -> list[str]:
    """Record the SecretId of every GetSecretValue call the client makes."""
    seen: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        seen.append(params["SecretId"])

    client.meta.events.register("provide-client-params.secrets-manager.GetSecretValue", hook)
    return seen


def current(client: SecretsManagerClient) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(
        client.get_secret_value(SecretId=TOKEN_SECRET)["SecretString"]
    )
    return value


def stages(client: SecretsManagerClient) -> dict[str, list[str]]:
    return client.describe_secret(SecretId=TOKEN_SECRET)["VersionIdsToStages"]


def refresh(client: SecretsManagerClient, api: FakeApi, clock: Clock) -> tokens.RefreshResult:
    return refresh_token(
        api=api,
        token_secret_id=TOKEN_SECRET,
        credentials_secret_id=CREDENTIALS_SECRET,
        client=client,
        now=clock,
        sleep=clock.advance,
    )


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


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"appId": "REPLACE_ME", "userKey": "Gen3rated5ecretKey"}, "still holds the placeholder"),
        ({"appId": "app-1d-5ecret", "userKey": "REPLACE_ME"}, "still holds the placeholder"),
        ({"appId": "app-1d-5ecret"}, 'must hold {"appId", "userKey"}'),
        ({"appId": "", "userKey": "Gen3rated5ecretKey"}, 'must hold {"appId", "userKey"}'),
        ({"appId": 5, "userKey": "Gen3rated5ecretKey"}, 'must hold {"appId", "userKey"}'),
        (["app-1d-5ecret", "Gen3rated5ecretKey"], 'must hold {"appId", "userKey"}'),
        ("app-1d-5ecret:Gen3rated5ecretKey", "cannot read the credentials secret"),
    ],
)
def test_bad_credentials_are_a_configuration_error_without_the_values(
    sm: SecretsManagerClient, value: object, words: str
) -> None:
    secret_string = value if isinstance(value, str) else json.dumps(value)
    sm.put_secret_value(SecretId=CREDENTIALS_SECRET, SecretString=secret_string)
    api = FakeApi()
    with pytest.raises(ConfigurationError) as info:
        refresh(sm, api, Clock(T0))
    assert words in str(info.value)
    assert "Gen3rated5ecretKey" not in str(info.value) and "app-1d-5ecret" not in str(info.value)
    assert api.mints == []
    assert current(sm)["token"] == "tok-0"


def test_missing_credentials_secret_is_a_configuration_error(sm: SecretsManagerClient) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the credentials secret nope"):
        read_credentials(sm, "nope")


# --- refresh_token ---------------------------------------------------------------------


def test_refresh_mints_once_and_stores_the_record(sm: SecretsManagerClient) -> None:
    api, clock = FakeApi(), Clock(T0 + 0.75)
    before = stages(sm)
    result = refresh(sm, api, clock)
    assert result == tokens.RefreshResult(minted=True, issued_at=T0 + 0.75)
    assert api.mints == [(APP_ID, USER_KEY)]
    assert current(sm) == {
        "token": "minted-1",
        "issuedAt": int(T0),
        "expiresAt": int(T0) + TOKEN_LIFETIME_SECONDS,
    }
    after = stages(sm)
    new = {v: s for v, s in after.items() if v not in before}
    assert sorted(map(tuple, new.values())) == [("AWSCURRENT",), (tokens.LEASE_STAGE,)]


def test_refresh_does_not_mint_when_the_token_is_fresh(sm: SecretsManagerClient) -> None:
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=token_record("tok-fresh", T0))
    api = FakeApi()
    result = refresh(sm, api, Clock(T0 + MIN_TOKEN_AGE_SECONDS - 1))
    assert result == tokens.RefreshResult(minted=False, issued_at=T0)
    assert api.mints == []
    assert current(sm)["token"] == "tok-fresh"


def test_refresh_mints_once_the_token_is_min_age_old(sm: SecretsManagerClient) -> None:
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=token_record("tok-fresh", T0))
    api = FakeApi()
    assert refresh(sm, api, Clock(T0 + MIN_TOKEN_AGE_SECONDS)).minted
    assert len(api.mints) == 1


@pytest.mark.parametrize(
    "secret_string", ['{"token": "", "issuedAt": 1767225600}', '{"token": ""}', "{}", "junk"]
)
def test_refresh_mints_when_there_is_no_token_yet(
    sm: SecretsManagerClient, secret_string: str
) -> None:
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=secret_string)
    api = FakeApi()
    assert refresh(sm, api, Clock(T0)).minted
    assert current(sm)["token"] == "minted-1"


def test_second_refresh_right_after_the_first_does_not_mint(sm: SecretsManagerClient) -> None:
    api, clock = FakeApi(), Clock(T0)
    assert refresh(sm, api, clock).minted
    clock.advance(5)
    assert not refresh(sm, api, clock).minted
    assert len(api.mints) == 1


def test_concurrent_refreshers_mint_once(sm: SecretsManagerClient) -> None:
    api, clock = FakeApi(), Clock(T0)
    outcomes: list[object] = []

    def other_refresher() -> None:  # runs while the first refresher is minting
        try:
            outcomes.append(refresh(sm, api, clock))
        except ServiceUnavailable as e:
            outcomes.append(e)

    api.on_mint = other_refresher
    result = refresh(sm, api, clock)
    assert result.minted is True
    assert len(api.mints) == 1
    [other] = outcomes
    assert isinstance(other, ServiceUnavailable), "the loser neither mints nor overwrites"
    assert current(sm)["token"] == "minted-1"


def claim_lease_for_current(sm: SecretsManagerClient, until: float) -> None:
    stale = sm.get_secret_value(SecretId=TOKEN_SECRET)["VersionId"]
    sm.put_secret_value(
        SecretId=TOKEN_SECRET,
        ClientRequestToken=tokens._version_token(f"{stale}:lease"),
        SecretString=json.dumps({"lease": "someone-else", "until": int(until)}),
        VersionStages=[tokens.LEASE_STAGE],
    )


def test_refresher_that_lost_the_lease_uses_the_winners_token(sm: SecretsManagerClient) -> None:
    api, clock = FakeApi(), Clock(T0)
    claim_lease_for_current(sm, until=T0 + 45)

    def winner_stores_while_we_wait(seconds: float) -> None:
        clock.advance(seconds)
        if current(sm).get("token") != "winner":
            sm.put_secret_value(
                SecretId=TOKEN_SECRET, SecretString=tokens.token_record("winner", clock())
            )

    result = refresh_token(
        api=api,
        token_secret_id=TOKEN_SECRET,
        credentials_secret_id=CREDENTIALS_SECRET,
        client=sm,
        now=clock,
        sleep=winner_stores_while_we_wait,
    )
    assert result.minted is False
    assert api.mints == []
    assert current(sm)["token"] == "winner"


def test_abandoned_lease_is_taken_over_once_it_expires(sm: SecretsManagerClient) -> None:
    api, clock = FakeApi(), Clock(T0)
    claim_lease_for_current(sm, until=T0 + 10)  # its holder died before storing a token
    result = refresh(sm, api, clock)
    assert result.minted is True
    assert len(api.mints) == 1
    assert current(sm)["token"] == "minted-1"


def test_live_lease_makes_the_loser_give_up_in_bounded_time(sm: SecretsManagerClient) -> None:
    api, clock = FakeApi(), Clock(T0)
    claim_lease_for_current(sm, until=T0 + 3600)
    with pytest.raises(ServiceUnavailable, match="another refresher is minting"):
        refresh(sm, api, clock)
    assert api.mints == []
    assert clock() - T0 <= tokens.WAIT_SECONDS


# --- rotation -------------------------------------------------------------------------


def run_rotation_step(
    sm: SecretsManagerClient, api: FakeApi, clock: Clock
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def run(event: dict[str, Any]) -> dict[str, Any]:
        rotate(
            event["Step"],
            event["SecretId"],
            event["ClientRequestToken"],
            api=api,
            credentials_secret_id=CREDENTIALS_SECRET,
            client=sm,
            now=clock,
        )
        return {}

    return run


def test_rotation_cycle_makes_the_new_token_current(
    sm: SecretsManagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, clock = FakeApi(), Clock(T0)
    (old,) = stages(sm)
    events = install_rotation_lambda(monkeypatch, run_rotation_step(sm, api, clock))
    new = sm.rotate_secret(SecretId=TOKEN_SECRET, RotationLambdaARN=ROTATION_LAMBDA_ARN)[
        "VersionId"
    ]
    assert [e["Step"] for e in events] == [
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
    ]
    assert {e["ClientRequestToken"] for e in events} == {new}
    assert len(api.mints) == 1
    assert current(sm) == {
        "token": "minted-1",
        "issuedAt": int(T0),
        "expiresAt": int(T0) + TOKEN_LIFETIME_SECONDS,
    }
    after = stages(sm)
    assert "AWSCURRENT" in after[new]
    assert after[old] == ["AWSPREVIOUS"]
    assert TokenStore(TOKEN_SECRET, client=sm).get() == "minted-1"


def test_rotation_steps_repeated_by_secrets_manager_mint_once(
    sm: SecretsManagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, clock = FakeApi(), Clock(T0)
    step = run_rotation_step(sm, api, clock)

    def twice(event: dict[str, Any]) -> dict[str, Any]:
        step(event)
        return step(event)  # Secrets Manager retries a step whose invocation it saw fail

    install_rotation_lambda(monkeypatch, twice)
    new = sm.rotate_secret(SecretId=TOKEN_SECRET, RotationLambdaARN=ROTATION_LAMBDA_ARN)[
        "VersionId"
    ]
    assert len(api.mints) == 1
    assert current(sm)["token"] == "minted-1"
    assert "AWSCURRENT" in stages(sm)[new]


def test_create_secret_keeps_an_existing_pending_value(sm: SecretsManagerClient) -> None:
    version = "11111111-2222-4333-8444-555555555555"
    sm.put_secret_value(
        SecretId=TOKEN_SECRET,
        ClientRequestToken=version,
        SecretString=token_record("tok-pending", T0),
        VersionStages=["AWSPENDING"],
    )
    api = FakeApi()
    rotate(
        "createSecret",
        TOKEN_SECRET,
        version,
        api=api,
        credentials_secret_id=CREDENTIALS_SECRET,
        client=sm,
    )
    assert api.mints == []
    pending = sm.get_secret_value(SecretId=TOKEN_SECRET, VersionStage="AWSPENDING")
    assert json.loads(pending["SecretString"])["token"] == "tok-pending"


def test_rotation_of_the_current_version_does_nothing(sm: SecretsManagerClient) -> None:
    (version,) = stages(sm)
    api = FakeApi()
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        rotate(
            step,
            TOKEN_SECRET,
            version,
            api=api,
            credentials_secret_id=CREDENTIALS_SECRET,
            client=sm,
        )
    assert api.mints == []
    assert current(sm)["token"] == "tok-0"


def test_rotation_of_an_unknown_version_is_a_configuration_error(sm: SecretsManagerClient) -> None:
    with pytest.raises(ConfigurationError, match="is not being rotated"):
        rotate(
            "createSecret",
            TOKEN_SECRET,
            "99999999-2222-4333-8444-555555555555",
            api=FakeApi(),
            credentials_secret_id=CREDENTIALS_SECRET,
            client=sm,
        )


def _pending(sm: SecretsManagerClient, secret_string: str) -> str:
    version = "11111111-2222-4333-8444-555555555555"
    sm.put_secret_value(
        SecretId=TOKEN_SECRET,
        ClientRequestToken=version,
        SecretString=secret_string,
        VersionStages=["AWSPENDING"],
    )
    return version


def test_test_secret_refuses_a_pending_version_without_token(sm: SecretsManagerClient) -> None:
    version = _pending(sm, '{"token": ""}')
    with pytest.raises(ConfigurationError, match="holds no token"):
        rotate(
            "testSecret",
            TOKEN_SECRET,
            version,
            api=FakeApi(),
            credentials_secret_id=CREDENTIALS_SECRET,
            client=sm,
        )


def test_unknown_rotation_step_is_a_configuration_error(sm: SecretsManagerClient) -> None:
    version = _pending(sm, token_record("tok-pending", T0))
    with pytest.raises(ConfigurationError, match="unknown rotation step 'resetSecret'"):
        rotate(
            "resetSecret",
            TOKEN_SECRET,
            version,
            api=FakeApi(),
            credentials_secret_id=CREDENTIALS_SECRET,
            client=sm,
        )


def test_rotation_with_placeholder_credentials_mints_nothing(
    sm: SecretsManagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm.put_secret_value(
        SecretId=CREDENTIALS_SECRET,
        SecretString=json.dumps({"appId": "REPLACE_ME", "userKey": "Gen3rated5ecretKey"}),
    )
    api = FakeApi()
    version = "11111111-2222-4333-8444-555555555555"
    errors: list[str] = []

    def run(event: dict[str, Any]) -> dict[str, Any]:
        if errors:
            return {}  # Secrets Manager stops a rotation at the first failed step
        try:
            run_rotation_step(sm, api, Clock(T0))(event)
        except ConfigurationError as e:
            errors.append(str(e))
        return {}

    install_rotation_lambda(monkeypatch, run)
    sm.rotate_secret(
        SecretId=TOKEN_SECRET, RotationLambdaARN=ROTATION_LAMBDA_ARN, ClientRequestToken=version
    )
    assert api.mints == []
    assert errors and "placeholder" in errors[0]
    assert all("Gen3rated5ecretKey" not in e for e in errors)
