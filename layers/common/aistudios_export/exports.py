"""Start, describe and list exports: one export is one execution of the export state machine.

Free of AWS event types: ``functions/api`` turns HTTP into these calls and their results back
into HTTP. The export id is the execution's name (:func:`naming.execution_name`), derived from
the request and a scope, so a retried request names the same execution and starts nothing new:

- with an ``Idempotency-Key``, the scope is the key;
- without one, the scope is a time window of ``dedupe_window_seconds``, and a request also
  finds the previous window's execution when that one started less than a window ago.

Step Functions answers a repeated ``StartExecution`` of a running execution with the same input
with the same ARN, and any other repeat with ``ExecutionAlreadyExists``: both mean "already
started", and the caller gets that export's id and current status.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aistudios_export import clients
from aistudios_export.aws_errors import error_code
from aistudios_export.errors import ConfigurationError, InvalidRequest, Problem, readable_cause
from aistudios_export.models import DEFAULT_SECONDS, PROJECT_ID, ExportRequest
from aistudios_export.naming import execution_name as _execution_name
from aistudios_export.naming import is_export_id
from aistudios_export.settings import (
    DEFAULT_DEDUPE_WINDOW_SECONDS,
    DEFAULT_DOWNLOAD_LINK_SECONDS,
    HttpApiSettings,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import HistoryEventTypeDef

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
"""Execution statuses, which are the export statuses."""
MAX_LIMIT = 100
"""The largest page of :meth:`Exports.list`."""
IDEMPOTENCY_KEY_MAX = 255

# Parsing fills in the library's defaults (constant, so names stay stable); the execution
# input leaves unset knobs out, so the deployment's defaults apply (see Exports.start).
_KNOBS = tuple(DEFAULT_SECONDS)
_LIST_PAGE = 100
"""ListExecutions page size; a continuation token counts positions within such a page."""
_LIST_PAGES_PER_CALL = 10
"""Bound on ListExecutions calls per list request when a filter skips most executions."""
_HISTORY_PAGE = 100
_HISTORY_PAGES = 5


@dataclass(frozen=True)
class Started:
    """The answer to a start request: the export and its status now."""

    export_id: str
    status: str


@dataclass(frozen=True)
class Video:
    """A finished export's video and a short-lived link to download it."""

    s3_uri: str
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str | None
    download_url: str | None
    download_url_expires_at: datetime | None


@dataclass(frozen=True)
class Summary:
    """One export in a listing."""

    export_id: str
    project_id: str
    resolution: str
    status: str
    started_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True)
class Status(Summary):
    """Everything known about one export.

    ``progress`` and ``state`` are those of the latest progress check (``0.0`` and ``None``
    before the first); ``error`` and ``cause`` say why a failed export failed.
    """

    progress: float
    state: str | None
    error: str | None
    cause: str | None
    video: Video | None


@dataclass(frozen=True)
class Page:
    """A page of a listing; ``next_token`` fetches the next one (None at the end)."""

    exports: list[Summary]
    next_token: str | None


