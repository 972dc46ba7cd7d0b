"""CKV_AISTUDIOS_2: no secret value is written in the template, only placeholders."""

from __future__ import annotations

import json
import re
from typing import Any

from checkov.cloudformation.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

# What a generated secret's template may hold: the empty string or a marker to replace.
PLACEHOLDERS = {"", "REPLACE_ME", "CHANGE_ME", "PLACEHOLDER"}
PUBLIC_KEYS = {"baseUrl"}
"""Keys whose value is public configuration kept beside a generated key: an https URL."""
SUBSTITUTION = re.compile(r"\$\{[^}]*\}")


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
        text = _text(template)
        if text is None:
            # Built by another intrinsic function: its value cannot be seen here.
            return CheckResult.FAILED
        try:
            values = json.loads(text)
        except ValueError:
            return CheckResult.FAILED
        if not isinstance(values, dict):
            return CheckResult.FAILED
        allowed = all(_allowed(k, v) for k, v in values.items())
        return CheckResult.PASSED if allowed else CheckResult.FAILED

    def get_evaluated_keys(self) -> list[str]:
        """Name the properties this check reads (shown in checkov's report)."""
        return ["Properties/SecretString", "Properties/GenerateSecretString/SecretStringTemplate"]


def _text(template: Any) -> str | None:
    """Return the template's text, each ``${...}`` of a ``Fn::Sub`` replaced by a placeholder."""
    if isinstance(template, str):
        return template
    # checkov adds __file__, __startline__ and __endline__ to what it parsed.
    keys = {k for k in template if not k.startswith("__")} if isinstance(template, dict) else None
    if isinstance(template, dict) and keys == {"Fn::Sub"}:
        sub = template["Fn::Sub"]
        text = sub[0] if isinstance(sub, list) and sub else sub
        if isinstance(text, str):
            return SUBSTITUTION.sub("PLACEHOLDER", text)
    return None


def _allowed(key: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if key in PUBLIC_KEYS:
        return value.startswith("https://") and "@" not in value
    return value in PLACEHOLDERS


check = NoSecretValueInTemplate()
