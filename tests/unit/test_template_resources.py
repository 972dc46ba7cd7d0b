"""template.yaml's resources: buckets, queues, log groups, state machines and the batch triggers.

Each test states a rule any correct template keeps, read from the template and the state
machine definitions rather than copied from them. Permissions are in test_template_iam.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from aistudios_local.template import Resolver
from tests.unit import _template
from tests.unit._asl import all_states, retried
from tests.unit._template import (
    FUNCTION,
    PLACEHOLDER,
    STATE_MACHINE,
    actions,
    machine_ids,
    object_prefix,
    of_type,
    principal_statements,
    props,
    raw_definition,
    references,
    s3_writes,
    sub_text,
)

EXPRESS_LIMIT_SECONDS = 300
"""An Express execution's longest run: a longer machine must be Standard."""
TASK_MARGIN_SECONDS = 60
"""How much longer than its function a Lambda task may wait (invocation and retries of it)."""
BUDGET_PARAMETER = "DefaultTimeoutSeconds"
"""The template parameter of an export's default budget (models.ExportRequest's timeoutSeconds)."""
BATCH_INPUT = {"bucket", "key"}
"""What the batch machine is started with (manifests.prepare_batch), besides a schedule's scope."""


def lambda_tasks(machine: str) -> dict[str, tuple[dict[str, Any], str]]:
    """A machine's Lambda tasks (before substitution) with the function each one invokes."""
    substitutions = props(_template.template()["Resources"], machine)["DefinitionSubstitutions"]
    found = {}
    for name, state in all_states(raw_definition(machine)):
        match = PLACEHOLDER.fullmatch(state.get("Resource", ""))
        value = substitutions.get(match[1]) if match else None
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            found[name] = (state, value["Fn::GetAtt"][0])
    return found


def value_at(document: Any, path: str) -> Any:
    """The value of a simple JSONPath (``$.a.b``) in ``document``."""
    for key in path.removeprefix("$.").split("."):
        document = document[key]
    return document


# --- buckets and queues -------------------------------------------------------------------