class Exports:
    """Exports over the export state machine.

    Parameters
    ----------
    state_machine_arn
        The export state machine.
    sfn, s3
        Clients; default ones are created when None.
    output_bucket
        The only bucket download links are made for (None: any bucket the video is in).
    dedupe_window_seconds
        How long an equal request without an ``Idempotency-Key`` names the same export.
    download_link_seconds
        How long a download link stays valid.
    clock
        Epoch seconds now (tests pass a fake).
    """

    def __init__(
        self,
        state_machine_arn: str,
        *,
        sfn: SFNClient | None = None,
        s3: S3Client | None = None,
        output_bucket: str | None = None,
        dedupe_window_seconds: int = DEFAULT_DEDUPE_WINDOW_SECONDS,
        download_link_seconds: int = DEFAULT_DOWNLOAD_LINK_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        prefix, sep, name = state_machine_arn.partition(":stateMachine:")
        if not sep or not name:
            raise ConfigurationError(f"{state_machine_arn!r} is not a state machine ARN")
        self.state_machine_arn = state_machine_arn
        self._execution_prefix = f"{prefix}:execution:{name}:"
        self._sfn = clients.stepfunctions(sfn)
        self._s3 = clients.s3(s3)
        self.output_bucket = output_bucket
        self.dedupe_window_seconds = dedupe_window_seconds
        self.download_link_seconds = download_link_seconds
        self._clock = clock

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        sfn: SFNClient | None = None,
        s3: S3Client | None = None,
    ) -> Exports:
        """Build from the function's environment (default: ``os.environ``).

        See :class:`~aistudios_export.settings.HttpApiSettings`.

        Raises
        ------
        ConfigurationError
            When the state machine is missing or a number is not a positive integer.
        """
        settings = HttpApiSettings.from_env(env)
        return cls(
            settings.state_machine_arn,
            sfn=sfn,
            s3=s3,
            output_bucket=settings.output_bucket,
            dedupe_window_seconds=settings.dedupe_window_seconds,
            download_link_seconds=settings.download_link_seconds,
        )

    # --- start --------------------------------------------------------------------------

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
        # Knobs the client did not set stay out of the input, so the state machine applies
        # the deployment's defaults (DefinitionSubstitutions), not this library's.
        execution_input = {
            k: v for k, v in canonical.items() if k not in _KNOBS or k in raw_request
        }
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
            name = _execution_name(canonical, f"key:{idempotency_key}")
            return self._start(name, execution_input)
        now = self._clock()
        window = math.floor(now / self.dedupe_window_seconds)
        previous = self._started_since(
            _execution_name(canonical, self._window_scope(window - 1)),
            now - self.dedupe_window_seconds,
        )
        if previous is not None:
            return previous
        return self._start(_execution_name(canonical, self._window_scope(window)), execution_input)

    def _window_scope(self, window: int) -> str:
        return f"window:{self.dedupe_window_seconds}:{window}"

    def _start(self, name: str, execution_input: Mapping[str, Any]) -> Started:
        try:
            self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=name,
                input=json.dumps(execution_input, sort_keys=True),
            )
        except ClientError as e:
            if error_code(e) != "ExecutionAlreadyExists":
                raise
            # Started before (and finished, or with other knobs): report that export.
            description = self._sfn.describe_execution(executionArn=self.execution_arn(name))
            return Started(name, description["status"])
        return Started(name, "RUNNING")

    def _started_since(self, name: str, since: float) -> Started | None:
        try:
            description = self._sfn.describe_execution(executionArn=self.execution_arn(name))
        except ClientError as e:
            if error_code(e) == "ExecutionDoesNotExist":
                return None
            raise
        if description["startDate"].timestamp() < since:
            return None
        return Started(name, description["status"])

    # --- describe -----------------------------------------------------------------------

    def execution_arn(self, export_id: str) -> str:
        """Return the ARN of the execution named ``export_id``."""
        return self._execution_prefix + export_id

    def describe(self, export_id: str) -> Status | None:
        """Return the export's status, or None when there is no such export.

        Anything that is not an export id is no export: it never reaches Step Functions.
        """
        if not is_export_id(export_id):
            return None
        arn = self.execution_arn(export_id)
        try:
            description = self._sfn.describe_execution(executionArn=arn)
        except ClientError as e:
            if error_code(e) == "ExecutionDoesNotExist":
                return None
            raise
        job = self._latest_job(arn)
        status = description["status"]
        video = None
        if status == "SUCCEEDED":
            video = self._video(_json_object(description.get("output")).get("video"))
        return Status(
            **_identity(export_id),
            status=status,
            started_at=_utc(description["startDate"]),
            stopped_at=_utc(description["stopDate"]) if "stopDate" in description else None,
            progress=_progress(job.get("progress")),
            state=str(job["state"]) if job.get("state") else None,
            error=description.get("error"),
            cause=readable_cause(description.get("cause")),
            video=video,
        )

    def _latest_job(self, arn: str) -> dict[str, Any]:
        """Return the ``job`` of the latest state output that has one (the last progress check).

        Newest first where Step Functions honours ``reverseOrder``; the event id decides either way.
        """
        token: str | None = None
        for _ in range(_HISTORY_PAGES):
            kwargs: dict[str, Any] = {"nextToken": token} if token else {}
            page = self._sfn.get_execution_history(
                executionArn=arn,
                reverseOrder=True,
                maxResults=_HISTORY_PAGE,
                includeExecutionData=True,
                **kwargs,
            )
            found = [(e["id"], job) for e in page["events"] if (job := _job_of(e)) is not None]
            if found:
                return max(found, key=lambda item: item[0])[1]
            token = page.get("nextToken")
            if not token:
                break
        return {}

    def _video(self, raw: Any) -> Video | None:
        if not isinstance(raw, Mapping) or not raw.get("bucket") or not raw.get("key"):
            return None
        bucket, key = str(raw["bucket"]), str(raw["key"])
        url = expires = None
        if self.output_bucket in (None, bucket):
            url = self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self.download_link_seconds,
            )
            expires = datetime.fromtimestamp(self._clock(), UTC) + timedelta(
                seconds=self.download_link_seconds
            )
        return Video(
            s3_uri=f"s3://{bucket}/{key}",
            bucket=bucket,
            key=key,
            size=int(raw.get("size") or 0),
            sha256=str(raw.get("sha256") or ""),
            content_type=str(raw["contentType"]) if raw.get("contentType") else None,
            download_url=url,
            download_url_expires_at=expires,
        )

    # --- list ---------------------------------------------------------------------------

    def list(
        self,
        *,
        project_id: str | None = None,
        status: str | None = None,
        limit: int = 20,
        next_token: str | None = None,
    ) -> Page:
        """List exports, most recent first.

        Parameters
        ----------
        project_id
            Only this project's exports.
        status
            Only exports in this status (one of :data:`STATUSES`).
        limit
            At most this many exports (1 to :data:`MAX_LIMIT`); a page may hold fewer when a
            filter skips many executions, with a ``next_token`` to continue.
        next_token
            The ``next_token`` of the previous page.

        Raises
        ------
        InvalidRequest
            Naming the bad parameter.
        """
        problems: list[Problem] = []
        if project_id is not None:
            if not PROJECT_ID.fullmatch(project_id.lower()):
                problems.append(("projectId", "must be a 24-character hexadecimal ObjectId"))
            project_id = project_id.lower()
        if status is not None and status not in STATUSES:
            problems.append(("status", f"must be one of {' | '.join(STATUSES)}"))
        if not 1 <= limit <= MAX_LIMIT:
            problems.append(("limit", f"must be from 1 to {MAX_LIMIT}"))
        sfn_token, skip = _decode_token(next_token, problems)
        if problems:
            raise InvalidRequest(problems)

        found: list[Summary] = []
        for _ in range(_LIST_PAGES_PER_CALL):
            kwargs: dict[str, Any] = {"nextToken": sfn_token} if sfn_token else {}
            if status is not None:
                kwargs["statusFilter"] = status
            try:
                page = self._sfn.list_executions(
                    stateMachineArn=self.state_machine_arn, maxResults=_LIST_PAGE, **kwargs
                )
            except ClientError as e:
                if error_code(e) == "InvalidToken":
                    raise InvalidRequest(
                        [("nextToken", "is not a token of this listing")]
                    ) from None
                raise
            executions = page["executions"]
            for position in range(skip, len(executions)):
                execution = executions[position]
                name = execution["name"]
                if not is_export_id(name) or (
                    project_id is not None and not name.startswith(project_id + "-")
                ):
                    continue
                found.append(
                    Summary(
                        **_identity(name),
                        status=execution["status"],
                        started_at=_utc(execution["startDate"]),
                        stopped_at=_utc(execution["stopDate"]) if "stopDate" in execution else None,
                    )
                )
                if len(found) == limit:
                    if position + 1 < len(executions):
                        return Page(found, _encode_token(sfn_token, position + 1))
                    following = page.get("nextToken")
                    return Page(found, _encode_token(following, 0) if following else None)
            sfn_token, skip = page.get("nextToken"), 0
            if not sfn_token:
                return Page(found, None)
        return Page(found, _encode_token(sfn_token, 0))


