"""The export's part in the account-wide render limit: queue for a slot, keep it, free it.

Every way an export starts (the API, a manifest, a schedule) runs the same state machine, and
each execution holds one slot of :class:`~aistudios_export.limiter.RenderLimiter` from before
its submit until AI Studios finished rendering, so the renders in flight at AI Studios never
exceed the limit whoever started them:

- :func:`start_render` runs in ``SubmitExport``: it takes a slot (:func:`take_slot`) before
  the submit. With every slot held it answers a ``queued`` job that says how long to wait, and
  the state machine waits in a ``Wait`` state (no function runs meanwhile) and asks again:
  waits grow from ``retry_seconds`` to ten times that, with jitter so that a queue does not
  ask in step, and end after ``max_wait_seconds`` or :data:`MAX_ATTEMPTS` with ``NoSlotFree``.
- :func:`keep_slot` runs in ``CheckProgress`` and renews the lease before it runs out, so a
  lease outlives every wait of a live export; a slot lost anyway is taken again if one is free.
  The check that finds the render done frees the slot there, before the copy.
- :func:`free_slot` runs on every failure path; an execution that ends without running it
  (aborted, timed out, killed) is freed by :func:`free_after_end`, from Step Functions' own
  status-change event. A holder that even that misses loses its slot when its lease ends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger

from aistudios_export.errors import ConfigurationError, NoSlotFree, SlotLost, StorageError
from aistudios_export.limiter import RenderLimiter
from aistudios_export.observability import Metric, record
from aistudios_export.settings import SlotSettings

logger = Logger(service="aistudios-export", child=True)

MAX_ATTEMPTS = 40
"""The most times one export asks for a slot: it bounds the history its queueing writes."""
BACKOFF = 1.5
"""Each wait for a slot is this much longer than the one before, up to ten first waits."""
RENEW_MARGIN_SECONDS = 600
"""What a lease must outlive beyond the next wait: the check after it, retried through
throttling (the state machine's backoff on ``RateLimited`` adds up to about 10 minutes)."""
END_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
"""Execution statuses after which the execution holds nothing."""
FAILURES = {"FAILED": "Unknown", "TIMED_OUT": "States.Timeout"}
"""The end statuses that count as a failed export, with the error name of one whose event
names none (a timed-out execution's never does)."""

type Random = Callable[[], float]


def take_slot(
    holder: str,
    queue: Mapping[str, Any] | None,
    *,
    limiter: RenderLimiter,
    settings: SlotSettings,
    now: Callable[[], float] = time.time,
    rand: Random = random.random,
) -> dict[str, Any]:
    """Take a render slot for ``holder``, or say how long to wait before asking again.

    Parameters
    ----------
    holder
        The export's execution name.
    queue
        What the previous answer said (``attempts``, ``since``), or None on the first ask.
    limiter
        The account's render limiter.
    settings
        The limit's settings (``retry_seconds``, ``max_wait_seconds``).
    now, rand
        The clock (epoch seconds) and a uniform random number in [0, 1).

    Returns
    -------
    dict
        ``{"acquired": True, "holder", "expires"}``, or ``{"acquired": False, "attempts",
        "since", "waitSeconds", "held", "limit"}``.

    Raises
    ------
    NoSlotFree
        Every slot stayed held for ``max_wait_seconds`` or :data:`MAX_ATTEMPTS` asks.
    StorageError, ConfigurationError
        DynamoDB failed (the state machine retries) or the table is not usable.
    """
    attempts = _whole(queue, "attempts") + 1
    t = now()
    since = float(queue["since"]) if queue and _is_number(queue.get("since")) else t
    try:
        slot = limiter.acquire(holder)
    except NoSlotFree as full:
        waited = t - since
        if attempts >= MAX_ATTEMPTS or waited >= settings.max_wait_seconds:
            raise NoSlotFree(
                full.held,
                full.limit,
                f"no render slot became free in {round(waited)} s ({attempts} tries): "
                f"{full.held} of {full.limit} renders in flight",
            ) from None
        wait = _next_wait(attempts, settings.retry_seconds, rand)
        wait = max(1, min(wait, round(settings.max_wait_seconds - waited) + 1))
        logger.info(
            "waiting for a render slot",
            extra={"holder": holder, "attempts": attempts, "held": full.held, "wait": wait},
        )
        return {
            "acquired": False,
            "attempts": attempts,
            "since": since,
            "waitSeconds": wait,
            "held": full.held,
            "limit": full.limit,
        }
    if attempts > 1:
        logger.info(
            "render slot taken after waiting",
            extra={"holder": holder, "attempts": attempts, "waited": round(t - since)},
        )
    return {"acquired": True, "holder": holder, "expires": slot.expires}


def start_render(
    job: Mapping[str, Any] | None,
    holder: str,
    *,
    attempt: int,
    limiter: RenderLimiter,
    settings: SlotSettings,
    submit: Callable[[float], dict[str, Any]],
    now: Callable[[], float] = time.time,
    rand: Random = random.random,
) -> dict[str, Any]:
    """Take a render slot, then start the render; without a free slot, say how long to wait.

    Parameters
    ----------
    job
        The export's job so far: ``{"state": "queued", ...}`` before the submit (``queue`` is
        the previous answer of :func:`take_slot` while queued), or, when a redrive resumes an
        export that was submitted, the job whose render is running.
    holder
        The export's execution name.
    attempt
        The execution's redrive count: a queue of an earlier attempt starts afresh.
    limiter, settings, now, rand
        As for :func:`take_slot`.
    submit
        Submits the export, given the lease's end, and returns the new job.

    Returns
    -------
    dict
        The job: submitted (``outcome`` ``waiting``), resumed (a submitted job that waits
        ``nextPollSeconds`` 0: it is checked at once, never submitted twice), or ``queued``,
        with ``queue`` (:func:`take_slot`'s answer and ``attempt``) and ``waitSeconds``.

    Raises
    ------
    NoSlotFree, StorageError, ConfigurationError
        As :func:`take_slot` raises them.
    """
    job = dict(job or {})
    queue = job.get("queue") if job.get("outcome") == "queued" else None
    if not isinstance(queue, Mapping) or queue.get("attempt") != attempt:
        queue = None
    slot = take_slot(holder, queue, limiter=limiter, settings=settings, now=now, rand=rand)
    if slot["acquired"] is not True:
        return {
            "state": "queued",
            "progress": 0,
            "outcome": "queued",
            "waitSeconds": slot["waitSeconds"],
            "queue": {**slot, "attempt": attempt},
        }
    if job.get("submittedUtc") and job.get("outcome") == "waiting":
        logger.info("render resumed under a new slot", extra={"holder": holder})
        return {**job, "slotExpires": slot["expires"], "nextPollSeconds": 0}
    return submit(float(slot["expires"]))


def keep_slot(
    job: dict[str, Any],
    holder: str,
    *,
    limiter: Callable[[], RenderLimiter],
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Renew a waiting export's slot before its lease could end; free a done export's.

    A waiting export's lease must outlive the next wait.
    ``job["slotExpires"]`` is when the lease ends (0: the export holds no slot); it is updated
    in the returned job. ``limiter`` gives the account's limiter; it is called only when a
    renewal or the release is due. A failure to renew or free never fails the export: a renewal
    is logged and tried again at the next poll, and a slot found lost is taken again if free; a
    slot the done export could not free ends with its lease.
    """
    expires = job.get("slotExpires")
    if job.get("outcome") == "done" and holder:
        return _free_when_done(job, holder, limiter)
    if job.get("outcome") != "waiting" or not holder or not _is_number(expires) or not expires:
        return job
    t = now()
    needed = int(job.get("nextPollSeconds") or 0) + RENEW_MARGIN_SECONDS
    if float(expires) - t > needed:
        return job
    slots = limiter()
    lease = max(slots.lease_seconds, 2 * needed)
    try:
        slot = slots.renew(holder, lease_seconds=lease)
    except SlotLost:
        logger.warning("render slot lost: taking one again", extra={"holder": holder})
        try:
            slot = slots.acquire(holder)
        except NoSlotFree as full:
            # Over the limit until this render ends: say so, and hold nothing.
            logger.warning(
                "render continues without a slot",
                extra={"holder": holder, "held": full.held, "limit": full.limit},
            )
            return {**job, "slotExpires": 0}
        except (StorageError, ConfigurationError) as error:
            logger.error("could not take a render slot again", extra={"error": str(error)})
            return job
    except (StorageError, ConfigurationError) as error:
        logger.error("could not renew the render slot", extra={"error": str(error)})
        return job
    return {**job, "slotExpires": slot.expires}


def _free_when_done(
    job: dict[str, Any], holder: str, limiter: Callable[[], RenderLimiter]
) -> dict[str, Any]:
    try:
        limiter().release(holder)
    except (StorageError, ConfigurationError) as error:
        logger.error(
            "could not free the render slot: its lease ends it", extra={"error": str(error)}
        )
        return job
    return {**job, "slotExpires": 0}


def free_slot(holder: str, *, limiter: RenderLimiter) -> dict[str, Any]:
    """Free ``holder``'s slot; freeing one that is free already is not an error."""
    return {"holder": holder, "released": limiter.release(holder)}


def free_after_end(detail: Mapping[str, Any], *, limiter: RenderLimiter) -> dict[str, Any]:
    """Free the slot of an execution that ended, from its Step Functions status-change event.

    Parameters
    ----------
    detail
        The event's ``detail`` (``name``, ``status``, ``executionArn``, ...).

    Returns
    -------
    dict
        ``{"holder", "released"}``; ``released`` is None for an execution still running.

    Notes
    -----
    Every export execution that fails or times out ends here once (Step Functions sends the
    event; the template's rule routes the export machine's), whichever state failed and even
    when none ran: so a failure counts in ``ExportsFailed`` here, by its error name, once the
    slot is free (an attempt that could not free it is retried, and must not count twice).
    An aborted execution was cancelled, not failed.
    """
    holder, status = detail.get("name"), detail.get("status")
    if not isinstance(holder, str) or not holder:
        raise ConfigurationError("a status-change event without an execution name")
    if status not in END_STATUSES:
        return {"holder": holder, "released": None}
    released = limiter.release(holder)
    if status in FAILURES:
        error = detail.get("error")
        name = error if isinstance(error, str) and error else FAILURES[status]
        record(Metric.EXPORTS_FAILED, 1, dimension=name)
    if released:
        logger.warning(
            "render slot freed after its execution ended without freeing it",
            extra={"holder": holder, "status": status},
        )
    return {"holder": holder, "released": released}


def _next_wait(attempts: int, first: int, rand: Random) -> int:
    """Half of the backed-off wait, plus a random part of the other half ("equal jitter")."""
    ceiling = min(first * BACKOFF ** (attempts - 1), 10 * first)
    return round(ceiling / 2 + rand() * ceiling / 2)


def _whole(raw: Mapping[str, Any] | None, key: str) -> int:
    # Anything but a count this module wrote counts as spent, never as a fresh start.
    value = raw.get(key) if raw else None
    if value is None:
        return 0
    return int(value) if _is_number(value) and 0 <= value < MAX_ATTEMPTS else MAX_ATTEMPTS


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
