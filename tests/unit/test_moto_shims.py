"""local/aistudios_local/moto_shims.py: each shim is needed, works, and touches nothing else.

Each engine hook is left out in turn: a tiny parent machine running a ``startExecution.sync:2``
child and an ``aws-sdk:sfn:describeExecution`` then fails. The rule shim is checked with an S3
upload through a rule with a Step Functions target, with and without it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws
from moto.core import botocore_stubber
from moto.secretsmanager.models import SecretsManagerBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service,
)

from aistudios_export import clients
from aistudios_local import moto_shims
from aistudios_local.moto_shims import ENGINE_HOOKS, MotoShims, RuleDelivery
from aistudios_local.stack import wait_for_execution
from tests.unit._fixtures import ACCOUNT, fake_aws

ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
BUCKET = "shim-test-bucket"
CHILD_OUTPUT = {"video": {"key": "exports/a.mp4"}}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto with its Step Functions engine running real ASL, and a clean default session."""
    with fake_aws(monkeypatch, run_state_machines=True):
        yield


@pytest.fixture
def deliveries(engine: None) -> Iterator[list[RuleDelivery]]:
    """Install every shim for the test; record what rules start."""
    seen: list[RuleDelivery] = []
    shims = MotoShims(on_delivery=seen.append)
    shims.install()
    try:
        yield seen
    finally:
        shims.uninstall()


def finished(arn: str) -> dict[str, Any]:
    """Wait until an execution ends (the deadline stops it: ABORTED fails the test's checks)."""
    return dict(wait_for_execution(arn, deadline_seconds=10, interval=0.02))


def run_parent() -> dict[str, Any]:
    """A parent that runs a child with sync:2, then describes it through the aws-sdk integration."""
    sfn = boto3.client("stepfunctions")
    child = sfn.create_state_machine(
        name="child",
        definition=json.dumps(
            {
                "StartAt": "Done",
                "States": {"Done": {"Type": "Pass", "Result": CHILD_OUTPUT, "End": True}},
            }
        ),
        roleArn=ROLE,
    )["stateMachineArn"]
    child_execution = child.replace(":stateMachine:", ":execution:") + ":row-1"
    parent = {
        "StartAt": "Run",
        "States": {
            "Run": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution.sync:2",
                "Parameters": {"StateMachineArn": child, "Name": "row-1", "Input": {"row": 1}},
                "ResultPath": "$.run",
                "Next": "Describe",
            },
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sfn:describeExecution",
                "Parameters": {"ExecutionArn": child_execution},
                "ResultSelector": {"status.$": "$.Status"},
                "ResultPath": "$.described",
                "End": True,
            },
        },
    }
    arn = sfn.create_state_machine(name="parent", definition=json.dumps(parent), roleArn=ROLE)[
        "stateMachineArn"
    ]
    return finished(sfn.start_execution(stateMachineArn=arn, name="parent-1")["executionArn"])


# --- the engine's Step Functions integrations --------------------------------------------------


def test_with_the_shims_a_sync2_child_and_an_aws_sdk_describe_run(
    deliveries: list[RuleDelivery],
) -> None:
    parent = run_parent()
    assert parent["status"] == "SUCCEEDED", parent.get("cause")
    output = json.loads(parent["output"])
    assert output["run"]["Output"] == CHILD_OUTPUT
    assert output["run"]["Status"] == "SUCCEEDED"
    assert isinstance(output["run"]["StartDate"], int)  # epoch milliseconds, as AWS answers
    assert output["described"] == {"status": "SUCCEEDED"}


@pytest.mark.parametrize(
    ("left_out", "failure"),
    [
        (0, "'StateMachineArn'"),  # lower_parameter_names: boto3 sent no stateMachineArn
        (1, "'ExecutionArn'"),  # add_pascal_case_copies on StartExecution
        (2, "not JSON serializable"),  # datetimes_to_epoch_millis
        (3, "The JSONPath '$.Status' could not be found"),  # add_pascal_case_copies on Describe
    ],
)
def test_each_engine_hook_is_needed(
    deliveries: list[RuleDelivery],
    monkeypatch: pytest.MonkeyPatch,
    left_out: int,
    failure: str,
) -> None:
    monkeypatch.setattr(
        moto_shims, "ENGINE_HOOKS", tuple(h for i, h in enumerate(ENGINE_HOOKS) if i != left_out)
    )
    try:
        parent = run_parent()
    except TypeError as e:  # moto's DescribeExecution cannot encode the datetimes it stored
        assert failure in str(e)
        return
    assert parent["status"] == "FAILED"
    assert failure in parent["cause"]


