"""Step Functions status change events, rules with Lambda targets, and DynamoDB tables locally.

The shims of local/aistudios_local/status_events.py and lambda_targets.py are checked the way
the template uses them: a rule on "Step Functions Execution Status Change" events of one state
machine, with an SQS target (which moto delivers to by itself) or a Lambda target (which only
the shim delivers to, through a `LambdaBridge`). Each test also runs, or has a twin that runs,
without the shims, where nothing arrives.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest

from aistudios_local.lambda_bridge import LambdaBridge, LocalFunction
from aistudios_local.lambda_targets import DeliveriesNotSettled
from aistudios_local.moto_shims import MotoShims
from aistudios_local.resources import ACCOUNT as STACK_ACCOUNT
from aistudios_local.resources import REGION as STACK_REGION
from aistudios_local.resources import STACK_NAME, create_resources
from aistudios_local.stack import LocalStack, wait_for_execution
from aistudios_local.template import Resolver
from tests.unit._fixtures import ACCOUNT, REGION, fake_aws

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import TargetTypeDef

ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
TERMINAL = ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
INPUT = {"projectId": "p-1", "n": 1}

RELEASE = threading.Event()
"""Holds the blocking test handler until the test lets it return (see `HELD_HANDLER`)."""

MACHINES: dict[str, dict[str, Any]] = {
    "SUCCEEDED": {
        "StartAt": "Done",
        "States": {"Done": {"Type": "Pass", "Result": {"done": True}, "End": True}},
    },
    "FAILED": {
        "StartAt": "Boom",
        "States": {"Boom": {"Type": "Fail", "Error": "ExportFailed", "Cause": "render refused"}},
    },
    # Stopped by the test long before the wait is over.
    "ABORTED": {
        "StartAt": "Long",
        "States": {"Long": {"Type": "Wait", "Seconds": 60, "End": True}},
    },
    # The top-level TimeoutSeconds ends it after one second.
    "TIMED_OUT": {
        "TimeoutSeconds": 1,
        "StartAt": "Long",
        "States": {"Long": {"Type": "Wait", "Seconds": 60, "End": True}},
    },
}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto with its Step Functions engine running real ASL, and a clean default session."""
    with fake_aws(monkeypatch, run_state_machines=True):
        yield


@pytest.fixture
def shims(engine: None) -> Iterator[MotoShims]:
    """Every shim installed for the test."""
    installed = MotoShims()
    installed.install()
    try:
        yield installed
    finally:
        installed.lambda_deliveries.settle(timeout=30)
        installed.uninstall()


def machine(outcome: str) -> str:
    """Create the state machine whose executions end with ``outcome``; return its ARN."""
    return boto3.client("stepfunctions").create_state_machine(
        name=f"tiny-{outcome.lower()}", definition=json.dumps(MACHINES[outcome]), roleArn=ROLE
    )["stateMachineArn"]


def status_rule(machine_arn: str, target: dict[str, Any], statuses: list[str]) -> None:
    """The template's rule shape: status changes of one machine, some statuses, one target."""
    pattern = {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": statuses, "stateMachineArn": [machine_arn]},
    }
    events = boto3.client("events")
    events.put_rule(Name="status", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="status", Targets=[cast("TargetTypeDef", {"Id": "t", **target})])


