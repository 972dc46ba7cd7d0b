"""The end of a failed attempt: raise the export's error, or return when a redrive runs it again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aistudios_export.attempts import FailedAttempt, end_attempt, failure_class
from aistudios_export.errors import InvalidRequest, readable_cause
from aistudios_local.lambda_bridge import _failure
from tests.events import load_event
from tests.unit._fixtures import LambdaContextStub, load_handler

CAUSE = "the download of the video stopped after 1048576 of 2097152 bytes"


def test_the_attempt_that_failed_raises_its_error_by_name_with_its_cause() -> None:
    with pytest.raises(FailedAttempt) as raised:
        end_attempt({"Error": "DownloadInterrupted", "Cause": CAUSE, "Attempt": 2}, 2)
    assert type(raised.value).__name__ == "DownloadInterrupted"
    assert str(raised.value) == CAUSE


def test_a_lambda_cause_is_raised_as_its_message_only() -> None:
    # A failure before the submit keeps the function's JSON cause (with its stack trace).
    lambda_cause = json.dumps(
        {"errorMessage": "invalid request: x", "errorType": "InvalidRequest", "stackTrace": ["f"]}
    )
    with pytest.raises(FailedAttempt) as raised:
        end_attempt({"Error": "InvalidRequest", "Cause": lambda_cause, "Attempt": 0}, 0)
    assert (type(raised.value).__name__, str(raised.value)) == (
        "InvalidRequest",
        "invalid request: x",
    )


def test_the_raised_error_reaches_step_functions_with_its_name_and_a_readable_cause() -> None:
    # What Lambda (and the local bridge) answers: the class name is the execution's error.
    with pytest.raises(FailedAttempt) as raised:
        end_attempt({"Error": "States.Timeout", "Cause": CAUSE, "Attempt": 0}, 0)
    payload, kind = _failure(raised.value)
    assert kind == "States.Timeout"
    assert payload["errorType"] == "States.Timeout"
    assert readable_cause(json.dumps(payload)) == CAUSE


def test_a_redrive_returns_instead() -> None:
    failure = {"Error": "DownloadInterrupted", "Cause": CAUSE, "Attempt": 0}
    assert end_attempt(failure, 1) == {"redriveCount": 1, "failedAttempt": 0}
    assert end_attempt({**failure, "Attempt": 1}, 3) == {"redriveCount": 3, "failedAttempt": 1}


@pytest.mark.parametrize("name", [None, "", "not a name", "x" * 200, 7])
def test_a_malformed_error_name_is_raised_as_export_failed(name: object) -> None:
    with pytest.raises(FailedAttempt) as raised:
        end_attempt({"Error": name, "Cause": None, "Attempt": 0}, 0)
    assert (type(raised.value).__name__, str(raised.value)) == ("ExportFailed", "no cause given")


@pytest.mark.parametrize(
    ("failure", "count", "field"),
    [
        (None, 0, "error"),
        ({"Error": "X"}, 0, "error.Attempt"),
        ({"Error": "X", "Attempt": -1}, 0, "error.Attempt"),
        ({"Error": "X", "Attempt": True}, 0, "error.Attempt"),
        ({"Error": "X", "Attempt": 0}, "0", "redriveCount"),
        ({"Error": "X", "Attempt": 0}, None, "redriveCount"),
    ],
)
def test_what_the_state_machine_did_not_send_is_an_invalid_request(
    failure: Any, count: object, field: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        end_attempt(failure, count)
    assert [f for f, _ in raised.value.problems] == [field]


def test_one_class_per_name() -> None:
    assert failure_class("ExportFailed") is failure_class("ExportFailed")
    assert failure_class("ExportFailed") is not failure_class("ExportTimedOut")


def test_the_render_slot_function_ends_an_attempt_without_its_table() -> None:
    # No RENDER_SLOTS_TABLE: ending an attempt touches no AWS service.
    handler = load_handler("render_slot")
    event = load_event("render_slot_end_attempt")
    with pytest.raises(FailedAttempt) as raised:
        handler(event, LambdaContextStub())
    assert type(raised.value).__name__ == event["error"]["Error"]
    assert str(raised.value) == event["error"]["Cause"]
    redriven = {**event, "redriveCount": 1}
    assert handler(redriven, LambdaContextStub()) == {"redriveCount": 1, "failedAttempt": 0}
