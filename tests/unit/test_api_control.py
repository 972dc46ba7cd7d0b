"""Cancel and redrive: ``POST /exports/{id}/cancel|redrive`` and :class:`ExportController`.

Over moto where it can tell: moto stops executions (ABORTED) but keeps every execution RUNNING
otherwise (its definitions do not run here) and has no ``RedriveExecution`` without the local
stack's shim, so the other statuses and the redrive call itself are Step Functions' answers given
by botocore's ``Stubber`` (each call's parameters are checked). The redrive on the local stack,
with the real state machine, is in tests/integration/test_api_control.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from aistudios_export.errors import ExportCancelled, StateConflict
from aistudios_export.exports import ExportController, Started
from aistudios_export.exports.control import CANCEL_CAUSE
from aistudios_export.settings import HttpApiSettings
from tests.unit import _api
from tests.unit._api import API_HOST, Api
from tests.unit._fixtures import ACCOUNT, PROJECT_ID, REGION

aws, loaded_api, api = _api.aws, _api.loaded_api, _api.api  # the fixtures, by their names

MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:exports"
EXPORT_ID = f"{PROJECT_ID}-720-{'c' * 20}"
EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:exports:{EXPORT_ID}"
STARTED = datetime(2026, 1, 1, 12, tzinfo=UTC)


def described(status: str, **more: Any) -> dict[str, Any]:
    """``DescribeExecution``'s answer for the export in ``status``."""
    answer = {
        "executionArn": EXECUTION_ARN,
        "stateMachineArn": MACHINE_ARN,
        "name": EXPORT_ID,
        "status": status,
        "startDate": STARTED,
        **more,
    }
    if status != "RUNNING":
        answer.setdefault("stopDate", STARTED)
    return answer


class Sfn:
    """A Step Functions client whose answers are stubbed, and the controller over it."""

    def __init__(self) -> None:
        # Stubbed: nothing is sent, but botocore signs before the stubber answers.
        self.client = boto3.client(
            "stepfunctions",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.stubber = Stubber(self.client)
        self.controller = ExportController(HttpApiSettings(MACHINE_ARN), sfn=self.client)

    def describe(self, status: str, **more: Any) -> None:
        self.stubber.add_response(
            "describe_execution", described(status, **more), {"executionArn": EXECUTION_ARN}
        )

    def fail(self, method: str, code: str, message: str = "refused") -> None:
        self.stubber.add_client_error(method, service_error_code=code, service_message=message)


@pytest.fixture
def sfn() -> Iterator[Sfn]:
    stubbed = Sfn()
    with stubbed.stubber:
        yield stubbed
        stubbed.stubber.assert_no_pending_responses()


# --- cancel -----------------------------------------------------------------------------


def test_cancel_stops_the_execution_saying_only_that_the_api_cancelled_it(sfn: Sfn) -> None:
    sfn.describe("RUNNING")
    sfn.stubber.add_response(
        "stop_execution",
        {"stopDate": STARTED},
        {"executionArn": EXECUTION_ARN, "error": ExportCancelled.__name__, "cause": CANCEL_CAUSE},
    )
    sfn.describe("ABORTED", error="ExportCancelled", cause=CANCEL_CAUSE)
    assert sfn.controller.cancel(EXPORT_ID) == Started(EXPORT_ID, "ABORTED")


def test_cancelling_an_aborted_export_stops_nothing(sfn: Sfn) -> None:
    sfn.describe("ABORTED")
    assert sfn.controller.cancel(EXPORT_ID) == Started(EXPORT_ID, "ABORTED")


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "TIMED_OUT"])
def test_cancelling_an_export_that_ended_otherwise_is_a_conflict(sfn: Sfn, status: str) -> None:
    sfn.describe(status)
    with pytest.raises(StateConflict) as refused:
        sfn.controller.cancel(EXPORT_ID)
    assert refused.value.status == status
    assert status in refused.value.reason and "running" in refused.value.reason


def test_an_export_that_ends_while_being_cancelled_is_a_conflict(sfn: Sfn) -> None:
    sfn.describe("RUNNING")
    sfn.stubber.add_response("stop_execution", {"stopDate": STARTED})
    sfn.describe("SUCCEEDED")
    with pytest.raises(StateConflict, match="ended SUCCEEDED before it could be cancelled"):
        sfn.controller.cancel(EXPORT_ID)


