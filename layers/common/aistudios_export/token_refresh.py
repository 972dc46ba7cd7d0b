"""Replace a refused API token exactly once, whoever asks: executions that saw a 401, or rotation.

Minting may revoke the previous token (undocumented), so a mint must never race another one.
Every replacement is keyed on the secret version that holds the token being replaced:

- A worker that saw its token refused names it by fingerprint
  (:func:`~aistudios_export.client.token_fingerprint`). If the stored token is another one
  already, someone replaced it: the caller just reads it again. Otherwise the stored token is the
  refused one, whatever its age, and it must be replaced.
- Replacing version ``V`` takes a lease first: a version of the token secret whose
  ``ClientRequestToken`` derives from ``V``, which Secrets Manager lets exactly one caller create.
  The lease holder mints and stores; everyone else waits, bounded, for ``V`` to be replaced. A
  holder that failed (the API was unreachable) may take its own lease again when retried; a lease
  whose holder died is taken over, once, after it expires.
- The scheduled rotation takes part in the same single-flight: its ``createSecret`` either mints
  under the lease or adopts the token a concurrent refresher just stored, and its ``testSecret``
  asks the API whether it accepts the pending token before ``finishSecret`` makes it current.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from aistudios_export.aws_errors import error_code, translate
from aistudios_export.client import AiStudiosClient, token_fingerprint
from aistudios_export.errors import ConfigurationError, ServiceUnavailable, Unauthorized
from aistudios_export.observability import Metric, record
from aistudios_export.tokens import parse_record, read_credentials, token_record

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = Logger(service="aistudios-export", child=True)

LEASE_STAGE = "REFRESHING"
"""The staging label of the lease version that makes one refresher mint while others wait."""
LEASE_SECONDS = 45
"""How long a lease holder may take to mint and store (a mint call times out after 15 s)."""
WAIT_SECONDS = 20
"""How long a refresher that lost the lease waits for the winner's token."""
_VERSION_NAMESPACE = uuid.UUID("3f9d0c52-4b1e-4a53-9a8e-2f6f0f8b1d11")


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did: ``minted`` is False when another caller's token was already in place."""

    minted: bool
    issued_at: float


@dataclass(frozen=True)
class _Stored:
    """The token secret's current version."""

    version: str
    token: str
    issued_at: float


