"""``aistudios-export``: export AI Studios projects to MP4s in S3, and operate the stacks that do.

Operator commands work on a deployed stack with your AWS credentials, as the AWS CLI does
(``--stack NAME``, ``--region``, ``--profile``; ``AWS_ENDPOINT_URL`` is honoured)::

    aistudios-export --stack NAME start --project-id ID [--resolution R] [--wait]
    aistudios-export --stack NAME status EXPORT_ID [--wait]
    aistudios-export --stack NAME list [--project-id ID] [--status S] [--limit N]
    aistudios-export --stack NAME logs EXPORT_ID
    aistudios-export --stack NAME cancel EXPORT_ID
    aistudios-export --stack NAME redrive EXPORT_ID [--wait]
    aistudios-export --stack NAME batch FILE.csv|FILE.json [--wait]
    aistudios-export --stack NAME set-credentials
    aistudios-export --stack NAME doctor

``--json`` makes each print one JSON object on stdout; progress goes to stderr. Exit statuses are
in :mod:`aistudios_local.operator.exits` (and ``--help``).

The embedded local stack (no AWS account needed):

``aistudios-export local --project-id ID [--resolution R] [--api-url URL] [--poll-seconds N]
[--timeout-seconds N] [--output FILE] [--json]`` runs one export in this process.

``aistudios-export local up [--port N] [--api-url URL]`` serves the local stack's AWS services on
``http://127.0.0.1:N`` until Ctrl-C: the operator commands reach it with
``AWS_ENDPOINT_URL=http://127.0.0.1:N`` and ``--stack aistudios-export-local``.

``aistudios-export local serve [--port 3000] [--api-url URL]`` serves the HTTP API on 127.0.0.1
(authentication is not enforced there) with exports running in the background; their webhook
URLs point at the served API.

``aistudios-export local batch FILE.csv|FILE.json [--api-url URL] [--json]`` uploads a manifest
to the local bucket, where the template's rule starts the batch state machine, waits for it and
prints each row's outcome (with ``--json``: one object ``{"status", "rows": [...]}``).

With ``local --json`` the last line of stdout is one JSON object (see :meth:`ExportRun.to_json`).
The exit status of ``local`` is 0 only when the export SUCCEEDED.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from aistudios_local.stack import LocalStack

LOCAL_DEADLINE_MARGIN = 120
"""Seconds the local runner waits beyond the export's budget before stopping the execution."""


def api_url(value: str) -> str:
    """Accept what the template's ``ApiBaseUrl`` accepts: an https origin, or http on loopback."""
    from aistudios_local.template import parameter_pattern

    if not parameter_pattern("ApiBaseUrl").fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value[:100]!r} is not an AI Studios API origin: give https://HOST[:PORT], "
            "or http://127.0.0.1:PORT / http://localhost:PORT for a local server"
        )
    return value


PROJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
STACK_ENV = "AWS_SAM_STACK_NAME"
"""The environment variable ``--stack`` defaults to (as SAM's own tooling names it)."""
DEFAULT_UP_PORT = 4599
"""The port ``local up`` serves on unless told."""
OPERATOR_COMMANDS = (
    "start",
    "status",
    "list",
    "logs",
    "cancel",
    "redrive",
    "batch",
    "set-credentials",
    "doctor",
)
DESCRIPTION = """\
Export DeepBrain AI Studios projects to verified MP4s in S3 with AWS Step Functions, and
operate the stacks that do: start, follow, list, cancel and redrive exports, run batches,
set the AI Studios credentials and check a stack's health. The same commands work on a
deployed stack and on the local one (aistudios-export local up)."""
EXAMPLES = """\
examples:
  aistudios-export --stack my-exports doctor
  aistudios-export --stack my-exports set-credentials
  aistudios-export --stack my-exports start --project-id 65fa6b07dca2e367461a2925 --wait
  aistudios-export --stack my-exports --json list --status FAILED --limit 5
  aistudios-export local up        # then, in another shell, what it prints
"""


