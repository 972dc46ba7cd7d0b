"""RefreshToken: mint a fresh API token when one was refused; also the token secret's rotation."""

from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import clients, tokens
from aistudios_export.client import AiStudiosClient
from aistudios_export.settings import ApiSettings, credentials_secret_id

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = Logger()


class Dependencies(NamedTuple):
    """What a warm container reuses: the API client, the secrets and their client."""

    api: AiStudiosClient
    token_secret_id: str
    credentials_secret_id: str
    secrets: "SecretsManagerClient"


@cache
def _dependencies() -> Dependencies:
    settings = ApiSettings.from_env()
    return Dependencies(
        api=AiStudiosClient(settings.api_url),
        token_secret_id=settings.token_secret_id,
        credentials_secret_id=credentials_secret_id(),
        secrets=clients.secretsmanager(),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Refresh after an ``Unauthorized`` (state machine) or run one rotation step (Secrets Manager).

    From the state machine: ``{"refreshes": n, "resume": "StateName"}`` returns
    ``{"refreshes": n + 1, "resume": ..., "minted": bool}``. From Secrets Manager:
    ``{"Step", "SecretId", "ClientRequestToken"}``.
    """
    deps = _dependencies()
    if "Step" in event:
        tokens.rotate(
            event["Step"],
            event["SecretId"],
            event["ClientRequestToken"],
            api=deps.api,
            credentials_secret_id=deps.credentials_secret_id,
            client=deps.secrets,
        )
        return {}
    result = tokens.refresh_token(
        api=deps.api,
        token_secret_id=deps.token_secret_id,
        credentials_secret_id=deps.credentials_secret_id,
        client=deps.secrets,
    )
    return {
        "refreshes": int(event.get("refreshes", 0)) + 1,
        "resume": event.get("resume"),
        "minted": result.minted,
    }
