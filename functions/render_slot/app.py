"""RenderSlot: free slots of the account-wide render limit, also of dead executions.

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
def _limiter() -> RenderLimiter:
    observability.install_log_hygiene()
    return RenderLimiter.from_settings(SlotSettings.from_env())


@logger.inject_lambda_context(clear_state=True, correlation_id_path="holder || detail.name")
@observability.collect_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle a step of the export state machine, or an EventBridge status-change event.

    From the state machine: ``{"action": "release", "holder"}`` frees the export's slot on its
    failure path (SubmitExport takes slots, CheckProgress frees a done render's);
    ``{"action": "endAttempt", "holder", "error", "redriveCount"}`` raises the export's error,
    or returns in a redrive (see :func:`~aistudios_export.attempts.end_attempt`). From
    EventBridge: an execution's status change frees the slot of an execution that ended.
    """
    if event.get("action") == "endAttempt" and event.get("holder"):
        return attempts.end_attempt(event.get("error"), event.get("redriveCount"))
    limiter = _limiter()
    if event.get("detail-type") == STATUS_CHANGE:
        return render_slots.free_after_end(event.get("detail") or {}, limiter=limiter)
    holder, action = str(event.get("holder") or ""), event.get("action")
    if not holder:
        raise InvalidRequest([("holder", "must name the execution")])
    if action == "release":
        return render_slots.free_slot(holder, limiter=limiter)
    raise InvalidRequest([("action", "must be release or endAttempt")])
