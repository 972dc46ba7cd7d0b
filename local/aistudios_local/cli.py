"""``aistudios-export``: the command line.

``aistudios-export local`` runs one export on the embedded local stack (no AWS account needed)::

    aistudios-export local --project-id ID [--resolution R] [--api-url URL] [--poll-seconds N]
                           [--timeout-seconds N] [--output FILE] [--json]

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
from typing import Any, TextIO

LOCAL_DEADLINE_MARGIN = 120
"""Seconds the local runner waits beyond the export's budget before stopping the execution."""


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="aistudios-export", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser(
        "local",
        help="run an export on the embedded local stack (moto + a loopback AI Studios simulator)",
        description="Run one export through the real state machine and handlers, in this process.",
    )
    local.add_argument(
        "--project-id", required=True, help="the AI Studios project (24 hex characters)"
    )
    local.add_argument("--resolution", help="4k | 1080 | 720 | 480 (default 1080)")
    local.add_argument(
        "--api-url", help="an AI Studios-compatible server (default: a built-in simulator)"
    )
    local.add_argument("--poll-seconds", type=int, default=2, help="seconds between progress polls")
    local.add_argument(
        "--timeout-seconds", type=int, default=600, help="the export's overall budget"
    )
    local.add_argument("--output", type=Path, help="also write the video to this file")
    local.add_argument("--json", action="store_true", help="end stdout with one JSON object")
    local.add_argument("--verbose", action="store_true", help="show the functions' logs on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "local":
        return run_local(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def run_local(args: argparse.Namespace) -> int:
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
    parameters = {} if args.verbose else {"LogLevel": "WARNING"}
    # Everything the functions print goes to stderr: stdout carries only the result.
    with (
        contextlib.redirect_stdout(sys.stderr),
        LocalStack(api_url=args.api_url, parameters=parameters) as stack,
    ):
        where = args.api_url or f"built-in simulator at {stack.api_url}"
        print(f"local stack up: AI Studios = {where}, bucket = {stack.bucket}", file=sys.stderr)
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