def test_a_sync_answer_is_pascal_case_only_with_pascal_case_answer(engine: None) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (  # noqa: E501 - moto's module path
        StateTaskServiceSfn,
    )

    shims = MotoShims()
    shims.install()
    try:
        answer = json.loads(run_parent()["output"])["run"]
        assert answer["Output"] == CHILD_OUTPUT
        assert not [k for k in answer if k[:1].islower()]  # as AWS answers: PascalCase only
        # Left out, moto's own (empty) method answers in boto3's camelCase: no "Output".
        shim = vars(StateTaskServiceSfn)["_normalise_response"]
        del StateTaskServiceSfn._normalise_response
        try:
            sfn = boto3.client("stepfunctions")
            for machine in sfn.list_state_machines()["stateMachines"]:
                sfn.delete_state_machine(stateMachineArn=machine["stateMachineArn"])
            answer = json.loads(run_parent()["output"])["run"]
        finally:
            StateTaskServiceSfn._normalise_response = shim  # type: ignore[method-assign]
        assert "Output" not in answer and answer["output"] == CHILD_OUTPUT
    finally:
        shims.uninstall()
    assert "_normalise_response" not in vars(StateTaskServiceSfn)  # moto's own again


def test_the_products_own_calls_are_left_alone(deliveries: list[RuleDelivery]) -> None:
    run_parent()
    sfn = boto3.client("stepfunctions")
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    started = sfn.start_execution(stateMachineArn=arn, name="mine", input="{}")
    assert "ExecutionArn" not in started
    described = sfn.describe_execution(executionArn=started["executionArn"])
    assert "Status" not in described
    assert not isinstance(described["startDate"], int)  # still botocore's datetime
    # Keys are not lowered for the product: boto3 still refuses what it always refused.
    with pytest.raises(ParamValidationError, match="Unknown parameter"):
        sfn.describe_execution(ExecutionArn=started["executionArn"])  # type: ignore[call-arg]


@pytest.mark.parametrize("shimmed", [False, True])
def test_the_engines_finished_threads_are_forgotten_only_with_the_shim(
    engine: None, shimmed: bool
) -> None:
    from moto.stepfunctions.parser.utils import TMP_THREADS

    shims = MotoShims()
    if shimmed:
        shims.install()
    try:
        sfn = boto3.client("stepfunctions")
        definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
        arn = sfn.create_state_machine(
            name="pass", definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        del TMP_THREADS[:]
        for number in range(5):
            finished(sfn.start_execution(stateMachineArn=arn, name=f"e-{number}")["executionArn"])
        ended = [thread for thread in TMP_THREADS if not thread.is_alive()]
    finally:
        shims.uninstall()
    # moto keeps every thread its executions started (at least one each); the shim keeps at
    # most those of the last execution, whose start forgot the others.
    if shimmed:
        assert len(ended) < 5, len(ended)
    else:
        assert len(ended) >= 5


def test_uninstall_restores_moto(engine: None) -> None:
    from moto.events.models import Rule
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sfn,
    )
    from moto.stepfunctions.parser.backend.execution import (
        BaseExecutionWorkerCommunication,
        Execution,
    )

    def patched() -> tuple[Any, ...]:
        return (
            Rule.send_to_targets,
            vars(state_task_service_sfn)["boto_client_for"],
            Execution.start,
            BaseExecutionWorkerCommunication.terminated,
            vars(botocore_stubber)["normalize_request"],
        )

    before = patched()
    shims = MotoShims()
    shims.install()
    shims.install()  # idempotent
    assert shims.installed
    assert all(now != then for now, then in zip(patched(), before, strict=True))
    shims.uninstall()
    assert not shims.installed
    assert patched() == before


# --- EventBridge rules with a Step Functions target --------------------------------------------


