"""The operator commands' contract that needs no stack: arguments, prompts, progress lines."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from aistudios_local import cli
from aistudios_local.cli import build_parser, main, read_credentials
from aistudios_local.operator import stack as operator_stack
from aistudios_local.operator.exits import USAGE, CommandError
from aistudios_local.operator.progress import ExportProgress, RowsProgress

PROJECT = "65fa6b07dca2e367461a2925"
EXPORT = f"{PROJECT}-1080-0123456789abcdefghij"


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything builds an AWS session."""

    def never(*_: object, **__: object) -> None:
        raise AssertionError("no AWS call may be made on a usage error")

    monkeypatch.setattr(operator_stack, "session", never)
    monkeypatch.delenv("AWS_SAM_STACK_NAME", raising=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stack", "s", "start", "--project-id", "65fa6b07"], "is not an AI Studios project id"),
        (["--stack", "s", "start", "--project-id", PROJECT, "--resolution", "999"],
         "invalid choice: '999'"),
        (["--stack", "s", "start", "--project-id", PROJECT, "--wait-seconds", "0"],
         "is not from 1 to"),
        (["--stack", "s", "status", "not-an-export"], "is not an export id"),
        (["--stack", "s", "cancel", f"{PROJECT}-1080-short"], "is not an export id"),
        (["--stack", "s", "list", "--limit", "0"], "0 is not from 1 to 100"),
        (["--stack", "s", "list", "--limit", "2.5"], "'2.5' is not a number"),
        (["--stack", "s", "list", "--status", "DONE"], "invalid choice: 'DONE'"),
        (["--stack", "s", "list", "--project-id", "zz"], "is not an AI Studios project id"),
        (["--stack", "bad name!", "doctor"], "is not a CloudFormation stack name"),
        (["start", "--project-id", PROJECT], "give the stack: --stack NAME"),
        (["start", "--stack", "s", "--project-id", "bad"], "is not an AI Studios project id"),
        (["--stack", "s", "batch", "rows.txt"], "is not a .csv or .json manifest"),
        (["--stack", "s", "batch", "missing.csv"], "cannot read missing.csv"),
    ],
)  # fmt: skip
def test_argument_errors_exit_2_before_any_aws_call(
    argv: list[str], message: str, no_aws: None, capsys: pytest.CaptureFixture[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: aistudios-export")
    assert message in err


def test_a_manifest_the_batch_would_reject_is_a_usage_error(
    no_aws: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "rows.json"
    manifest.write_text("{not json")
    with pytest.raises(SystemExit) as info:
        main(["--stack", "s", "batch", str(manifest)])
    assert info.value.code == 2
    assert "is not a manifest the batch accepts" in capsys.readouterr().err


def test_global_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--stack", "a", "--region", "eu-west-1", "status", EXPORT])
    after = parser.parse_args(["status", EXPORT, "--stack", "a", "--region", "eu-west-1"])
    for args in (before, after):
        assert (args.stack, args.region, args.profile, args.as_json) == (
            "a", "eu-west-1", None, False,
        )  # fmt: skip


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert re.fullmatch(r"aistudios-export \S+\n", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in cli.OPERATOR_COMMANDS:
        assert f"    {command} " in text
    assert "exit status:" in text and "130  interrupted" in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_credentials_are_prompted_without_echo_on_a_terminal() -> None:
    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return {"AI Studios appId: ": "app", "AI Studios userKey: ": "key"}[question]

    assert read_credentials(_Terminal(), prompt) == ("app", "key")
    assert asked == ["AI Studios appId: ", "AI Studios userKey: "]


@pytest.mark.parametrize(
    "text", ['{"appId": "app", "userKey": "key"}', "app\nkey\n", "  app\r\nkey"]
)
def test_credentials_are_read_from_stdin_off_a_terminal(text: str) -> None:
    def never(_: str) -> str:
        raise AssertionError("no prompt off a terminal")

    assert read_credentials(io.StringIO(text), never) == ("app", "key")


@pytest.mark.parametrize(
    "text", ["", "only-one-line", '{"appId": "app"}', "a b\nsecret-key", "{broken"]
)
def test_bad_credentials_are_a_usage_error_that_does_not_echo_them(text: str) -> None:
    with pytest.raises(CommandError) as info:
        read_credentials(io.StringIO(text))
    assert info.value.code == USAGE
    assert "secret-key" not in str(info.value)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_export_progress_off_a_terminal_is_one_plain_line_per_change_with_an_eta() -> None:
    stream, clock = io.StringIO(), _Clock()
    bar = ExportProgress(stream, clock=clock)
    bar.update("RUNNING", 0.0, None)
    bar.update("RUNNING", 0.0, None)  # nothing new: no line
    clock.now = 10.0
    bar.update("RUNNING", 10.0, "exporting")
    clock.now = 20.0
    bar.update("RUNNING", 30.0, "exporting")  # 20 % in 10 s: 70 % left is 35 s
    clock.now = 25.0
    bar.update("SUCCEEDED", 100.0, "completed")
    bar.end()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert "  0.0%  RUNNING" in lines[0] and "ETA --:--" in lines[0]
    assert " 30.0%  exporting" in lines[2] and "elapsed 0:20  ETA 0:35" in lines[2]
    assert lines[3].startswith("[" + "#" * 30 + "]") and "SUCCEEDED" in lines[3]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = _Terminal()
    bar = RowsProgress(stream, clock=_Clock())
    bar.update("RUNNING", 0, 4, 0)
    bar.update("RUNNING", 3, 4, 1)
    bar.end()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "3/4 rows  1 failed  RUNNING" in text


@pytest.mark.parametrize(
    ("subscribe", "state", "expected"),
    [
        (False, "OK", ["the alarms' topic", "has no confirmed subscriber"]),
        (True, "ALARM", ["in ALARM: ExportsFailed"]),
        (True, "OK", []),
    ],
)
def test_doctor_says_when_alarms_notify_nobody_or_fire(
    subscribe: bool, state: str, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto import mock_aws

    from aistudios_local.operator.commands import Context, _check_alarms
    from aistudios_local.operator.stack import DeployedStack

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        topic = session.client("sns").create_topic(Name="alarms")["TopicArn"]
        cloudwatch = session.client("cloudwatch")
        cloudwatch.put_metric_alarm(
            AlarmName="ExportsFailed", Namespace="AWS/States", MetricName="ExecutionsFailed",
            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[topic],
        )  # fmt: skip
        if subscribe:
            session.client("sns").subscribe(
                TopicArn=topic, Protocol="email", Endpoint="ops@example.com"
            )
        cloudwatch.set_alarm_state(AlarmName="ExportsFailed", StateValue=state, StateReason="t")
        stack = DeployedStack("s", "CREATE_COMPLETE", {}, {}, session)
        ctx = Context(stack, io.StringIO(), io.StringIO(), json=True, again="")
        findings = _check_alarms(
            ctx, [("ExportsFailedAlarm", "AWS::CloudWatch::Alarm", "ExportsFailed")]
        )
    problems = " ".join(f.message for f in findings if not f.ok and f.problem)
    for text in expected:
        assert text in problems
    if not expected:
        assert problems == ""
        assert any("1 confirmed subscriber(s)" in f.message for f in findings if f.ok)