def queue() -> tuple[str, str]:
    """An SQS queue: ``(url, arn)``."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="status-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def run(machine_arn: str, outcome: str) -> dict[str, Any]:
    """Start an execution, stop it when it must be ABORTED, and wait until it has ended."""
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine_arn, name="e-1", input=json.dumps(INPUT))[
        "executionArn"
    ]
    if outcome == "ABORTED":
        # Stop it once it runs: moto can lose a stop that comes before its engine's first state.
        for _ in range(1000):
            events = sfn.get_execution_history(executionArn=arn)["events"]
            if any("stateEnteredEventDetails" in e for e in events):
                break
            time.sleep(0.01)
        sfn.stop_execution(executionArn=arn)
    described = wait_for_execution(arn, deadline_seconds=20, interval=0.02)
    assert described["status"] == outcome
    return dict(described)


def received(url: str) -> list[dict[str, Any]]:
    """Every event in the queue (the shim puts it before the status is visible)."""
    answer = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


# --- status change events ------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"])
def test_a_rule_receives_running_then_the_final_status_with_aws_detail(
    shims: MotoShims, outcome: str
) -> None:
    machine_arn = machine(outcome)
    url, queue_arn = queue()
    status_rule(machine_arn, {"Arn": queue_arn}, ["RUNNING", *TERMINAL])
    described = run(machine_arn, outcome)

    started, ended = received(url)
    for event in (started, ended):
        assert event["source"] == "aws.states"
        assert event["detail-type"] == "Step Functions Execution Status Change"
        assert event["resources"] == [described["executionArn"]]
        assert event["region"] == REGION  # moto's SQS delivery leaves out the account
        detail = event["detail"]
        assert detail["executionArn"] == described["executionArn"]
        assert detail["stateMachineArn"] == machine_arn
        assert detail["name"] == "e-1"
        assert json.loads(detail["input"]) == INPUT
        assert detail["inputDetails"] == {"included": True}
        assert detail["startDate"] == int(described["startDate"].timestamp() * 1000)
    assert started["detail"]["status"] == "RUNNING"
    assert started["detail"]["stopDate"] is None
    assert started["detail"]["output"] is None

    detail = ended["detail"]
    assert detail["status"] == outcome
    if outcome != "TIMED_OUT":  # moto's DescribeExecution leaves a timed-out one's stopDate out
        assert detail["stopDate"] == int(described["stopDate"].timestamp() * 1000)
    assert detail["startDate"] <= detail["stopDate"]
    if outcome == "SUCCEEDED":
        assert json.loads(detail["output"]) == {"done": True}
        assert detail["outputDetails"] == {"included": True}
    else:
        assert (detail["output"], detail["outputDetails"]) == (None, None)
    expected_error = ("ExportFailed", "render refused") if outcome == "FAILED" else (None, None)
    assert (detail["error"], detail["cause"]) == expected_error


def test_the_release_rule_shape_ignores_success_and_other_machines(shims: MotoShims) -> None:
    """Only the failures of the rule's own machine match (the template's release rule)."""
    watched, other = machine("FAILED"), machine("SUCCEEDED")
    url, queue_arn = queue()
    status_rule(watched, {"Arn": queue_arn}, ["FAILED", "TIMED_OUT", "ABORTED"])
    run(other, "SUCCEEDED")
    assert received(url) == []
    run(watched, "FAILED")
    [event] = received(url)
    assert event["detail"]["status"] == "FAILED"


def test_express_executions_send_no_events(shims: MotoShims) -> None:
    sfn = boto3.client("stepfunctions")
    express = sfn.create_state_machine(
        name="express",
        definition=json.dumps(MACHINES["SUCCEEDED"]),
        roleArn=ROLE,
        type="EXPRESS",
    )["stateMachineArn"]
    url, queue_arn = queue()
    status_rule(express, {"Arn": queue_arn}, ["RUNNING", *TERMINAL])
    arn = sfn.start_execution(stateMachineArn=express, input="{}")["executionArn"]
    assert wait_for_execution(arn, deadline_seconds=20, interval=0.02)["status"] == "SUCCEEDED"
    assert received(url) == []


def test_without_the_shims_no_event_arrives(engine: None) -> None:
    machine_arn = machine("FAILED")
    url, queue_arn = queue()
    status_rule(machine_arn, {"Arn": queue_arn}, ["RUNNING", *TERMINAL])
    run(machine_arn, "FAILED")
    assert received(url) == []


# --- rules with Lambda targets ----------------------------------------------------------------

RECORDING_HANDLER = """
    def lambda_handler(event, context):
        if event["detail"]["name"] == "fail":
            raise ValueError("no slot held by " + event["detail"]["executionArn"])
        return {"released": event["detail"]["executionArn"], "status": event["detail"]["status"]}
"""

HELD_HANDLER = """
    from tests.unit.test_status_events import RELEASE


    def lambda_handler(event, context):
        # Bounded: the test sets it; a broken test fails on its own assertions meanwhile.
        RELEASE.wait(timeout=30)
        return {"status": event["detail"]["status"]}
