"""RenderSlot: take and free slots of the account-wide render limit, also for dead executions.

It also ends a failed attempt of an export (``endAttempt``, see
:mod:`aistudios_export.attempts`): the last step of the export machine's failure path, a task
here because the state machine already invokes this function and the step needs no permission.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import attempts, observability, render_slots
from aistudios_export.errors import InvalidRequest
from aistudios_export.limiter import RenderLimiter
from aistudios_export.settings import SlotSettings

logger = Logger()

STATUS_CHANGE = "Step Functions Execution Status Change"


@cache
def _limiter() -> tuple[RenderLimiter, SlotSettings]:
    observability.install_log_hygiene()
    settings = SlotSettings.from_env()
    return RenderLimiter.from_settings(settings), settings


@logger.inject_lambda_context(clear_state=True, correlation_id_path="holder || detail.name")
@observability.collect_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle a step of the export state machine, or an EventBridge status-change event.

    From the state machine: ``{"action": "release", "holder"}`` frees the export's slot on its
    failure path (SubmitExport takes slots, CheckProgress frees a done render's);
    ``{"action": "endAttempt", "holder", "error", "redriveCount"}`` raises the export's error,
    or returns in a redrive (see :func:`~aistudios_export.attempts.end_attempt`). From
    EventBridge: an execution's status change frees the slot of an execution that ended.

    ``{"action": "acquire", "holder", "slot"}`` returns the slot or how long to wait (see
    :func:`~aistudios_export.render_slots.take_slot`): for executions of the machine's earlier
    definition, which took the slot in a step of its own (they run on after a deployment, and a
    redrive within 14 days runs that definition again).
    """
    if event.get("action") == "endAttempt" and event.get("holder"):
        return attempts.end_attempt(event.get("error"), event.get("redriveCount"))
    limiter, settings = _limiter()
    if event.get("detail-type") == STATUS_CHANGE:
        return render_slots.free_after_end(event.get("detail") or {}, limiter=limiter)
    holder, action = str(event.get("holder") or ""), event.get("action")
    if not holder:
        raise InvalidRequest([("holder", "must name the execution")])
    if action == "acquire":
        return render_slots.take_slot(holder, event.get("slot"), limiter=limiter, settings=settings)
    if action == "release":
        return render_slots.free_slot(holder, limiter=limiter)
    raise InvalidRequest([("action", "must be acquire, release or endAttempt")])
