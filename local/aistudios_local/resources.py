"""Create ``template.yaml``'s resources on moto: storage, secrets, functions, machines, rules.

Every name, handler, environment variable and substitution comes from the template through
its `Resolver`; this module only decides the physical names and ARNs moto gets, as
CloudFormation would (``<stack>-<LogicalId>``).
"""

from __future__ import annotations

import json
import secrets as secrets_module
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3

from aistudios_local.lambda_bridge import LocalFunction
from aistudios_local.template import Resolver

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["ACCOUNT", "REGION", "STACK_NAME", "create_resources", "local_functions", "resolver_for"]

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_NAME = "aistudios-export-local"

SecretValue = Callable[[str], str | None]
"""Gives the initial ``SecretString`` of a secret from its logical id; None: as the template's
``GenerateSecretString`` would (its template, and a random value for its key)."""


def resolver_for(
    template: Mapping[str, Any], api_url: str, overrides: Mapping[str, str]
) -> Resolver:
    """Return the resolver of `template` on the local stack talking to `api_url`.

    Parameters
    ----------
    template
        The parsed template.
    api_url
        The AI Studios API the functions call (the ``ApiBaseUrl`` parameter).
    overrides
        Further parameter values; they win over the ones derived from `api_url`.

    Returns
    -------
    Resolver
        With the local region, account and stack name as pseudo parameters.
    """
    api = urlsplit(api_url)
    loopback = api.scheme == "http" and api.hostname in ("127.0.0.1", "localhost")
    parameters = {
        "ApiBaseUrl": api_url,
        # The one relaxation of the download guard: the server this stack talks to.
        "TrustedDownloadOrigin": f"{api.scheme}://{api.netloc}" if loopback else "",
        # Polls as often as each request asks: local exports are seconds long, not minutes.
        "MinPollSeconds": "0",
        # Waits for a render slot of a second or more, not of half a minute.
        "RenderSlotRetrySeconds": "1",
    }
    # A template without one of these (a test's own) keeps what it has.
    declared = template.get("Parameters", {})
    parameters = {k: v for k, v in parameters.items() if k in declared}
    parameters.update(overrides)
    pseudo = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": STACK_NAME,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": "",
    }
    return Resolver(template, parameters, pseudo=pseudo)


def create_resources(
    root: Path, resolver: Resolver, secret_value: SecretValue
) -> dict[str, LocalFunction]:
    """Create every resource of the resolver's template on moto (started by the caller).

    Parameters
    ----------
    root
        The repository: code and state machine definitions are read relative to it.
    resolver
        The template's resolver; it learns every resource's ``Ref`` and attributes.
    secret_value
        The initial value of each secret.

    Returns
    -------
    dict[str, LocalFunction]
        The template's functions by logical id, ready for a `LambdaBridge`.
    """
    resources: dict[str, Any] = resolver.template["Resources"]
    for logical, resource in resources.items():
        _identify(resolver, logical, resource["Type"])
    _create_storage(resolver, resources, secret_value)
    functions = _functions(root, resolver)
    _create_state_machines(root, resolver, resources)
    _create_rules(resolver, resources)
    _create_schedules(resolver, resources)
    _create_alarms(resolver, resources)
    return functions


def local_functions(root: Path, resolver: Resolver) -> dict[str, LocalFunction]:
    """Return the template's functions as the local stack would run them, creating nothing.

    Their environments name the resources as :func:`create_resources` would, except secrets,
    whose ARNs moto only makes when it creates them (here: the ARN without a suffix).

    Parameters
    ----------
    root
        The repository: code folders are relative to it.
    resolver
        The template's resolver; it learns every resource's ``Ref`` and attributes.
    """
    for logical, resource in resolver.template["Resources"].items():
        _identify(resolver, logical, resource["Type"])
    return _functions(root, resolver)


