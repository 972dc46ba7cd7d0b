"""The API token in Secrets Manager: cached reads for workers, rare mints for the refresher.

The token secret holds ``{"token", "issuedAt", "expiresAt"}`` (epoch seconds). Workers read it
through a Powertools cache; only the refresh/rotation function mints a token (with the
``{"appId", "userKey"}`` of the credentials secret) and writes it. Minting may revoke the
previous token (undocumented), so it happens once per stale token, never in a loop.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.exceptions import ClientError

from aistudios_export import clients
from aistudios_export.aws_errors import error_code
from aistudios_export.client import AiStudiosClient
from aistudios_export.errors import ConfigurationError, ServiceUnavailable
from aistudios_export.settings import TOKEN_CACHE_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = Logger(service="aistudios-export", child=True)

TOKEN_LIFETIME_SECONDS = 24 * 3600
"""Documented: a token is valid for 24 hours from issuance."""
MIN_TOKEN_AGE_SECONDS = 60
"""A token younger than this was just minted by someone else: use it instead of minting."""
LEASE_STAGE = "REFRESHING"
"""The staging label of the lease version that makes one refresher mint while others wait."""
LEASE_SECONDS = 45
"""How long a lease holder may take to mint and store (a mint call times out after 15 s)."""
WAIT_SECONDS = 20
"""How long a refresher that lost the lease waits for the winner's token."""
PLACEHOLDER = "REPLACE_ME"
_VERSION_NAMESPACE = uuid.UUID("3f9d0c52-4b1e-4a53-9a8e-2f6f0f8b1d11")


class TokenStore:
    """Cached reads of the token secret.

    Parameters
    ----------
    secret_id
        Name or ARN of the token secret.
    client
        A Secrets Manager client; a default one is created on first use.
    max_age
        Seconds a cached value is trusted.
    """

    def __init__(
        self,
        secret_id: str,
        *,
        client: SecretsManagerClient | None = None,
        max_age: int = TOKEN_CACHE_SECONDS,
    ) -> None:
        self.secret_id = secret_id
        self._provider = SecretsProvider(boto3_client=clients.secretsmanager(client))
        self._max_age = max_age

    def get(self, *, fresh: bool = False) -> str:
        """Return the current token ('' when none was minted yet); ``fresh`` skips the cache."""
        try:
            value = self._provider.get(
                self.secret_id, max_age=self._max_age, transform="json", force_fetch=fresh
            )
        except Exception as e:  # Powertools wraps boto and JSON errors in its own types
            raise ConfigurationError(
                f"cannot read the token secret {self.secret_id}: {type(e).__name__}"
            ) from e
        token = value.get("token") if isinstance(value, dict) else None
        if not isinstance(token, str):
            raise ConfigurationError(f"the token secret {self.secret_id} has no 'token' string")
        return token


@dataclass(frozen=True)
class Credentials:
    """The account's appId/userKey; never logged (``repr`` hides them)."""

    app_id: str
    user_key: str

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did: ``minted`` is False when a fresh token was already in place."""

    minted: bool
    issued_at: float


def read_credentials(client: SecretsManagerClient, secret_id: str) -> Credentials:
    """Read ``{"appId", "userKey"}`` from the credentials secret.

    Raises
    ------
    ConfigurationError
        When the secret is missing, not JSON, or still holds the template's placeholder.
    """
    try:
        raw = client.get_secret_value(SecretId=secret_id)["SecretString"]
        value = json.loads(raw)
    except (ClientError, KeyError, ValueError) as e:
        raise ConfigurationError(f"cannot read the credentials secret {secret_id}") from e
    app_id = value.get("appId") if isinstance(value, dict) else None
    user_key = value.get("userKey") if isinstance(value, dict) else None
    if not isinstance(app_id, str) or not isinstance(user_key, str) or not app_id or not user_key:
        raise ConfigurationError(
            f'the credentials secret {secret_id} must hold {{"appId", "userKey"}}'
        )
    if PLACEHOLDER in (app_id, user_key):
        raise ConfigurationError(
            f"the credentials secret {secret_id} still holds the placeholder: "
            'put {"appId": ..., "userKey": ...} from your AI Studios profile into it'
        )
    return Credentials(app_id, user_key)


def token_record(token: str, issued_at: float) -> str:
    """Return the token secret's JSON for a token minted at ``issued_at``."""
    return json.dumps(
        {
            "token": token,
            "issuedAt": int(issued_at),
            "expiresAt": int(issued_at) + TOKEN_LIFETIME_SECONDS,
        }
    )


