"""The API token in Secrets Manager: its record, cached reads for workers, the credentials.

The token secret holds ``{"token", "issuedAt", "expiresAt"}`` (epoch seconds). Workers read it
through a cache (:mod:`aistudios_export.secret_cache`); only the refresh/rotation function
(:mod:`aistudios_export.token_refresh`) mints a token, with the ``{"appId", "userKey"}`` of the
credentials secret, and writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aistudios_export import clients
from aistudios_export.aws_errors import translate
from aistudios_export.errors import ConfigurationError
from aistudios_export.secret_cache import CachedSecret
from aistudios_export.settings import TOKEN_CACHE_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

TOKEN_LIFETIME_SECONDS = 24 * 3600
"""Documented: a token is valid for 24 hours from issuance."""
PLACEHOLDER = "REPLACE_ME"


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
        self._secret = CachedSecret(clients.secretsmanager(client), secret_id, max_age=max_age)

    def get(self, *, fresh: bool = False) -> str:
        """Return the current token ('' when none was minted yet); ``fresh`` skips the cache."""
        try:
            value = self._secret.get(fresh=fresh)
        except Exception as e:  # boto's errors, no string, no JSON
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


def read_credentials(client: SecretsManagerClient, secret_id: str) -> Credentials:
    """Read ``{"appId", "userKey"}`` from the credentials secret.

    Raises
    ------
    ConfigurationError
        When the secret is missing, not JSON, or still holds the template's placeholder.
    StorageError
        When Secrets Manager is busy (throttling, 5xx): worth a retry.
    """
    try:
        raw = client.get_secret_value(SecretId=secret_id)["SecretString"]
        value = json.loads(raw)
    except ClientError as e:
        raise translate(e, f"cannot read the credentials secret {secret_id}") from e
    except (KeyError, ValueError) as e:
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


def parse_record(secret_string: str) -> dict[str, Any]:
    """Return the token secret's JSON object, or ``{}`` when it holds something else."""
    try:
        value = json.loads(secret_string)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
