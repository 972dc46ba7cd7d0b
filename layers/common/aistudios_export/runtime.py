"""Construction of the long-lived objects a warm function reuses between invocations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aistudios_export.client import AiStudiosClient
from aistudios_export.settings import RATE_LIMIT_WAIT_SECONDS, ApiSettings
from aistudios_export.tokens import TokenStore

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


def api_client(
    env: Mapping[str, str] | None = None, *, secrets: SecretsManagerClient | None = None
) -> AiStudiosClient:
    """Return an API client whose token comes, cached, from the token secret."""
    settings = ApiSettings.from_env(env)
    return AiStudiosClient(
        settings.api_url,
        TokenStore(settings.token_secret_id, client=secrets).get,
        rate_limit_wait=RATE_LIMIT_WAIT_SECONDS,
    )
