"""The steps of one export, free of AWS event types: each handler calls one of these.

- :func:`submit_export` validates the request and asks AI Studios to export.
- :func:`check_progress` polls once and decides: ``waiting``, ``done``, ``failed`` or ``timedOut``.
- :func:`finalize_export` streams the finished video into S3 and returns where it is.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from aistudios_export.client import AiStudiosClient
from aistudios_export.errors import (
    DownloadUrlMissing,
    ExportFailed,
    ExportTimedOut,
    RequestRejected,
)
from aistudios_export.models import (
    MAX_UNKNOWN_STATES,
    MAX_URL_MISSING_CHECKS,
    MAX_WAKES,
    ExportRequest,
    Job,
    min_poll_seconds,
    webhook_poll_seconds,
)
from aistudios_export.observability import Metric, record
from aistudios_export.pacing import Pace, next_wait
from aistudios_export.relay import relayed_payload
from aistudios_export.settings import OutputSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from aistudios_export.pinning import PinnedPools

logger = Logger(service="aistudios-export", child=True)

# The vocabulary of ``state`` is undocumented: these words mean a terminal failure in any case.
FAILURE_STATE = re.compile(r"fail|error|cancel", re.IGNORECASE)
DONE_STATES = frozenset({"exported", "complete", "completed"})
"""State words (any case) that mean the export is finished, whatever ``progress`` says:
``exported`` (the get-projects reference) and ``complete`` (getting-started) are documented,
``completed`` is what the tutorials print."""
KNOWN_STATES = DONE_STATES | frozenset(
    {
        "",
        "exporting",
        "progress",
        "processing",
        "pending",
        "queued",
        "done",
        "success",
        "succeeded",
        "finished",
    }
)
"""Every state word the library knows; any other is logged once per export and read as
"still working" for as long as progress moves (the stall limit ends the rest)."""
URL_MISSING_POLL_SECONDS = 2
"""Wait before re-checking an export that reached 100% without a download URL."""


def submit_export(
    raw_request: Any,
    defaults: Mapping[str, Any] | None,
    *,
    api: AiStudiosClient,
    export_id: str = "",
    slot: Mapping[str, Any] | None = None,
    webhook: Callable[[str], str | None] | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Validate a request, submit the export, and return the new job.

    ``webhook`` gives this stack's webhook URL of an export id
    (:meth:`~aistudios_export.webhooks.WebhookKey.url`), which AI Studios calls to end the
    execution's waits early; a request's own ``webhookUrl`` is then kept in the job, and
    CheckProgress relays confirmed progress to it.

    ``export_id`` is the execution's name; it makes the export's object key its own.
    ``slot`` is the render slot the export took (:func:`~aistudios_export.render_slots.take_slot`),
    whose lease the job carries so that polls renew it.
    ``defaults`` are the deployment's: the request's missing knobs, ``minPollSeconds``,
    the floor under every wait (:func:`~aistudios_export.models.min_poll_seconds`), and
    ``webhookPollSeconds``, every wait's length when AI Studios calls this stack's webhook
    (:func:`~aistudios_export.models.webhook_poll_seconds`).

    Raises
    ------
    InvalidRequest
        Before anything is sent to AI Studios, naming every bad field.
    """
    request = ExportRequest.parse(raw_request, defaults)
    floor = min_poll_seconds(defaults)
    webhook_wait = webhook_poll_seconds(defaults)
    own = webhook(export_id) if webhook is not None and export_id else None
    api.submit_export(request.api_body(own))
    record(Metric.EXPORTS_STARTED, 1)
    expires = slot.get("expires") if slot and slot.get("acquired") is True else None
    job = Job.start(
        request,
        now(),
        export_id=export_id,
        min_poll_seconds=floor,
        slot_expires=float(expires) if isinstance(expires, int | float) else 0.0,
        relay_webhook_url=request.webhook_url if own else None,
        webhook_poll_seconds=webhook_wait if own else 0,
    )
    logger.info(
        "export submitted", extra={"projectId": job.projectId, "resolution": job.resolution}
    )
    return job.to_dict()


