"""Replacing a refused token: one mint per refused token, whoever asks, rotation in step (moto)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from aistudios_export import token_refresh
from aistudios_export.client import token_fingerprint
from aistudios_export.errors import (
    ConfigurationError,
    NetworkError,
    ServiceUnavailable,
    Unauthorized,
)
from aistudios_export.token_refresh import RefreshResult, TokenRefresher
from aistudios_export.tokens import TOKEN_LIFETIME_SECONDS, TokenStore, token_record
from tests.unit._fixtures import (
    ROTATION_LAMBDA_ARN,
    T0,
    Clock,
    FakeApi,
    install_rotation_lambda,
)
from tests.unit._secrets import (
    APP_ID,
    CREDENTIALS_SECRET,
    TOKEN_SECRET,
    USER_KEY,
    current,
    secrets_on_moto,
    stages,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

HOLDER = "execution-1"


class Api(FakeApi):
    """The fake API, which also answers whether it accepts a token (all but ``refused``)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()
        self.tested: list[str] = []
        self.mint_error: Exception | None = None

    def accepts_token(self, token: str) -> bool:
        self.tested.append(token)
        return token not in self.refused

    def mint_token(self, app_id: str, user_key: str) -> str:
        if self.mint_error is not None:
            self.mints.append((app_id, user_key))
            raise self.mint_error
        return super().mint_token(app_id, user_key)


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerClient]:
    with secrets_on_moto(monkeypatch) as client:
        yield client


def refresher(
    client: SecretsManagerClient,
    api: FakeApi,
    clock: Clock,
    sleep: Callable[[float], None] | None = None,
) -> TokenRefresher:
    return TokenRefresher(
        api=api,
        client=client,
        token_secret_id=TOKEN_SECRET,
        credentials_secret_id=CREDENTIALS_SECRET,
        now=clock,
        sleep=sleep or clock.advance,
    )


def refresh(
    client: SecretsManagerClient,
    api: FakeApi,
    clock: Clock,
    refused: str | None = token_fingerprint("tok-0"),
    holder: str = HOLDER,
) -> RefreshResult:
    return refresher(client, api, clock).refresh(refused, holder=holder)


# --- a refused token is replaced once --------------------------------------------------------


def test_refresh_mints_once_and_stores_the_record(sm: SecretsManagerClient) -> None:
    api, clock = Api(), Clock(T0 + 0.75)
    before = stages(sm)
    result = refresh(sm, api, clock)
    assert result == RefreshResult(minted=True, issued_at=T0 + 0.75)
    assert api.mints == [(APP_ID, USER_KEY)]
    assert current(sm) == {
        "token": "minted-1",
        "issuedAt": int(T0),
        "expiresAt": int(T0) + TOKEN_LIFETIME_SECONDS,
    }
    after = stages(sm)
    new = {v: s for v, s in after.items() if v not in before}
    assert sorted(map(tuple, new.values())) == [("AWSCURRENT",), (token_refresh.LEASE_STAGE,)]


def test_a_token_refused_a_second_after_it_was_minted_is_replaced(
    sm: SecretsManagerClient,
) -> None:
    # AI Studios may revoke a token at any age: its age is no reason to keep it.
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=token_record("tok-fresh", T0))
    api = Api()
    result = refresh(sm, api, Clock(T0 + 1), refused=token_fingerprint("tok-fresh"))
    assert result.minted is True
    assert len(api.mints) == 1
    assert current(sm)["token"] == "minted-1"


def test_a_refused_token_that_was_replaced_already_is_not_replaced_again(
    sm: SecretsManagerClient,
) -> None:
    api = Api()
    result = refresh(sm, api, Clock(T0), refused=token_fingerprint("tok-older"))
    assert result == RefreshResult(minted=False, issued_at=T0 - 3600)
    assert api.mints == []
    assert current(sm)["token"] == "tok-0"


def test_second_refresh_for_the_same_refused_token_does_not_mint(
    sm: SecretsManagerClient,
) -> None:
    api, clock = Api(), Clock(T0)
    assert refresh(sm, api, clock).minted
    clock.advance(5)
    assert not refresh(sm, api, clock, holder="execution-2").minted
    assert len(api.mints) == 1


@pytest.mark.parametrize(
    "secret_string", ['{"token": "", "issuedAt": 1767225600}', '{"token": ""}', "{}", "junk"]
)
@pytest.mark.parametrize("refused", ["none", None])
def test_refresh_mints_when_there_is_no_token_yet(
    sm: SecretsManagerClient, secret_string: str, refused: str | None
) -> None:
    sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=secret_string)
    api = Api()
    assert refresh(sm, api, Clock(T0), refused=refused).minted
    assert current(sm)["token"] == "minted-1"


