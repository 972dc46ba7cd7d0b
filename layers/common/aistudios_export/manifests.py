"""Batch manifests: a CSV or JSON file of export requests dropped into S3, read and checked.

A manifest is either

- ``*.csv`` with a header row naming some of ``projectId,resolution,workspaceId,outputPrefix``
  (any order, only ``projectId`` required; an empty cell means "not given"), or
- ``*.json``: an array of request objects, as ``POST /exports`` takes them.

:func:`parse_manifest` turns its bytes into one execution per distinct valid row, named by
:func:`~aistudios_export.naming.execution_name` in the scope of the manifest's SHA-256 (so the
same file uploaded twice names the same executions and exports nothing twice), plus the
rejected rows with their errors. A file that cannot be read as rows at all raises
:class:`~aistudios_export.errors.ManifestInvalid`, whose message says exactly what is wrong.

:func:`prepare_batch` and :func:`summarize_batch` are the batch state machine's first and last
steps: they read and write S3 and describe executions, and know nothing of Lambda events.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from aistudios_export.aws_errors import error_code, translate
from aistudios_export.errors import (
    BatchFailed,
    ExportsFailed,
    InvalidRequest,
    ManifestInvalid,
    NotStarted,
    readable_cause,
)
from aistudios_export.models import ExportRequest
from aistudios_export.naming import execution_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

CSV_COLUMNS = ("projectId", "resolution", "workspaceId", "outputPrefix")
"""The columns a CSV manifest may have; only ``projectId`` is required."""
MAX_MANIFEST_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
"""Bounds of one manifest: the batch stays one Distributed Map run of bounded cost."""
MAX_SCOPE_LENGTH = 128
REPORTED_REJECTIONS = 25
"""Rejected rows carried in the state machine's data; the report in S3 lists them all."""
_JSON_TYPES = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean"}