class TokenRefresher:
    """The one writer of the token secret, built once per container.

    Parameters
    ----------
    api
        Mints tokens and tests them.
    client
        The Secrets Manager client.
    token_secret_id, credentials_secret_id
        The token secret (written here) and the ``{"appId", "userKey"}`` secret (read here).
    now, sleep
        The clock and the pause between two looks at the secret (tests pass fakes).
    lease_seconds, wait_seconds
        How long a lease lives; how long a caller that lost the lease waits for the winner.
    """

    def __init__(
        self,
        *,
        api: AiStudiosClient,
        client: SecretsManagerClient,
        token_secret_id: str,
        credentials_secret_id: str,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lease_seconds: float = LEASE_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._api = api
        self._client = client
        self.token_secret_id = token_secret_id
        self.credentials_secret_id = credentials_secret_id
        self._now = now
        self._sleep = sleep
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds

    # --- after a 401 ----------------------------------------------------------------------

    def refresh(self, refused: str | None, *, holder: str) -> RefreshResult:
        """Replace the token that was refused, unless someone already did.

        Parameters
        ----------
        refused
            The refused token's fingerprint; ``None`` when unknown (the stored token is assumed
            refused).
        holder
            Who asks (the execution's name): a retried call by the same holder may take back a
            lease it claimed before failing.

        Raises
        ------
        ServiceUnavailable
            When another refresher holds the lease and its token did not appear in time
            (transient: the state machine retries, and then the token is usually there).
        NetworkError, RateLimited, ServiceUnavailable, RequestRejected
            From the mint call.
        """
        stored = self._stored()
        if refused is not None and stored.token and token_fingerprint(stored.token) != refused:
            logger.info("the refused token was replaced already; using the new one")
            return RefreshResult(minted=False, issued_at=stored.issued_at)
        replaced = self._take_lease_or_wait(stored.version, holder)
        if replaced is not None:
            logger.info("another refresher stored a new token; using it")
            return RefreshResult(minted=False, issued_at=replaced.issued_at)
        token, minted_at = self._mint()
        try:
            self._client.put_secret_value(
                SecretId=self.token_secret_id,
                SecretString=token_record(token, minted_at),
                ClientRequestToken=_version_token(stored.version),
            )
        except ClientError as e:
            if error_code(e) != "ResourceExistsException":
                raise ServiceUnavailable("cannot store the new token") from e
            logger.info("another refresher stored a token first; keeping theirs")
            return RefreshResult(minted=True, issued_at=minted_at)
        logger.info("minted and stored a new token")
        return RefreshResult(minted=True, issued_at=minted_at)

    # --- Secrets Manager rotation -----------------------------------------------------------

    def rotate(self, step: str, secret_id: str, version: str) -> None:
        """Run one step of Secrets Manager's rotation protocol on the token secret.

        Parameters
        ----------
        step
            ``createSecret``, ``setSecret``, ``testSecret`` or ``finishSecret``.
        secret_id, version
            The secret and the ``ClientRequestToken`` of the version being rotated in.

        Raises
        ------
        Unauthorized
            In ``testSecret``, when the API refuses the pending token (the rotation stops and
            the current token stays current).
        ConfigurationError
            For an unknown step or version, or a pending version without a token.
        """
        stages = self._client.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
        if version not in stages:
            raise ConfigurationError(f"version {version} of {secret_id} is not being rotated")
        if "AWSCURRENT" in stages[version]:
            return
        if step == "createSecret":
            self._create_pending(secret_id, version)
        elif step == "setSecret":
            return  # AI Studios keeps its own copy of the token: nothing to push.
        elif step == "testSecret":
            self._test_pending(secret_id, version)
        elif step == "finishSecret":
            current = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
            self._client.update_secret_version_stage(
                SecretId=secret_id,
                VersionStage="AWSCURRENT",
                MoveToVersionId=version,
                **({"RemoveFromVersionId": current} if current else {}),
            )
        else:
            raise ConfigurationError(f"unknown rotation step {step!r}")

    def _create_pending(self, secret_id: str, version: str) -> None:
        if self._pending_token(secret_id, version):
            return  # a retried step: the pending token is there already
        stored = self._stored()
        replaced = self._take_lease_or_wait(stored.version, holder=version)
        if replaced is not None:
            # A refresher replaced the token moments ago: rotating it again could revoke it.
            token, issued_at = replaced.token, replaced.issued_at
            logger.info("rotation adopts the token a refresher just stored")
        else:
            token, issued_at = self._mint()
        self._client.put_secret_value(
            SecretId=secret_id,
            ClientRequestToken=version,
            SecretString=token_record(token, issued_at),
            VersionStages=["AWSPENDING"],
        )

    def _test_pending(self, secret_id: str, version: str) -> None:
        token = self._pending_token(secret_id, version)
        if not token:
            raise ConfigurationError("the pending token version holds no token")
        if not self._api.accepts_token(token):
            raise Unauthorized(
                "AI Studios refused the pending token; the current token stays current",
                token_fingerprint=token_fingerprint(token),
            )

    def _pending_token(self, secret_id: str, version: str) -> str | None:
        try:
            pending = self._client.get_secret_value(
                SecretId=secret_id, VersionId=version, VersionStage="AWSPENDING"
            )
        except ClientError as e:
            if error_code(e) != "ResourceNotFoundException":
                raise translate(e, "cannot read the pending token version") from e
            return None
        token = parse_record(pending.get("SecretString", "")).get("token")
        return token if isinstance(token, str) else ""

    # --- the single-flight ------------------------------------------------------------------

    def _stored(self) -> _Stored:
        try:
            answer = self._client.get_secret_value(SecretId=self.token_secret_id)
        except ClientError as e:
            raise translate(e, f"cannot read the token secret {self.token_secret_id}") from e
        record = parse_record(answer.get("SecretString", ""))
        token = record.get("token")
        return _Stored(
            version=answer["VersionId"],
            token=token if isinstance(token, str) else "",
            issued_at=float(record.get("issuedAt") or 0),
        )

    def _mint(self) -> tuple[str, float]:
        credentials = read_credentials(self._client, self.credentials_secret_id)
        minted_at = self._now()
        token = self._api.mint_token(credentials.app_id, credentials.user_key)
        record(Metric.TOKEN_REFRESHES, 1)
        return token, minted_at

    def _take_lease_or_wait(self, stale: str, holder: str) -> _Stored | None:
        """Hold the lease on replacing version ``stale`` (None), or return who replaced it.

        Raises
        ------
        ServiceUnavailable
            When the lease is someone else's, still live, and nothing replaced ``stale`` in time.
        """
        lease = _version_token(f"{stale}:lease")
        if self._claim(lease, holder):
            return None
        replaced = self._wait_for_replacement(stale)
        if replaced is not None:
            return replaced
        held_until = self._lease_until(lease)
        if self._now() < held_until:
            raise ServiceUnavailable("another refresher is minting a token; try again shortly")
        if not self._claim(_version_token(f"{stale}:lease:{held_until:.0f}"), holder):
            raise ServiceUnavailable("another refresher took over an abandoned token refresh")
        return None

    def _claim(self, lease: str, holder: str) -> bool:
        """Create the lease version; True when it is ours (now, or from an earlier try)."""
        try:
            self._client.put_secret_value(
                SecretId=self.token_secret_id,
                ClientRequestToken=lease,
                # A value of its own (uuid4), so that a second claimant's write is refused.
                SecretString=json.dumps(
                    {
                        "lease": str(uuid.uuid4()),
                        "holder": holder,
                        "until": int(self._now() + self._lease_seconds),
                    }
                ),
                VersionStages=[LEASE_STAGE],
            )
        except ClientError as e:
            if error_code(e) != "ResourceExistsException":
                raise ServiceUnavailable("cannot claim the token refresh") from e
            return self._lease_record(lease).get("holder") == holder
        return True

    def _lease_record(self, lease: str) -> dict[str, object]:
        try:
            value = self._client.get_secret_value(SecretId=self.token_secret_id, VersionId=lease)
        except ClientError:
            return {}
        return parse_record(value.get("SecretString", ""))

    def _lease_until(self, lease: str) -> float:
        until = self._lease_record(lease).get("until")
        return float(until) if isinstance(until, int | float) else 0.0

    def _wait_for_replacement(self, stale: str) -> _Stored | None:
        """Wait until the current version is no longer ``stale``; return it, or None."""
        for _ in range(max(1, int(self._wait_seconds))):
            self._sleep(1.0)
            stored = self._stored()
            if stored.version != stale and stored.token:
                return stored
        return None


def _version_token(seed: str) -> str:
    """Return a ``ClientRequestToken`` that every refresher derives alike from ``seed``."""
    return str(uuid.uuid5(_VERSION_NAMESPACE, seed))