def test_twenty_concurrent_refreshes_of_one_refused_token_mint_once(
    sm: SecretsManagerClient,
) -> None:
    api = Api()
    start = threading.Barrier(20)
    outcomes: list[object] = []
    lock = threading.Lock()

    def one(number: int) -> None:
        worker = refresher(sm, api, Clock(T0), sleep=lambda _: None)
        start.wait()
        try:
            outcome: object = worker.refresh(token_fingerprint("tok-0"), holder=f"exec-{number}")
        except ServiceUnavailable as e:
            outcome = e
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 20
    assert len(api.mints) == 1
    minted = [o for o in outcomes if isinstance(o, RefreshResult) and o.minted]
    assert len(minted) == 1
    # Everyone else found the new token in time, or was told to try again shortly.
    assert all(isinstance(o, RefreshResult | ServiceUnavailable) for o in outcomes)
    assert current(sm)["token"] == "minted-1"


# --- the lease -------------------------------------------------------------------------------


def claim_lease_for_current(sm: SecretsManagerClient, until: float, holder: str) -> None:
    stale = sm.get_secret_value(SecretId=TOKEN_SECRET)["VersionId"]
    sm.put_secret_value(
        SecretId=TOKEN_SECRET,
        ClientRequestToken=token_refresh._version_token(f"{stale}:lease"),
        SecretString=json.dumps({"lease": "someone-else", "holder": holder, "until": int(until)}),
        VersionStages=[token_refresh.LEASE_STAGE],
    )


def test_refresher_that_lost_the_lease_uses_the_winners_token(sm: SecretsManagerClient) -> None:
    api, clock = Api(), Clock(T0)
    claim_lease_for_current(sm, until=T0 + 45, holder="execution-9")

    def winner_stores_while_we_wait(seconds: float) -> None:
        clock.advance(seconds)
        if current(sm).get("token") != "winner":
            sm.put_secret_value(SecretId=TOKEN_SECRET, SecretString=token_record("winner", clock()))

    result = refresher(sm, api, clock, sleep=winner_stores_while_we_wait).refresh(
        token_fingerprint("tok-0"), holder=HOLDER
    )
    assert result.minted is False
    assert api.mints == []
    assert current(sm)["token"] == "winner"


def test_abandoned_lease_is_taken_over_once_it_expires(sm: SecretsManagerClient) -> None:
    api, clock = Api(), Clock(T0)
    claim_lease_for_current(sm, until=T0 + 10, holder="execution-9")  # its holder died
    result = refresh(sm, api, clock)
    assert result.minted is True
    assert len(api.mints) == 1
    assert current(sm)["token"] == "minted-1"


def test_live_lease_makes_the_loser_give_up_in_bounded_time(sm: SecretsManagerClient) -> None:
    api, clock = Api(), Clock(T0)
    claim_lease_for_current(sm, until=T0 + 3600, holder="execution-9")
    with pytest.raises(ServiceUnavailable, match="another refresher is minting"):
        refresh(sm, api, clock)
    assert api.mints == []
    assert clock() - T0 <= token_refresh.WAIT_SECONDS


def test_a_holder_whose_mint_failed_takes_its_own_lease_back_when_retried(
    sm: SecretsManagerClient,
) -> None:
    # AI Studios was unreachable: the retry must try again at once, not wait out its own lease.
    api, clock = Api(), Clock(T0)
    api.mint_error = NetworkError("POST https://api.test/api/odin/v3/auth/token failed")
    with pytest.raises(NetworkError):
        refresh(sm, api, clock)
    api.mint_error = None
    result = refresh(sm, api, clock)
    assert result.minted is True
    assert clock() == T0, "the retry neither waited nor slept"
    assert current(sm)["token"] == "minted-2"


def test_another_holder_still_waits_for_a_failed_holders_live_lease(
    sm: SecretsManagerClient,
) -> None:
    api, clock = Api(), Clock(T0)
    api.mint_error = NetworkError("unreachable")
    with pytest.raises(NetworkError):
        refresh(sm, api, clock)
    with pytest.raises(ServiceUnavailable, match="another refresher is minting"):
        refresh(sm, api, clock, holder="execution-2")
    assert len(api.mints) == 1


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
    api = Api()
    with pytest.raises(ConfigurationError) as info:
        refresh(sm, api, Clock(T0))
    assert words in str(info.value)
    assert "Gen3rated5ecretKey" not in str(info.value) and "app-1d-5ecret" not in str(info.value)
    assert api.mints == []
    assert current(sm)["token"] == "tok-0"


# --- rotation ----------------------------------------------------------------------------------


