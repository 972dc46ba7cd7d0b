"""CKV_AISTUDIOS_1: every state machine logs (ALL or ERROR, to a log group) and is traced."""

from __future__ import annotations

from typing import Any

from _values import as_list, is_true

from checkov.cloudformation.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

LOGGED_LEVELS = {"ALL", "ERROR"}


class StateMachineLogsAndTraces(BaseResourceCheck):
    """Fail a state machine without execution logs in a log group or without X-Ray tracing."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure every Step Functions state machine logs (ALL or ERROR) and is traced",
            id="CKV_AISTUDIOS_1",
            categories=[CheckCategories.LOGGING],
            supported_resources=["AWS::StepFunctions::StateMachine"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        """Pass only a literal Level ALL/ERROR with log group destinations and tracing on."""
        properties = conf.get("Properties") or {}
        logging = properties.get("LoggingConfiguration") or {}
        destinations = as_list(logging.get("Destinations"))
        logged = logging.get("Level") in LOGGED_LEVELS and bool(destinations)
        logged = logged and all(
            (d.get("CloudWatchLogsLogGroup") or {}).get("LogGroupArn") for d in destinations
        )
        traced = is_true((properties.get("TracingConfiguration") or {}).get("Enabled"))
        return CheckResult.PASSED if logged and traced else CheckResult.FAILED

    def get_evaluated_keys(self) -> list[str]:
        """Name the properties this check reads (shown in checkov's report)."""
        return ["Properties/LoggingConfiguration", "Properties/TracingConfiguration"]


check = StateMachineLogsAndTraces()
