"""CKV_AISTUDIOS_3: every bucket aborts incomplete multipart uploads, bucket-wide.

Whoever may put objects into a bucket may start multipart uploads (CreateMultipartUpload is
``s3:PutObject``), and the parts of one never completed are billed until aborted; so every
bucket of the stack, not only the ones the code writes in parts today, needs the rule.
"""

from __future__ import annotations

from typing import Any

from _values import as_list

from checkov.cloudformation.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult


class BucketAbortsIncompleteMultipartUploads(BaseResourceCheck):
    """Fail a bucket with no enabled, unfiltered AbortIncompleteMultipartUpload lifecycle rule."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure every S3 bucket aborts incomplete multipart uploads with a lifecycle rule",
            id="CKV_AISTUDIOS_3",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["AWS::S3::Bucket"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        """Pass when one enabled rule for the whole bucket aborts uploads after some days."""
        properties = conf.get("Properties") or {}
        rules = as_list((properties.get("LifecycleConfiguration") or {}).get("Rules"))
        for rule in rules:
            days = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
            # A prefix or tag filter would leave the other keys' uploads behind.
            whole_bucket = not rule.get("Prefix") and not rule.get("TagFilters")
            whole_bucket = whole_bucket and not rule.get("ObjectSizeGreaterThan")
            if rule.get("Status") == "Enabled" and days is not None and whole_bucket:
                return CheckResult.PASSED
        return CheckResult.FAILED

    def get_evaluated_keys(self) -> list[str]:
        """Name the properties this check reads (shown in checkov's report)."""
        return ["Properties/LifecycleConfiguration/Rules"]


check = BucketAbortsIncompleteMultipartUploads()