def run_rotation_step(
    sm: SecretsManagerClient, api: FakeApi, clock: Clock
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    rotation = refresher(sm, api, clock)

    def run(event: dict[str, Any]) -> dict[str, Any]:
        rotation.rotate(event["Step"], event["SecretId"], event["ClientRequestToken"])
        return {}

    return run


def rotate(sm: SecretsManagerClient, api: FakeApi, step: str, version: str) -> None:
    refresher(sm, api, Clock(T0)).rotate(step, TOKEN_SECRET, version)


def test_rotation_cycle_makes_the_new_token_current(
    sm: SecretsManagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, clock = Api(), Clock(T0)
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
    assert api.tested == ["minted-1"], "testSecret asked the API about the pending token"
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
    api, clock = Api(), Clock(T0)
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


def test_test_secret_fails_the_rotation_when_the_api_refuses_the_pending_token(
    sm: SecretsManagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, clock = Api(), Clock(T0)
    api.refused.add("minted-1")
    steps: list[str] = []
    step = run_rotation_step(sm, api, clock)

    def run(event: dict[str, Any]) -> dict[str, Any]:
        steps.append(event["Step"])
        return step(event)  # an error stops the rotation, as Secrets Manager does

    install_rotation_lambda(monkeypatch, run)
    with pytest.raises(Exception) as info:
        sm.rotate_secret(SecretId=TOKEN_SECRET, RotationLambdaARN=ROTATION_LAMBDA_ARN)
    refused = info.value if isinstance(info.value, Unauthorized) else info.value.__context__
    assert isinstance(refused, Unauthorized), repr(info.value)
    assert str(refused) == (
        "AI Studios refused the pending token; the current token stays current "
        f"(refused token {token_fingerprint('minted-1')})"
    )
    assert steps == ["createSecret", "setSecret", "testSecret"]
    assert current(sm)["token"] == "tok-0", "AWSCURRENT never moved to the refused token"


def test_rotation_racing_a_refresh_adopts_its_token_instead_of_minting_another(
    sm: SecretsManagerClient,
) -> None:
    # A refresher holds the lease on the current version and stores its token while the
    # rotation's createSecret waits: the rotation must not mint again (that could revoke it).
    api, clock = Api(), Clock(T0)
    claim_lease_for_current(sm, until=T0 + 45, holder="execution-9")
    version = "11111111-2222-4333-8444-555555555555"

    def refresher_stores_while_rotation_waits(seconds: float) -> None:
        clock.advance(seconds)
        if current(sm).get("token") != "from-refresh":
            sm.put_secret_value(
                SecretId=TOKEN_SECRET, SecretString=token_record("from-refresh", clock())
            )

    rotation = refresher(sm, api, clock, sleep=refresher_stores_while_rotation_waits)
    rotation._create_pending(TOKEN_SECRET, version)
    assert api.mints == []
    pending = sm.get_secret_value(SecretId=TOKEN_SECRET, VersionStage="AWSPENDING")
    assert json.loads(pending["SecretString"])["token"] == "from-refresh"


def test_create_secret_keeps_an_existing_pending_value(sm: SecretsManagerClient) -> None:
    version = "11111111-2222-4333-8444-555555555555"
    sm.put_secret_value(
        SecretId=TOKEN_SECRET,
        ClientRequestToken=version,
        SecretString=token_record("tok-pending", T0),
        VersionStages=["AWSPENDING"],
    )
    api = Api()
    rotate(sm, api, "createSecret", version)
    assert api.mints == []
    pending = sm.get_secret_value(SecretId=TOKEN_SECRET, VersionStage="AWSPENDING")
    assert json.loads(pending["SecretString"])["token"] == "tok-pending"


def test_rotation_of_the_current_version_does_nothing(sm: SecretsManagerClient) -> None:
    (version,) = stages(sm)
    api = Api()
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        rotate(sm, api, step, version)
    assert api.mints == []
    assert current(sm)["token"] == "tok-0"


def test_rotation_of_an_unknown_version_is_a_configuration_error(sm: SecretsManagerClient) -> None:
    with pytest.raises(ConfigurationError, match="is not being rotated"):
        rotate(sm, Api(), "createSecret", "99999999-2222-4333-8444-555555555555")


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
        rotate(sm, Api(), "testSecret", version)


def test_unknown_rotation_step_is_a_configuration_error(sm: SecretsManagerClient) -> None:
    version = _pending(sm, token_record("tok-pending", T0))
    with pytest.raises(ConfigurationError, match="unknown rotation step 'resetSecret'"):
        rotate(sm, Api(), "resetSecret", version)


def test_rotation_with_placeholder_credentials_mints_nothing(
    sm: SecretsManagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm.put_secret_value(
        SecretId=CREDENTIALS_SECRET,
        SecretString=json.dumps({"appId": "REPLACE_ME", "userKey": "Gen3rated5ecretKey"}),
    )
    api = Api()
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
