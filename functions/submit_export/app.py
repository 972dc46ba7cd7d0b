"""SubmitExport: take a render slot, then ask AI Studios to export the project."""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import observability, render_slots, runtime, settings, workflow
from aistudios_export.client import AiStudiosClient
from aistudios_export.limiter import RenderLimiter
from aistudios_export.settings import SlotSettings
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


@cache
def _limiter() -> tuple[RenderLimiter, SlotSettings]:
    slots = SlotSettings.from_env()
    return RenderLimiter.from_settings(slots), slots


@logger.inject_lambda_context(clear_state=True, correlation_id_path="executionName")
@observability.collect_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"request", "defaults", "executionName", "job", "attempt"}``; return a job.

    The job is submitted, resumed (a redrive of a submitted export) or queued for a render slot
    (see :func:`~aistudios_export.render_slots.start_render`); ``attempt`` is the execution's
    redrive count.
    """
    export_id = str(event.get("executionName") or "")
    limiter, slots = _limiter()

    def submit(expires: float) -> dict[str, Any]:
        return workflow.submit_export(
            event.get("request"),
            event.get("defaults"),
            api=_api(),
            export_id=export_id,
            slot={"acquired": True, "expires": expires},
            webhook=key.url if (key := _webhook_key()) else None,
        )

    attempt = event.get("attempt")
    return render_slots.start_render(
        event.get("job"),
        export_id,
        attempt=attempt if isinstance(attempt, int) else 0,
        limiter=limiter,
        settings=slots,
        submit=submit,
    )
