"""Deterministic execution names: the same request in the same scope names the same execution.

Step Functions refuses a second execution with a name it has seen (for 90 days), and answers a
repeated ``StartExecution`` of a running execution with the same ARN. Deriving the name from the
request therefore makes a retried POST, or a manifest delivered twice, start nothing new.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

EXECUTION_NAME = re.compile(r"[0-9a-f]{24}-(4k|1080|720|480)-[0-9a-z]{20}")
"""Every name this module makes; anything else is not an export id."""


def execution_name(request_input: Mapping[str, Any], scope: str) -> str:
    """Return ``{projectId}-{resolution}-{digest}`` for a canonical request input and a scope.

    Parameters
    ----------
    request_input
        :meth:`ExportRequest.to_input` of a validated request.
    scope
        What makes two equal requests distinct: an ``Idempotency-Key``, a time window, a manifest.

    Returns
    -------
    str
        At most 80 characters of ``[0-9a-z-]``, as Step Functions requires.
    """
    canonical = json.dumps({"request": request_input, "scope": scope}, sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:20]
    return f"{request_input['projectId']}-{request_input['resolution']}-{digest}"


def is_export_id(value: str) -> bool:
    """Tell whether ``value`` has the shape of a name made by :func:`execution_name`."""
    return EXECUTION_NAME.fullmatch(value) is not None
