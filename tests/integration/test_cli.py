"""The ``aistudios-export local`` contract: flags, the last JSON line of stdout, the exit status."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from aistudios_local.cli import main
from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_bytes

from .conftest import PROJECT

pytestmark = pytest.mark.integration

RESULT_KEYS = {
    "status",
    "error",
    "cause",
    "video",
    "objects",
    "incompleteUploads",
    "stateTransitions",
    "elapsedSeconds",
}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main(["local", *args, "--json"])
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    return status, json.loads(last)


def test_json_contract_on_success_with_output_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "video.mp4"
    status, result = run_cli(
        capsys, "--project-id", PROJECT, "--resolution", "720", "--poll-seconds", "0",
        "--output", str(target),
    )  # fmt: skip
    assert status == 0
    assert set(result) == RESULT_KEYS
    expected = video_bytes(PROJECT, "720")
    assert result["status"] == "SUCCEEDED" and result["error"] is None and result["cause"] is None
    assert set(result["video"]) == {"bucket", "key", "size", "sha256", "contentType"}
    assert result["video"]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert result["video"]["contentType"] == "video/mp4"
    assert result["objects"] == [{"key": result["video"]["key"], "size": len(expected)}]
    assert result["incompleteUploads"] == 0
    assert result["stateTransitions"] > 0 and result["elapsedSeconds"] > 0
    assert target.read_bytes() == expected


def test_api_url_points_the_stack_at_another_server(capsys: pytest.CaptureFixture[str]) -> None:
    with AiStudiosSimulator(default_scenario=Scenario(fail_at_poll=2)) as server:
        status, result = run_cli(
            capsys, "--project-id", PROJECT, "--api-url", server.base_url, "--poll-seconds", "0"
        )
        assert [c.path for c in server.calls][:2] == [
            "/api/odin/v3/auth/token",
            "/api/odin/v3/editor/project/export",
        ]
    assert status == 1
    assert result["status"] == "FAILED"
    assert result["error"] == "ExportFailed"
    assert result["video"] is None and result["objects"] == []


def test_timeout_seconds_is_the_exports_budget(capsys: pytest.CaptureFixture[str]) -> None:
    slow = Scenario(progress_steps=(0.0, 10.0, 20.0, 30.0, 40.0))
    with AiStudiosSimulator(default_scenario=slow) as server:
        status, result = run_cli(
            capsys, "--project-id", PROJECT, "--api-url", server.base_url,
            "--poll-seconds", "1", "--timeout-seconds", "2",
        )  # fmt: skip
    assert status == 1
    assert result["error"] == "ExportTimedOut"


def test_invalid_project_id_is_a_usage_error_before_the_stack_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aistudios_local import stack

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the local stack must not start on a usage error")

    monkeypatch.setattr(stack.LocalStack, "__init__", never)
    with pytest.raises(SystemExit) as info:
        main(["local", "--project-id", "not-an-object-id", "--json"])
    assert info.value.code == 2
    assert "is not an AI Studios project id" in capsys.readouterr().err