"""


def local_function(tmp_path: Path, source: str) -> LocalFunction:
    (tmp_path / "app.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return LocalFunction(
        logical_id="RenderSlotFunction",
        name="stack-RenderSlot",
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stack-RenderSlot",
        code_dir=tmp_path,
        handler="app.lambda_handler",
        environment={},
    )


@pytest.fixture
def bridged(shims: MotoShims, tmp_path: Path) -> Iterator[tuple[MotoShims, LambdaBridge, str]]:
    """The shims, a bridge to the recording function, and a machine whose executions fail."""
    fn = local_function(tmp_path, RECORDING_HANDLER)
    bridge = LambdaBridge({fn.logical_id: fn}, dict(os.environ))
    bridge.install()
    machine_arn = machine("FAILED")
    status_rule(machine_arn, {"Arn": fn.arn}, ["FAILED", "TIMED_OUT", "ABORTED"])
    try:
        yield shims, bridge, machine_arn
    finally:
        bridge.uninstall()


def start(machine_arn: str, name: str) -> str:
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine_arn, name=name, input="{}")["executionArn"]
    assert wait_for_execution(arn, deadline_seconds=20, interval=0.02)["status"] == "FAILED"
    return arn


def test_a_lambda_target_runs_the_handler_with_the_event(
    bridged: tuple[MotoShims, LambdaBridge, str],
) -> None:
    shims, bridge, machine_arn = bridged
    arn = start(machine_arn, "e-1")
    [delivery] = shims.lambda_deliveries.settle(timeout=10)
    assert delivery.succeeded
    assert delivery.result == {"released": arn, "status": "FAILED"}
    assert delivery.rule == "status" and delivery.target_arn.endswith(":stack-RenderSlot")
    [invocation] = bridge.invocations
    assert invocation.payload == json.loads(delivery.input)
    assert invocation.payload["detail-type"] == "Step Functions Execution Status Change"
    assert "ingestion-time" not in invocation.payload  # moto's field, not AWS's
    assert invocation.payload["account"] == ACCOUNT
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", invocation.payload["time"])


def test_a_failing_target_is_recorded_and_the_engine_goes_on(
    bridged: tuple[MotoShims, LambdaBridge, str],
) -> None:
    shims, _, machine_arn = bridged
    start(machine_arn, "fail")
    second = start(machine_arn, "after")
    # Deliveries run on a pool, so they may finish in either order.
    deliveries = shims.lambda_deliveries.settle(timeout=10)
    (failed,) = [d for d in deliveries if not d.succeeded]
    (succeeded,) = [d for d in deliveries if d.succeeded]
    assert failed.error == "ValueError"
    assert "no slot held by" in failed.result["errorMessage"]
    assert succeeded.succeeded and succeeded.result["released"] == second


def test_a_target_no_function_answers_is_recorded(shims: MotoShims) -> None:
    machine_arn = machine("FAILED")
    missing = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:nobody"
    status_rule(machine_arn, {"Arn": missing}, ["FAILED"])
    start(machine_arn, "e-1")
    [delivery] = shims.lambda_deliveries.settle(timeout=10)
    assert delivery.error is not None and delivery.error.startswith("ResourceNotFoundException")


def test_delivery_is_asynchronous_and_settle_waits_for_it(shims: MotoShims, tmp_path: Path) -> None:
    fn = local_function(tmp_path, HELD_HANDLER)
    bridge = LambdaBridge({fn.logical_id: fn}, dict(os.environ))
    bridge.install()
    RELEASE.clear()
    try:
        machine_arn = machine("FAILED")
        status_rule(machine_arn, {"Arn": fn.arn}, ["FAILED"])
        start(machine_arn, "e-1")  # ended while its delivery is still held
        with pytest.raises(DeliveriesNotSettled):
            shims.lambda_deliveries.settle(timeout=0.2)
        assert shims.lambda_deliveries.pending == 1
        RELEASE.set()
        [delivery] = shims.lambda_deliveries.settle(timeout=10)
        assert delivery.result == {"status": "FAILED"}
    finally:
        RELEASE.set()
        bridge.uninstall()


def test_without_the_shims_a_lambda_target_is_never_invoked(engine: None, tmp_path: Path) -> None:
    fn = local_function(tmp_path, RECORDING_HANDLER)
    bridge = LambdaBridge({fn.logical_id: fn}, dict(os.environ))
    bridge.install()
    try:
        machine_arn = machine("FAILED")
        status_rule(machine_arn, {"Arn": fn.arn}, ["FAILED"])
        start(machine_arn, "e-1")
        # Without the status events there is nothing to deliver; put one as AWS would: moto
        # refuses to deliver it.
        with pytest.raises(NotImplementedError):
            boto3.client("events").put_events(
                Entries=[
                    {
                        "Source": "aws.states",
                        "DetailType": "Step Functions Execution Status Change",
                        "Detail": json.dumps({"status": "FAILED", "stateMachineArn": machine_arn}),
                    }
                ]
            )
        assert bridge.invocations == []
    finally:
        bridge.uninstall()


# --- DynamoDB tables ----------------------------------------------------------------------------

TABLE_TEMPLATE: dict[str, Any] = {
    "Resources": {
        "RenderSlotsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "SSESpecification": {"SSEEnabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            },
        },
        "RenderSlotFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "functions/render_slot/",
                "Handler": "app.lambda_handler",
                "Environment": {
                    "Variables": {
                        "RENDER_SLOTS_TABLE": {"Ref": "RenderSlotsTable"},
                        "RENDER_SLOTS_ARN": {"Fn::GetAtt": ["RenderSlotsTable", "Arn"]},
                    }
                },
            },
        },
        "RenderSlotPermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": "RenderSlotFunction"},
                "Principal": "events.amazonaws.com",
            },
        },
    }
}


def test_a_table_is_created_with_its_key_schema_and_its_ref_and_arn_resolve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with fake_aws(monkeypatch):
        resolver = Resolver(TABLE_TEMPLATE)
        functions = create_resources(tmp_path, resolver, lambda _: "{}")
        name = f"{STACK_NAME}-RenderSlotsTable"
        arn = f"arn:aws:dynamodb:{STACK_REGION}:{STACK_ACCOUNT}:table/{name}"
        assert resolver.refs["RenderSlotsTable"] == name
        assert resolver.resolve({"Fn::GetAtt": ["RenderSlotsTable", "Arn"]}) == arn
        variables = functions["RenderSlotFunction"].environment
        assert (variables["RENDER_SLOTS_TABLE"], variables["RENDER_SLOTS_ARN"]) == (name, arn)

        dynamodb = boto3.client("dynamodb")
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert table["TableArn"] == arn
        assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
        assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
        assert table.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert (ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")) == ("ENABLED", "expiresAt")


# --- the local stack ------------------------------------------------------------------------------

STACK_TEMPLATE = """
Parameters:
  ApiBaseUrl: {Type: String}
  TrustedDownloadOrigin: {Type: String, Default: ""}
  MinPollSeconds: {Type: String, Default: "5"}
