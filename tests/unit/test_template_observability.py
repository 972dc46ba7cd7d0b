"""The template's alarms, their topic and the dashboard: invariants any correct version keeps.

The metric names come from the code (:data:`aistudios_export.observability.METRIC_NAMES`, the
only names :func:`~aistudios_export.observability.record` takes, and each one used by the
library); the dashboard may show nothing else from the functions' namespace.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from aistudios_export import observability, settings
from aistudios_export.observability import METRIC_NAMES
from tests.unit._fixtures import ROOT
from tests.unit._template import of_type, props

ALARM = "AWS::CloudWatch::Alarm"
TOPIC = "AlarmTopic"
NAMESPACE_PARAMETER = "MetricsNamespace"
SEARCH_METRIC = re.compile(r'MetricName="([^"]+)"')
SEARCH_SCHEMA = re.compile(r"SEARCH\('\{([^}]*)\}")
SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: props(resources, name) for name in of_type(resources, ALARM)}


def watched(resources: dict[str, Any], namespace: str, metric: str) -> set[str]:
    """The logical ids whose ``metric`` of ``namespace`` an alarm watches (Ref or GetAtt)."""
    found = set()
    for alarm in alarms(resources).values():
        if (alarm.get("Namespace"), alarm.get("MetricName")) != (namespace, metric):
            continue
        for dimension in alarm.get("Dimensions", []):
            value = dimension["Value"]
            if "Ref" in value:
                found.add(value["Ref"])
            elif "Fn::GetAtt" in value:
                found.add(value["Fn::GetAtt"][0])
    return found


def dashboard_body(template: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The dashboard's body after substitution, the namespace and the service it names."""
    [name] = of_type(template["Resources"], "AWS::CloudWatch::Dashboard")
    text = props(template["Resources"], name)["DashboardBody"]["Fn::Sub"]
    assert isinstance(text, str)
    namespace = template["Parameters"][NAMESPACE_PARAMETER]["Default"]
    values = {NAMESPACE_PARAMETER: namespace, "AWS::Region": "us-east-1"}
    for variable in SUB_VARIABLE.findall(text):
        head = variable.split(".")[0]
        assert head in values or head in template["Resources"], f"${{{variable}}} is unknown"
    substituted = SUB_VARIABLE.sub(lambda m: values.get(m[1], f"resolved-{m[1]}"), text)
    body = json.loads(substituted.replace("${!", "${"))
    service = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    return body, namespace, service


def dashboard_metrics(body: dict[str, Any], namespace: str) -> list[tuple[str, list[str]]]:
    """Each metric of the functions' namespace the dashboard shows: name and dimensions."""
    shown = []
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):
                expression = row[0]["expression"]
                [schema] = SEARCH_SCHEMA.findall(expression)
                space, *dimensions = [part.strip() for part in schema.split(",")]
                assert space == namespace
                shown += [(m, dimensions) for m in SEARCH_METRIC.findall(expression)]
            elif row[0] == namespace:
                names = [v for v in row[2:] if isinstance(v, str)]
                shown.append((row[1], names[0::2]))
    return shown


def test_every_alarm_notifies_the_topic_and_ignores_missing_data(
    resources: dict[str, Any],
) -> None:
    assert alarms(resources)
    for name, alarm in alarms(resources).items():
        assert alarm["AlarmActions"] == [{"Ref": TOPIC}], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["Threshold"] >= 1 and alarm["EvaluationPeriods"] >= 1, name


def test_every_state_machine_alarms_when_an_execution_fails_or_times_out(
    resources: dict[str, Any],
) -> None:
    machines = set(of_type(resources, "AWS::Serverless::StateMachine"))
    assert machines >= {"ExportStateMachine", "BatchStateMachine"}
    assert watched(resources, "AWS/States", "ExecutionsFailed") == machines
    assert watched(resources, "AWS/States", "ExecutionsTimedOut") == machines


