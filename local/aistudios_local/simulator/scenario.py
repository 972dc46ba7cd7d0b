"""What one simulated project does: a frozen `Scenario` and the vocabulary of its faults."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BAD_ENVELOPE", "MALFORMED", "PROGRESS_FAULTS", "RESET", "WEBHOOK_MODES", "Scenario"]

RESET = "reset"
"""A progress fault: the connection is reset, no answer at all."""
MALFORMED = "malformed"
"""A progress fault: 200 with a body that is not JSON."""
BAD_ENVELOPE = "bad-envelope"
"""A progress fault: 200 JSON without ``success``/``data``."""
PROGRESS_FAULTS = frozenset({MALFORMED, BAD_ENVELOPE, RESET})
"""Every named progress fault; any other entry of `Scenario.progress_failures` is a status."""
WEBHOOK_MODES = frozenset({"never", "finish", "each-step", "late", "duplicated", "forged"})
"""When the export's ``webhookUrl`` is called (see `Scenario.webhook`)."""


@dataclass(frozen=True)
class Scenario:
    """How one project's export behaves; the defaults give a clean, successful export.

    Parameters
    ----------
    progress_steps
        What successive progress calls report; the last value repeats, so a tuple ending below 100
        is a stalled export.
    fail_at_poll
        From this progress call (1-based, counted since the last accepted submit) on, the state is
        `failure_state`.
    failure_state
        The state reported by a failing export.
    url_missing_polls
        At 100 %, omit ``downloadUrl`` for this many progress answers (-1: forever). The
        get-project endpoint still lists the export's ``download_url`` unless
        `project_url_missing` says otherwise.
    project_url_missing
        Get-project's ``download_url`` stays null even once the export is done: with
        ``url_missing_polls=-1``, no URL is to be had anywhere.
    done_state
        The ``state`` word of a finished export's progress answers (get-project says
        ``exported``, as documented).
    submit_failures
        HTTP statuses answering the first export POSTs (an envelope for 4xx, an HTML page for 5xx).
    progress_failures
        Answers for the first progress calls: an HTTP status, ``"malformed"`` (200, not JSON),
        ``"bad-envelope"`` (200 JSON without success/data) or ``"reset"`` (connection reset,
        no answer).
    reject_submit
        Answer every export POST ``success: false`` with this ``(code, msg)``, HTTP 400.
    expired_urls
        The first N download URLs handed out answer 403, as an expired pre-signed S3 URL does.
    cut_downloads
        The first N downloads promise the full Content-Length, then close after about half the
        bytes.
    download_url
        Hand out this ``downloadUrl`` verbatim instead of the simulator's own.
    video_size
        Override the simulator's video size for this project.
    revoke_token_after
        After this many authorized API calls for this project, revoke every token minted so far.
    linear_seconds
        Progress grows linearly with wall time, from 0 at the accepted submit to 100 this many
        seconds later, whoever polls (``progress_steps`` is then unused).
    webhook
        When the submit's ``webhookUrl`` is called, as AI Studios would (POST, JSON
        ``{progress, credit, backendTaskId, download_url}``): ``never``; ``finish`` (at 100 %);
        ``each-step`` (at every 10 %); ``late`` (``webhook_delay`` seconds after the finish);
        ``duplicated`` (twice at the finish); ``forged`` (a stranger's call halfway, claiming
        100 %, to the URL with its last path segment replaced). Needs ``linear_seconds``: only
        time moves then.
    webhook_delay
        The delay of a ``late`` webhook, in seconds.
    """

    progress_steps: tuple[float, ...] = (0.0, 35.5, 72.0, 100.0)
    fail_at_poll: int | None = None
    failure_state: str = "failed"
    url_missing_polls: int = 0
    project_url_missing: bool = False
    done_state: str = "completed"
    submit_failures: tuple[int, ...] = ()
    progress_failures: tuple[int | str, ...] = ()
    reject_submit: tuple[str, str] | None = None
    expired_urls: int = 0
    cut_downloads: int = 0
    download_url: str | None = None
    video_size: int | None = None
    revoke_token_after: int | None = None
    linear_seconds: float | None = None
    webhook: str = "never"
    webhook_delay: float = 5.0

    def __post_init__(self) -> None:
        if not self.progress_steps:
            raise ValueError("progress_steps must not be empty")
        for fault in self.progress_failures:
            if isinstance(fault, str) and fault not in PROGRESS_FAULTS:
                raise ValueError(f"unknown progress failure {fault!r}")
        if self.video_size is not None and self.video_size < 0:
            raise ValueError("video_size must be >= 0")
        if self.webhook not in WEBHOOK_MODES:
            raise ValueError(f"unknown webhook mode {self.webhook!r}")
        if self.webhook != "never" and not self.linear_seconds:
            raise ValueError("webhooks need linear_seconds: steps move only when polled")
        if self.linear_seconds is not None and self.linear_seconds <= 0:
            raise ValueError("linear_seconds must be > 0")

    def webhook_times(self) -> tuple[tuple[float, float], ...]:
        """Return ``(seconds after the submit, progress)`` of each webhook call.

        Examples
        --------
        >>> Scenario(linear_seconds=10, webhook="duplicated").webhook_times()
        ((10, 100.0), (10, 100.0))
        """
        total = self.linear_seconds or 0
        if self.webhook == "finish":
            return ((total, 100.0),)
        if self.webhook == "late":
            return ((total + self.webhook_delay, 100.0),)
        if self.webhook == "duplicated":
            return ((total, 100.0), (total, 100.0))
        if self.webhook == "forged":
            return ((total / 2, 100.0),)
        if self.webhook == "each-step":
            return tuple((total * step / 10, float(step * 10)) for step in range(1, 11))
        return ()
