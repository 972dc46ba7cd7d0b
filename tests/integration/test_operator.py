"""The operator commands against ``aistudios-export local up``, through ``AWS_ENDPOINT_URL``.

``local up`` runs as a subprocess serving the local stack on loopback; the commands run in this
process (or as a subprocess, for Ctrl-C) and make exactly the boto3 calls they make on AWS.
The stack talks to a simulator of this process, so tests see what AI Studios was asked.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import pytest

from aistudios_local.cli import main
from aistudios_local.operator.exits import (
    CONFLICT,
    FAILED,
    INTERRUPTED,
    NOT_FOUND,
    STILL_RUNNING,
)
from aistudios_local.resources import REGION, STACK_NAME
from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_sha256
from aistudios_local.simulator.state import DEFAULT_APP_ID, DEFAULT_USER_KEY

from .conftest import PROJECT

pytestmark = pytest.mark.integration

SLOW = "65fa6b07dca2e367461a29ff"
"""A project whose export takes minutes: its progress moves one percent per poll."""
SLOWER = "65fa6b07dca2e367461a29fe"
FAILING = "65fa6b07dca2e367461a29fd"
REDRIVEN = "65fa6b07dca2e367461a29fc"
"""A project whose render fails at AI Studios at the second progress check."""
UP_SECONDS = 180.0
"""How long ``local up`` may take to say it serves."""
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
"""Control characters other than tab and newline."""


class Lines:
    """The lines a subprocess writes to one of its pipes, read in the background."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.text = ""
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def until(self, wanted: str, process: subprocess.Popen[str], seconds: float) -> str:
        """Return what was read once ``wanted`` is in it; fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        while wanted not in self.text:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {wanted!r} in: {self.text}")
            try:
                self.text += self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
        return self.text

    def all(self, seconds: float) -> str:
        """Return everything once the pipe closed (the process ended); fail after ``seconds``."""
        self._reader.join(timeout=seconds)
        assert not self._reader.is_alive(), f"the pipe is still open: {self.text}"
        while not self._queue.empty():
            self.text += self._queue.get_nowait()
        return self.text


class LocalUp:
    """A ``local up`` subprocess: its endpoint and what it printed."""

    def __init__(self, api_url: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "aistudios_local.cli", "local", "up", "--port",
                   str(self.port), "--api-url", api_url, "--poll-seconds", "1"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.out = Lines(self.process.stdout)

    def wait_until_serving(self) -> str:
        return self.out.until("Ctrl-C stops it.", self.process, UP_SECONDS)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def sim() -> Iterator[AiStudiosSimulator]:
    with AiStudiosSimulator() as simulator:
        simulator.set_scenario(SLOW, Scenario(progress_steps=tuple(float(p) for p in range(100))))
        simulator.set_scenario(SLOWER, Scenario(progress_steps=tuple(float(p) for p in range(100))))
        simulator.set_scenario(FAILING, Scenario(fail_at_poll=2))
        yield simulator


@pytest.fixture(scope="module")
def up(sim: AiStudiosSimulator) -> Iterator[LocalUp]:
    server = LocalUp(sim.base_url)
    try:
        banner = server.wait_until_serving()
        assert f"AWS_ENDPOINT_URL={server.url}" in banner
        assert f"--stack {STACK_NAME} start --project-id" in banner
        yield server
    finally:
        # Stops cleanly on SIGTERM: exit status 0.
        assert server.stop() == 0


@pytest.fixture
def aws(up: LocalUp, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": up.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    for name in ("AWS_PROFILE", "AWS_SAM_STACK_NAME", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """Run the CLI with --json; return (exit status, the JSON object or None, stderr)."""
    status = main(["--stack", STACK_NAME, "--json", *args])
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert not CONTROL.search(text), f"control characters off a terminal: {text!r}"
    out = captured.out.strip()
    return status, (json.loads(out) if out else None), captured.err


def client(service: str) -> Any:
    return boto3.Session().client(service)  # type: ignore[call-overload]


def test_start_wait_exports_the_simulators_video(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Without --json: progress on stderr, one plain line per change; the outcome on stdout.
    status = main(["--stack", STACK_NAME, "start", "--project-id", PROJECT, "--resolution",
                   "720", "--wait", "--interval", "0.2"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert not CONTROL.search(captured.out + captured.err)
    progress = [line for line in captured.err.splitlines() if "elapsed" in line]
    assert progress and "100.0%" in progress[-1] and "SUCCEEDED" in progress[-1]
    assert len(progress) == len(set(progress))
    assert f"sha256:   {video_sha256(PROJECT, '720')}" in captured.out.splitlines()
    found = re.search(r"^export: +(\S+)$", captured.out, re.MULTILINE)
    assert found is not None

    status, result, err = cli(capsys, "status", found[1])
    assert status == 0, err
    assert result["status"] == "SUCCEEDED" and result["progress"] == 100.0
    assert result["projectId"] == PROJECT and result["resolution"] == "720"
    video = result["video"]
    assert video["sha256"] == video_sha256(PROJECT, "720")
    body = client("s3").get_object(Bucket=video["bucket"], Key=video["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == video_sha256(PROJECT, "720")
    # The download link status gives (as GET /exports/{id}) serves the same bytes.
    assert video["downloadUrl"].startswith(aws["AWS_ENDPOINT_URL"] + "/")
    with urllib.request.urlopen(video["downloadUrl"], timeout=30) as answer:
        assert hashlib.sha256(answer.read()).hexdigest() == video_sha256(PROJECT, "720")
    # The same export again: the dedupe window names it, nothing new starts.
    status, again, _ = cli(capsys, "start", "--project-id", PROJECT, "--resolution", "720")
    assert status == 0 and again == {"exportId": found[1], "status": "SUCCEEDED"}

    assert video["s3Uri"] == f"s3://{video['bucket']}/{video['key']}"

    status, listing, _ = cli(capsys, "list", "--project-id", PROJECT, "--status", "SUCCEEDED")
    assert status == 0
    assert result["exportId"] in [e["exportId"] for e in listing["exports"]]
    assert {e["status"] for e in listing["exports"]} == {"SUCCEEDED"}

    status, history, _ = cli(capsys, "logs", result["exportId"])
    assert status == 0
    events = history["events"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1]["type"] == "ExecutionSucceeded"
    assert {"SubmitExport", "FinalizeExport"} <= {e["state"] for e in events}
    assert all(set(e) <= {"id", "timestamp", "type", "state", "error", "cause"} for e in events)

    # A finished export cannot be cancelled.
    status, _, err = cli(capsys, "cancel", result["exportId"])
    assert status == CONFLICT and "only a running one can be cancelled" in err


def test_cancel_stops_a_slow_export_and_a_cancelled_one_is_not_redriven(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, started, _ = cli(capsys, "start", "--project-id", SLOW)
    assert status == 0 and started["status"] == "RUNNING"
    export_id = started["exportId"]

    status, cancelled, _ = cli(capsys, "cancel", export_id)
    assert status == 0 and cancelled == {"exportId": export_id, "status": "ABORTED"}
    status, now, _ = cli(capsys, "status", export_id)
    assert now["status"] == "ABORTED"
    events = cli(capsys, "logs", export_id)[1]["events"]
    assert events[-1]["type"] == "ExecutionAborted"
    # Cancelling again changes nothing.
    assert cli(capsys, "cancel", export_id)[:2] == (0, {"exportId": export_id, "status": "ABORTED"})

    # A redrive would resume its render without the slot the stop freed: start a new export.
    status, _, err = cli(capsys, "redrive", export_id)
    assert status == CONFLICT and "start a new export" in err


def test_batch_wait_reports_every_row(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = "65fa6b07dca2e367461a2926"
    manifest = tmp_path / "two-rows.csv"
    manifest.write_text(f"projectId,resolution\n{PROJECT},480\n{other},720\n")
    status, result, err = cli(capsys, "batch", str(manifest), "--wait", "--interval", "0.2")
    assert status == 0, err
    assert result["status"] == "SUCCEEDED" and result["manifest"].endswith("two-rows.csv")
    rows = {row["projectId"]: row for row in result["rows"]}
    assert rows[PROJECT]["status"] == rows[other]["status"] == "SUCCEEDED"
    assert rows[PROJECT]["video"]["sha256"] == video_sha256(PROJECT, "480")
    assert rows[other]["video"]["sha256"] == video_sha256(other, "720")
    assert result["reportKey"].endswith("report.json")


def test_set_credentials_stores_them_and_says_whether_ai_studios_accepted_them(
    aws: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sim: AiStudiosSimulator,
) -> None:
    secrets = client("secretsmanager")
    stack = client("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    secret_id = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["CredentialsSecretArn"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{DEFAULT_APP_ID}\nnot-the-key\n"))
    mints = len([c for c in sim.calls if c.path.endswith("/auth/token")])
    status, refused, err = cli(capsys, "set-credentials")
    assert status == FAILED, err
    assert refused == {
        "stored": True,
        "accepted": False,
        "error": "Unauthorized",
        "message": "AI Studios refused these credentials",
    }
    assert len([c for c in sim.calls if c.path.endswith("/auth/token")]) == mints + 1
    stored = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
    assert stored == {"appId": DEFAULT_APP_ID, "userKey": "not-the-key"}

    good = json.dumps({"appId": DEFAULT_APP_ID, "userKey": DEFAULT_USER_KEY})
    monkeypatch.setattr(sys, "stdin", io.StringIO(good))
    status, accepted, err = cli(capsys, "set-credentials")
    assert status == 0, err
    assert accepted["accepted"] is True and accepted["error"] is None
    assert DEFAULT_USER_KEY not in err + json.dumps(accepted)


def test_doctor_reports_placeholder_credentials(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, report, _ = cli(capsys, "doctor")
    findings = {f["check"]: f for f in report["findings"]}
    assert findings["credentials"]["ok"] is True
    # The local stack has no rotation schedule: doctor says so.
    assert findings["rotation"]["ok"] is False and status == FAILED
    # The template's alarms exist, notify one topic, and nobody subscribed to it.
    alarms = [f for f in report["findings"] if f["check"] == "alarms"]
    assert [(f["ok"], f["problem"]) for f in alarms] == [(False, True), (True, True)]
    assert "has no confirmed subscriber" in alarms[0]["message"]
    assert alarms[1]["message"] == "7 alarm(s), none in ALARM"
    # The template's schedule is off until its manifest is in place: a note, not a problem.
    assert findings["schedule"]["ok"] is False and findings["schedule"]["problem"] is False
    assert findings["schedule"]["message"].startswith("BatchSchedule is DISABLED")

    secrets = client("secretsmanager")
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in client("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"][0][
            "Outputs"
        ]
    }
    secret_id = outputs["CredentialsSecretArn"]
    before = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
    secrets.put_secret_value(
        SecretId=secret_id, SecretString=json.dumps({"appId": "REPLACE_ME", "userKey": "x" * 32})
    )
    try:
        status, report, _ = cli(capsys, "doctor")
    finally:
        secrets.put_secret_value(SecretId=secret_id, SecretString=before)
    findings = {f["check"]: f for f in report["findings"]}
    assert status == FAILED and report["healthy"] is False
    assert findings["credentials"]["ok"] is False
    assert "still the placeholder" in findings["credentials"]["message"]


def test_unknown_exports_and_stacks_are_not_found(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"{PROJECT}-1080-00000000000000000000"
    for command in ("status", "logs", "cancel"):
        status, _, err = cli(capsys, command, missing)
        assert status == NOT_FOUND and f"no export {missing}" in err
    status = main(["--stack", "no-such-stack", "doctor"])
    assert status == NOT_FOUND
    assert "no stack 'no-such-stack'" in capsys.readouterr().err


def test_ctrl_c_stops_following_and_says_how_to_resume(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    command = [sys.executable, "-m", "aistudios_local.cli", "--stack", STACK_NAME,
               "start", "--project-id", SLOWER, "--wait", "--interval", "0.2"]  # fmt: skip
    # As from a terminal: a shell that starts the tests in the background makes them ignore
    # SIGINT, and a child would inherit that (Python then installs no KeyboardInterrupt).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    # Following: a progress line is out.
    stderr, stdout = Lines(process.stderr), Lines(process.stdout)  # both drained: no full pipe
    stderr.until("elapsed", process, 60)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running 60 s after SIGINT; it wrote: {stderr.all(10)}{stdout.all(10)}")
    err = stderr.all(30)
    assert process.returncode == INTERRUPTED
    assert "Traceback" not in err
    export_id = re.search(r"export (\S+) RUNNING", err)
    assert export_id is not None, err
    assert f"--stack {STACK_NAME} status {export_id[1]} --wait" in err
    # The export went on; stop it.
    assert cli(capsys, "status", export_id[1])[1]["status"] == "RUNNING"
    assert cli(capsys, "cancel", export_id[1])[0] == 0


def test_a_failed_export_exits_1_and_its_logs_show_the_error(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, result, _ = cli(capsys, "start", "--project-id", FAILING, "--wait", "--interval", "0.2")
    assert status == FAILED
    assert result["status"] == "FAILED" and result["error"] == "ExportFailed"
    assert result["video"] is None

    status = main(["--stack", STACK_NAME, "logs", result["exportId"]])
    out = capsys.readouterr().out
    assert status == 0
    assert not CONTROL.search(out)  # highlighted in colour on a terminal only
    failures = [line for line in out.splitlines() if "error=" in line]
    assert failures and all("cause=" in line for line in failures)
    assert "ExecutionFailed" in failures[-1] and "error=ExportFailed" in failures[-1]

    # AI Studios said the render failed: a redrive runs, and says so again.
    status, redriven, _ = cli(capsys, "redrive", result["exportId"], "--wait", "--interval", "0.2")
    assert status == FAILED
    assert (redriven["status"], redriven["error"]) == ("FAILED", "ExportFailed")
    assert "did not resume the export" in redriven["cause"]


def test_redrive_wait_resumes_a_failed_copy_to_the_video(
    aws: dict[str, str], sim: AiStudiosSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every download URL answers 403 (expired): the render is done, the copy fails.
    sim.set_scenario(REDRIVEN, Scenario(expired_urls=1000))
    status, failed, _ = cli(
        capsys, "start", "--project-id", REDRIVEN, "--wait", "--interval", "0.2"
    )
    assert status == FAILED and failed["error"] == "DownloadUrlExpired"
    posts = [c for c in sim.calls if c.path.endswith("/export") and c.project_id == REDRIVEN]

    sim.set_scenario(REDRIVEN, Scenario())
    status, result, err = cli(capsys, "redrive", failed["exportId"], "--wait", "--interval", "0.2")
    assert status == 0, err
    assert result["status"] == "SUCCEEDED" and result["video"]["sha256"] == video_sha256(
        REDRIVEN, "1080"
    )
    again = [c for c in sim.calls if c.path.endswith("/export") and c.project_id == REDRIVEN]
    assert len(again) == len(posts) == 1, "the redrive rendered the project a second time"
    # Once it succeeded, a redrive is refused.
    assert cli(capsys, "redrive", failed["exportId"])[0] == CONFLICT


def test_wait_seconds_bounds_the_wait_and_the_export_goes_on(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, started, _ = cli(capsys, "start", "--project-id", SLOW, "--resolution", "480")
    assert status == 0
    status, _, err = cli(
        capsys, "status", started["exportId"], "--wait", "--wait-seconds", "1", "--interval", "0.2"
    )
    assert status == STILL_RUNNING and "is still RUNNING after 1 s" in err
    assert cli(capsys, "cancel", started["exportId"])[1]["status"] == "ABORTED"
