"""One function per operator command; each returns the exit status (see :mod:`.exits`).

Each command writes its result on ``ctx.out`` (one JSON object with ``--json``) and progress and
messages on ``ctx.err``. Export commands use the exports library as the HTTP API does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, TextIO
from urllib.parse import quote_plus

from botocore.exceptions import BotoCoreError, ClientError

from aistudios_export.aws_errors import error_code
from aistudios_export.batches import REPORT_FILE, BatchSettings, batch_location
from aistudios_export.errors import StateConflict, readable_cause
from aistudios_export.exports import (
    ExportController,
    ExportLister,
    ExportMachine,
    ExportStarter,
    Status,
    StatusReader,
)
from aistudios_export.settings import (
    DEFAULT_DEDUPE_WINDOW_SECONDS,
    DEFAULT_DOWNLOAD_LINK_SECONDS,
    HttpApiSettings,
)
from aistudios_local.operator.exits import (
    AWS_ERROR,
    CONFLICT,
    FAILED,
    NOT_FOUND,
    OK,
    CommandError,
)
from aistudios_local.operator.follow import follow_batch, follow_export
from aistudios_local.operator.progress import ExportProgress, RowsProgress
from aistudios_local.operator.stack import DeployedStack, aws_error

PLACEHOLDER_APP_ID = "REPLACE_ME"
"""The template's placeholder ``appId`` (``CredentialsSecret``'s ``SecretStringTemplate``)."""
CANCEL_CAUSE = "Cancelled by an operator (aistudios-export cancel)."
"""Who cancelled: the stopped execution's cause (its error is ``ExportCancelled``)."""
REFRESH_HOLDER = "aistudios-export-set-credentials"
"""Who asks for the token refresh of ``set-credentials`` (the refresh lease's holder)."""
STOP_SETTLE_SECONDS = 30.0
"""How long ``cancel`` waits for the stopped execution to say it ended."""
FIND_BATCH_SECONDS = 60.0
"""How long ``batch`` looks for the execution its upload started."""
_HISTORY_PAGES = 50
"""Bound on GetExecutionHistory pages (1000 events each) that ``logs`` reads."""


@dataclass
class Context:
    """What every command gets.

    Attributes
    ----------
    stack
        The stack the command works on.
    out, err
        Result (stdout) and progress and messages (stderr).
    json
        Print one JSON object as the result.
    again
        The command line prefix that reaches this stack again (for resume hints).
    interval
        Seconds between two looks at a followed export or batch.
    wait_seconds
        How long ``--wait`` follows at most.
    resume
        Set as soon as there is something to follow: how to follow it again.
    """

    stack: DeployedStack
    out: TextIO
    err: TextIO
    json: bool
    again: str
    interval: float = 2.0
    wait_seconds: float = 7200.0
    resume: str | None = None

    def settings(self) -> HttpApiSettings:
        """Return the HTTP API's settings of this stack, from its outputs and parameters."""
        parameters = self.stack.parameters
        return HttpApiSettings(
            state_machine_arn=self.stack.output("ExportStateMachineArn"),
            output_bucket=self.stack.outputs.get("OutputBucketName") or None,
            dedupe_window_seconds=int(
                parameters.get("DedupeWindowSeconds") or DEFAULT_DEDUPE_WINDOW_SECONDS
            ),
            download_link_seconds=int(
                parameters.get("DownloadLinkSeconds") or DEFAULT_DOWNLOAD_LINK_SECONDS
            ),
        )

    def reader(self) -> StatusReader:
        """Return the status reader ``GET /exports/{exportId}`` uses, on this stack."""
        return StatusReader(
            self.settings(),
            sfn=self.stack.client("stepfunctions"),
            s3=self.stack.client("s3"),
        )

    def machine(self) -> ExportMachine:
        """Return the export state machine."""
        return ExportMachine(
            self.stack.output("ExportStateMachineArn"), self.stack.client("stepfunctions")
        )

    def emit(self, result: Mapping[str, Any], text: Callable[[TextIO], None]) -> None:
        """Print the result: one JSON object with ``--json``, else ``text``."""
        if self.json:
            self.out.write(json.dumps(result, default=str) + "\n")
        else:
            text(self.out)
        self.out.flush()

    def progress_stream(self) -> TextIO:
        """Where progress goes: stderr (stdout carries the result)."""
        return self.err