# --- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """A manifest row that is not a valid export request.

    Attributes
    ----------
    row
        1-based position among the data rows (CSV: after the header; JSON: in the array).
    error
        What is wrong, naming each bad field.
    project_id
        The row's ``projectId`` as written, when it has one, so users can find the row.
    """

    row: int
    error: str
    project_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used in the state machine's data and the report."""
        data: dict[str, Any] = {"row": self.row}
        if self.project_id:
            data["projectId"] = self.project_id
        data["error"] = self.error
        return data


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: what to run, what was refused, and what was dropped as a repeat.

    Attributes
    ----------
    sha256
        Hex SHA-256 of the manifest's bytes: the scope of its execution names.
    items
        One ``{"name", "input"}`` per distinct valid row, in file order.
    rejected
        Rows that are not valid requests.
    rows
        Data rows read (blank lines are not rows).
    duplicates
        Valid rows dropped because an earlier row asks for the same export.
    """

    sha256: str
    items: tuple[dict[str, Any], ...]
    rejected: tuple[Rejection, ...]
    rows: int
    duplicates: int


@dataclass(frozen=True)
class _Row:
    number: int
    raw: Any
    problem: str | None = None


def manifest_format(key: str) -> str:
    """Return ``"csv"`` or ``"json"`` from the key's suffix.

    Raises
    ------
    ManifestInvalid
        For any other suffix.
    """
    lowered = key.lower()
    for suffix in ("csv", "json"):
        if lowered.endswith("." + suffix):
            return suffix
    raise ManifestInvalid(f"manifest {key}: the file name must end in .csv or .json")


def parse_manifest(
    data: bytes,
    key: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    scope: str = "",
) -> Manifest:
    """Validate a manifest's bytes and turn them into named executions.

    Parameters
    ----------
    data
        The file as stored; a UTF-8 BOM and CRLF line ends are accepted.
    key
        Its object key: the suffix says the format, and messages name it.
    defaults
        ``pollSeconds``/``timeoutSeconds``/``stallSeconds`` for rows that have none.
    scope
        Extra scope of the execution names (a schedule's run), beside the file's digest.

    Raises
    ------
    ManifestInvalid
        When the file is empty, too big, not UTF-8, has no header or unknown columns, is not a
        JSON array, or has no valid row at all.
    """
    fmt = manifest_format(key)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(
            f"manifest {key} is {len(data)} bytes; at most {MAX_MANIFEST_BYTES} are allowed "
            "(split it into several files)"
        )
    text = _decode(data, key)
    if not text.strip():
        raise ManifestInvalid(f"manifest {key} is empty")
    rows = list(_csv_rows(text, key) if fmt == "csv" else _json_rows(text, key))
    if not rows:
        raise ManifestInvalid(f"manifest {key} has no rows")

    digest = hashlib.sha256(data).hexdigest()
    name_scope = f"{digest}:{scope}" if scope else digest
    items: dict[str, dict[str, Any]] = {}
    rejected: list[Rejection] = []
    duplicates = 0
    for row in rows:
        try:
            if row.problem is not None:
                raise InvalidRequest.whole(row.problem)
            request_input = ExportRequest.parse(row.raw, defaults).to_input()
        except InvalidRequest as e:
            rejected.append(Rejection(row.number, str(e), _project_hint(row.raw)))
            continue
        name = execution_name(request_input, scope=name_scope)
        if name in items:  # the same canonical request: export it once
            duplicates += 1
            continue
        items[name] = {"name": name, "input": request_input}
    if not items:
        shown = "; ".join(f"row {r.row}: {r.error}" for r in rejected[:5])
        more = f"; and {len(rejected) - 5} more" if len(rejected) > 5 else ""
        raise ManifestInvalid(f"manifest {key} has no valid row: {shown}{more}")
    return Manifest(digest, tuple(items.values()), tuple(rejected), len(rows), duplicates)


def _decode(data: bytes, key: str) -> str:
    try:
        # utf-8-sig drops the byte-order mark spreadsheet programs put first.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestInvalid(
            f"manifest {key} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
            "cannot be decoded (save the file as UTF-8)"
        ) from None


def _csv_rows(text: str, key: str) -> Iterator[_Row]:
    # newline="" lets the csv module see CRLF itself, as its documentation asks.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next((r for r in reader if any(cell.strip() for cell in r)), None)
        if header is None:
            raise ManifestInvalid(f"manifest {key} is empty")
        columns = _columns(header, key)
        number = 0
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines, such as a trailing one, are not rows
            number += 1
            if number > MAX_ROWS:
                raise ManifestInvalid(f"manifest {key} has more than {MAX_ROWS} rows")
            raw = {
                c: cell.strip() for c, cell in zip(columns, record, strict=False) if cell.strip()
            }
            problem = None
            if len(record) > len(columns):
                problem = (
                    f"the row has {len(record)} fields but the header names {len(columns)} columns"
                )
            yield _Row(number, raw, problem)
    except csv.Error as e:
        raise ManifestInvalid(
            f"manifest {key} is not valid CSV at line {reader.line_num}: {e}"
        ) from None


def _columns(header: list[str], key: str) -> list[str]:
    canonical = {c.lower(): c for c in CSV_COLUMNS}
    names = [cell.strip() for cell in header]
    allowed = ",".join(CSV_COLUMNS)
    if not any(n.lower() in canonical for n in names):
        first = ",".join(names)[:80]
        raise ManifestInvalid(
            f"manifest {key} has no header row: the first line must name the columns "
            f"(some of {allowed}), but it is {first!r}"
        )
    unknown = [n for n in names if n.lower() not in canonical]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5])
        raise ManifestInvalid(
            f"manifest {key} has unknown column(s) {shown}; the columns may be {allowed}"
        )
    columns = [canonical[n.lower()] for n in names]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ManifestInvalid(f"manifest {key} names column(s) {', '.join(repeated)} twice")
    if "projectId" not in columns:
        raise ManifestInvalid(f"manifest {key} has no projectId column (it is required)")
    return columns


def _json_rows(text: str, key: str) -> Iterator[_Row]:
    try:
        document = json.loads(text)
    except ValueError as e:
        raise ManifestInvalid(f"manifest {key} is not valid JSON: {e}") from None
    if not isinstance(document, list):
        raise ManifestInvalid(
            f"manifest {key} must be a JSON array of request objects, "
            f"not a JSON {_JSON_TYPES.get(type(document), 'null')}"
        )
    if len(document) > MAX_ROWS:
        raise ManifestInvalid(f"manifest {key} has more than {MAX_ROWS} rows")
    for index, raw in enumerate(document, start=1):
        yield _Row(index, raw)


def _project_hint(raw: Any) -> str | None:
    value = raw.get("projectId") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


# --- the batch state machine's steps -----------------------------------------------------


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
    """

    bucket: str
    manifest_prefix: str
    results_prefix: str


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
        "itemsKey": prefix + "items.json",
        "rejectedKey": prefix + "rejected.json",
        "reportKey": prefix + "report.json",
    }
    try:
        manifest = parse_manifest(data, key, defaults=defaults, scope=scope)
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
    execution_arn_prefix: str,
    s3_client: S3Client,
    sfn_client: SFNClient,
) -> dict[str, Any]:
    """Write the batch report (every row's outcome) and decide whether the batch succeeded.

    Each row's outcome is read from its export execution, found by its deterministic name, so
    a row answered from an earlier upload reports that upload's video.

    Parameters
    ----------
    batch
        The plan :func:`prepare_batch` returned.
    map_run
        The Map state's result, or its error (``{"Error", "Cause"}``) when the Map failed.
    tolerated_failure_percentage
        The batch fails when a larger share of its exports did not succeed.
    execution_arn_prefix
        ``arn:...:execution:{export state machine}:``; a row's name completes it.
    s3_client, sfn_client
        Read the work files and write the report; describe the exports.

    Returns
    -------
    dict
        ``{"status", "reportKey", "counts", "error"?, "cause"?}``.
    """
    bucket = str(batch["bucket"])
    items = _get_json(s3_client, bucket, str(batch["itemsKey"]))
    rejected = _get_json(s3_client, bucket, str(batch["rejectedKey"]))
    rows = [_row_outcome(sfn_client, execution_arn_prefix, item) for item in items]
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
    _put_json(s3_client, bucket, str(batch["reportKey"]), report)
    return {**summary, "counts": counts}


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
            answer["Body"].close()
            raise ManifestInvalid(
                f"manifest {candidate} is {size} bytes; at most {MAX_MANIFEST_BYTES} are allowed "
                "(split it into several files)"
            )
        return answer["Body"].read(MAX_MANIFEST_BYTES + 1), candidate, answer.get("VersionId")
    raise ManifestInvalid(f"manifest s3://{bucket}/{key} does not exist (or may not be read)")