def test_every_bucket_is_private_encrypted_versioned_and_aborts_uploads(
    resources: dict[str, Any],
) -> None:
    buckets = of_type(resources, "AWS::S3::Bucket")
    assert buckets
    for name, bucket in buckets.items():
        properties = bucket["Properties"]
        block = properties["PublicAccessBlockConfiguration"]
        assert set(block) == {
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        }, name
        assert all(value is True for value in block.values()), name
        (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {
            "AES256",
            "aws:kms",
        }
        # FinalizeExport stores a video in place and deletes the version it replaced.
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert properties["OwnershipControls"] == {
            "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
        }, name
        rules = [
            r for r in properties["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"
        ]
        assert any("AbortIncompleteMultipartUpload" in r for r in rules), "no billable parts"
        assert any("NoncurrentVersionExpiration" in r for r in rules), "no version kept forever"
        # The product: a deleted or replaced stack keeps the videos.
        assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain", name


def test_every_bucket_and_queue_refuses_plain_http(resources: dict[str, Any]) -> None:
    guarded = {
        **of_type(resources, "AWS::S3::Bucket"),
        **of_type(resources, "AWS::SQS::Queue"),
    }
    assert guarded
    policies = {
        **of_type(resources, "AWS::S3::BucketPolicy"),
        **of_type(resources, "AWS::SQS::QueuePolicy"),
    }
    for name, resource in guarded.items():
        denials = [
            statement
            for policy in policies.values()
            if name
            in references([policy["Properties"].get("Bucket"), policy["Properties"].get("Queues")])
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Deny"
            and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denials, f"{name} accepts plain HTTP"
        (deny,) = denials
        assert deny["Principal"] == "*"
        covered = (
            [sub_text(r) or r for r in deny["Resource"]]
            if isinstance(deny["Resource"], list)
            else [deny["Resource"]]
        )
        if resource["Type"] == "AWS::S3::Bucket":
            # The bucket and every object in it.
            assert {"Fn::GetAtt": [name, "Arn"]} in covered
            assert f"${{{name}.Arn}}/*" in covered
        else:
            assert covered == [{"Fn::GetAtt": [name, "Arn"]}]
    for queue in of_type(resources, "AWS::SQS::Queue").values():
        assert (
            queue["Properties"].get("SqsManagedSseEnabled")
            or "KmsMasterKeyId" in queue["Properties"]
        )


# --- log groups ---------------------------------------------------------------------------


def test_everything_that_logs_has_a_log_group_of_its_own_with_the_chosen_retention(
    resources: dict[str, Any],
) -> None:
    groups = of_type(resources, "AWS::Logs::LogGroup")
    retention = {json.dumps(g["Properties"].get("RetentionInDays")) for g in groups.values()}
    (knob,) = retention
    assert json.loads(knob)["Ref"] in _template.template()["Parameters"], "one retention setting"
    users: dict[str, list[str]] = {group: [] for group in groups}
    for name, resource in resources.items():
        for group in references(resource.get("Properties", {})) & set(groups):
            users[group].append(name)
    assert all(len(u) == 1 for u in users.values()), users
    owner = {u[0]: group for group, u in users.items()}
    for name, function in of_type(resources, FUNCTION).items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert owner.get(name) == group, name
        name_text = sub_text(props(resources, group)["LogGroupName"]) or ""
        assert name_text.startswith("/aws/lambda/${AWS::StackName}-"), group
    for name, machine in of_type(resources, STATE_MACHINE).items():
        (destination,) = machine["Properties"]["Logging"]["Destinations"]
        group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        assert owner.get(name) == group, name
        # Vended logs: the resource policy CloudWatch Logs needs stays small.
        name_text = sub_text(props(resources, group)["LogGroupName"]) or ""
        assert name_text.startswith("/aws/vendedlogs/states/${AWS::StackName}-"), group


# --- state machines -----------------------------------------------------------------------


def test_every_state_machine_logs_without_execution_data_and_traces(
    resources: dict[str, Any],
) -> None:
    machines = of_type(resources, STATE_MACHINE)
    assert machines
    for name, machine in machines.items():
        properties = machine["Properties"]
        if raw_definition(name)["TimeoutSeconds"] > EXPRESS_LIMIT_SECONDS:
            assert properties["Type"] == "STANDARD", name
        # Execution data carries requests and results: never in the logs.
        assert properties["Logging"]["Level"] == "ALL", name
        assert properties["Logging"]["IncludeExecutionData"] is False, name
        assert properties["Tracing"] == {"Enabled": True}, name


def test_substitutions_are_the_placeholders_and_say_what_they_hold(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    for machine in machine_ids():
        substitutions = props(resources, machine).get("DefinitionSubstitutions", {})
        text = _template.definition_path(machine).read_text(encoding="utf-8")
        assert set(substitutions) == set(PLACEHOLDER.findall(text)), machine
        for key, value in substitutions.items():
            if not isinstance(value, dict):
                continue
            if "Fn::GetAtt" in value:
                target, attribute = value["Fn::GetAtt"]
                assert key == f"{target}{attribute}", key
            elif "Ref" in value and value["Ref"] in template["Parameters"]:
                assert key == value["Ref"], key
            elif "Ref" in value:
                # Ref of a state machine is its ARN, of a bucket its name.
                kind = resources[value["Ref"]]["Type"]
                what = "Arn" if kind == STATE_MACHINE else "Name"
                assert key == f"{value['Ref']}{what}", key


def test_lambda_tasks_wait_for_their_function_and_not_much_longer(
    resources: dict[str, Any],
) -> None:
    invoked = set()
    for machine in machine_ids():
        for name, (task, function) in lambda_tasks(machine).items():
            timeout = props(resources, function)["Timeout"]
            # The function times out first, so the error the machine sees is Lambda's own.
            assert timeout <= task["TimeoutSeconds"] <= timeout + TASK_MARGIN_SECONDS, name
            invoked.add(function)
    assert invoked


def test_the_longest_budget_and_step_fit_in_every_machine_that_takes_the_budget(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    budget = template["Parameters"][BUDGET_PARAMETER]["MaxValue"]
    takers = [
        m
        for m in machine_ids()
        if {"Ref": BUDGET_PARAMETER} in props(resources, m)["DefinitionSubstitutions"].values()
    ]
    assert takers
    for machine in takers:
        longest = max(props(resources, f)["Timeout"] for _, f in lambda_tasks(machine).values())
        assert budget + longest < raw_definition(machine)["TimeoutSeconds"], machine


def test_functions_that_use_s3_retry_storage_errors(resources: dict[str, Any]) -> None:
    s3_users = {
        name
        for name, statement in principal_statements(resources)
        if any(a.startswith("s3:") for a in actions(statement))
    }
    checked = 0
    for machine in machine_ids():
        for name, (task, function) in lambda_tasks(machine).items():
            if function in s3_users:
                assert "StorageError" in retried(task), name
                checked += 1
    assert checked


# --- the batch triggers -------------------------------------------------------------------


def manifest_prefix(template: dict[str, Any], resources: dict[str, Any]) -> str:
    """The parameter whose prefix the manifest rule matches."""
    prefixes: set[str] = {
        variable
        for rule in of_type(resources, "AWS::Events::Rule").values()
        for item in _template.walk(rule["Properties"]["EventPattern"])
        if isinstance(item, dict) and "wildcard" in item
        for variable in _template.SUB_VARIABLE.findall(item["wildcard"]["Fn::Sub"])
    }
    (prefix,) = prefixes
    return prefix


def manifest_suffixes(resources: dict[str, Any]) -> set[str]:
    return {
        str(item["wildcard"]["Fn::Sub"]).rsplit("*", 1)[1]
        for rule in of_type(resources, "AWS::Events::Rule").values()
        for item in _template.walk(rule["Properties"]["EventPattern"])
        if isinstance(item, dict) and "wildcard" in item
    }


def _resolved_pattern() -> dict[str, Any]:
    """The rule's EventPattern as the local stack resolves it (default prefix, bucket-1)."""
    raw = _template.template()
    resolver = Resolver(raw, refs={"OutputBucket": "bucket-1"})
    pattern = raw["Resources"]["ManifestUploadedRule"]["Properties"]["EventPattern"]
    resolved: dict[str, Any] = resolver.resolve(pattern)
    return resolved


@pytest.mark.parametrize(
    ("bucket", "key", "matches"),
    [
        ("bucket-1", "manifests/january.csv", True),
        ("bucket-1", "manifests/2026/january.json", True),
        ("bucket-1", "manifests/january.CSV", False),
        ("bucket-1", "manifests/notes.txt", False),
        ("bucket-1", "results/january.csv/0123/report.json", False),
        ("bucket-1", "results/map-runs/1/manifest.json", False),
        ("bucket-1", "exports/65fa6b07dca2e367461a2925/1080/x.mp4", False),
        ("bucket-1", "old-manifests/january.csv", False),
        ("bucket-2", "manifests/january.csv", False),
    ],
)
def test_the_rule_matches_manifests_only(bucket: str, key: str, matches: bool) -> None:
    from moto.events.models import EventPattern

    event: Any = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    pattern = EventPattern.load(json.dumps(_resolved_pattern()))
    assert pattern.matches_event(event) is matches


def test_every_trigger_starts_a_state_machine_on_a_manifest_of_the_bucket(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    values = _template.resolver()
    parameters = values.parameter_values()
    prefix = parameters[manifest_prefix(template, resources)]
    for name, rule in of_type(resources, "AWS::Events::Rule").items():
        pattern = values.resolve(rule["Properties"]["EventPattern"])
        if pattern["source"] == ["aws.states"]:
            continue  # the render slots' rule, tested below
        (bucket,) = pattern["detail"]["bucket"]["name"]
        if "aws.s3" in pattern["source"]:
            owner = next(
                b for b in of_type(resources, "AWS::S3::Bucket") if values.refs[b] == bucket
            )
            notifications = props(resources, owner)["NotificationConfiguration"]
            assert notifications["EventBridgeConfiguration"]["EventBridgeEnabled"] is True, name
        assert rule["Properties"]["State"] == "ENABLED", name
        key = f"{prefix}january.csv"
        event = {"detail": {"bucket": {"name": bucket}, "object": {"key": key}}}
        for target in rule["Properties"]["Targets"]:
            transformer = target["InputTransformer"]
            text = transformer["InputTemplate"]
            for placeholder, path in transformer["InputPathsMap"].items():
                text = text.replace(f"<{placeholder}>", value_at(event, path))
            assert json.loads(text) == {"bucket": bucket, "key": key}, name
            assert resources[target["Arn"]["Ref"]]["Type"] == STATE_MACHINE
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0, name
    for name, schedule in of_type(resources, "AWS::Scheduler::Schedule").items():
        target = values.resolve(schedule["Properties"]["Target"])
        text = target["Input"].replace("<aws.scheduler.scheduled-time>", "2026-01-01T03:00:00Z")
        started = json.loads(text)
        assert set(started) - BATCH_INPUT == {"scope"}, "each scheduled run exports again"
        assert started["bucket"] == values.refs["OutputBucket"]
        assert started["key"].startswith(prefix), f"{name} names a manifest the rule would read"
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0, name


def test_schedules_stay_off_until_the_user_turns_them_on(template: dict[str, Any]) -> None:
    schedules = of_type(template["Resources"], "AWS::Scheduler::Schedule")
    assert schedules
    for name, schedule in schedules.items():
        state = schedule["Properties"]["State"]
        default = (
            template["Parameters"][state["Ref"]]["Default"] if isinstance(state, dict) else state
        )
        assert default == "DISABLED", f"{name} would run before its manifest is in place"


def test_manifests_are_read_where_nothing_else_is_written(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    parameters = template["Parameters"]
    manifests = manifest_prefix(template, resources)
    written = {
        object_prefix(resource, template)
        for _, statement in principal_statements(resources)
        if s3_writes(statement)
        for resource in _template.as_list(statement["Resource"])
    } - {None, manifests}
    assert written
    assertions = [
        json.dumps(a["Assert"], sort_keys=True)
        for rule in template["Rules"].values()
        for a in rule["Assertions"]
    ]
    default = parameters[manifests]["Default"]
    for other in written:
        pair = [{"Ref": manifests}, {"Ref": other}]
        assert any(
            json.dumps({"Fn::Not": [{"Fn::Equals": p}]}, sort_keys=True) in assertions
            for p in (pair, pair[::-1])
        ), f"no rule keeps {other} apart from {manifests}"
        other_default = str(parameters[other]["Default"])
        assert not other_default.startswith(default) and not default.startswith(other_default)
    pattern = parameters[manifests]["AllowedPattern"]
    assert not re.fullmatch(pattern, ""), "an empty prefix would read every file as a manifest"
    # The schedule's manifest is one the rule would read.
    for schedule in of_type(resources, "AWS::Scheduler::Schedule").values():
        for key in references(schedule["Properties"]["Target"]["Input"]) & set(parameters):
            if key in (manifests, "OutputBucket"):
                continue
            spec = parameters[key]
            assert spec["Default"].startswith(default)
            assert re.fullmatch(spec["AllowedPattern"], spec["Default"])
            for suffix in manifest_suffixes(resources):
                assert re.fullmatch(spec["AllowedPattern"], f"{default}a{suffix}")
            assert not re.fullmatch(spec["AllowedPattern"], f"{default}a.txt")


def test_a_maps_concurrency_can_never_be_unlimited(template: dict[str, Any]) -> None:
    """A Distributed Map's MaxConcurrency 0 means no limit: the AI Studios account's is one."""
    limited = 0
    for machine in machine_ids():
        raw = raw_definition(machine)
        substitutions = props(template["Resources"], machine)["DefinitionSubstitutions"]
        for _, state in all_states(raw):
            if "MaxConcurrencyPath" not in state:
                continue
            *parents, leaf = state["MaxConcurrencyPath"].removeprefix("$.").split(".")
            sources = []
            for _, setter in all_states(raw):
                node = setter.get("Parameters", {})
                for key in parents:
                    node = node.get(key, {}) if isinstance(node, dict) else {}
                if isinstance(node, dict) and f"{leaf}.$" in node:
                    sources += PLACEHOLDER.findall(node[f"{leaf}.$"])
            assert sources, state["MaxConcurrencyPath"]
            for placeholder in sources:
                (parameter,) = references(substitutions[placeholder])
                assert template["Parameters"][parameter]["MinValue"] >= 1, parameter
                limited += 1
    assert limited


def test_the_render_slot_rule_hears_every_way_an_export_execution_ends_badly(
    resources: dict[str, Any],
) -> None:
    from moto.events.models import EventPattern

    values = _template.resolver()
    rule = props(resources, "RenderSlotReleaseRule")
    pattern = EventPattern.load(json.dumps(values.resolve(rule["EventPattern"])))
    export = values.refs["ExportStateMachine"]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["RenderSlotFunction", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    for status, machine, heard in [
        ("ABORTED", export, True),
        ("TIMED_OUT", export, True),
        ("FAILED", export, True),
        ("SUCCEEDED", export, False),  # its own steps freed the slot
        ("RUNNING", export, False),
        ("ABORTED", values.refs["BatchStateMachine"], False),
    ]:
        event: Any = {
            "source": "aws.states",
            "detail-type": "Step Functions Execution Status Change",
            "detail": {"status": status, "stateMachineArn": machine, "name": "e-1"},
        }
        assert pattern.matches_event(event) is heard, (status, machine)