def _identify(resolver: Resolver, logical: str, kind: str) -> None:
    name = f"{STACK_NAME}-{logical}"
    if kind == "AWS::S3::Bucket":
        name = name.lower()
        resolver.refs[logical] = name
        resolver.attributes[(logical, "Arn")] = f"arn:aws:s3:::{name}"
    elif kind == "AWS::Serverless::Function":
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        resolver.refs[logical], resolver.attributes[(logical, "Arn")] = name, arn
    elif kind == "AWS::Serverless::StateMachine":
        explicit = resolver.template["Resources"][logical].get("Properties", {}).get("Name")
        name = str(resolver.resolve(explicit)) if explicit else name
        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        resolver.refs[logical], resolver.attributes[(logical, "Arn")] = arn, arn
        resolver.attributes[(logical, "Name")] = name
    elif kind == "AWS::SecretsManager::Secret":
        resolver.refs[logical] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}"
    elif kind == "AWS::SNS::Topic":
        arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        resolver.refs[logical], resolver.attributes[(logical, "TopicArn")] = arn, arn
        resolver.attributes[(logical, "TopicName")] = name
    elif kind == "AWS::Events::EventBus":
        explicit = resolver.template["Resources"][logical].get("Properties", {}).get("Name")
        name = str(resolver.resolve(explicit)) if explicit else name
        resolver.refs[logical] = name
        resolver.attributes[(logical, "Name")] = name
        resolver.attributes[(logical, "Arn")] = (
            f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"
        )
    elif kind == "AWS::DynamoDB::Table":
        explicit = resolver.template["Resources"][logical].get("Properties", {}).get("TableName")
        name = str(resolver.resolve(explicit)) if explicit else name
        resolver.refs[logical] = name
        resolver.attributes[(logical, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    else:
        resolver.refs[logical] = name
        resolver.attributes[(logical, "Arn")] = f"arn:aws:local:{REGION}:{ACCOUNT}:{logical}"


def _create_storage(
    resolver: Resolver, resources: Mapping[str, Any], secret_value: SecretValue
) -> None:
    """Create the buckets, tables and secrets whose condition holds (functions name them)."""
    s3 = boto3.client("s3")
    secrets = boto3.client("secretsmanager")
    dynamodb = boto3.client("dynamodb")
    for logical, resource in resources.items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            s3.create_bucket(Bucket=resolver.refs[logical])
            status = resolver.resolve(props.get("VersioningConfiguration", {})).get("Status")
            if status:
                s3.put_bucket_versioning(
                    Bucket=resolver.refs[logical], VersioningConfiguration={"Status": status}
                )
            notifications = resolver.resolve(props.get("NotificationConfiguration", {}))
            if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
                s3.put_bucket_notification_configuration(
                    Bucket=resolver.refs[logical],
                    NotificationConfiguration={"EventBridgeConfiguration": {}},
                )
        elif kind == "AWS::DynamoDB::Table":
            _create_table(dynamodb, resolver.refs[logical], resolver.resolve(props))
        elif kind == "AWS::SecretsManager::Secret":
            explicit = props.get("Name")
            value = secret_value(logical)
            if value is None:
                value = _generated(resolver.resolve(props.get("GenerateSecretString", {})))
            secret = secrets.create_secret(
                Name=str(resolver.resolve(explicit)) if explicit else f"{STACK_NAME}/{logical}",
                SecretString=value,
            )
            resolver.refs[logical] = secret["ARN"]
        elif kind == "AWS::Events::EventBus":
            boto3.client("events").create_event_bus(Name=resolver.refs[logical])


def _generated(spec: Mapping[str, Any]) -> str:
    """Return what ``GenerateSecretString`` would store: its template plus a random key."""
    value = json.loads(str(spec.get("SecretStringTemplate") or "{}"))
    key = spec.get("GenerateStringKey")
    if key:
        value[str(key)] = secrets_module.token_hex(int(spec.get("PasswordLength", 32)) // 2)
    return json.dumps(value)


TABLE_PROPERTIES = (
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
)
"""The ``AWS::DynamoDB::Table`` properties that are ``CreateTable`` parameters of the same shape.

The rest change nothing a local run can observe (``SSESpecification``,
``PointInTimeRecoverySpecification``, tags) except ``TimeToLiveSpecification``, which is set
after the table is created, as CloudFormation does.
"""


def _create_table(dynamodb: DynamoDBClient, name: str, props: Mapping[str, Any]) -> None:
    params = {key: props[key] for key in TABLE_PROPERTIES if key in props}
    dynamodb.create_table(TableName=name, **params)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


def _functions(root: Path, resolver: Resolver) -> dict[str, LocalFunction]:
    template = resolver.template
    globals_fn = template.get("Globals", {}).get("Function", {})
    base_vars = resolver.resolve(globals_fn.get("Environment", {}).get("Variables", {}))
    functions: dict[str, LocalFunction] = {}
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        variables = {
            **base_vars,
            **resolver.resolve(props.get("Environment", {}).get("Variables", {})),
        }
        functions[logical] = LocalFunction(
            logical_id=logical,
            name=resolver.refs[logical],
            arn=resolver.attributes[(logical, "Arn")],
            code_dir=root / str(resolver.resolve(props["CodeUri"])),
            handler=str(resolver.resolve(props.get("Handler", globals_fn.get("Handler")))),
            environment={k: str(v) for k, v in variables.items()},
            timeout=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
            memory=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
        )
    return functions


def _create_state_machines(root: Path, resolver: Resolver, resources: Mapping[str, Any]) -> None:
    sfn = boto3.client("stepfunctions")
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = resource["Properties"]
        definition = (root / str(props["DefinitionUri"])).read_text(encoding="utf-8")
        for key, value in resolver.resolve(props.get("DefinitionSubstitutions", {})).items():
            definition = definition.replace("${" + key + "}", str(value))
        sfn.create_state_machine(
            name=resolver.attributes[(logical, "Name")],
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{STACK_NAME}-{logical}Role",
            type="EXPRESS" if props.get("Type") == "EXPRESS" else "STANDARD",
        )


def _create_rules(resolver: Resolver, resources: Mapping[str, Any]) -> None:
    """Create the template's EventBridge rules; the moto shims deliver to their targets."""
    events = boto3.client("events")
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        props = resolver.resolve(resource["Properties"])
        name = resolver.refs[logical]
        events.put_rule(
            Name=name,
            EventPattern=json.dumps(props["EventPattern"]),
            State=props.get("State", "ENABLED"),
        )
        targets = [
            {
                k: v
                for k, v in t.items()
                if k in ("Id", "Arn", "RoleArn", "Input", "InputTransformer")
            }
            for t in props.get("Targets", [])
        ]
        events.put_targets(Rule=name, Targets=targets)  # type: ignore[arg-type]


SCHEDULE_PROPERTIES = (
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "FlexibleTimeWindow",
    "State",
    "Description",
    "Target",
)
"""The ``AWS::Scheduler::Schedule`` properties that are ``CreateSchedule`` parameters."""


def _create_schedules(resolver: Resolver, resources: Mapping[str, Any]) -> None:
    """Create the template's schedules as stored settings: nothing fires them locally.

    :meth:`LocalStack.fire_schedule` runs a schedule's target when a test asks; the stored
    schedule is what ``GetSchedule`` answers (its state, expression and target).
    """
    scheduler = boto3.client("scheduler")
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Scheduler::Schedule":
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        props = resolver.resolve(resource["Properties"])
        params = {key: props[key] for key in SCHEDULE_PROPERTIES if key in props}
        scheduler.create_schedule(Name=resolver.refs[logical], **params)


ALARM_PROPERTIES = (
    "AlarmDescription",
    "Namespace",
    "MetricName",
    "Statistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "AlarmActions",
    "OKActions",
)
"""The ``AWS::CloudWatch::Alarm`` properties that are ``PutMetricAlarm`` parameters as they are."""


def _create_alarms(resolver: Resolver, resources: Mapping[str, Any]) -> None:
    """Create the template's SNS topics and metric alarms, so that ``doctor`` reads them.

    Nothing feeds the alarms locally (moto has no metrics from the stack): they stay in
    ``INSUFFICIENT_DATA``, as a new stack's do. A dimension naming a resource the local stack
    does not create keeps its logical name.
    """
    sns, cloudwatch = boto3.client("sns"), boto3.client("cloudwatch")
    live = {
        logical: resource
        for logical, resource in resources.items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
    for logical, resource in live.items():
        if resource["Type"] == "AWS::SNS::Topic":
            sns.create_topic(Name=resolver.attributes[(logical, "TopicName")])
    for logical, resource in live.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        params = {key: resolver.resolve(props[key]) for key in ALARM_PROPERTIES if key in props}
        dimensions = []
        for dimension in props.get("Dimensions", []):
            try:
                value = resolver.resolve(dimension["Value"])
            except ValueError:
                value = str(dimension["Value"])
            dimensions.append({"Name": dimension["Name"], "Value": str(value)})
        cloudwatch.put_metric_alarm(
            AlarmName=resolver.refs[logical], Dimensions=dimensions, **params
        )
