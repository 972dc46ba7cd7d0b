"""RefreshToken: mint a fresh API token when one was refused; also the token secret's rotation."""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import tokens
from aistudios_export.client import AiStudiosClient
from aistudios_export.settings import ApiSettings, credentials_secret_id

logger = Logger()


@cache
def _settings() -> tuple[AiStudiosClient, ApiSettings, str]:
    settings = ApiSettings.from_env()
    return AiStudiosClient(settings.api_url), settings, credentials_secret_id()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Refresh after an ``Unauthorized`` (state machine) or run one rotation step (Secrets Manager).

    From the state machine: ``{"refreshes": n, "resume": "StateName"}`` returns
    ``{"refreshes": n + 1, "resume": ..., "minted": bool}``. From Secrets Manager:
    ``{"Step", "SecretId", "ClientRequestToken"}``.
    """
    api, settings, credentials = _settings()
    if "Step" in event:
        tokens.rotate(
            event["Step"],
            event["SecretId"],
            event["ClientRequestToken"],
            api=api,
            credentials_secret_id=credentials,
        )
        return {}
    result = tokens.refresh_token(
        api=api, token_secret_id=settings.token_secret_id, credentials_secret_id=credentials
    )
    return {
        "refreshes": int(event.get("refreshes", 0)) + 1,
        "resume": event.get("resume"),
        "minted": result.minted,
    }
