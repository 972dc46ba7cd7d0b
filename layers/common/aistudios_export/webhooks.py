"""The export's webhook: the URL AI Studios calls, its token, and waking the waiting execution.

AI Studios calls an export's ``webhookUrl`` as it progresses and when it finishes; the call is
not signed, so it is only a hint. The URL handed to AI Studios is
``{base}/webhooks/{exportId}/{token}``, where the token is HMAC-SHA256 of the export id under a
key only this stack knows (a Secrets Manager secret): nobody can guess it for an export, and it
opens nothing but that export's wake-up. :class:`WebhookWaker` finds the task token of the wait
the execution is in from the execution's own history (the callback task's parameters carry it:
no database) and sends it back; the execution then asks AI Studios itself
(:func:`~aistudios_export.workflow.check_progress`). What a call says is never trusted: a body
that says the export is still running is the one thing that lets a wake be skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from aistudios_export import clients
from aistudios_export.aws_errors import error_code
from aistudios_export.errors import ConfigurationError
from aistudios_export.exports.machine import ExportsService
from aistudios_export.secret_cache import CachedSecret

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_stepfunctions.type_defs import HistoryEventTypeDef

logger = Logger(service="aistudios-export", child=True)

KEY_FIELD = "key"
"""The field of the webhook secret that holds the HMAC key."""
BASE_URL_FIELD = "baseUrl"
"""The field of the webhook secret that holds the API's base URL (without it: no webhooks)."""
KEY_CACHE_SECONDS = 900
WAIT_RESOURCE = "putEvents.waitForTaskToken"
"""``TaskScheduled.resource`` of the export machine's callback wait (``WaitForExport``)."""
HISTORY_PAGE = 10
"""Newest events read to find the open wait: a wait writes 4 before its token can be used."""
WAIT_ENDED = frozenset(
    {
        "TaskSucceeded",
        "TaskFailed",
        "TaskTimedOut",
        "TaskStateExited",
        "ExecutionSucceeded",
        "ExecutionFailed",
        "ExecutionAborted",
        "ExecutionTimedOut",
    }
)
LOOKS = 3
"""How often a wake looks for the open wait: a webhook that arrives while the execution is
between two waits (checking) finds the next one a moment later."""
LOOK_INTERVAL_SECONDS = 0.5
MAX_BODY_BYTES = 16 * 1024
"""The largest webhook body read; the documented one is four short fields."""
STOPS_LOOKING = frozenset(
    {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}
)


class WebhookKey:
    """The HMAC key of export webhooks and the API's base URL, read (cached) from their secret.

    Parameters
    ----------
    secret_id
        Name or ARN of the secret; its JSON has the key in :data:`KEY_FIELD` and the base URL
        of the webhook route in :data:`BASE_URL_FIELD`.
    client
        A Secrets Manager client; a default one is created on first use.

    Examples
    --------
    >>> key = WebhookKey.of_bytes(b"k" * 32)
    >>> token = key.token("export-1")
    >>> key.verify("export-1", token), key.verify("export-2", token), len(token)
    (True, False, 64)
    """

    def __init__(
        self,
        secret_id: str,
        *,
        client: SecretsManagerClient | None = None,
        max_age: int = KEY_CACHE_SECONDS,
    ) -> None:
        self.secret_id = secret_id
        self._client = client
        self._secret: CachedSecret | None = None
        self._max_age = max_age
        self._fixed: bytes | None = None

    @classmethod
    def of_bytes(cls, key: bytes) -> WebhookKey:
        """Return a key that is ``key`` itself, with no base URL (tests)."""
        fixed = cls("")
        fixed._fixed = key
        return fixed

    def _value(self) -> dict[str, Any]:
        if self._secret is None:
            client = clients.secretsmanager(self._client)
            self._secret = CachedSecret(client, self.secret_id, max_age=self._max_age)
        try:
            value = self._secret.get()
        except Exception as e:  # boto's errors, no string, no JSON
            raise ConfigurationError(
                f"cannot read the webhook key secret {self.secret_id}: {type(e).__name__}"
            ) from e
        return value if isinstance(value, dict) else {}

    def _key(self) -> bytes:
        if self._fixed is not None:
            return self._fixed
        key = self._value().get(KEY_FIELD)
        if not isinstance(key, str) or len(key) < 16:
            raise ConfigurationError(
                f"the webhook key secret {self.secret_id} has no {KEY_FIELD!r} of 16+ characters"
            )
        return key.encode()

    def url(self, export_id: str) -> str | None:
        """Return the export's webhook URL, or None when the secret names no http(s) base URL."""
        base = None if self._fixed is not None else self._value().get(BASE_URL_FIELD)
        if not isinstance(base, str) or not base.startswith(("https://", "http://")):
            return None
        return webhook_url(base, export_id, self)

    def token(self, export_id: str) -> str:
        """Return the export's webhook token: hex HMAC-SHA256 of its id."""
        return hmac.new(self._key(), export_id.encode(), hashlib.sha256).hexdigest()

    def verify(self, export_id: str, token: str) -> bool:
        """Say whether ``token`` is the export's (in constant time)."""
        return hmac.compare_digest(self.token(export_id).encode(), token.encode())


