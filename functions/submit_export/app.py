"""SubmitExport: validate the request and ask AI Studios to export the project."""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import observability, runtime, settings, workflow
from aistudios_export.client import AiStudiosClient
from aistudios_export.webhook_keys import WebhookKey

logger = Logger()


@cache
def _api() -> AiStudiosClient:
    observability.install_log_hygiene()
    return runtime.api_client()


@cache
def _webhook_key() -> WebhookKey | None:
    secret_id = settings.webhook_secret_id()
    return WebhookKey(secret_id) if secret_id else None


@logger.inject_lambda_context(clear_state=True, correlation_id_path="executionName")
@observability.collect_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"request", "defaults", "executionName", "slot"}``; return a job."""
    return workflow.submit_export(
        event.get("request"),
        event.get("defaults"),
        api=_api(),
        export_id=str(event.get("executionName") or ""),
        slot=event.get("slot"),
        webhook=key.url if (key := _webhook_key()) else None,
    )