Resources:
  RenderSlotsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  ExportStateMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: statemachine/export.asl.json
  RenderSlotFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/render_slot/
      Handler: app.lambda_handler
      Environment:
        Variables:
          RENDER_SLOTS_TABLE: !Ref RenderSlotsTable
  RenderSlotReleaseRule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        source: [aws.states]
        detail-type: [Step Functions Execution Status Change]
        detail:
          status: [FAILED, TIMED_OUT, ABORTED]
          stateMachineArn: [!Ref ExportStateMachine]
      Targets:
        - Id: release
          Arn: !GetAtt RenderSlotFunction.Arn
  RenderSlotReleasePermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref RenderSlotFunction
      Principal: events.amazonaws.com
      SourceArn: !GetAtt RenderSlotReleaseRule.Arn
"""

RELEASING_HANDLER = """
    import os

    import boto3


    def lambda_handler(event, context):
        table = boto3.resource("dynamodb").Table(os.environ["RENDER_SLOTS_TABLE"])
        table.put_item(Item={"pk": event["detail"]["executionArn"], "released": True})
        return {"released": event["detail"]["executionArn"]}
"""


def test_the_local_stack_runs_the_release_rule_and_settles(tmp_path: Path) -> None:
    """A template of the render-slot shape: a failed export's event reaches the function."""
    (tmp_path / "template.yaml").write_text(STACK_TEMPLATE, encoding="utf-8")
    (tmp_path / "statemachine").mkdir()
    (tmp_path / "statemachine" / "export.asl.json").write_text(
        json.dumps(MACHINES["FAILED"]), encoding="utf-8"
    )
    code = tmp_path / "functions" / "render_slot"
    code.mkdir(parents=True)
    (code / "app.py").write_text(textwrap.dedent(RELEASING_HANDLER), encoding="utf-8")

    with LocalStack(api_url="http://127.0.0.1:9", root=tmp_path) as stack:
        arn = stack.start_export({})
        assert wait_for_execution(arn, deadline_seconds=20, interval=0.02)["status"] == "FAILED"
        [delivery] = stack.settle(timeout=10)
        assert delivery.succeeded, delivery.result
        assert delivery.result == {"released": arn}
        assert stack.lambda_deliveries == [delivery]
        item = boto3.client("dynamodb").get_item(
            TableName=stack.ref("RenderSlotsTable"), Key={"pk": {"S": arn}}
        )
        assert item["Item"]["released"] == {"BOOL": True}