def webhook_url(base_url: str, export_id: str, key: WebhookKey) -> str:
    """Return the URL AI Studios calls for the export.

    Examples
    --------
    >>> webhook_url("https://api.example/v1/", "e1", WebhookKey.of_bytes(b"k" * 32))[:40]
    'https://api.example/v1/webhooks/e1/3d4ab'
    """
    return f"{base_url.rstrip('/')}/webhooks/{export_id}/{key.token(export_id)}"


def worth_waking(body: bytes) -> bool:
    """Say whether a webhook's body may announce an end: only "still running" is skipped.

    A body that parses as an object whose ``progress`` is a number below 100, and that says
    nothing of a state or an error, cannot mean the export ended; anything else (no body, no
    JSON, 100 %, a state) wakes the execution, which then asks AI Studios.

    Examples
    --------
    >>> worth_waking(b'{"progress": 40}'), worth_waking(b'{"progress": 100}'), worth_waking(b"")
    (False, True, True)
    >>> worth_waking(b'{"progress": 40, "state": "failed"}')
    True
    """
    try:
        payload = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return True
    if not isinstance(payload, dict):
        return True
    progress = payload.get("progress")
    running = (
        isinstance(progress, int | float) and not isinstance(progress, bool) and progress < 100
    )
    return not running or any(k in payload for k in ("state", "status", "error"))


class WebhookWaker(ExportsService):
    """Wake an export's execution that waits for its webhook; the execution checks itself."""

    def wake(self, export_id: str, *, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Send the open wait's task token back; return whether a wait was woken.

        Nothing is said to the caller either way: an execution that is not waiting (it is
        checking already, has ended or does not exist) needs no wake.
        """
        arn = self.machine.execution_arn(export_id)
        for look in range(LOOKS):
            if look:
                sleep(LOOK_INTERVAL_SECONDS)
            try:
                events = self.machine.sfn.get_execution_history(
                    executionArn=arn, reverseOrder=True, maxResults=HISTORY_PAGE
                )["events"]
            except ClientError as e:
                if error_code(e) == "ExecutionDoesNotExist":
                    return False
                raise
            token, ended = open_wait(events)
            if token is not None:
                return self._send(token)
            if ended:
                return False
        return False

    def _send(self, token: str) -> bool:
        try:
            self.machine.sfn.send_task_success(taskToken=token, output="{}")
        except ClientError as e:
            # The wait ended meanwhile (timed out, or another webhook woke it).
            if error_code(e) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
                return False
            raise
        return True


def open_wait(events: Sequence[HistoryEventTypeDef]) -> tuple[str | None, bool]:
    """Return ``(task token of the open wait or None, whether the execution ended)``.

    ``events`` are the newest of the history in any order; the open wait is a callback wait
    scheduled after anything that ended one.
    """
    newest_first = sorted(events, key=lambda e: e["id"], reverse=True)
    for event in newest_first:
        kind = event["type"]
        if kind in STOPS_LOOKING:
            return None, True
        if kind in WAIT_ENDED:
            return None, False
        if kind == "TaskScheduled":
            details: Mapping[str, Any] = event.get("taskScheduledEventDetails") or {}
            if details.get("resource") != WAIT_RESOURCE:
                return None, False
            return _token_of(details.get("parameters")), False
    return None, False


def _token_of(parameters: Any) -> str | None:
    try:
        entries = json.loads(parameters)["Entries"]
        detail = entries[0]["Detail"]
        if isinstance(detail, str):
            detail = json.loads(detail)
        token = detail["taskToken"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return token if isinstance(token, str) and token else None