def _row_outcome(sfn_client: SFNClient, arn_prefix: str, item: Mapping[str, Any]) -> dict[str, Any]:
    request = item.get("input", {})
    row: dict[str, Any] = {
        "projectId": request.get("projectId"),
        "resolution": request.get("resolution"),
        "exportId": item.get("name"),
    }
    try:
        described = sfn_client.describe_execution(executionArn=arn_prefix + str(item["name"]))
    except ClientError as e:
        if error_code(e) != "ExecutionDoesNotExist":
            raise translate(e, f"could not describe export {item.get('name')}") from None
        return {
            **row,
            "status": "NOT_STARTED",
            "error": NotStarted.__name__,
            "cause": "the batch ended before this export started",
        }
    except BotoCoreError as e:
        raise translate(e, f"could not describe export {item.get('name')}") from None
    row["status"] = described["status"]
    if described["status"] == "SUCCEEDED":
        output = json.loads(described.get("output") or "{}")
        video = output.get("video") if isinstance(output, dict) else None
        if isinstance(video, dict):
            row["video"] = {
                k: video[k]
                for k in ("bucket", "key", "size", "sha256", "contentType", "s3Uri", "versionId")
                if k in video
            }
    elif described["status"] != "RUNNING":
        row["error"] = described.get("error") or described["status"]
        row["cause"] = readable_cause(described.get("cause")) or ""
    return row


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