@pytest.mark.parametrize("verb", ["cancel", "redrive"])
def test_an_unknown_export_is_none(sfn: Sfn, verb: str) -> None:
    sfn.fail("describe_execution", "ExecutionDoesNotExist")
    assert getattr(sfn.controller, verb)(EXPORT_ID) is None
    # Not an export id: Step Functions is not asked (the stubber has no answer for it).
    assert getattr(sfn.controller, verb)("../etc") is None


# --- redrive ----------------------------------------------------------------------------


def test_redrive_continues_a_failed_export(sfn: Sfn) -> None:
    sfn.describe("FAILED", redriveCount=2, redriveStatus="REDRIVABLE")
    sfn.stubber.add_response(
        "redrive_execution",
        {"redriveDate": STARTED},
        {"executionArn": EXECUTION_ARN, "clientToken": ANY},
    )
    assert sfn.controller.redrive(EXPORT_ID) == Started(EXPORT_ID, "RUNNING")


def test_two_redrives_of_the_same_attempt_send_the_same_client_token() -> None:
    tokens: list[str] = []
    for count in (0, 0, 1):
        stubbed = Sfn()
        stubbed.describe("FAILED", redriveCount=count)
        stubbed.stubber.add_response("redrive_execution", {"redriveDate": STARTED})
        stubbed.client.meta.events.register(
            "provide-client-params.sfn.RedriveExecution",
            lambda params, **_: tokens.append(params["clientToken"]),
        )
        with stubbed.stubber:
            stubbed.controller.redrive(EXPORT_ID)
    assert tokens[0] == tokens[1] != tokens[2]
    assert all(1 <= len(t) <= 64 and t.isascii() and " " not in t for t in tokens)


@pytest.mark.parametrize(
    "answer",
    [{"status": "RUNNING", "redriveCount": 1}, {"status": "PENDING_REDRIVE", "redriveCount": 1}],
)
def test_redriving_an_export_running_again_after_a_redrive_redrives_nothing(
    sfn: Sfn, answer: dict[str, Any]
) -> None:
    sfn.describe(**answer)
    assert sfn.controller.redrive(EXPORT_ID) == Started(EXPORT_ID, answer["status"])


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "SUCCEEDED", "redriveStatus": "NOT_REDRIVABLE"},
        {"status": "RUNNING"},
        {"status": "RUNNING", "redriveCount": 0},
    ],
)
def test_redriving_a_success_or_a_first_run_is_a_conflict(sfn: Sfn, answer: dict[str, Any]) -> None:
    sfn.describe(**answer)
    with pytest.raises(StateConflict) as refused:
        sfn.controller.redrive(EXPORT_ID)
    assert refused.value.status == answer["status"]
    assert "only a FAILED one can be redriven" in refused.value.reason


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
def test_an_export_that_ended_with_its_step_in_flight_is_not_redriven(
    sfn: Sfn, status: str
) -> None:
    # Step Functions would redrive it, resuming its render without its render slot.
    sfn.describe(status, redriveStatus="REDRIVABLE")
    with pytest.raises(StateConflict) as refused:
        sfn.controller.redrive(EXPORT_ID)
    assert refused.value.status == status
    assert refused.value.reason == (
        f"the export ended {status}: a redrive would resume it without its render slot, "
        "so only a FAILED export can be redriven; start a new export instead"
    )


def test_what_step_functions_says_is_not_redrivable_is_a_conflict_with_its_reason(
    sfn: Sfn,
) -> None:
    reason = "Execution redrivable period exceeded."
    sfn.describe("FAILED", redriveStatus="NOT_REDRIVABLE", redriveStatusReason=reason)
    with pytest.raises(StateConflict) as refused:
        sfn.controller.redrive(EXPORT_ID)
    assert reason in refused.value.reason and refused.value.status == "FAILED"


def test_a_refused_redrive_is_a_conflict_unless_another_redrive_won(sfn: Sfn) -> None:
    sfn.describe("FAILED")
    sfn.fail("redrive_execution", "ExecutionNotRedrivable")
    sfn.describe("FAILED", redriveStatus="NOT_REDRIVABLE", redriveStatusReason="too long")
    with pytest.raises(StateConflict, match="too long"):
        sfn.controller.redrive(EXPORT_ID)
    # The same race, won by a concurrent redrive: the export runs again, as asked.
    sfn.describe("FAILED")
    sfn.fail("redrive_execution", "ExecutionNotRedrivable")
    sfn.describe("RUNNING", redriveCount=1)
    assert sfn.controller.redrive(EXPORT_ID) == Started(EXPORT_ID, "RUNNING")