def make_rule(state: Literal["ENABLED", "DISABLED"] = "ENABLED") -> str:
    """A bucket with EventBridge notifications and a rule that starts a machine on *.csv uploads."""
    s3, sfn, events = boto3.client("s3"), boto3.client("stepfunctions"), boto3.client("events")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    machine = sfn.create_state_machine(
        name="batch",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=ROLE,
    )["stateMachineArn"]
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [BUCKET]},
            "object": {"key": [{"wildcard": "manifests/*.csv"}]},
        },
    }
    events.put_rule(Name="uploads", EventPattern=json.dumps(pattern), State=state)
    events.put_targets(
        Rule="uploads",
        Targets=[
            {
                "Id": "batch",
                "Arn": machine,
                "RoleArn": ROLE,
                "InputTransformer": {
                    "InputPathsMap": {
                        "bucket": "$.detail.bucket.name",
                        "key": "$.detail.object.key",
                    },
                    "InputTemplate": '{"bucket": "<bucket>", "key": "<key>"}',
                },
            }
        ],
    )
    return machine


def executions(machine: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    return [
        {"name": e["name"], "input": json.loads(finished(e["executionArn"])["input"])}
        for e in sfn.list_executions(stateMachineArn=machine)["executions"]
    ]


def test_a_matching_upload_starts_the_target_with_the_transformed_input(
    deliveries: list[RuleDelivery],
) -> None:
    machine = make_rule()
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="manifests/jan.csv", Body=b"projectId\n")
    s3.put_object(Bucket=BUCKET, Key="results/jan.csv/report.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="manifests/notes.txt", Body=b"")
    [started] = executions(machine)
    assert started["input"] == {"bucket": BUCKET, "key": "manifests/jan.csv"}
    [delivery] = deliveries
    assert delivery.rule == "uploads" and delivery.target_arn == machine
    assert json.loads(delivery.input) == started["input"]
    assert delivery.execution_arn.endswith(":" + started["name"])


def test_a_disabled_rule_starts_nothing(deliveries: list[RuleDelivery]) -> None:
    machine = make_rule(state="DISABLED")
    boto3.client("s3").put_object(Bucket=BUCKET, Key="manifests/jan.csv", Body=b"projectId\n")
    assert executions(machine) == []
    assert deliveries == []


def test_without_the_shim_an_upload_starts_nothing(engine: None) -> None:
    machine = make_rule()
    boto3.client("s3").put_object(Bucket=BUCKET, Key="manifests/jan.csv", Body=b"projectId\n")
    assert executions(machine) == []


# --- one request at a time ------------------------------------------------------------------


@pytest.mark.parametrize("shimmed", [True, False])
def test_each_request_is_atomic_only_with_the_shim(
    engine: None, monkeypatch: pytest.MonkeyPatch, shimmed: bool
) -> None:
    """Two PutSecretValue calls with one ClientRequestToken: AWS creates one version, refuses one.

    moto checks for the token and then adds the version; a barrier in between lets two threads
    both pass the check unless each request holds the shim's lock for its whole length.
    """
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="leased", SecretString="{}")
    both_checked = threading.Barrier(2)
    original = SecretsManagerBackend._check_with_existing_secrets_and_versions

    def check_then_wait(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = original(self, *args, **kwargs)
        # A bound, not a timing: with the lock held, the other thread never arrives.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait(timeout=1)
        return answer

    monkeypatch.setattr(
        SecretsManagerBackend, "_check_with_existing_secrets_and_versions", check_then_wait
    )
    outcomes: list[str] = []

    def put(value: str) -> None:
        client = boto3.client("secretsmanager")
        try:
            client.put_secret_value(
                SecretId="leased",
                ClientRequestToken="11111111-2222-4333-8444-555555555555",
                SecretString=value,
            )
            outcomes.append("created")
        except ClientError as e:
            outcomes.append(e.response["Error"]["Code"])

    with moto_shims.atomic_requests() if shimmed else contextlib.nullcontext():
        threads = [threading.Thread(target=put, args=(v,)) for v in ('{"a": 1}', '{"b": 2}')]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    if shimmed:
        assert sorted(outcomes) == ["ResourceExistsException", "created"]
    else:
        assert outcomes == ["created", "created"], "moto alone lets both writers through"


# --- a stop during a callback wait ----------------------------------------------------------------


def start_waiting(name: str) -> str:
    """Start an execution that waits for a task token (60 s), once it waits; return its ARN."""
    boto3.client("events").create_event_bus(Name=f"{name}-bus")
    wait = {
        "Type": "Task",
        "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
        "TimeoutSeconds": 60,
        "Parameters": {
            "Entries": [
                {
                    "EventBusName": f"{name}-bus",
                    "Source": "test",
                    "DetailType": "Waiting",
                    "Detail": {"taskToken.$": "$$.Task.Token"},
                }
            ]
        },
        "End": True,
    }
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=name,
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": wait}}),
        roleArn=ROLE,
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name=f"{name}-1")["executionArn"]
    for _ in range(200):
        events = sfn.get_execution_history(executionArn=arn)["events"]
        if any(e["type"] == "TaskSubmitted" for e in events):
            return arn
        threading.Event().wait(0.02)
    raise AssertionError("the execution never waited")


