"""The export's webhook URL and its token: what SubmitExport hands AI Studios, what the API checks.

The URL handed to AI Studios is ``{base}/webhooks/{exportId}/{token}``, where the token is
HMAC-SHA256 of the export id under a key only this stack knows (a Secrets Manager secret):
nobody can guess it for an export. Waking the execution a call is for is
:mod:`aistudios_export.webhooks`' (which re-exports these names); this module stays apart so
that SubmitExport does not import the API's exports services.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from aistudios_export import clients
from aistudios_export.errors import ConfigurationError
from aistudios_export.secret_cache import CachedSecret

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

KEY_FIELD = "key"
"""The field of the webhook secret that holds the HMAC key."""
BASE_URL_FIELD = "baseUrl"
"""The field of the webhook secret that holds the API's base URL (without it: no webhooks)."""
KEY_CACHE_SECONDS = 900


class WebhookKey:
    """The HMAC key of export webhooks and the API's base URL, read (cached) from their secret.

    Parameters
    ----------
    secret_id
        Name or ARN of the secret; its JSON has the key in :data:`KEY_FIELD` and the base URL
        of the webhook route in :data:`BASE_URL_FIELD`.
    client
        A Secrets Manager client; a default one is created on first use.

    Examples
    --------
    >>> key = WebhookKey.of_bytes(b"k" * 32)
    >>> token = key.token("export-1")
    >>> key.verify("export-1", token), key.verify("export-2", token), len(token)
    (True, False, 64)
    """

    def __init__(
        self,
        secret_id: str,
        *,
        client: SecretsManagerClient | None = None,
        max_age: int = KEY_CACHE_SECONDS,
    ) -> None:
        self.secret_id = secret_id
        self._client = client
        self._secret: CachedSecret | None = None
        self._max_age = max_age
        self._fixed: bytes | None = None

    @classmethod
    def of_bytes(cls, key: bytes) -> WebhookKey:
        """Return a key that is ``key`` itself, with no base URL (tests)."""
        fixed = cls("")
        fixed._fixed = key
        return fixed

    def _value(self) -> dict[str, Any]:
        if self._secret is None:
            client = clients.secretsmanager(self._client)
            self._secret = CachedSecret(client, self.secret_id, max_age=self._max_age)
        try:
            value = self._secret.get()
        except Exception as e:  # boto's errors, no string, no JSON
            raise ConfigurationError(
                f"cannot read the webhook key secret {self.secret_id}: {type(e).__name__}"
            ) from e
        return value if isinstance(value, dict) else {}

    def _key(self) -> bytes:
        if self._fixed is not None:
            return self._fixed
        key = self._value().get(KEY_FIELD)
        if not isinstance(key, str) or len(key) < 16:
            raise ConfigurationError(
                f"the webhook key secret {self.secret_id} has no {KEY_FIELD!r} of 16+ characters"
            )
        return key.encode()

    def url(self, export_id: str) -> str | None:
        """Return the export's webhook URL, or None when the secret names no http(s) base URL."""
        base = None if self._fixed is not None else self._value().get(BASE_URL_FIELD)
        if not isinstance(base, str) or not base.startswith(("https://", "http://")):
            return None
        return webhook_url(base, export_id, self)

    def token(self, export_id: str) -> str:
        """Return the export's webhook token: hex HMAC-SHA256 of its id."""
        return hmac.new(self._key(), export_id.encode(), hashlib.sha256).hexdigest()

    def verify(self, export_id: str, token: str) -> bool:
        """Say whether ``token`` is the export's (in constant time)."""
        return hmac.compare_digest(self.token(export_id).encode(), token.encode())


def webhook_url(base_url: str, export_id: str, key: WebhookKey) -> str:
    """Return the URL AI Studios calls for the export.

    Examples
    --------
    >>> webhook_url("https://api.example/v1/", "e1", WebhookKey.of_bytes(b"k" * 32))[:40]
    'https://api.example/v1/webhooks/e1/3d4ab'
    """
    return f"{base_url.rstrip('/')}/webhooks/{export_id}/{key.token(export_id)}"
