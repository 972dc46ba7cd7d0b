"""RefreshToken: replace an API token that was refused; also the token secret's rotation."""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import clients, observability
from aistudios_export.client import AiStudiosClient
from aistudios_export.errors import Unauthorized
from aistudios_export.settings import (
    RATE_LIMIT_WAIT_SECONDS,
    ApiSettings,
    credentials_secret_id,
)
from aistudios_export.token_refresh import TokenRefresher

logger = Logger()


@cache
def _refresher() -> TokenRefresher:
    observability.install_log_hygiene()
    settings = ApiSettings.from_env()
    return TokenRefresher(
        api=AiStudiosClient(settings.api_url, rate_limit_wait=RATE_LIMIT_WAIT_SECONDS),
        client=clients.secretsmanager(),
        token_secret_id=settings.token_secret_id,
        credentials_secret_id=credentials_secret_id(),
    )


@logger.inject_lambda_context(clear_state=True, correlation_id_path="holder")
@observability.collect_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Refresh after an ``Unauthorized`` (state machine) or run one rotation step (Secrets Manager).

    From the state machine: ``{"refreshes": n, "resume": "StateName", "refusedCause": cause,
    "holder": execution name}`` returns ``{"refreshes": n + 1, "resume": ..., "minted": bool}``;
    the cause of the ``Unauthorized`` error names the refused token by fingerprint. From Secrets
    Manager: ``{"Step", "SecretId", "ClientRequestToken"}``.
    """
    refresher = _refresher()
    if "Step" in event:
        refresher.rotate(event["Step"], event["SecretId"], event["ClientRequestToken"])
        return {}
    result = refresher.refresh(
        Unauthorized.refused_fingerprint(event.get("refusedCause")),
        holder=str(event.get("holder") or context.aws_request_id),
    )
    return {
        "refreshes": int(event.get("refreshes", 0)) + 1,
        "resume": event.get("resume"),
        "minted": result.minted,
    }