def test_a_stop_during_a_callback_wait_aborts_at_once_only_with_the_shim(engine: None) -> None:
    sfn = boto3.client("stepfunctions")
    arn = start_waiting("unshimmed")
    sfn.stop_execution(executionArn=arn, error="Operator")
    threading.Event().wait(0.5)
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"  # moto's gap
    shims = MotoShims()
    shims.install()
    try:
        arn = start_waiting("shimmed")
        sfn.stop_execution(executionArn=arn, error="Operator")
        assert finished(arn)["status"] == "ABORTED"
    finally:
        shims.uninstall()


# --- a task that starts after its program ended ---------------------------------------------------


def waiting_machine(name: str, catch_timeout: bool) -> str:
    """A machine whose one task waits for a token, its timeout read from the input (``$.t``)."""
    boto3.client("events").create_event_bus(Name=f"{name}-bus")
    wait: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
        "TimeoutSecondsPath": "$.t",
        "Parameters": {
            "Entries": [
                {
                    "EventBusName": f"{name}-bus",
                    "Source": "test",
                    "DetailType": "Waiting",
                    "Detail": {"taskToken.$": "$$.Task.Token"},
                }
            ]
        },
        "End": True,
    }
    states: dict[str, Any] = {"Wait": wait}
    if catch_timeout:
        wait["Catch"] = [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]
        states["TimedOut"] = {"Type": "Pass", "End": True}
    return boto3.client("stepfunctions").create_state_machine(
        name=name,
        definition=json.dumps({"StartAt": "Wait", "States": states}),
        roleArn=ROLE,
    )["stateMachineArn"]


@dataclass(frozen=True)
class LateStart:
    """What a held task has done so far: each event is set once, from the task's own thread."""

    held: threading.Event
    """A task is being held at its start."""
    started: threading.Event
    """The held task's start has run: it recorded its ``TaskScheduled`` event, or it raised."""


