"""A secret's JSON value, read from Secrets Manager and trusted for a while.

Powertools' ``SecretsProvider`` does this, but importing its ``parameters`` package imports
every provider it has (AppConfig, SSM, DynamoDB with boto3's conditions) at every cold start of
every worker that reads the API token. The workers read two secrets this way (the API token,
the webhook key), so the cache is these few lines.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class CachedSecret:
    """The JSON value of one secret, read again once it is ``max_age`` seconds old.

    Parameters
    ----------
    client
        The Secrets Manager client to read with.
    secret_id
        Name or ARN of the secret.
    max_age
        Seconds a value read is trusted (0: every :meth:`get` reads).
    clock
        Monotonic seconds (tests).
    """

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        *,
        max_age: float,
        clock: Any = time.monotonic,
    ) -> None:
        self.secret_id = secret_id
        self._client = client
        self._max_age = max_age
        self._clock = clock
        self._value: Any = None
        self._read_at: float | None = None

    def get(self, *, fresh: bool = False) -> Any:
        """Return the secret's value as JSON; ``fresh`` reads it whatever its age.

        Raises
        ------
        botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError
            When Secrets Manager does not answer with the secret.
        KeyError
            When the secret has no string (a binary secret).
        ValueError
            When its string is no JSON.
        """
        now = self._clock()
        if fresh or self._read_at is None or now - self._read_at >= self._max_age:
            raw = self._client.get_secret_value(SecretId=self.secret_id)["SecretString"]
            self._value, self._read_at = json.loads(raw), now
        return self._value
