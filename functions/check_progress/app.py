"""CheckProgress: poll the export once and decide whether to wait, finalize or fail."""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import observability, render_slots, runtime, workflow
from aistudios_export.client import AiStudiosClient
from aistudios_export.limiter import RenderLimiter
from aistudios_export.relay import WebhookRelay
from aistudios_export.settings import SlotSettings, trusted_webhook_origin

logger = Logger()


@cache
def _api() -> AiStudiosClient:
    observability.install_log_hygiene()
    return runtime.api_client()


@cache
def _relay() -> WebhookRelay:
    # The origin is only read here; the URL guard is built at the first relayed call.
    return WebhookRelay(trusted_origin=trusted_webhook_origin())


@cache
def _limiter() -> RenderLimiter:
    return RenderLimiter.from_settings(SlotSettings.from_env())


@logger.inject_lambda_context(clear_state=True, correlation_id_path="job.exportId || holder")
@observability.collect_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"job", "holder"}`` from the state machine; return the updated job.

    A waiting export's render slot is renewed before its lease could end (``holder`` is the
    execution's name).
    """
    job = workflow.check_progress(event.get("job"), api=_api(), relay=_relay())
    return render_slots.keep_slot(job, str(event.get("holder") or ""), limiter=_limiter)