def task_starts_after_its_program_ends(monkeypatch: pytest.MonkeyPatch) -> LateStart:
    """Hold each service task at its start until its program (the task's frame) has ended.

    The hold is bounded by a deadline. The task's frame runs in a thread of its own that the
    execution no longer waits for: the execution can end before the late task records anything,
    so a test that reads the history waits for ``started`` first.
    """
    late = LateStart(held=threading.Event(), started=threading.Event())
    original = state_task_service.StateTaskService._before_eval_execution

    def start_late(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        late.held.set()
        for _ in range(1000):
            if not env.is_running():
                break
            threading.Event().wait(0.01)
        try:
            return original(self, env, *args, **kwargs)
        finally:
            late.started.set()

    monkeypatch.setattr(state_task_service.StateTaskService, "_before_eval_execution", start_late)
    return late


def scheduled_timeouts(arn: str) -> list[Any]:
    """The ``timeoutInSeconds`` of every ``TaskScheduled`` event in the execution's history."""
    events = boto3.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
    return [
        e["taskScheduledEventDetails"].get("timeoutInSeconds")
        for e in events
        if e["type"] == "TaskScheduled"
    ]


@pytest.mark.parametrize("shimmed", [True, False])
def test_a_task_started_after_its_own_timeout_leaves_a_readable_history_only_with_the_shim(
    engine: None, monkeypatch: pytest.MonkeyPatch, shimmed: bool
) -> None:
    """The state's 1 s timeout ends the task's frame before the task has recorded its start.

    A loaded machine does this by itself (the local stack waits 1 s); the hold makes it certain.
    """
    shims = MotoShims()
    if shimmed:
        shims.install()
    try:
        late = task_starts_after_its_program_ends(monkeypatch)
        machine = waiting_machine("late-start", catch_timeout=True)
        arn = boto3.client("stepfunctions").start_execution(
            stateMachineArn=machine, input=json.dumps({"t": 1})
        )["executionArn"]
        assert finished(arn)["status"] == "SUCCEEDED"  # through the Catch of States.Timeout
        # The execution ended without waiting for the late task: the history is complete only
        # once the task has recorded its start (moto) or been refused it (the shim).
        assert late.started.wait(timeout=10), "the held task never ran its start"
        if shimmed:
            assert all(isinstance(t, int) for t in scheduled_timeouts(arn))
        else:
            with pytest.raises(TypeError, match="int"):  # the input where the seconds belong
                scheduled_timeouts(arn)
    finally:
        shims.uninstall()


@pytest.mark.parametrize("shimmed", [True, False])
def test_a_stop_that_a_starting_task_outlives_aborts_only_with_the_shim(
    engine: None, monkeypatch: pytest.MonkeyPatch, shimmed: bool
) -> None:
    """StopExecution lands while a task is starting: AWS ends the execution ABORTED."""
    shims = MotoShims()
    if shimmed:
        shims.install()
    try:
        late = task_starts_after_its_program_ends(monkeypatch)
        machine = waiting_machine("stopped-start", catch_timeout=False)
        sfn = boto3.client("stepfunctions")
        arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"t": 60}))[
            "executionArn"
        ]
        assert late.held.wait(timeout=10), "the task never started"
        sfn.stop_execution(executionArn=arn, error="Operator", cause="stopped by the test")
        status = finished(arn)["status"]
        if shimmed:
            assert status == "ABORTED"
            assert all(isinstance(t, int) for t in scheduled_timeouts(arn))
        else:
            assert status == "FAILED", "moto alone lets the task's failure override the stop"
    finally:
        shims.uninstall()


# --- bytes-like request bodies ------------------------------------------------------------------


@contextlib.contextmanager
def all_shims() -> Iterator[None]:
    shims = MotoShims()
    shims.install()
    try:
        yield
    finally:
        shims.uninstall()


@pytest.mark.parametrize("installed_by", ["bytes_like_bodies", "MotoShims", None])
def test_a_bytearray_part_reaches_moto_only_with_the_shim(
    monkeypatch: pytest.MonkeyPatch, installed_by: str | None
) -> None:
    """The product sends a full part as its buffer: moto alone fails on a bytearray body.

    The unit tests' moto enters :func:`~aistudios_local.moto_shims.bytes_like_bodies`; the
    local stack's, :class:`MotoShims`.
    """
    shim = {"bytes_like_bodies": moto_shims.bytes_like_bodies, "MotoShims": all_shims}.get(
        installed_by or "", contextlib.nullcontext
    )
    shimmed = installed_by is not None
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    body = bytearray(b"a part in its pool buffer")
    crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    with mock_aws(), shim():
        s3 = clients.s3()
        sent: list[Any] = []
        s3.meta.events.register_first(
            "before-send.s3.UploadPart", lambda request, **_: sent.append(request)
        )
        s3.create_bucket(Bucket=BUCKET)
        upload_id = s3.create_multipart_upload(
            Bucket=BUCKET, Key="v.mp4", ChecksumAlgorithm="CRC32"
        )["UploadId"]

        def upload_part() -> str:
            return s3.upload_part(
                Bucket=BUCKET,
                Key="v.mp4",
                UploadId=upload_id,
                PartNumber=1,
                Body=cast("bytes", body),
                ChecksumCRC32=crc32,
            )["ETag"]

        if not shimmed:
            with pytest.raises(AttributeError, match="'bytearray' object has no attribute 'items'"):
                upload_part()
            return
        etag = upload_part()
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="v.mp4",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag, "ChecksumCRC32": crc32}]},
        )
        assert s3.get_object(Bucket=BUCKET, Key="v.mp4")["Body"].read() == body
    assert sent[0].body is body  # moto had a copy: botocore's request is left as it was