def test_every_queue_alarms_on_its_first_visible_message(resources: dict[str, Any]) -> None:
    queues = set(of_type(resources, "AWS::SQS::Queue"))
    assert "BatchDeadLetterQueue" in queues
    assert watched(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible") == queues
    for alarm in alarms(resources).values():
        if alarm["Namespace"] == "AWS/SQS":
            assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            assert alarm["Threshold"] == 1


def test_token_refresh_and_finalizer_errors_alarm(resources: dict[str, Any]) -> None:
    functions = watched(resources, "AWS/Lambda", "Errors")
    assert {"RefreshTokenFunction", "FinalizeExportFunction"} <= functions
    # The token secret's rotation runs the same function.
    rotation = props(resources, "TokenSecretRotationSchedule")
    assert rotation["RotationLambdaARN"] == {"Fn::GetAtt": ["RefreshTokenFunction", "Arn"]}


def test_the_topic_is_encrypted_with_a_key_cloudwatch_may_use(resources: dict[str, Any]) -> None:
    key_ref = props(resources, TOPIC)["KmsMasterKeyId"]
    # CloudWatch cannot publish to a topic under the AWS managed key aws/sns.
    assert key_ref != "alias/aws/sns"
    key = props(resources, key_ref["Ref"])
    assert key["EnableKeyRotation"] is True
    users = [
        s
        for s in key["KeyPolicy"]["Statement"]
        if s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert users and all(s["Condition"]["StringEquals"]["aws:SourceAccount"] for s in users)
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= {a for s in users for a in s["Action"]}


def test_the_email_subscription_exists_only_with_an_address(template: dict[str, Any]) -> None:
    [name] = of_type(template["Resources"], "AWS::SNS::Subscription")
    subscription = template["Resources"][name]
    assert subscription["Properties"]["TopicArn"] == {"Ref": TOPIC}
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    condition = template["Conditions"][subscription["Condition"]]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}


def test_the_functions_emit_into_the_parameter_s_namespace(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": NAMESPACE_PARAMETER}
    default = template["Parameters"][NAMESPACE_PARAMETER]["Default"]
    assert default == settings.DEFAULT_METRICS_NAMESPACE


def test_the_dashboard_shows_every_metric_the_code_emits_and_no_other(
    template: dict[str, Any],
) -> None:
    body, namespace, service = dashboard_body(template)
    shown = dashboard_metrics(body, namespace)
    assert {name for name, _ in shown} == set(METRIC_NAMES)
    for name, dimensions in shown:
        own = observability.DIMENSIONS.get(observability.Metric(name))
        assert sorted(dimensions) == sorted(["service", *([own] if own else [])]), name
    text = json.dumps(body)
    assert f'"service", "{service}"' in text


def test_the_dashboard_shows_both_machines_executions(template: dict[str, Any]) -> None:
    body, _, _ = dashboard_body(template)
    rows = [
        row
        for widget in body["widgets"]
        for row in widget["properties"].get("metrics", [])
        if row[0] == "AWS/States"
    ]
    for machine in ("ExportStateMachine", "BatchStateMachine"):
        metrics = {row[1] for row in rows if row[3] == f"resolved-{machine}"}
        assert {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsSucceeded"} <= metrics


def test_every_named_metric_is_recorded_somewhere_in_the_library() -> None:
    recorded: set[str] = set()
    for path in (ROOT / "layers" / "common" / "aistudios_export").rglob("*.py"):
        if path.name == "observability.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "record"
                and node.args
                and isinstance(node.args[0], ast.Attribute)
            ):
                recorded.add(observability.Metric[node.args[0].attr].value)
    assert recorded == set(METRIC_NAMES)


def test_the_stack_outputs_the_topic_and_the_dashboard(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": TOPIC}
    assert outputs["DashboardName"]["Value"] == {"Ref": "ExportDashboard"}
    url = outputs["DashboardUrl"]["Value"]["Fn::Sub"]
    assert url.startswith("https://") and url.endswith("#dashboards:name=${ExportDashboard}")