# --- the routes, over moto --------------------------------------------------------------


def _started(api: Api) -> str:
    export_id: str = api.post({"projectId": PROJECT_ID}).body["exportId"]
    return export_id


def test_cancel_answers_202_aborted_and_again_the_same(api: Api) -> None:
    export_id = _started(api)
    first = api.control(export_id, "cancel")
    assert first.status == 202
    assert first.body == {
        "exportId": export_id,
        "status": "ABORTED",
        "statusUrl": f"https://{API_HOST}/v1/exports/{export_id}",
    }
    stopped_at = api.get(f"/exports/{export_id}").body["stoppedAt"]
    assert stopped_at is not None
    again = api.control(export_id, "cancel")
    assert (again.status, again.body) == (202, first.body)
    got = api.get(f"/exports/{export_id}").body
    assert (got["status"], got["stoppedAt"]) == ("ABORTED", stopped_at)  # stopped once


def test_redrive_of_an_export_still_on_its_first_run_is_409_saying_why(api: Api) -> None:
    export_id = _started(api)
    answer = api.control(export_id, "redrive")
    assert answer.status == 409
    assert answer.body == {
        "statusCode": 409,
        "message": ("the export is RUNNING: only a FAILED one can be redriven (status RUNNING)"),
    }
    assert api.get(f"/exports/{export_id}").body["status"] == "RUNNING"


@pytest.mark.parametrize("verb", ["cancel", "redrive"])
@pytest.mark.parametrize(
    "export_id", [f"{PROJECT_ID}-1080-{'0' * 20}", "../etc", "x" * 200, "\u00e9t\u00e9"]
)
def test_unknown_or_malformed_id_is_404(api: Api, verb: str, export_id: str) -> None:
    answer = api.control(export_id, verb)
    assert answer.status == 404
    assert answer.body["statusCode"] == 404


@pytest.fixture
def stubbed_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Api, Sfn]]:
    """The handler with its controller on a stubbed Step Functions client."""
    module = api.module
    services = module["_services"]()
    stubbed = Sfn()
    controlled = services._replace(controller=stubbed.controller)
    resolver = module["_resolver"]()
    routes = module["routes"]
    monkeypatch.setitem(resolver.dependency_overrides, routes.services, lambda: controlled)
    with stubbed.stubber:
        yield api, stubbed
        stubbed.stubber.assert_no_pending_responses()


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
def test_redrive_of_an_aborted_or_timed_out_export_is_409_saying_to_start_anew(
    stubbed_api: tuple[Api, Sfn], status: str
) -> None:
    api, sfn = stubbed_api
    sfn.describe(status)
    answer = api.control(EXPORT_ID, "redrive")
    assert answer.status == 409
    assert "start a new export" in answer.body["message"]


def test_redrive_answers_202_running(stubbed_api: tuple[Api, Sfn]) -> None:
    api, sfn = stubbed_api
    sfn.describe("FAILED", redriveCount=0)
    sfn.stubber.add_response("redrive_execution", {"redriveDate": STARTED})
    answer = api.control(EXPORT_ID, "redrive")
    assert answer.status == 202
    assert answer.body == {
        "exportId": EXPORT_ID,
        "status": "RUNNING",
        "statusUrl": f"https://{API_HOST}/v1/exports/{EXPORT_ID}",
    }


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "TIMED_OUT"])
def test_cancel_of_an_ended_export_is_409(stubbed_api: tuple[Api, Sfn], status: str) -> None:
    api, sfn = stubbed_api
    sfn.describe(status)
    answer = api.control(EXPORT_ID, "cancel")
    assert answer.status == 409
    assert answer.body["message"] == (
        f"the export already ended {status}: only a running one can be cancelled (status {status})"
    )


def test_refusals_never_carry_arns_accounts_or_aws_messages(
    stubbed_api: tuple[Api, Sfn], capsys: pytest.CaptureFixture[str]
) -> None:
    api, sfn = stubbed_api
    secretish = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/secret token=abc"
    sfn.describe("FAILED")
    sfn.fail("redrive_execution", "ExecutionNotRedrivable", secretish)
    sfn.describe("FAILED", redriveStatus="NOT_REDRIVABLE")
    answer = api.control(EXPORT_ID, "redrive")
    assert answer.status == 409
    text = json.dumps(answer.body) + capsys.readouterr().out
    assert ACCOUNT not in text and "token=" not in text
