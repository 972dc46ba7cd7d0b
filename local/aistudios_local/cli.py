"""``aistudios-export``: the command line.

``aistudios-export local`` runs one export on the embedded local stack (no AWS account needed)::

    aistudios-export local --project-id ID [--resolution R] [--api-url URL] [--poll-seconds N]
                           [--timeout-seconds N] [--output FILE] [--json]

``aistudios-export local serve [--port 3000] [--api-url URL]`` serves the HTTP API on 127.0.0.1
(authentication is not enforced there) with exports running in the background.

``aistudios-export local batch FILE.csv|FILE.json [--api-url URL] [--json]`` uploads a manifest
to the local bucket, where the template's rule starts the batch state machine, waits for it and
prints each row's outcome (with ``--json``: one object ``{"status", "rows": [...]}``).

With ``--json`` the last line of stdout is one JSON object (see :meth:`ExportRun.to_json`).
The exit status is 0 only when the export SUCCEEDED.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="aistudios-export", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser(
        "local",
        help="run an export on the embedded local stack (moto + a loopback AI Studios simulator)",
        description="Run one export through the real state machine and handlers, in this process.",
    )
    # Required unless a subcommand of local is given (checked in main).
    local.add_argument("--project-id", help="the AI Studios project (24 hex characters)")
    local.add_argument("--resolution", help="4k | 1080 | 720 | 480 (default 1080)")
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


def _announce(stack: LocalStack, api_url: str | None, *, bucket: bool = True) -> None:
    where = api_url or f"built-in simulator at {stack.api_url}"
    tail = f", bucket = {stack.bucket}" if bucket else ""
    print(f"local stack up: AI Studios = {where}{tail}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
    from aistudios_local.stack import LocalStack

    request: dict[str, Any] = {
        "projectId": args.project_id,
        "pollSeconds": args.poll_seconds,
        "timeoutSeconds": args.timeout_seconds,
    }
    if args.resolution is not None:
        request["resolution"] = args.resolution
    out = sys.stdout
    bar = ProgressBar(sys.stderr)
    parameters = _parameters(verbose=args.verbose)
    # Everything the functions print goes to stderr: stdout carries only the result.
    with (
        contextlib.redirect_stdout(sys.stderr),
        LocalStack(api_url=args.api_url, parameters=parameters) as stack,
    ):
        _announce(stack, args.api_url)
        run = stack.run_export(
            request,
            deadline_seconds=max(args.timeout_seconds, 1) + LOCAL_DEADLINE_MARGIN,
            on_progress=bar.update,
        )
        bar.finish()
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


def serve_command(args: argparse.Namespace) -> int:
    """Serve the HTTP API on the local stack until Ctrl-C."""
    from aistudios_local.serve import serve
    from aistudios_local.stack import LocalStack

    api_url = args.serve_api_url or args.api_url
    parameters = _parameters(
        verbose=args.serve_verbose, poll_seconds=max(args.serve_poll_seconds, 1)
    )
    with LocalStack(api_url=api_url, parameters=parameters) as stack:
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
        LocalStack(api_url=api_url, parameters=parameters) as stack,
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
    for row in result["rows"]:
        video = row.get("video")
        if video:
            where = f"s3://{video['bucket']}/{video['key']}"
            detail = f"{where} ({video['size']} bytes, sha256 {video['sha256']})"
        elif row["status"] == "REJECTED":
            detail = f"row {row.get('row')}: {row.get('error')}"
        else:
            detail = f"{row.get('error')}: {row.get('cause', '')}"
        print(f"{row['status']:<10} {row.get('projectId') or '-':<24}  {detail}", file=out)
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


class ProgressBar:
    """A one-line progress bar on a terminal, or one line per change elsewhere."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last: tuple[float, str] | None = None

    def update(self, job: dict[str, Any]) -> None:
        """Show the progress of a job as reported by CheckProgress."""
        progress = float(job.get("progress", 0.0))
        state = str(job.get("state") or "submitted")
        if (progress, state) == self._last:
            return
        self._last = (progress, state)
        filled = round(self.WIDTH * progress / 100)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"[{bar}] {progress:5.1f}% {state} (poll {job.get('polls', 0)})"
        self._stream.write(("\r" + line) if self._tty else line + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self._tty and self._last is not None:
            self._stream.write("\n")
            self._stream.flush()


if __name__ == "__main__":
    sys.exit(main())