# --- helpers ------------------------------------------------------------------------------


def parse_request(raw_request: Any) -> ExportRequest:
    """Validate an export request as :meth:`Exports.start` does, without starting anything.

    Raises
    ------
    InvalidRequest
        Naming every bad field.
    """
    return ExportRequest.parse(raw_request)


def _check_idempotency_key(key: str) -> None:
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not all(" " <= c <= "~" for c in key):
        raise InvalidRequest(
            [
                (
                    "Idempotency-Key",
                    f"must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters",
                )
            ]
        )


def _identity(export_id: str) -> dict[str, str]:
    """``projectId`` and ``resolution`` are the first two parts of every export id."""
    project_id, resolution, _ = export_id.split("-", 2)
    return {"export_id": export_id, "project_id": project_id, "resolution": resolution}


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _job_of(event: HistoryEventTypeDef) -> dict[str, Any] | None:
    details = event.get("stateExitedEventDetails")
    if not details:
        return None
    job = _json_object(details.get("output")).get("job")
    return job if isinstance(job, dict) and "progress" in job else None


def _progress(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(min(max(value, 0.0), 100.0))


def _encode_token(sfn_token: str | None, skip: int) -> str:
    raw = json.dumps({"t": sfn_token, "s": skip}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str | None, problems: list[Problem]) -> tuple[str | None, int]:
    if token is None:
        return None, 0
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        sfn_token, skip = value["t"], value["s"]
        if (sfn_token is None or isinstance(sfn_token, str)) and (
            isinstance(skip, int) and not isinstance(skip, bool) and 0 <= skip < _LIST_PAGE
        ):
            return sfn_token, skip
    except (ValueError, TypeError, KeyError, binascii.Error):
        pass
    problems.append(("nextToken", "is not a token of this listing"))
    return None, 0