def project_id(value: str) -> str:
    """Accept a project id: 24 hexadecimal characters."""
    if not PROJECT_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value[:100]!r} is not an AI Studios project id (24 hexadecimal characters)"
        )
    return value


def export_id(value: str) -> str:
    """Accept an export id as ``start`` prints it."""
    from aistudios_export.naming import is_export_id

    if not is_export_id(value):
        raise argparse.ArgumentTypeError(
            f"{value[:100]!r} is not an export id (PROJECTID-RESOLUTION-DIGEST, as start prints it)"
        )
    return value


def stack_name(value: str) -> str:
    """Accept a CloudFormation stack name or ARN."""
    from aistudios_local.operator.stack import STACK_NAME

    if not STACK_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value[:100]!r} is not a CloudFormation stack name")
    return value


def _bounded(low: float, high: float, kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number:g} is not from {low:g} to {high:g}")
        return number

    return parse


def _version() -> str:
    try:
        return metadata.version("aistudios-export")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add the options every operator command takes (before or after the command's name)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--stack",
        type=stack_name,
        metavar="NAME",
        default=default(os.environ.get(STACK_ENV) or None),
        help=f"the stack to work on (default: ${STACK_ENV})",
    )
    parser.add_argument(
        "--region", metavar="REGION", default=default(None), help="the AWS region (as the AWS CLI)"
    )
    parser.add_argument(
        "--profile",
        metavar="PROFILE",
        default=default(None),
        help="a named profile of your AWS config (as the AWS CLI)",
    )
    parser.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        default=default(False),
        help="print one JSON object on stdout (progress and messages go to stderr)",
    )


def _wait_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--wait", action="store_true", help=f"follow the {what} until it ends, with live progress"
    )
    parser.add_argument(
        "--wait-seconds",
        type=_bounded(1, 7 * 86400, float),
        default=7200.0,
        metavar="N",
        help="stop following after N seconds (default 7200; exit status 6)",
    )
    parser.add_argument(
        "--interval",
        type=_bounded(0.1, 60, float),
        default=2.0,
        metavar="SECONDS",
        help="seconds between two looks (default 2)",
    )


