"""The simulator's webhook calls: what AI Studios sends to an export's ``webhookUrl``.

The documented payload is ``{progress, credit, backendTaskId, download_url}``; the method,
headers and any signature are not documented, so the calls are plain JSON POSTs. Each call is
a timer started at the accepted submit (`Scenario.webhook_times`); `WebhookCaller.send` is also
how a test sends a call of its own (a forged one, say).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from aistudios_local.simulator.scenario import Scenario

__all__ = ["WebhookCall", "WebhookCaller", "forged"]

TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class WebhookCall:
    """One webhook call made: to whom (the project), what it said, when, and the answer."""

    project_id: str | None
    progress: float | None
    sent_at: float
    status: int
    answered_at: float


def forged(url: str) -> str:
    """Return ``url`` with its last path segment (the token, on the local stack) guessed anew."""
    return url.rsplit("/", 1)[0] + "/" + secrets.token_hex(32)


class WebhookCaller:
    """Call webhooks on timers; remember every call; cancel what is pending on `stop`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self.calls: list[WebhookCall] = []

    def schedule(self, project_id: str, url: str, scenario: Scenario, submitted_at: float) -> None:
        """Start the timers of one accepted submit's webhook calls."""
        for after, progress in scenario.webhook_times():
            delay = max(0.0, submitted_at + after - time.time())
            target = forged(url) if scenario.webhook == "forged" else url
            timer = threading.Timer(delay, self._call, (project_id, target, progress))
            timer.daemon = True
            with self._lock:
                self._timers.append(timer)
            timer.start()

    def _call(self, project_id: str, url: str, progress: float) -> None:
        payload: dict[str, Any] = {
            "progress": int(progress),
            "backendTaskId": hashlib.sha256(project_id.encode()).hexdigest()[:24],
        }
        if progress >= 100:
            payload.update(credit=1, download_url=None)
        self.send(url, payload, project_id=project_id)

    def send(
        self, url: str, payload: Any = None, *, project_id: str | None = None, raw: bytes = b""
    ) -> int:
        """POST ``payload`` as JSON (or ``raw`` bytes) to ``url``; return the status (0: none)."""
        body = raw or json.dumps(payload).encode()
        sent_at = time.time()
        request = urllib.request.Request(  # noqa: S310 - loopback URLs of the local stack
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
                status = int(answer.status)
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = 0
        progress = payload.get("progress") if isinstance(payload, dict) else None
        with self._lock:
            self.calls.append(WebhookCall(project_id, progress, sent_at, status, time.time()))
        return status

    def stop(self) -> None:
        """Cancel every call not made yet."""
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
