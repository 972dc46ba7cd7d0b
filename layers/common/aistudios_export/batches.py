"""The batch state machine's own steps: its first (PrepareManifest) and last (SummarizeBatch).

:func:`prepare_batch` reads a manifest from S3, checks it with
:func:`~aistudios_export.manifests.parse_manifest` and writes the rows the Distributed Map
reads; :func:`summarize_batch` reads each row's outcome from the Map's result files
(:mod:`~aistudios_export.map_results`) and writes the batch report. Both read and write S3
only, and know nothing of Lambda events. Every file of a batch lives under
:func:`batch_location`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from aistudios_export.aws_errors import error_code, translate
from aistudios_export.errors import (
    BatchFailed,
    ExportsFailed,
    ManifestInvalid,
    NotStarted,
    ResultMissing,
    ResultsUnreadable,
    readable_cause,
)
from aistudios_export.manifests import (
    MAX_MANIFEST_BYTES,
    manifest_format,
    parse_manifest,
    too_big,
)
from aistudios_export.map_results import find_map_runs, read_map_results

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_SCOPE_LENGTH = 128
"""The longest ``scope`` (a schedule's run) a batch input may carry."""
REPORTED_REJECTIONS = 25
"""Rejected rows carried in the state machine's data; the report in S3 lists them all."""
ITEMS_FILE, REJECTED_FILE, REPORT_FILE = "items.json", "rejected.json", "report.json"
"""The files of a batch, under its :func:`batch_location` prefix."""
MAP_RUNS_FOLDER = "map-runs"
"""The Map's ResultWriter prefix, under the batch's: each map run writes into ``<it>/<run id>/``."""
VIDEO_FIELDS = ("bucket", "key", "size", "sha256", "contentType", "s3Uri", "versionId")
"""What the report says of each exported video."""


@dataclass(frozen=True)
class BatchSettings:
    """Where a batch reads and writes (template parameters, through the state machine).

    Attributes
    ----------
    bucket
        The stack's bucket: manifests, results and videos live there.
    manifest_prefix
        Manifests are read only under this prefix.
    results_prefix
        Work files and reports go under it, never under ``manifest_prefix``.
    row_identity
        What makes two rows one export: ``"manifest"`` or ``"request"``
        (:data:`~aistudios_export.manifests.ROW_IDENTITIES`).
    """

    bucket: str
    manifest_prefix: str
    results_prefix: str
    row_identity: str = "manifest"


def prepare_batch(
    request: Any,
    *,
    settings: BatchSettings,
    defaults: Mapping[str, Any] | None,
    s3_client: S3Client,
) -> dict[str, Any]:
    """Read and check the manifest named by ``request``; write the rows for the Map.

    Parameters
    ----------
    request
        The batch input, ``{"bucket", "key"}`` (from the S3 rule or a schedule), optionally
        with ``"scope"``: a schedule's run, so that each run exports again.
    settings
        Where the stack keeps manifests and results.
    defaults
        The export defaults for rows that do not set them.
    s3_client
        Reads the manifest, writes ``items.json`` and ``rejected.json``.

    Returns
    -------
    dict
        The batch plan: manifest, keys of the work files and report, counts, and the first
        rejected rows.

    Raises
    ------
    ManifestInvalid
        When the input or the file is not a usable manifest (also written as the batch report
        when the file could be read).
    StorageError
        When S3 fails in a way worth retrying.
    """
    bucket, key, scope = _batch_input(request, settings)
    data, key, version = _read_manifest(s3_client, bucket, key)
    digest = hashlib.sha256(data).hexdigest()
    batch_id, prefix = batch_location(settings, key, digest, scope)
    manifest_info: dict[str, Any] = {"bucket": bucket, "key": key, "sha256": digest}
    if version:
        manifest_info["versionId"] = version
    if scope:
        manifest_info["scope"] = scope
    plan: dict[str, Any] = {
        "manifest": manifest_info,
        "batchId": batch_id,
        "bucket": bucket,
        "resultsPrefix": prefix,
        "itemsKey": prefix + ITEMS_FILE,
        "rejectedKey": prefix + REJECTED_FILE,
        "reportKey": prefix + REPORT_FILE,
        "mapRunsPrefix": prefix + MAP_RUNS_FOLDER,
    }
    try:
        manifest = parse_manifest(
            data, key, defaults=defaults, scope=scope, row_identity=settings.row_identity
        )
    except ManifestInvalid as e:
        report = {"manifest": manifest_info, "status": "FAILED", "error": ManifestInvalid.__name__}
        _put_json(s3_client, bucket, plan["reportKey"], {**report, "cause": str(e), "rows": []})
        raise
    rejected = [r.to_dict() for r in manifest.rejected]
    _put_json(s3_client, bucket, plan["itemsKey"], list(manifest.items))
    _put_json(s3_client, bucket, plan["rejectedKey"], rejected)
    plan["counts"] = {
        "rows": manifest.rows,
        "accepted": len(manifest.items),
        "rejected": len(rejected),
        "duplicates": manifest.duplicates,
    }
    plan["rejected"] = rejected[:REPORTED_REJECTIONS]
    return plan


def batch_location(
    settings: BatchSettings, key: str, sha256: str, scope: str = ""
) -> tuple[str, str]:
    """Return ``(batch id, prefix)`` of a manifest's batch files: items, rejected rows, report.

    The same bytes at the same key (and the same schedule run) always land in the same place,
    ``{results prefix}{key below the manifest prefix}/{batch id}/``.
    """
    batch_id = (
        hashlib.sha256(f"{sha256}:{scope}".encode()).hexdigest()[:16] if scope else sha256[:16]
    )
    relative = (
        key[len(settings.manifest_prefix) :] if key.startswith(settings.manifest_prefix) else key
    )
    return batch_id, f"{settings.results_prefix}{relative}/{batch_id}/"


def summarize_batch(
    batch: Mapping[str, Any],
    map_run: Mapping[str, Any] | None,
    *,
    tolerated_failure_percentage: float,
    s3_client: S3Client,
) -> dict[str, Any]:
    """Write the batch report (every row's outcome) and decide whether the batch succeeded.

    Each row's outcome is read from the file the Map's ``ResultWriter`` wrote for it: its
    export's output (a row answered from an earlier upload carries that upload's), or its
    error. A row the Map never started is ``NOT_STARTED``; a row its results do not list
    (the Map stopped without writing them) is ``UNKNOWN``. S3 is read a file at a time, never
    a call per row.

    A Map that failed (more rows failed than it tolerates, or an error of its own) hands over
    no ``ResultWriterDetails``, yet Step Functions writes its results: they are found under the
    batch's own ResultWriter prefix (``mapRunsPrefix``). That prefix holds a map run per batch
    execution of the same manifest bytes (uploaded again, delivered twice): all are read, oldest
    first, and a row's outcome is the one of the latest run that started it. Every run names the
    same export executions (a row's name is its export's), so a later run's outcome of a row is
    that export's latest; a run that never started a row says nothing about it.

    Parameters
    ----------
    batch
        The plan :func:`prepare_batch` returned.
    map_run
        The Map state's result (``{"MapRunArn", "ResultWriterDetails"}``), or its error
        (``{"Error", "Cause"}``) when the Map failed: its results are then looked for under
        ``batch["mapRunsPrefix"]``.
    tolerated_failure_percentage
        The batch fails when a larger share of its exports did not succeed.
    s3_client
        Reads the work files and the Map's results; writes the report.

    Returns
    -------
    dict
        ``{"status", "reportKey", "counts", "error"?, "cause"?}``.
    """
    bucket = str(batch["bucket"])
    items = _get_json(s3_client, bucket, str(batch["itemsKey"]))
    rejected = _get_json(s3_client, bucket, str(batch["rejectedKey"]))
    runs = _map_runs(s3_client, batch, map_run)
    outcomes = _row_outcomes(s3_client, runs)
    missing = _missing(map_run, found=bool(runs))
    rows = [_row(item, outcomes.get(str(item.get("name")), missing)) for item in items]
    failed = sum(1 for r in rows if r["status"] != "SUCCEEDED")
    counts = {
        **batch.get("counts", {}),
        "succeeded": len(rows) - failed,
        "failed": failed,
    }
    summary: dict[str, Any] = {"status": "SUCCEEDED", "reportKey": batch["reportKey"]}
    if map_run and map_run.get("Error"):
        # Error names under "States." are reserved: name the batch's failure, keep the cause.
        cause = readable_cause(map_run.get("Cause")) or "no cause given"
        summary |= {
            "status": "FAILED",
            "error": BatchFailed.__name__,
            "cause": f"the exports stopped with {map_run['Error']}: {cause}",
        }
    elif rows and failed * 100 > tolerated_failure_percentage * len(rows):
        summary |= {
            "status": "FAILED",
            "error": ExportsFailed.__name__,
            "cause": (
                f"{failed} of {len(rows)} exports did not succeed "
                f"(more than the tolerated {tolerated_failure_percentage:g}%)"
            ),
        }
    report = {
        "manifest": batch.get("manifest"),
        "batchId": batch.get("batchId"),
        **{k: v for k, v in summary.items() if k != "reportKey"},
        "counts": counts,
        "rows": rows,
        "rejected": rejected,
    }
    if map_run and map_run.get("ResultWriterDetails"):
        report["mapRun"] = map_run
    elif map_run and runs:
        report["mapRun"] = {**map_run, "ResultsFound": runs}
    _put_json(s3_client, bucket, str(batch["reportKey"]), report)
    return {**summary, "counts": counts}


def _map_runs(
    s3_client: S3Client, batch: Mapping[str, Any], map_run: Mapping[str, Any] | None
) -> list[Mapping[str, Any]]:
    """Return the ``ResultWriterDetails`` of the map runs to read, oldest first."""
    details = map_run.get("ResultWriterDetails") if map_run else None
    if isinstance(details, Mapping):
        return [details]
    if not map_run or not map_run.get("Error") or not batch.get("mapRunsPrefix"):
        return []
    return list(find_map_runs(s3_client, str(batch["bucket"]), str(batch["mapRunsPrefix"])))


def _row_outcomes(s3_client: S3Client, runs: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return each row's outcome (``status``, ``video`` or ``error``/``cause``) by its name.

    ``runs`` are read in order: a later run's outcome of a row replaces an earlier one's,
    unless the later run never started the row.
    """
    outcomes: dict[str, dict[str, Any]] = {}
    for details in runs:
        for kind, entry in read_map_results(s3_client, details):
            item = _json_text(entry.get("Input"), "Input")
            name = item.get("name")
            if not isinstance(name, str):
                raise ResultsUnreadable("a result entry's input names no export")
            if kind != "PENDING" or name not in outcomes:
                outcomes[name] = _entry_outcome(kind, entry)
    return outcomes


def _entry_outcome(kind: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "PENDING":
        return {
            "status": "NOT_STARTED",
            "error": NotStarted.__name__,
            "cause": "the batch ended before this export started",
        }
    if kind == "SUCCEEDED" and entry.get("Status") == "SUCCEEDED":
        outcome: dict[str, Any] = {"status": "SUCCEEDED"}
        export = _json_text(entry.get("Output"), "Output").get("export")
        video = export.get("video") if isinstance(export, Mapping) else None
        if isinstance(video, Mapping):
            outcome["video"] = {k: video[k] for k in VIDEO_FIELDS if k in video}
        return outcome
    status = str(entry.get("Status") or "FAILED")
    error, cause = entry.get("Error"), entry.get("Cause")
    # A failed startExecution.sync (and a row answered from an earlier, failed export) has
    # the export's description as its cause: its status and error are the row's.
    export = _described_execution(cause)
    if export is not None:
        status = str(export.get("Status") or status)
        error, cause = export.get("Error"), export.get("Cause")
    return {
        "status": status,
        "error": str(error or status),
        "cause": readable_cause(cause) or "",
    }


def _described_execution(cause: object) -> Mapping[str, Any] | None:
    if not isinstance(cause, str) or not cause.startswith("{"):
        return None
    try:
        parsed = json.loads(cause)
    except ValueError:
        return None
    if isinstance(parsed, Mapping) and "ExecutionArn" in parsed and "Status" in parsed:
        return parsed
    return None


def _missing(map_run: Mapping[str, Any] | None, *, found: bool) -> dict[str, Any]:
    """Return the outcome of a row the Map's results do not list."""
    if map_run and map_run.get("Error") and not found:
        why = f"the Map stopped with {map_run['Error']} before writing its results"
    else:
        why = "the Map's results do not list it"
    return {
        "status": "UNKNOWN",
        "error": ResultMissing.__name__,
        "cause": f"{why}; its export execution (named by exportId) says how it ended",
    }


def _row(item: Mapping[str, Any], outcome: Mapping[str, Any]) -> dict[str, Any]:
    request = item.get("input", {})
    return {
        "projectId": request.get("projectId"),
        "resolution": request.get("resolution"),
        "exportId": item.get("name"),
        **outcome,
    }


def _json_text(text: object, what: str) -> dict[str, Any]:
    """Parse an entry's ``Input`` or ``Output``: JSON text of an object."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ResultsUnreadable(f"a result entry's {what} is not a JSON object")
    return value


def _batch_input(request: Any, settings: BatchSettings) -> tuple[str, str, str]:
    if not isinstance(request, Mapping):
        raise ManifestInvalid('the batch input must be a JSON object {"bucket", "key"}')
    bucket, key, scope = request.get("bucket"), request.get("key"), request.get("scope", "")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise ManifestInvalid('the batch input must name the manifest: {"bucket", "key"}')
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE_LENGTH:
        raise ManifestInvalid(f"scope: must be a string of at most {MAX_SCOPE_LENGTH} characters")
    if bucket != settings.bucket:
        raise ManifestInvalid(f"manifest bucket {bucket} is not this stack's bucket")
    if not key.startswith(settings.manifest_prefix) or key == settings.manifest_prefix:
        raise ManifestInvalid(f"manifest {key} is not under {settings.manifest_prefix}")
    if key.startswith(settings.results_prefix):
        # A batch's own files are never a manifest, even where the prefixes nest.
        raise ManifestInvalid(f"{key} is a batch file under {settings.results_prefix}")
    manifest_format(key)
    return bucket, key, scope


def _read_manifest(s3_client: S3Client, bucket: str, key: str) -> tuple[bytes, str, str | None]:
    # EventBridge may hand over the key URL-encoded (as S3 notifications do): try it decoded.
    candidates = [key] + ([unquote_plus(key)] if unquote_plus(key) != key else [])
    for candidate in candidates:
        try:
            answer = s3_client.get_object(Bucket=bucket, Key=candidate)
        except ClientError as e:
            # Without s3:ListBucket, S3 answers a missing key with AccessDenied.
            if error_code(e) in ("NoSuchKey", "404", "AccessDenied", "403"):
                continue
            raise translate(e, f"could not read manifest {candidate}") from None
        except BotoCoreError as e:
            raise translate(e, f"could not read manifest {candidate}") from None
        size = int(answer.get("ContentLength", 0))
        if size > MAX_MANIFEST_BYTES:
            answer["Body"].close()  # refused unread: the file never comes over the wire
            raise too_big(candidate, size)
        # One byte past the limit tells a too-big file, whatever ContentLength said.
        data = answer["Body"].read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            answer["Body"].close()
            raise too_big(candidate)
        return data, candidate, answer.get("VersionId")
    raise ManifestInvalid(f"manifest s3://{bucket}/{key} does not exist (or may not be read)")


def _get_json(s3_client: S3Client, bucket: str, key: str) -> Any:
    try:
        return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (BotoCoreError, ClientError) as e:
        raise translate(e, f"could not read {key}") from None


def _put_json(s3_client: S3Client, bucket: str, key: str, value: Any) -> None:
    try:
        s3_client.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(value, separators=(",", ":")).encode(),
            ContentType="application/json",
        )
    except (BotoCoreError, ClientError) as e:
        raise translate(e, f"could not write {key}") from None