def _operator_commands(commands: Any) -> None:
    from aistudios_export.exports import MAX_LIMIT, STATUSES
    from aistudios_export.models import RESOLUTIONS
    from aistudios_local.operator.exits import EPILOG

    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(  # type: ignore[no-any-return]
            name,
            help=help,
            description=textwrap.fill(description, 90),
            parents=[common],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    start = add(
        "start",
        "start an export (as POST /exports does)",
        "Start exporting a project to an MP4 in the stack's bucket. The same request within "
        "the stack's dedupe window names the same export and starts nothing new.",
    )
    start.add_argument(
        "--project-id",
        type=project_id,
        required=True,
        metavar="ID",
        help="the AI Studios project (24 hexadecimal characters)",
    )
    start.add_argument("--resolution", choices=RESOLUTIONS, help="default 1080")
    _wait_options(start, "export")

    status = add(
        "status",
        "show an export's status, progress and video (as GET /exports/{id})",
        "Show an export's status, progress and, once it succeeded, its video and a "
        "short-lived download link.",
    )
    status.add_argument("export_id", type=export_id, metavar="EXPORT_ID")
    _wait_options(status, "export")

    listing = add("list", "list exports, most recent first", "List exports, most recent first.")
    listing.add_argument(
        "--project-id", type=project_id, metavar="ID", help="only this project's exports"
    )
    listing.add_argument(
        "--status", dest="status_filter", choices=STATUSES, help="only exports in this status"
    )
    listing.add_argument(
        "--limit",
        type=_bounded(1, MAX_LIMIT, int),
        default=20,
        metavar="N",
        help=f"at most N exports, 1 to {MAX_LIMIT} (default 20)",
    )
    listing.add_argument("--next-token", metavar="TOKEN", help="continue a previous listing")

    logs = add(
        "logs",
        "print an export's execution history, errors highlighted",
        "Print the export's execution events in order: state names, event types and, for "
        "failures, the error and its cause. Inputs and outputs are left out.",
    )
    logs.add_argument("export_id", type=export_id, metavar="EXPORT_ID")

    cancel = add(
        "cancel",
        "stop a running export",
        "Stop a running export's execution (it ends ABORTED). Cancelling an ABORTED export "
        "again does nothing; a finished one cannot be cancelled (exit status 4).",
    )
    cancel.add_argument("export_id", type=export_id, metavar="EXPORT_ID")

    redrive = add(
        "redrive",
        "restart a failed export from where it failed",
        "Redrive a FAILED, TIMED_OUT or ABORTED export's execution (Step Functions "
        "RedriveExecution): it resumes at the state that failed.",
    )
    redrive.add_argument("export_id", type=export_id, metavar="EXPORT_ID")
    _wait_options(redrive, "export")

    batch = add(
        "batch",
        "upload a manifest and follow the batch it starts",
        "Upload a *.csv or *.json manifest to the stack's manifest location, where the "
        "template's rule starts the batch state machine; with --wait, follow it and print "
        "each row's outcome.",
    )
    batch.add_argument("batch_file", type=Path, metavar="FILE", help="a *.csv or *.json manifest")
    _wait_options(batch, "batch")

    add(
        "set-credentials",
        "store the AI Studios appId and userKey, and check them",
        "Prompt for the AI Studios appId and userKey (without echo), store them in the "
        "stack's credentials secret and refresh the API token once with them: the answer says "
        "whether AI Studios accepted them. When stdin is not a terminal, read one JSON object "
        '{"appId": ..., "userKey": ...} or two lines (appId, then userKey) from it.',
    )
    add(
        "doctor",
        "say what the stack is missing",
        "Read the stack and say in plain words what needs fixing: placeholder credentials, "
        "no token or a failing token rotation, a disabled schedule, alarms that notify "
        "nobody.",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    from aistudios_local.operator.exits import EPILOG

    parser = argparse.ArgumentParser(
        prog="aistudios-export",
        description=DESCRIPTION,
        epilog=EPILOG + "\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from aistudios_export.models import RESOLUTIONS

    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _operator_commands(commands)
    local = commands.add_parser(
        "local",
        help="run an export on the embedded local stack (moto + a loopback AI Studios simulator)",
        description="Run one export through the real state machine and handlers, in this process.",
    )
    # Required unless a subcommand of local is given (checked in main).
    local.add_argument(
        "--project-id", type=project_id, help="the AI Studios project (24 hex characters)"
    )
    local.add_argument("--resolution", choices=RESOLUTIONS, help="default 1080")
    local.add_argument(
        "--api-url",
        type=api_url,
        help="an AI Studios-compatible server (default: a built-in simulator)",
    )
    local.add_argument("--poll-seconds", type=int, default=2, help="seconds between progress polls")
    local.add_argument(
        "--timeout-seconds", type=int, default=600, help="the export's overall budget"
    )
    local.add_argument("--output", type=Path, help="also write the video to this file")
    local.add_argument("--json", action="store_true", help="end stdout with one JSON object")
    local.add_argument("--verbose", action="store_true", help="show the functions' logs on stderr")
    # local's own subcommands; without one, local runs one export (the form above).
    local_commands = local.add_subparsers(dest="local_command", required=False)
    up = local_commands.add_parser(
        "up",
        help="serve the local stack's AWS services for the operator commands (AWS_ENDPOINT_URL)",
        description="Start the local stack and serve its AWS services on 127.0.0.1 until "
        "Ctrl-C: the operator commands reach it with AWS_ENDPOINT_URL=http://127.0.0.1:PORT "
        "and --stack aistudios-export-local (printed on start).",
    )
    up.add_argument(
        "--port",
        dest="up_port",
        type=_bounded(1, 65535, int),
        default=DEFAULT_UP_PORT,
        metavar="N",
        help=f"port on 127.0.0.1 (default {DEFAULT_UP_PORT})",
    )
    _add_stack_options(up, "up", poll_default=2)
    serve = local_commands.add_parser(
        "serve",
        help="serve the HTTP API on 127.0.0.1 (authentication NOT enforced)",
        description="Serve the real API handler as API Gateway would call it, backed by the "
        "embedded local stack; exports run in the background.",
    )
    serve.add_argument(
        "--port", type=int, default=3000, metavar="N", help="port on 127.0.0.1 (default 3000)"
    )
    _add_stack_options(serve, "serve", poll_default=2)
    batch = local_commands.add_parser(
        "batch",
        help="upload a manifest (CSV or JSON) and run the batch it starts",
        description="Upload a manifest to the local bucket; the template's EventBridge rule "
        "starts the batch state machine. Prints each row's outcome; exit status 0 only when the "
        "batch SUCCEEDED.",
    )
    batch.add_argument("batch_file", metavar="FILE", type=Path, help="a *.csv or *.json manifest")
    _add_stack_options(batch, "batch", poll_default=1)
    batch.add_argument(
        "--timeout-seconds",
        dest="batch_timeout_seconds",
        metavar="N",
        type=int,
        default=1800,
        help="stop waiting for the batch after this many seconds (default 1800)",
    )
    batch.add_argument(
        "--json", dest="batch_json", action="store_true", help="end stdout with one JSON object"
    )
    return parser


def _add_stack_options(parser: argparse.ArgumentParser, prefix: str, *, poll_default: int) -> None:
    """Add the local stack's options to a subcommand of ``local``.

    The dests carry the subcommand's name: a subcommand's defaults would otherwise overwrite
    ``local``'s own options of the same name.
    """
    parser.add_argument(
        "--api-url",
        type=api_url,
        dest=f"{prefix}_api_url",
        metavar="URL",
        help="an AI Studios-compatible server (default: a built-in simulator)",
    )
    parser.add_argument(
        "--poll-seconds",
        dest=f"{prefix}_poll_seconds",
        metavar="N",
        type=int,
        default=poll_default,
        help="longest wait between progress checks (the DefaultPollSeconds template parameter)",
    )
    parser.add_argument(
        "--verbose",
        dest=f"{prefix}_verbose",
        action="store_true",
        help="show the functions' logs on stderr",
    )


def _parameters(*, verbose: bool, poll_seconds: int | None = None) -> dict[str, str]:
    """Return the template parameter overrides of a local run."""
    parameters = {} if poll_seconds is None else {"DefaultPollSeconds": str(poll_seconds)}
    if not verbose:
        parameters["LogLevel"] = "WARNING"
    return parameters


def _environment(*, verbose: bool) -> dict[str, str]:
    """Return the functions' extra variables in a local run.

    Without ``verbose``, their EMF metric records (log lines on stdout, which CloudWatch reads
    in the cloud) are off, as their INFO lines are.
    """
    return {} if verbose else {"POWERTOOLS_METRICS_DISABLED": "true"}


def _announce(stack: LocalStack, api_url: str | None, *, bucket: bool = True) -> None:
    where = api_url or f"built-in simulator at {stack.api_url}"
    tail = f", bucket = {stack.bucket}" if bucket else ""
    print(f"local stack up: AI Studios = {where}{tail}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in OPERATOR_COMMANDS:
        return operator_command(parser, args)
    if args.command == "local" and args.local_command == "up":
        return up_command(args)
    if args.command == "local" and args.local_command == "serve":
        return serve_command(args)
    if args.command == "local" and args.local_command == "batch":
        return batch_command(args)
    if args.command == "local" and args.local_command is None:
        if args.project_id is None:
            parser.error("local: the following arguments are required: --project-id")
        return export_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def export_command(args: argparse.Namespace) -> int:
    """Run one export on the local stack and report it."""
    # Imported here: moto is heavy and only the local commands need it.
    from aistudios_local.operator.progress import ExportProgress
    from aistudios_local.stack import LocalStack

    request: dict[str, Any] = {
        "projectId": args.project_id,
        "pollSeconds": args.poll_seconds,
        "timeoutSeconds": args.timeout_seconds,
    }
    if args.resolution is not None:
        request["resolution"] = args.resolution
    out = sys.stdout
    parameters = _parameters(verbose=args.verbose)
    # Everything the functions print goes to stderr: stdout carries only the result.
    with (
        contextlib.redirect_stdout(sys.stderr),
        LocalStack(
            api_url=args.api_url,
            parameters=parameters,
            environment=_environment(verbose=args.verbose),
        ) as stack,
    ):
        _announce(stack, args.api_url)
        bar = ExportProgress(sys.stderr)  # elapsed from the export's start, not the stack's
        run = stack.run_export(
            request,
            deadline_seconds=max(args.timeout_seconds, 1) + LOCAL_DEADLINE_MARGIN,
            on_progress=lambda job: bar.update(
                "RUNNING", float(job.get("progress", 0.0)), job.get("state") or "submitted"
            ),
        )
        bar.end()
        if run.status == "SUCCEEDED" and args.output and run.video:
            body = stack.s3.get_object(Bucket=run.video["bucket"], Key=run.video["key"])["Body"]
            with args.output.open("wb") as f:
                for chunk in body.iter_chunks(1024 * 1024):
                    f.write(chunk)
    if args.json:
        out.write(json.dumps(run.to_json()) + "\n")
    else:
        _print_summary(out, run.to_json(), args.output)
    return 0 if run.status == "SUCCEEDED" else 1


def _read_before_boot(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """Check what the command reads or sends before any AWS call: a usage error otherwise."""
    from aistudios_export.errors import InvalidRequest, ManifestInvalid
    from aistudios_export.exports import parse_request
    from aistudios_export.manifests import parse_manifest

    if args.command == "start":
        request = {"projectId": args.project_id}
        if args.resolution is not None:
            request["resolution"] = args.resolution
        try:
            parse_request(request)
        except InvalidRequest as e:
            parser.error(str(e))
        return request
    if args.command == "batch":
        path: Path = args.batch_file
        if path.suffix.lower() not in (".csv", ".json"):
            parser.error(f"{path} is not a .csv or .json manifest")
        try:
            data = path.read_bytes()
        except OSError as e:
            parser.error(f"cannot read {path}: {e.strerror}")
        try:
            parse_manifest(data, path.name)
        except ManifestInvalid as e:
            parser.error(f"{path} is not a manifest the batch accepts: {e}")
        return data
    return None


def read_credentials(stdin: TextIO, prompt: Callable[[str], str] | None = None) -> tuple[str, str]:
    """Return ``(appId, userKey)``: prompted without echo, or read from stdin when piped.

    On a terminal ``prompt`` asks (by default :func:`getpass.getpass`); off a terminal stdin
    holds one JSON object ``{"appId", "userKey"}`` or two lines.

    Raises
    ------
    CommandError
        ``USAGE`` when they are missing or malformed (their values are never echoed).
    """
    from aistudios_local.operator.exits import USAGE, CommandError

    if stdin.isatty():
        ask = prompt or getpass.getpass
        app_id, user_key = ask("AI Studios appId: "), ask("AI Studios userKey: ")
    else:
        text = stdin.read(65536).strip()
        try:
            value = json.loads(text) if text.startswith("{") else None
        except ValueError:
            raise CommandError("stdin is not one JSON object {appId, userKey}", USAGE) from None
        if isinstance(value, dict):
            app_id, user_key = str(value.get("appId") or ""), str(value.get("userKey") or "")
        else:
            lines = text.splitlines()
            if len(lines) != 2:
                raise CommandError(
                    "give the appId and the userKey on two lines (or one JSON object)", USAGE
                )
            app_id, user_key = lines
    app_id, user_key = app_id.strip(), user_key.strip()
    for name, value in (("appId", app_id), ("userKey", user_key)):
        if not value or len(value) > 512 or not value.isprintable() or " " in value:
            raise CommandError(f"the {name} is empty or not one printable word", USAGE)
    return app_id, user_key


def operator_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run an operator command on a deployed (or ``local up``) stack; return the exit status."""
    from aistudios_local.operator import commands
    from aistudios_local.operator.exits import INTERRUPTED, CommandError
    from aistudios_local.operator.stack import DeployedStack, session

    if not args.stack:
        parser.error(f"{args.command}: give the stack: --stack NAME (or set {STACK_ENV})")
    prepared = _read_before_boot(parser, args)
    again = " ".join(
        ["aistudios-export", "--stack", args.stack]
        + (["--region", args.region] if args.region else [])
        + (["--profile", args.profile] if args.profile else [])
    )
    ctx: commands.Context | None = None
    try:
        stack = DeployedStack.open(session(args.profile, args.region), args.stack)
        ctx = commands.Context(
            stack=stack,
            out=sys.stdout,
            err=sys.stderr,
            json=args.as_json,
            again=again,
            interval=getattr(args, "interval", 2.0),
            wait_seconds=getattr(args, "wait_seconds", 7200.0),
        )
        return _run_operator(ctx, args, prepared)
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:  # stdout's reader went away (| head): stop quietly, as tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        if ctx is not None and ctx.resume:
            print("stopped following; it goes on. Follow it again with:", file=sys.stderr)
            print(f"  {ctx.resume}", file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return INTERRUPTED


def _run_operator(ctx: Any, args: argparse.Namespace, prepared: Any) -> int:
    from aistudios_local.operator import commands

    command: str = args.command
    if command == "start":
        return commands.start(ctx, prepared, wait=args.wait)
    if command == "status":
        return commands.status(ctx, args.export_id, wait=args.wait)
    if command == "list":
        return commands.list_exports(
            ctx,
            project_id=args.project_id,
            status_filter=args.status_filter,
            limit=args.limit,
            next_token=args.next_token,
        )
    if command == "logs":
        return commands.logs(ctx, args.export_id)
    if command == "cancel":
        return commands.cancel(ctx, args.export_id)
    if command == "redrive":
        return commands.redrive(ctx, args.export_id, wait=args.wait)
    if command == "batch":
        return commands.batch(ctx, prepared, args.batch_file.name, wait=args.wait)
    if command == "set-credentials":
        app_id, user_key = read_credentials(sys.stdin)
        return commands.set_credentials(ctx, app_id, user_key)
    return commands.doctor(ctx)


def up_command(args: argparse.Namespace) -> int:
    """Serve the local stack's AWS services on 127.0.0.1 until Ctrl-C or SIGTERM."""
    from aistudios_local.endpoint import AwsEndpoint
    from aistudios_local.resources import REGION
    from aistudios_local.stack import LocalStack

    api_url = args.up_api_url or args.api_url
    parameters = _parameters(verbose=args.up_verbose, poll_seconds=max(args.up_poll_seconds, 0))
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with LocalStack(
            api_url=api_url,
            parameters=parameters,
            environment=_environment(verbose=args.up_verbose),
        ) as stack:
            try:
                endpoint = AwsEndpoint(stack, port=args.up_port).start()
            except OSError as e:
                print(
                    f"error: cannot serve on 127.0.0.1:{args.up_port}: {e.strerror}",
                    file=sys.stderr,
                )
                return 1
            try:
                where = api_url or f"built-in simulator at {stack.api_url}"
                print(
                    f"local stack up: {endpoint.stack_name}\n"
                    f"  endpoint:   {endpoint.url}\n"
                    f"  AI Studios: {where}\n"
                    f"  bucket:     {stack.bucket}\n"
                    "In another shell:\n"
                    f"  export AWS_ENDPOINT_URL={endpoint.url} AWS_ACCESS_KEY_ID=testing "
                    f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={REGION}\n"
                    f"  aistudios-export --stack {endpoint.stack_name} start "
                    "--project-id 65fa6b07dca2e367461a2925 --wait\n"
                    "Ctrl-C stops it.",
                    flush=True,
                )
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            finally:
                endpoint.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("local stack stopped", file=sys.stderr)
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """Serve the HTTP API on the local stack until Ctrl-C."""
    from aistudios_local.serve import serve
    from aistudios_local.stack import LocalStack

    api_url = args.serve_api_url or args.api_url
    parameters = _parameters(
        verbose=args.serve_verbose, poll_seconds=max(args.serve_poll_seconds, 1)
    )
    with LocalStack(
        api_url=api_url,
        parameters=parameters,
        environment=_environment(verbose=args.serve_verbose),
    ) as stack:
        _announce(stack, api_url, bucket=False)
        try:
            serve(stack, port=args.port)
        except OSError as e:
            print(f"error: cannot serve on 127.0.0.1:{args.port}: {e.strerror}", file=sys.stderr)
            return 1
    return 0


def batch_command(args: argparse.Namespace) -> int:
    """Upload a manifest to the local stack, wait for its batch, and report every row."""
    from aistudios_local.batch import upload_and_wait
    from aistudios_local.stack import LocalStack

    path: Path = args.batch_file
    if path.suffix.lower() not in (".csv", ".json"):
        print(f"error: {path} is not a .csv or .json manifest", file=sys.stderr)
        return 2
    try:
        data = path.read_bytes()
    except OSError as e:
        print(f"error: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    api_url = args.batch_api_url or args.api_url
    parameters = _parameters(
        verbose=args.batch_verbose, poll_seconds=max(args.batch_poll_seconds, 0)
    )
    out = sys.stdout
    # Everything the functions print goes to stderr: stdout carries only the result.
    with (
        contextlib.redirect_stdout(sys.stderr),
        LocalStack(
            api_url=api_url,
            parameters=parameters,
            environment=_environment(verbose=args.batch_verbose),
        ) as stack,
    ):
        _announce(stack, api_url)
        run = upload_and_wait(stack, data, path.name, deadline_seconds=args.batch_timeout_seconds)
    result = run.to_json()
    if args.batch_json:
        out.write(json.dumps(result) + "\n")
    else:
        _print_batch(out, result)
    return 0 if run.status == "SUCCEEDED" else 1


def _print_batch(out: TextIO, result: dict[str, Any]) -> None:
    from aistudios_local.operator.commands import print_rows

    print_rows(out, result["rows"])
    print(f"status: {result['status']}  ({result['elapsedSeconds']:.1f} s)", file=out)
    if result["error"]:
        print(f"error:  {result['error']}", file=out)
        print(f"cause:  {result['cause']}", file=out)
    if result["reportKey"]:
        print(f"report: {result['reportKey']}", file=out)


def _print_summary(out: TextIO, result: dict[str, Any], output: Path | None) -> None:
    print(
        f"status: {result['status']}  ({result['stateTransitions']} state transitions, "
        f"{result['elapsedSeconds']:.1f} s)",
        file=out,
    )
    video = result["video"]
    if video:
        print(f"video:  s3://{video['bucket']}/{video['key']}", file=out)
        print(f"size:   {video['size']} bytes", file=out)
        print(f"sha256: {video['sha256']}", file=out)
        if output:
            print(f"file:   {output}", file=out)
    else:
        print(f"error:  {result['error']}", file=out)
        print(f"cause:  {result['cause']}", file=out)
        print(
            f"objects left in the bucket: {len(result['objects'])}, "
            f"open multipart uploads: {result['incompleteUploads']}",
            file=out,
        )


if __name__ == "__main__":
    sys.exit(main())
