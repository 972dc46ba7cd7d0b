"""CKV_AISTUDIOS_2: no secret value is written in the template, only placeholders."""

from __future__ import annotations

import json
from typing import Any

from checkov.cloudformation.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

# What a generated secret's template may hold: the empty string or a marker to replace.
PLACEHOLDERS = {"", "REPLACE_ME", "CHANGE_ME", "PLACEHOLDER"}


class NoSecretValueInTemplate(BaseResourceCheck):
    """Fail a secret with a ``SecretString``, or a generated one whose template holds a value."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure no Secrets Manager secret value is written in the template",
            id="CKV_AISTUDIOS_2",
            categories=[CheckCategories.SECRETS],
            supported_resources=["AWS::SecretsManager::Secret"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        """Pass a secret with no SecretString whose SecretStringTemplate has placeholders only."""
        properties = conf.get("Properties") or {}
        if "SecretString" in properties:
            return CheckResult.FAILED
        template = (properties.get("GenerateSecretString") or {}).get("SecretStringTemplate")
        if template is None:
            return CheckResult.PASSED
        if not isinstance(template, str):
            # Built by an intrinsic function: its value cannot be seen here.
            return CheckResult.FAILED
        try:
            values = json.loads(template)
        except ValueError:
            return CheckResult.FAILED
        if not isinstance(values, dict):
            return CheckResult.FAILED
        placeholders = all(isinstance(v, str) and v in PLACEHOLDERS for v in values.values())
        return CheckResult.PASSED if placeholders else CheckResult.FAILED

    def get_evaluated_keys(self) -> list[str]:
        """Name the properties this check reads (shown in checkov's report)."""
        return ["Properties/SecretString", "Properties/GenerateSecretString/SecretStringTemplate"]


check = NoSecretValueInTemplate()