def check_progress(
    raw_job: Any,
    *,
    api: AiStudiosClient,
    now: Callable[[], float] = time.time,
    draw: Callable[[], float] = random.random,
    relay: Callable[[str, dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Poll the export once and decide what the state machine does next.

    The decision is bounded three ways: the deadline, the number of polls, and how long
    progress may stand still. The download URL is checked for but never returned. A waiting
    export waits as :func:`~aistudios_export.pacing.next_wait` predicts from its pace (``draw``
    gives the jitter), or, when AI Studios calls this stack's webhook, ``webhookPollSeconds``:
    the webhook announces the end, and a check it did not cause is the fall-back. A check a
    webhook caused counts as a wake, up to :data:`~aistudios_export.models.MAX_WAKES`, and then
    as a poll. Progress confirmed here is relayed (``relay``) to the request's own webhook,
    once per change.
    """
    job = Job.from_dict(raw_job)
    woken = isinstance(job.wake, dict) and job.wake.get("by") == "webhook"
    if woken and job.wakes < MAX_WAKES:
        job.wakes += 1
    else:
        job.polls += 1
    job.wake = None
    answer = api.get_progress(job.projectId)
    t = now()
    before = Pace(
        now=t,
        progress=answer.progress,
        since=job.checkedAt or job.submittedAt,
        since_progress=job.progress,
        predicted_before=job.predictedDoneAt,
    )
    if answer.progress != job.progress:
        job.lastChangeAt = t
    job.progress, job.state, job.checkedAt = answer.progress, answer.state, t
    _note_unknown_state(job, answer.state)
    failed = FAILURE_STATE.search(answer.state) is not None
    finished = answer.progress >= 100 or answer.state.lower() in DONE_STATES
    url = answer.download_url
    if finished and not url and not failed:
        url = project_download_url(api, job.projectId)

    if failed:
        _end(
            job,
            "failed",
            ExportFailed.__name__,
            f"AI Studios reported state {answer.state[:40]!r} for project {job.projectId} "
            f"at {answer.progress:g}%",
        )
    elif finished and url:
        job.outcome, job.nextPollSeconds = "done", 0
        record(Metric.TIME_TO_DOWNLOAD_URL, max(0.0, t - job.submittedAt))
    elif finished:
        job.urlMissingChecks += 1
        if job.urlMissingChecks > MAX_URL_MISSING_CHECKS:
            _end(
                job,
                "failed",
                DownloadUrlMissing.__name__,
                f"project {job.projectId} reached {answer.progress:g}% "
                f"(state {answer.state[:40]!r}) but no downloadUrl appeared after "
                f"{job.urlMissingChecks} checks of the progress answer and of get-project",
            )
        else:
            # Below the deployment's floor on purpose: the URL is usually a moment away, and
            # these re-checks are few (MAX_URL_MISSING_CHECKS) and counted like any poll.
            _wait(job, t, min(job.pollSeconds, URL_MISSING_POLL_SECONDS))
    elif t >= job.deadline or job.polls >= job.maxPolls:
        _end(
            job,
            "timedOut",
            ExportTimedOut.__name__,
            f"project {job.projectId} did not finish within "
            f"{round(job.deadline - job.submittedAt)} s "
            f"({job.polls} polls); last progress {job.progress:g}%",
        )
    elif t - job.lastChangeAt >= job.stallSeconds:
        _end(
            job,
            "timedOut",
            ExportTimedOut.__name__,
            f"project {job.projectId} stalled: progress stayed at {job.progress:g}% "
            f"for {round(t - job.lastChangeAt)} s (limit {job.stallSeconds} s)",
        )
    elif job.webhookPollSeconds > 0:
        _wait(job, t, job.webhookPollSeconds)
    else:
        seconds, job.predictedDoneAt = next_wait(
            before,
            shortest=job.minPollSeconds or job.pollSeconds,
            longest=job.pollSeconds,
            started=job.submittedAt,
            random=draw,
        )
        _wait(job, t, seconds)
    if relay is not None and job.relayWebhookUrl and job.progress != job.relayedProgress:
        done = job.outcome == "done"
        relay(
            job.relayWebhookUrl,
            relayed_payload(job.projectId, job.progress, (done and url) or None),
        )
        job.relayedProgress = job.progress
    logger.info(
        "export progress",
        extra={
            "projectId": job.projectId,
            "progress": job.progress,
            "outcome": job.outcome,
            "polls": job.polls,
            "wakes": job.wakes,
            "nextPollSeconds": job.nextPollSeconds,
        },
    )
    return job.to_dict()


def finalize_export(
    raw_job: Any,
    *,
    api: AiStudiosClient,
    s3_client: S3Client,
    output: OutputSettings,
    pools: PinnedPools | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Stream the finished video into S3 and return its location and checksum.

    The download URL is asked for afresh (it may be signed and expiring) and again after a 403.
    Its query string stays out of urllib3's logs once
    :func:`~aistudios_export.observability.install_url_redaction` has run in the process (the
    FinalizeExport handler runs it).

    A retry is safe: open uploads of the key left by a dead attempt are aborted first, a
    video an earlier attempt already stored and verified is returned without a new download,
    and an unverified one it left is deleted before the new copy.

    It records ``ExportsSucceeded`` and ``ExportDuration`` (from the submission, by ``now``),
    and for a copy made now ``BytesCopied`` and ``CopyThroughput``
    (:mod:`~aistudios_export.observability`).
    """
    # Imported here: only FinalizeExport copies, and SubmitExport and CheckProgress start faster
    # without the transfer modules.
    from aistudios_export.checksums import previous_copy
    from aistudios_export.multipart import abort_open_uploads
    from aistudios_export.transfer import copy_url_to_s3
    from aistudios_export.urlguard import UrlPolicy

    job = Job.from_dict(raw_job)
    key = object_key(output.prefix, job)

    def ask_download_url() -> str:
        url = api.get_progress(job.projectId).download_url
        url = url or project_download_url(api, job.projectId)
        if not url:
            raise DownloadUrlMissing(
                f"project {job.projectId} has no downloadUrl any more "
                "(neither in the progress answer nor from get-project)"
            )
        return url

    metadata = {"projectid": job.projectId, "resolution": job.resolution}
    # An attempt that died mid-copy (timeout, out of memory) left its upload open: clear it now
    # rather than pay for its parts until the lifecycle rule does.
    abort_open_uploads(s3_client, bucket=output.bucket, key=key)
    # The key depends only on the job, so a verified object there is an earlier attempt's
    # finished copy: return it rather than store the video a second time.
    stored = previous_copy(s3_client, bucket=output.bucket, key=key, metadata=metadata)
    if stored is None:
        started = time.monotonic()
        stored = copy_url_to_s3(
            ask_download_url,
            s3_client=s3_client,
            bucket=output.bucket,
            key=key,
            metadata=metadata,
            policy=UrlPolicy.from_trusted_origin(output.trusted_download_origin),
            pools=pools,
            part_size=output.part_size,
            max_size=output.max_video_size,
        )
        seconds = time.monotonic() - started
        record(Metric.BYTES_COPIED, stored.size)
        record(Metric.COPY_THROUGHPUT, stored.size / seconds if seconds > 0 else 0.0)
    record(Metric.EXPORTS_SUCCEEDED, 1)
    record(Metric.EXPORT_DURATION, max(0.0, now() - job.submittedAt))
    logger.info(
        "video stored",
        extra={
            "projectId": job.projectId,
            "key": stored.key,
            "size": stored.size,
            "sha256": stored.sha256,
        },
    )
    return {
        "bucket": stored.bucket,
        "key": stored.key,
        "size": stored.size,
        "sha256": stored.sha256,
        "versionId": stored.version_id,
        "contentType": stored.content_type,
        "s3Uri": f"s3://{stored.bucket}/{stored.key}",
    }


def export_result(raw_job: Any, video: Mapping[str, Any]) -> dict[str, Any]:
    """Return what a finished export answers: ``{"projectId", "resolution", "video"}``.

    The execution's output, as FinalizeExport returns it (the state machine adds nothing).
    """
    job = Job.from_dict(raw_job)
    return {"projectId": job.projectId, "resolution": job.resolution, "video": dict(video)}


def project_download_url(api: AiStudiosClient, project_id: str) -> str | None:
    """Ask get-project for the download URL the progress answer lacked; None when it has none.

    A refusal (the endpoint unknown to a compatible server, say) reads as "no URL": the caller's
    bounded re-checks decide. Transient failures and :class:`~aistudios_export.errors.Unauthorized`
    reach the caller, as from any call.
    """
    try:
        return api.get_project(project_id).download_url
    except RequestRejected as refused:
        logger.warning(
            "get-project refused; no download URL from it",
            extra={"projectId": project_id, "status": refused.status, "code": refused.code},
        )
        return None


def object_key(root_prefix: str, job: Job) -> str:
    """Return ``{root}{outputPrefix}{projectId}/{resolution}/{submitted UTC}-{exportId}.mp4``.

    The key depends only on the job, so a retried finalize writes the same key; the export id
    makes it the export's own, so two exports submitted in the same second (or a re-export)
    never write over each other. A job without one (written before it existed) keeps the key
    it was started with.
    """
    stamp = datetime.fromtimestamp(job.submittedAt, UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{job.exportId}" if job.exportId else stamp
    return f"{root_prefix}{job.outputPrefix}{job.projectId}/{job.resolution}/{name}.mp4"


def _note_unknown_state(job: Job, state: str) -> None:
    """Log a state word the library does not know, once per export (the job remembers it)."""
    word = state[:40]
    if word.lower() in KNOWN_STATES or FAILURE_STATE.search(word):
        return
    seen = (
        [w for w in job.unknownStates if isinstance(w, str)]
        if isinstance(job.unknownStates, list)
        else []
    )
    if word not in seen and len(seen) < MAX_UNKNOWN_STATES:
        logger.warning("unknown export state", extra={"projectId": job.projectId, "state": word})
        seen.append(word)
    job.unknownStates = seen


def _end(job: Job, outcome: str, error: str, cause: str) -> None:
    job.outcome = "failed" if outcome == "failed" else "timedOut"
    job.error, job.cause, job.nextPollSeconds = error, cause, 0


def _wait(job: Job, now: float, seconds: int) -> None:
    # Never sleep past the deadline: the next check must still be able to report a timeout.
    # Job.start raised pollSeconds to the deployment's floor; only this last wait before the
    # deadline may be shorter, and the check after it ends the loop.
    job.outcome = "waiting"
    job.nextPollSeconds = max(0, min(seconds, int(job.deadline - now) + 1))