def camel(value: Any) -> Any:
    """Return a library record as the API's JSON: camelCase names, ISO 8601 UTC dates.

    Examples
    --------
    >>> camel({"export_id": "x", "stopped_at": datetime(2026, 1, 1, tzinfo=UTC)})
    {'exportId': 'x', 'stoppedAt': '2026-01-01T00:00:00Z'}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_camel_name(str(k)): camel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [camel(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _camel_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _guard(call: Callable[[], Any]) -> Any:
    """Run an AWS call; turn its failure into a :class:`CommandError`."""
    try:
        return call()
    except (ClientError, BotoCoreError) as e:
        raise aws_error(e) from None


# --- exports ---------------------------------------------------------------------------------


def start(ctx: Context, request: Mapping[str, Any], *, wait: bool) -> int:
    """Start an export as ``POST /exports`` does; with ``wait``, follow it to its end."""
    starter = ExportStarter(ctx.settings(), sfn=ctx.stack.client("stepfunctions"))
    started = _guard(lambda: starter.start(dict(request)))
    ctx.resume = f"{ctx.again} status {started.export_id} --wait"
    if not wait:
        result = {"exportId": started.export_id, "status": started.status}
        ctx.emit(
            result,
            lambda out: print(
                f"export {started.export_id} {started.status}\n"
                f"follow it: {ctx.again} status {started.export_id} --wait",
                file=out,
            ),
        )
        return OK
    print(f"export {started.export_id} {started.status}", file=ctx.err)
    return _follow(ctx, started.export_id)


def status(ctx: Context, export_id: str, *, wait: bool) -> int:
    """Print what ``GET /exports/{exportId}`` answers; with ``wait``, follow the export first."""
    if wait:
        ctx.resume = f"{ctx.again} status {export_id} --wait"
        return _follow(ctx, export_id)
    found = _guard(lambda: ctx.reader().read(export_id))
    if found is None:
        raise CommandError(f"no export {export_id}", NOT_FOUND)
    _print_status(ctx, found)
    return OK


def _follow(ctx: Context, export_id: str) -> int:
    reader = ctx.reader()
    bar = None if ctx.json else ExportProgress(ctx.progress_stream())
    final = _guard(
        lambda: follow_export(
            reader, export_id, bar, wait_seconds=ctx.wait_seconds, interval=ctx.interval
        )
    )
    _print_status(ctx, final)
    return OK if final.status == "SUCCEEDED" else FAILED


def _print_status(ctx: Context, found: Status) -> None:
    def text(out: TextIO) -> None:
        print(f"export:   {found.export_id}", file=out)
        print(f"status:   {found.status}", file=out)
        if found.status == "RUNNING":
            print(f"progress: {found.progress:.1f}%  {found.state or ''}".rstrip(), file=out)
        print(f"started:  {camel(found.started_at)}", file=out)
        if found.stopped_at is not None:
            seconds = (found.stopped_at - found.started_at).total_seconds()
            print(f"stopped:  {camel(found.stopped_at)}  ({seconds:.1f} s)", file=out)
        if found.video is not None:
            print(f"video:    {found.video.s3_uri}", file=out)
            print(f"size:     {found.video.size} bytes", file=out)
            print(f"sha256:   {found.video.sha256}", file=out)
            if found.video.download_url:
                print(f"download: {found.video.download_url}", file=out)
        if found.error:
            print(f"error:    {found.error}", file=out)
            print(f"cause:    {found.cause or ''}", file=out)

    ctx.emit(camel(found), text)


def list_exports(
    ctx: Context,
    *,
    project_id: str | None,
    status_filter: str | None,
    limit: int,
    next_token: str | None,
) -> int:
    """List exports, most recent first, as ``GET /exports`` does."""
    lister = ExportLister(ctx.settings(), sfn=ctx.stack.client("stepfunctions"))
    page = _guard(
        lambda: lister.page(
            project_id=project_id, status=status_filter, limit=limit, next_token=next_token
        )
    )
    result = {"exports": camel(page.exports), "nextToken": page.next_token}

    def text(out: TextIO) -> None:
        if not page.exports:
            print("no exports", file=out)
        for export in page.exports:
            print(f"{export.export_id}  {export.status:<15} {camel(export.started_at)}", file=out)
        if page.next_token:
            print(f"more: {ctx.again} list --next-token {page.next_token}", file=out)

    ctx.emit(result, text)
    return OK


def logs(ctx: Context, export_id: str) -> int:
    """Print the export's execution history in order: state names, event types, errors.

    Inputs and outputs are left out; errors and causes are printed as Step Functions recorded
    them (a Lambda error's message only), which the product keeps free of secrets.
    """
    machine = ctx.machine()
    if _guard(lambda: machine.describe(export_id)) is None:
        raise CommandError(f"no export {export_id}", NOT_FOUND)
    events = _guard(lambda: list(_history(machine, export_id)))
    highlight = not ctx.json and ctx.out.isatty()

    def text(out: TextIO) -> None:
        for event in events:
            line = (
                f"{event['id']:>5}  {event['timestamp']}  {event['type']:<32} "
                f"{event['state'] or ''}"
            ).rstrip()
            if event.get("error") is not None or event.get("cause") is not None:
                detail = f"  error={event.get('error') or '-'}  cause={event.get('cause') or '-'}"
                line = f"\x1b[31m{line}{detail}\x1b[0m" if highlight else f"{line}{detail}"
            print(line, file=out)

    ctx.emit({"exportId": export_id, "events": events}, text)
    return OK


def _history(machine: ExportMachine, export_id: str) -> Iterator[dict[str, Any]]:
    """Yield each history event as ``{id, timestamp, type, state, error?, cause?}``, in order."""
    states: dict[int, str | None] = {}
    token: str | None = None
    for _ in range(_HISTORY_PAGES):
        kwargs: dict[str, Any] = {"nextToken": token} if token else {}
        page = machine.sfn.get_execution_history(
            executionArn=machine.execution_arn(export_id),
            maxResults=1000,
            includeExecutionData=False,
            **kwargs,
        )
        for event in page["events"]:
            entered = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
            name = entered["name"] if entered else states.get(event.get("previousEventId", 0))
            states[event["id"]] = name
            record: dict[str, Any] = {
                "id": event["id"],
                "timestamp": camel(event["timestamp"]),
                "type": event["type"],
                "state": name,
            }
            for key, value in event.items():
                details: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
                if key.endswith("EventDetails") and ("error" in details or "cause" in details):
                    record["error"] = details.get("error")
                    record["cause"] = readable_cause(details.get("cause"))
            yield record
        token = page.get("nextToken")
        if not token:
            return


def _controller(ctx: Context) -> ExportController:
    """Return the library's cancel and redrive, as the HTTP API runs them."""
    return ExportController(ctx.settings(), sfn=ctx.stack.client("stepfunctions"))


def cancel(ctx: Context, export_id: str) -> int:
    """Stop the export's execution (idempotent: an export already ABORTED is left as it is)."""
    try:
        started = _guard(lambda: _controller(ctx).cancel(export_id, cause=CANCEL_CAUSE))
    except StateConflict as e:
        raise CommandError(f"export {export_id}: {e.reason}", CONFLICT) from None
    if started is None:
        raise CommandError(f"no export {export_id}", NOT_FOUND)
    now = started.status
    if now != "ABORTED":
        now = _settled(ctx.machine(), export_id).get("status", now)
    ctx.emit(
        {"exportId": export_id, "status": now},
        lambda out: print(f"export {export_id} {now}", file=out),
    )
    return OK


def _settled(machine: ExportMachine, export_id: str) -> dict[str, Any]:
    """Describe the stopped execution until it says it ended (bounded)."""
    deadline = time.monotonic() + STOP_SETTLE_SECONDS
    while True:
        description = dict(_guard(lambda: machine.describe(export_id)) or {})
        if description.get("status") != "RUNNING" or time.monotonic() > deadline:
            return description
        time.sleep(0.2)


def redrive(ctx: Context, export_id: str, *, wait: bool) -> int:
    """Redrive a FAILED, TIMED_OUT or ABORTED export from the state that failed."""
    unsupported = CommandError(
        "this endpoint does not implement Step Functions RedriveExecution", AWS_ERROR
    )
    try:
        started = _controller(ctx).redrive(export_id)
    except StateConflict as e:
        raise CommandError(f"export {export_id}: {e.reason}", CONFLICT) from None
    except ClientError as e:
        if error_code(e) == "UnknownOperationException":
            raise unsupported from None
        raise aws_error(e) from None
    except NotImplementedError:
        raise unsupported from None
    except BotoCoreError as e:
        raise aws_error(e) from None
    if started is None:
        raise CommandError(f"no export {export_id}", NOT_FOUND)
    ctx.resume = f"{ctx.again} status {export_id} --wait"
    if wait:
        print(f"export {export_id} redriven", file=ctx.err)
        return _follow(ctx, export_id)
    ctx.emit(
        {"exportId": export_id, "status": started.status},
        lambda out: print(f"export {export_id} redriven: {started.status}", file=out),
    )
    return OK


# --- batches ---------------------------------------------------------------------------------


def _s3_location(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def batch(ctx: Context, data: bytes, file_name: str, *, wait: bool) -> int:
    """Upload a manifest where the template's rule starts a batch; find it; maybe follow it."""
    bucket, manifest_prefix = _s3_location(ctx.stack.output("ManifestUploadLocation"))
    batch_arn = ctx.stack.output("BatchStateMachineArn")
    key = manifest_prefix + PurePosixPath(file_name).name
    sfn = ctx.stack.client("stepfunctions")
    uploaded = time.time()
    _guard(lambda: ctx.stack.client("s3").put_object(Bucket=bucket, Key=key, Body=data))
    print(f"uploaded s3://{bucket}/{key}", file=ctx.err)
    execution_arn = _guard(lambda: _find_batch(sfn, batch_arn, bucket, key, since=uploaded - 5))
    if execution_arn is None:
        raise CommandError(
            f"no batch started for s3://{bucket}/{key} within {FIND_BATCH_SECONDS:g} s: is the "
            "stack's ManifestUploadedRule enabled?",
            FAILED,
        )
    ctx.resume = f"aws stepfunctions describe-execution --execution-arn {execution_arn}"
    if not wait:
        ctx.emit(
            {"manifest": key, "executionArn": execution_arn, "status": "RUNNING"},
            lambda out: print(f"batch started: {execution_arn}", file=out),
        )
        return OK
    bar = None if ctx.json else RowsProgress(ctx.progress_stream())
    description = _guard(
        lambda: follow_batch(
            sfn, execution_arn, bar, wait_seconds=ctx.wait_seconds, interval=ctx.interval
        )
    )
    _, results_prefix = _s3_location(ctx.stack.output("BatchReportsLocation"))
    settings = BatchSettings(
        bucket=bucket, manifest_prefix=manifest_prefix, results_prefix=results_prefix
    )
    _, prefix = batch_location(settings, key, hashlib.sha256(data).hexdigest())
    report_key = prefix + REPORT_FILE
    report = _read_json(ctx, bucket, report_key)
    result = {
        "status": description["status"],
        "error": description.get("error"),
        "cause": readable_cause(description.get("cause")),
        "manifest": key,
        "executionArn": execution_arn,
        "reportKey": report_key if report is not None else None,
        "rows": report_rows(report),
    }

    def text(out: TextIO) -> None:
        print_rows(out, result["rows"])
        print(f"status: {result['status']}", file=out)
        if result["error"]:
            print(f"error:  {result['error']}\ncause:  {result['cause']}", file=out)
        if result["reportKey"]:
            print(f"report: s3://{bucket}/{result['reportKey']}", file=out)

    ctx.emit(result, text)
    return OK if description["status"] == "SUCCEEDED" else FAILED


def _find_batch(sfn: Any, machine_arn: str, bucket: str, key: str, *, since: float) -> str | None:
    """Return the batch execution the rule started for ``key`` (bounded wait), or None."""
    wanted = {key, quote_plus(key, safe="/")}
    seen: set[str] = set()
    deadline = time.monotonic() + FIND_BATCH_SECONDS
    while time.monotonic() < deadline:
        for item in sfn.list_executions(stateMachineArn=machine_arn, maxResults=50)["executions"]:
            arn = item["executionArn"]
            if arn in seen or item["startDate"].timestamp() < since:
                continue
            seen.add(arn)
            given = json.loads(sfn.describe_execution(executionArn=arn).get("input") or "{}")
            if given.get("bucket") == bucket and given.get("key") in wanted:
                return str(arn)
        time.sleep(0.5)
    return None


def _read_json(ctx: Context, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = ctx.stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError:
        return None
    value = json.loads(body)
    return value if isinstance(value, dict) else None


def print_rows(out: TextIO, rows: list[dict[str, Any]]) -> None:
    """Print one line per row of a batch (:func:`report_rows`): status, project, video or error."""
    for row in rows:
        video = row.get("video")
        if video:
            size = f"{video['size']} bytes, " if "size" in video else ""
            detail = f"s3://{video['bucket']}/{video['key']} ({size}sha256 {video.get('sha256')})"
        elif row["status"] == "REJECTED":
            detail = f"row {row.get('row')}: {row.get('error')}"
        else:
            detail = f"{row.get('error')}: {row.get('cause') or ''}"
        print(f"{row['status']:<10} {row.get('projectId') or '-':<24}  {detail}", file=out)


def report_rows(report: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Return a batch report's rows: each exported row, then each rejected one (``REJECTED``)."""
    if report is None:
        return []
    rows: list[dict[str, Any]] = []
    for row in report.get("rows", []):
        entry = {"projectId": row.get("projectId"), "status": row.get("status")}
        for name in ("resolution", "exportId", "video", "error", "cause"):
            if row.get(name) is not None:
                entry[name] = row[name]
        rows.append(entry)
    for rejected in report.get("rejected", []):
        rows.append(
            {
                "projectId": rejected.get("projectId"),
                "status": "REJECTED",
                "row": rejected.get("row"),
                "error": rejected.get("error"),
            }
        )
    return rows


# --- credentials and health ------------------------------------------------------------------


def set_credentials(ctx: Context, app_id: str, user_key: str) -> int:
    """Store ``{appId, userKey}`` in the credentials secret and refresh the token once with them.

    The refresh is one synchronous invocation of the stack's RefreshToken function (what the
    export machine calls after a 401): it mints a token with the new credentials, so its
    outcome says whether AI Studios accepted them.
    """
    secret_id = ctx.stack.output("CredentialsSecretArn")
    function = ctx.stack.output("RefreshTokenFunctionName")
    value = json.dumps({"appId": app_id, "userKey": user_key})
    _guard(
        lambda: ctx.stack.client("secretsmanager").put_secret_value(
            SecretId=secret_id, SecretString=value
        )
    )
    print("credentials stored; refreshing the token with them...", file=ctx.err)
    # One holder name for every set-credentials: a retry after a refusal takes back the lease
    # its refused attempt left, instead of waiting for it to expire.
    event = {"refreshes": 0, "resume": None, "holder": REFRESH_HOLDER}
    answer = _guard(
        lambda: ctx.stack.client("lambda").invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
    )
    payload = json.loads(answer["Payload"].read() or b"null")
    payload = payload if isinstance(payload, dict) else {}
    accepted: bool | None
    error = None
    if answer.get("FunctionError"):
        error, message = payload.get("errorType"), payload.get("errorMessage")
        accepted = False
        verdict = (
            "AI Studios refused these credentials"
            if error == "Unauthorized"
            else f"the token refresh failed: {error}: {message}"
        )
    elif payload.get("minted") is False:
        # Another refresher (an export after a 401) stored its token first: not ours to judge.
        accepted = None
        verdict = (
            "another refresh stored a token at the same moment, so these credentials were not "
            "tried yet: run set-credentials again"
        )
    else:
        accepted = True
        verdict = "AI Studios accepted them: a new token is stored"
    ctx.emit(
        {
            "stored": True,
            "accepted": accepted,
            "error": error,
            "message": verdict,
        },
        lambda out: print(verdict, file=out),
    )
    return FAILED if accepted is False else OK


@dataclass(frozen=True)
class Finding:
    """One thing ``doctor`` looked at: ``problem`` when it needs the operator's action."""

    check: str
    ok: bool
    message: str
    problem: bool = True


def doctor(ctx: Context, *, now: Callable[[], float] = time.time) -> int:
    """Read the stack and say in plain words what is missing or failing."""
    findings = [
        Finding(
            "stack",
            ctx.stack.status.endswith("_COMPLETE") and "ROLLBACK" not in ctx.stack.status,
            f"stack {ctx.stack.name} is {ctx.stack.status}",
        )
    ]
    resources = _guard(ctx.stack.resources)
    findings.append(_check_credentials(ctx))
    findings.extend(_check_token(ctx, now()))
    findings.extend(_check_schedules(ctx, resources))
    findings.extend(_check_alarms(ctx, resources))
    problems = [f for f in findings if not f.ok and f.problem]

    def text(out: TextIO) -> None:
        for f in findings:
            mark = "ok  " if f.ok else ("FIX " if f.problem else "note")
            print(f"{mark}  {f.check:<12} {f.message}", file=out)
        print("all good" if not problems else f"{len(problems)} problem(s) to fix", file=out)

    ctx.emit(
        {
            "stack": ctx.stack.name,
            "healthy": not problems,
            "findings": [dataclasses.asdict(f) for f in findings],
        },
        text,
    )
    return OK if not problems else FAILED


def _check_credentials(ctx: Context) -> Finding:
    secret_id = ctx.stack.output("CredentialsSecretArn")
    try:
        raw = ctx.stack.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except ClientError as e:
        return Finding("credentials", False, f"cannot read the credentials secret: {error_code(e)}")
    try:
        value = json.loads(raw.get("SecretString") or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict) or not value.get("appId") or not value.get("userKey"):
        return Finding(
            "credentials",
            False,
            "the credentials secret is not {appId, userKey}: run set-credentials",
        )
    if value["appId"] == PLACEHOLDER_APP_ID:
        return Finding(
            "credentials",
            False,
            "the credentials are still the placeholder: run aistudios-export set-credentials",
        )
    return Finding("credentials", True, "the credentials secret holds an appId and a userKey")


def _check_token(ctx: Context, now: float) -> list[Finding]:
    secret_id = ctx.stack.output("TokenSecretArn")
    secrets = ctx.stack.client("secretsmanager")
    findings: list[Finding] = []
    try:
        described = secrets.describe_secret(SecretId=secret_id)
        record = json.loads(
            secrets.get_secret_value(SecretId=secret_id).get("SecretString") or "{}"
        )
    except (ClientError, ValueError) as e:
        return [Finding("token", False, f"cannot read the token secret: {error_code(e) or e}")]
    if not described.get("RotationEnabled"):
        findings.append(
            Finding("rotation", False, "token rotation is not enabled on the token secret")
        )
    else:
        stages = described.get("VersionIdsToStages", {})
        stuck = [v for v, s in stages.items() if "AWSPENDING" in s and "AWSCURRENT" not in s]
        if stuck:
            findings.append(
                Finding(
                    "rotation",
                    False,
                    "the last token rotation did not finish (a version is still AWSPENDING): "
                    "see the RefreshToken function's logs; check the credentials",
                )
            )
        else:
            last = described.get("LastRotatedDate")
            when = f"last rotated {camel(last)}" if last else "not rotated yet"
            findings.append(Finding("rotation", True, f"token rotation is enabled, {when}"))
    token = record.get("token") if isinstance(record, dict) else None
    expires = float(record.get("expiresAt") or 0) if isinstance(record, dict) else 0.0
    if not token:
        findings.append(
            Finding("token", False, "no token has been minted yet: run set-credentials")
        )
    elif expires and expires < now:
        findings.append(
            Finding("token", False, "the stored token has expired: token refreshes are failing")
        )
    else:
        findings.append(Finding("token", True, "a token is stored"))
    return findings


def _check_schedules(ctx: Context, resources: list[tuple[str, str, str]]) -> list[Finding]:
    findings: list[Finding] = []
    for logical, kind, physical in resources:
        if kind != "AWS::Scheduler::Schedule":
            continue
        try:
            schedule = ctx.stack.client("scheduler").get_schedule(Name=physical)
        except ClientError as e:
            findings.append(
                Finding("schedule", False, f"{logical}: cannot read it ({error_code(e)})", False)
            )
            continue
        state = schedule.get("State", "")
        expression = schedule.get("ScheduleExpression", "")
        if state == "ENABLED":
            findings.append(Finding("schedule", True, f"{logical} is ENABLED ({expression})"))
        else:
            findings.append(
                Finding(
                    "schedule",
                    False,
                    f"{logical} is {state or 'not known'}: scheduled batches do not run "
                    "(deploy with BatchScheduleState=ENABLED once its manifest is in place)",
                    problem=False,
                )
            )
    return findings


def _check_alarms(ctx: Context, resources: list[tuple[str, str, str]]) -> list[Finding]:
    alarms = [physical for _, kind, physical in resources if kind == "AWS::CloudWatch::Alarm"]
    if not alarms:
        return [
            Finding(
                "alarms",
                False,
                "this stack has no CloudWatch alarms: nothing alerts anyone when exports fail",
                problem=False,
            )
        ]
    try:
        described = ctx.stack.client("cloudwatch").describe_alarms(AlarmNames=alarms[:100])
    except (ClientError, BotoCoreError) as e:
        return [Finding("alarms", False, f"cannot read the alarms: {error_code(e) or e}")]
    findings: list[Finding] = []
    missing = sorted(
        set(alarms[:100]) - {a["AlarmName"] for a in described.get("MetricAlarms", [])}
    )
    if missing:
        findings.append(Finding("alarms", False, f"alarms missing: {', '.join(missing)}"))
    topics = sorted(
        {
            a
            for alarm in described.get("MetricAlarms", [])
            for a in alarm.get("AlarmActions", [])
            if a.startswith("arn:aws") and ":sns:" in a
        }
    )
    firing = [
        a["AlarmName"] for a in described.get("MetricAlarms", []) if a.get("StateValue") == "ALARM"
    ]
    if firing:
        findings.append(Finding("alarms", False, f"in ALARM: {', '.join(firing)}"))
    if not topics:
        findings.append(
            Finding("alarms", False, "the alarms have no SNS action: they notify nobody")
        )
    for topic in topics:
        try:
            subscriptions = ctx.stack.client("sns").list_subscriptions_by_topic(TopicArn=topic)
        except ClientError as e:
            findings.append(Finding("alarms", False, f"cannot read {topic}: {error_code(e)}"))
            continue
        confirmed = [
            s
            for s in subscriptions.get("Subscriptions", [])
            if s.get("SubscriptionArn", "").startswith("arn:")
        ]
        if confirmed:
            findings.append(
                Finding("alarms", True, f"{len(confirmed)} confirmed subscriber(s) on {topic}")
            )
        else:
            findings.append(
                Finding(
                    "alarms",
                    False,
                    f"the alarms' topic {topic} has no confirmed subscriber: "
                    "nobody is told when exports fail",
                )
            )
    if not firing and not missing:
        findings.append(Finding("alarms", True, f"{len(alarms)} alarm(s), none in ALARM"))
    return findings
