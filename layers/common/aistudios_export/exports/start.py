"""Start an export, once: a retried request finds the export it started instead of a new one.

The export id (the execution's name, :func:`naming.execution_name`) is derived from the
validated request and a scope, so a retried request names the same execution:

- with an ``Idempotency-Key``, the scope is the key;
- without one, the scope is a time window of ``dedupe_window_seconds``, and a request also
  finds the previous window's export when that one started less than a window ago.

Step Functions answers a repeated ``StartExecution`` of a running execution with the same input
with the same ARN, and any other repeat with ``ExecutionAlreadyExists``: both mean "already
started", and the caller gets that export's id and current status.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from aistudios_export.aws_errors import error_code
from aistudios_export.errors import InvalidRequest
from aistudios_export.exports.machine import ExportsService
from aistudios_export.exports.types import Started
from aistudios_export.models import DEFAULT_SECONDS, ExportRequest
from aistudios_export.naming import execution_name

IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY = re.compile(rf"[ -~]{{1,{IDEMPOTENCY_KEY_MAX}}}")
"""An ``Idempotency-Key``: 1 to :data:`IDEMPOTENCY_KEY_MAX` printable ASCII characters."""

_TIMING_FIELDS = tuple(DEFAULT_SECONDS)
"""``pollSeconds``, ``timeoutSeconds``, ``stallSeconds``. Parsing fills in the library's defaults
(constant, so export ids stay stable), but the execution's input carries them only when the client
set them: otherwise the deployment's defaults (DefinitionSubstitutions) apply."""


class ExportStarter(ExportsService):
    """Starts exports, each at most once per idempotency key or dedupe window.

    Built as an :class:`ExportsService`; ``settings.dedupe_window_seconds`` is the window.
    """

    def start(self, raw_request: Any, *, idempotency_key: str | None = None) -> Started:
        """Start the export of ``raw_request`` unless an equal request already started it.

        Parameters
        ----------
        raw_request
            ``{projectId, resolution?, workspaceId?, webhookUrl?, outputPrefix?}`` (and the
            optional ``pollSeconds``/``timeoutSeconds``/``stallSeconds``), validated by
            :meth:`ExportRequest.parse`.
        idempotency_key
            The client's key: equal requests with equal keys are one export, whenever sent.

        Raises
        ------
        InvalidRequest
            Naming every bad field (or the key); nothing is started.
        """
        request = parse_request(raw_request)
        canonical = request.to_input()
        execution_input = {
            k: v for k, v in canonical.items() if k not in _TIMING_FIELDS or k in raw_request
        }
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
            export_id = execution_name(canonical, f"key:{idempotency_key}")
            return self._start(export_id, execution_input)
        now = self._clock()
        window = math.floor(now / self.settings.dedupe_window_seconds)
        previous = self._started_since(
            execution_name(canonical, self._window_scope(window - 1)),
            now - self.settings.dedupe_window_seconds,
        )
        if previous is not None:
            return previous
        export_id = execution_name(canonical, self._window_scope(window))
        return self._start(export_id, execution_input)

    def _window_scope(self, window: int) -> str:
        return f"window:{self.settings.dedupe_window_seconds}:{window}"

    def _start(self, export_id: str, execution_input: Mapping[str, Any]) -> Started:
        try:
            self.machine.sfn.start_execution(
                stateMachineArn=self.machine.arn,
                name=export_id,
                input=json.dumps(execution_input, sort_keys=True),
            )
        except ClientError as e:
            if error_code(e) != "ExecutionAlreadyExists":
                raise
            # Started before (and finished, or with other timing fields): report that export.
            description = self.machine.sfn.describe_execution(
                executionArn=self.machine.execution_arn(export_id)
            )
            return Started(export_id, description["status"])
        return Started(export_id, "RUNNING")

    def _started_since(self, export_id: str, since: float) -> Started | None:
        description = self.machine.describe(export_id)
        if description is None or description["startDate"].timestamp() < since:
            return None
        return Started(export_id, description["status"])


def parse_request(raw_request: Any) -> ExportRequest:
    """Validate an export request as :meth:`ExportStarter.start` does, without starting anything.

    Raises
    ------
    InvalidRequest
        Naming every bad field.
    """
    return ExportRequest.parse(raw_request)


def _check_idempotency_key(key: str) -> None:
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            [
                (
                    "Idempotency-Key",
                    f"must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters",
                )
            ]
        )