def refresh_token(
    *,
    api: AiStudiosClient,
    token_secret_id: str,
    credentials_secret_id: str,
    client: SecretsManagerClient,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    min_age: float = MIN_TOKEN_AGE_SECONDS,
    lease_seconds: float = LEASE_SECONDS,
    wait_seconds: float = WAIT_SECONDS,
) -> RefreshResult:
    """Replace the token in the token secret, unless a fresh one is already there.

    Single-flight: refreshers that saw the same stale version race to create one lease
    version (its ``ClientRequestToken`` derives from the stale version, so Secrets Manager
    lets exactly one create it). The winner mints; the others wait, bounded, for its token.
    A lease whose holder died is taken over once it has expired, again by exactly one.

    Raises
    ------
    ServiceUnavailable
        When another refresher holds the lease and its token did not appear in time
        (transient: the state machine retries, and then the token is usually there).
    """
    current = client.get_secret_value(SecretId=token_secret_id)
    stale = current["VersionId"]
    record = _record(current.get("SecretString", ""))
    issued_at = float(record.get("issuedAt") or 0)
    if record.get("token") and now() - issued_at < min_age:
        logger.info("token was refreshed moments ago; not minting another")
        return RefreshResult(minted=False, issued_at=issued_at)

    lease = _version_token(f"{stale}:lease")
    if not _claim_lease(client, token_secret_id, lease, now() + lease_seconds):
        replaced = _wait_for_replacement(client, token_secret_id, stale, sleep, wait_seconds)
        if replaced is not None:
            logger.info("another refresher stored a new token; using it")
            return RefreshResult(minted=False, issued_at=replaced)
        held_until = _lease_until(client, token_secret_id, lease)
        if now() < held_until:
            raise ServiceUnavailable("another refresher is minting a token; try again shortly")
        lease = _version_token(f"{stale}:lease:{held_until:.0f}")
        if not _claim_lease(client, token_secret_id, lease, now() + lease_seconds):
            raise ServiceUnavailable("another refresher took over an abandoned token refresh")

    credentials = read_credentials(client, credentials_secret_id)
    minted_at = now()
    token = api.mint_token(credentials.app_id, credentials.user_key)
    request_token = _version_token(stale)
    try:
        client.put_secret_value(
            SecretId=token_secret_id,
            SecretString=token_record(token, minted_at),
            ClientRequestToken=request_token,
        )
    except ClientError as e:
        if error_code(e) != "ResourceExistsException":
            raise ServiceUnavailable("cannot store the new token") from e
        logger.info("another refresher stored a token first; keeping theirs")
        return RefreshResult(minted=True, issued_at=minted_at)
    logger.info("minted and stored a new token")
    return RefreshResult(minted=True, issued_at=minted_at)


def rotate(
    step: str,
    secret_id: str,
    version: str,
    *,
    api: AiStudiosClient,
    credentials_secret_id: str,
    client: SecretsManagerClient,
    now: Callable[[], float] = time.time,
) -> None:
    """Run one step of Secrets Manager's rotation protocol on the token secret.

    Parameters
    ----------
    step
        ``createSecret``, ``setSecret``, ``testSecret`` or ``finishSecret``.
    secret_id, version
        The secret and the ``ClientRequestToken`` of the version being rotated in.
    """
    stages = client.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
    if version not in stages:
        raise ConfigurationError(f"version {version} of {secret_id} is not being rotated")
    if "AWSCURRENT" in stages[version]:
        return
    if step == "createSecret":
        try:
            client.get_secret_value(
                SecretId=secret_id, VersionId=version, VersionStage="AWSPENDING"
            )
            return
        except ClientError as e:
            if error_code(e) != "ResourceNotFoundException":
                raise
        credentials = read_credentials(client, credentials_secret_id)
        minted_at = now()
        token = api.mint_token(credentials.app_id, credentials.user_key)
        client.put_secret_value(
            SecretId=secret_id,
            ClientRequestToken=version,
            SecretString=token_record(token, minted_at),
            VersionStages=["AWSPENDING"],
        )
    elif step == "setSecret":
        return  # AI Studios keeps its own copy of the token: nothing to push.
    elif step == "testSecret":
        pending = client.get_secret_value(
            SecretId=secret_id, VersionId=version, VersionStage="AWSPENDING"
        )
        if not _record(pending.get("SecretString", "")).get("token"):
            raise ConfigurationError("the pending token version holds no token")
    elif step == "finishSecret":
        current = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
        client.update_secret_version_stage(
            SecretId=secret_id,
            VersionStage="AWSCURRENT",
            MoveToVersionId=version,
            **({"RemoveFromVersionId": current} if current else {}),
        )
    else:
        raise ConfigurationError(f"unknown rotation step {step!r}")


def _version_token(seed: str) -> str:
    """Return a ``ClientRequestToken`` that every refresher derives alike from ``seed``."""
    return str(uuid.uuid5(_VERSION_NAMESPACE, seed))


def _claim_lease(client: SecretsManagerClient, secret_id: str, lease: str, until: float) -> bool:
    """Create the lease version; False when another refresher created it first."""
    try:
        client.put_secret_value(
            SecretId=secret_id,
            ClientRequestToken=lease,
            # A value of its own (uuid4) so that a second claimant's write is refused, not merged.
            SecretString=json.dumps({"lease": str(uuid.uuid4()), "until": int(until)}),
            VersionStages=[LEASE_STAGE],
        )
    except ClientError as e:
        if error_code(e) == "ResourceExistsException":
            return False
        raise ServiceUnavailable("cannot claim the token refresh") from e
    return True


def _lease_until(client: SecretsManagerClient, secret_id: str, lease: str) -> float:
    try:
        value = client.get_secret_value(SecretId=secret_id, VersionId=lease)
    except ClientError:
        return 0.0
    return float(_record(value.get("SecretString", "")).get("until") or 0)


def _wait_for_replacement(
    client: SecretsManagerClient,
    secret_id: str,
    stale: str,
    sleep: Callable[[float], None],
    wait_seconds: float,
) -> float | None:
    """Wait until the current version is no longer ``stale``; return its issuedAt, or None."""
    for _ in range(max(1, int(wait_seconds))):
        sleep(1.0)
        current = client.get_secret_value(SecretId=secret_id)
        record = _record(current.get("SecretString", ""))
        if current["VersionId"] != stale and record.get("token"):
            return float(record.get("issuedAt") or 0)
    return None


def _record(secret_string: str) -> dict[str, Any]:
    try:
        value = json.loads(secret_string)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
