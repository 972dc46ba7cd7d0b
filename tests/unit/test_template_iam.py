"""template.yaml's permissions: least privilege, derived from what each principal is given.

No test here copies a policy from the template. Each states a rule any correct template
keeps: a function may use exactly the secrets its settings name; only a secret's rotation
function writes it; S3 access is on objects under a key prefix the writer is given; a state
machine may use exactly the integrations its definition calls; a rule's or schedule's role may
only start its target.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from collections.abc import Iterator
from typing import Any

from aistudios_export import settings
from aistudios_export.batches import MAP_RUNS_FOLDER, BatchSettings, batch_location
from tests.unit._asl import all_states
from tests.unit._fixtures import ROOT
from tests.unit._template import (
    FUNCTION,
    PLACEHOLDER,
    STATE_MACHINE,
    SUB_VARIABLE,
    actions,
    as_list,
    machine_ids,
    object_prefix,
    of_type,
    principal_statements,
    props,
    raw_definition,
    references,
    s3_writes,
    statements,
    sub_text,
)

ROTATION_ACTIONS = {
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
}
"""What a Secrets Manager rotation function needs on its secret (AWS's documented minimum)."""
SECRET_READS = {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
S3_OBJECT_ACTION = re.compile(r"s3:\w*(Object|MultipartUpload)\w*")
S3_BUCKET_LISTINGS = frozenset({"s3:ListBucketMultipartUploads"})
"""Bucket-level actions a function may hold: finding its own unfinished uploads (IAM has no
prefix condition for it; the code aborts only uploads of its own key)."""
S3_PREFIXED_LISTINGS = frozenset({"s3:ListBucket"})
"""Bucket listings IAM limits by key (``s3:prefix``): held only with that condition, set to
a key prefix parameter's keys."""
SERVICE_PRINCIPALS = {
    "AWS::Events::Rule": "events.amazonaws.com",
    "AWS::Scheduler::Schedule": "scheduler.amazonaws.com",
}
PLACEHOLDER_VALUE = re.compile(r"|[A-Z_]+")
"""What a generated secret's template may hold: nothing, or a word that marks a placeholder."""
SYNC_RULE = "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"
"""The managed rule through which Step Functions learns that a ``.sync`` child ended."""
LOG_DELIVERY = re.compile(r"logs:\w+")
LIBRARY = "aistudios_export"
TOKEN_USERS = {"runtime", "tokens"}
"""The library modules that read the token secret (the API client's token, the refresher)."""


def arn(service: str, rest: str) -> str:
    """An ARN of this stack's account and region, as the template's ``Fn::Sub`` writes it."""
    return f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}"


WEBHOOK_SECRET_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
    ":secret:${AWS::StackName}-webhook-??????"
}


def secret_names(template: dict[str, Any]) -> set[str]:
    """Secret resources and the parameters that name a secret of the user's."""
    parameters = {
        name
        for name, spec in template["Parameters"].items()
        if ":secretsmanager:" in spec.get("AllowedPattern", "")
    }
    return set(of_type(template["Resources"], "AWS::SecretsManager::Secret")) | parameters


def rotations(resources: dict[str, Any]) -> dict[str, str]:
    """Secret → the function that rotates it."""
    return {
        props(resources, s)["SecretId"]["Ref"]: props(resources, s)["RotationLambdaARN"][
            "Fn::GetAtt"
        ][0]
        for s in of_type(resources, "AWS::SecretsManager::RotationSchedule")
    }


def environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    base = template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    own = props(template["Resources"], function).get("Environment", {}).get("Variables", {})
    return {**base, **own}


def handler_imports(function: dict[str, Any]) -> set[str]:
    """The library modules a function's handler imports."""
    source = ROOT / function["Properties"]["CodeUri"] / "app.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == LIBRARY:
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{LIBRARY}."):
            names.add(str(node.module).removeprefix(f"{LIBRARY}."))
    return names


def resource_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(logical id, statement)`` of every resource policy (buckets, queues)."""
    for name, resource in resources.items():
        document = resource.get("Properties", {}).get("PolicyDocument")
        if isinstance(document, dict):
            for statement in document["Statement"]:
                yield name, statement


def placeholders_of(machine: str, template: dict[str, Any], name: str) -> set[str]:
    """The placeholders of a machine's definition whose substitution references ``name``."""
    substitutions = props(template["Resources"], machine).get("DefinitionSubstitutions", {})
    text = json.dumps(raw_definition(machine))
    used = set(PLACEHOLDER.findall(text))
    return {p for p in used if name in references(substitutions.get(p))}


# --- every statement --------------------------------------------------------------------


def test_no_statement_allows_every_action(resources: dict[str, Any]) -> None:
    found = list(principal_statements(resources)) + list(resource_statements(resources))
    assert found
    for name, statement in found:
        if statement["Effect"] != "Allow":
            continue
        granted = actions(statement)
        assert not [a for a in granted if a == "*" or a.endswith(":*")], (name, granted)
        if "*" in as_list(statement["Resource"]):
            # Only vended log delivery, which has no resource-level permissions.
            assert all(LOG_DELIVERY.fullmatch(a) for a in granted), (name, granted)
    for name, statement in principal_statements(resources):
        assert statement["Effect"] == "Allow", f"{name}: identity policies only allow"


# --- secrets ----------------------------------------------------------------------------


def test_every_secret_a_principal_may_use_is_one_its_settings_name(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    secrets = secret_names(template)
    functions = of_type(resources, FUNCTION)
    for name, resource in resources.items():
        policies = resource.get("Properties", {}).get("Policies", [])
        allowed = references(policies) & secrets
        for statement in statements(policies):
            if any(a.startswith("secretsmanager:") for a in actions(statement)):
                if statement.get("Sid") == "ReadWebhookSecret":
                    # Named, not referenced: the secret refers to the API (a cycle otherwise).
                    assert statement["Resource"] == WEBHOOK_SECRET_ARN, name
                    continue
                assert references(statement["Resource"]) <= secrets, name
        if name not in functions:
            assert not allowed, f"{name} is no function, and no secret is its business"
            continue
        env = environment(template, name)
        assert allowed <= references(env) & secrets, f"{name} may read what it is not told of"
        own = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert references(own) & secrets <= allowed, f"{name} is told of what it cannot read"
        if handler_imports(resource) & TOKEN_USERS:
            token = references(env[settings.TOKEN_SECRET_ID])
            assert token <= allowed, f"{name} uses the token but may not read it"


def test_only_a_secrets_rotation_function_writes_it(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    rotated_by = rotations(resources)
    assert rotated_by
    writes: dict[str, set[str]] = {}
    for name, statement in principal_statements(resources):
        granted = {a for a in actions(statement) if a.startswith("secretsmanager:")}
        for secret in references(statement["Resource"]) & secret_names(template):
            if granted - SECRET_READS:
                assert rotated_by.get(secret) == name, f"{name} writes {secret}"
                writes.setdefault(secret, set()).update(granted)
    for secret, function in rotated_by.items():
        assert writes.get(secret, set()) >= ROTATION_ACTIONS, f"{function} cannot rotate {secret}"


def test_the_users_credentials_are_read_by_the_rotation_function_only(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    rotated_by = rotations(resources)
    users = secret_names(template) - set(rotated_by)
    assert users, "the user's credentials"
    readers = {
        name
        for name, resource in of_type(resources, FUNCTION).items()
        if references(resource["Properties"].get("Policies", [])) & users
    }
    assert readers == set(rotated_by.values())


def test_secrets_are_placeholders_without_any_value(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    secrets = of_type(resources, "AWS::SecretsManager::Secret")
    assert secrets
    rotated = set(rotations(resources))
    for name, secret in secrets.items():
        properties = secret["Properties"]
        assert "SecretString" not in properties, name
        generated = properties["GenerateSecretString"]
        assert generated["GenerateStringKey"], f"{name}: a random value, never a real one"
        if name == "WebhookSecret":
            # Its template holds the API's URL, which is no secret; the key is generated.
            assert generated["SecretStringTemplate"]["Fn::Sub"].startswith('{"baseUrl": "https://')
            assert generated["GenerateStringKey"] == "key", name
        else:
            for key, value in json.loads(generated["SecretStringTemplate"]).items():
                assert PLACEHOLDER_VALUE.fullmatch(value), f"{name}.{key}"
        if name == "WebhookSecret":
            # Derived: a new key only makes running exports' webhooks miss (they poll).
            assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Delete", name
        elif name not in rotated:
            # What the user put there: neither a replacement nor a deleted stack may lose it.
            assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Retain", name
    # Whatever looks like a secret in an environment variable is a reference, never a literal.
    for function in of_type(resources, FUNCTION):
        for key, value in environment(template, function).items():
            if re.search("SECRET|TOKEN|KEY|PASSWORD", key):
                assert isinstance(value, dict), key


def test_a_secret_the_user_may_bring_is_created_only_when_they_do_not(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    conditional = {
        n: s
        for n, s in of_type(resources, "AWS::SecretsManager::Secret").items()
        if "Condition" in s
    }
    assert conditional
    for name, secret in conditional.items():
        (ref, empty) = template["Conditions"][secret["Condition"]]["Fn::Equals"]
        assert empty == "" and ref["Ref"] in secret_names(template), name
        choice = {"Fn::If": [secret["Condition"], {"Ref": name}, ref]}
        uses = [
            item
            for item in [*template["Outputs"].values(), *resources.values()]
            if name in references(item)
        ]
        assert uses
        for use in uses:
            # The only way to name it: "this secret if created, else the user's".
            text = json.dumps(use)
            assert text.count(json.dumps({"Ref": name})) == text.count(json.dumps(choice)), use


def test_every_rotation_schedule_may_invoke_its_function(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    schedules = of_type(resources, "AWS::SecretsManager::RotationSchedule")
    assert schedules
    for name, schedule in schedules.items():
        properties = schedule["Properties"]
        function = properties["RotationLambdaARN"]["Fn::GetAtt"][0]
        assert resources[function]["Type"] == FUNCTION, name
        permission = resources[schedule["DependsOn"]]
        assert permission["Type"] == "AWS::Lambda::Permission"
        assert permission["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
        assert permission["Properties"]["FunctionName"] == properties["RotationLambdaARN"]
        assert permission["Properties"]["SourceArn"] == properties["SecretId"]
        (when,) = references(properties["RotationRules"])
        assert when in template["Parameters"], f"{name}: the schedule is the user's choice"


# --- S3 and Step Functions --------------------------------------------------------------


def test_s3_access_is_on_objects_under_a_key_prefix(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    found = False
    for name, statement in principal_statements(resources):
        granted = {a for a in actions(statement) if a.startswith("s3:")}
        if not granted:
            continue
        found = True
        if granted <= S3_BUCKET_LISTINGS | S3_PREFIXED_LISTINGS:
            for resource in as_list(statement["Resource"]):
                bucket = resource.get("Fn::GetAtt", [""])[0] if isinstance(resource, dict) else ""
                kind = resources.get(str(bucket), {}).get("Type")
                assert kind == "AWS::S3::Bucket", (name, resource)
            if granted & S3_PREFIXED_LISTINGS:
                assert granted <= S3_PREFIXED_LISTINGS, f"{name}: mixed bucket listings"
                assert set(statement.get("Condition", {})) == {"StringLike"}, name
                (prefix,) = statement["Condition"]["StringLike"].values()
                assert set(statement["Condition"]["StringLike"]) == {"s3:prefix"}, name
                parameter = re.match(r"\$\{(\w+)\}.", sub_text(prefix) or "")
                assert parameter and parameter[1] in template["Parameters"], (name, prefix)
            continue
        assert all(S3_OBJECT_ACTION.fullmatch(a) for a in granted), (name, granted)
        assert not granted & S3_BUCKET_LISTINGS, f"{name}: a bucket listing in its own statement"
        for resource in as_list(statement["Resource"]):
            assert object_prefix(resource, template), (name, resource)
    assert found


def test_summarize_batch_may_list_its_batches_map_runs_and_nothing_else(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    policies = props(resources, "SummarizeBatchFunction")["Policies"]
    [listing] = [s for s in statements(policies) if "s3:ListBucket" in actions(s)]
    defaults = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    pattern = sub_text(listing["Condition"]["StringLike"]["s3:prefix"]) or ""
    for name, value in defaults.items():
        pattern = pattern.replace(f"${{{name}}}", value)
    batch_settings = BatchSettings(
        bucket="b",
        manifest_prefix=defaults["ManifestKeyPrefix"],
        results_prefix=defaults["ResultsKeyPrefix"],
    )
    _, prefix = batch_location(
        batch_settings, defaults["ManifestKeyPrefix"] + "jan/a.csv", "ab" * 32
    )
    # What SummarizeBatch lists (map_results.find_map_runs): its batch's ResultWriter folder.
    assert fnmatch.fnmatchcase(f"{prefix}{MAP_RUNS_FOLDER}/", pattern)
    for other in ("", defaults["ResultsKeyPrefix"], prefix, defaults["ManifestKeyPrefix"]):
        assert not fnmatch.fnmatchcase(other, pattern), other


def test_every_s3_write_is_under_a_prefix_the_writer_is_given(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    machines = machine_ids()
    writers = set()
    for name, statement in principal_statements(resources):
        if not s3_writes(statement):
            continue
        for resource in as_list(statement["Resource"]):
            prefix = object_prefix(resource, template)
            assert prefix, (name, resource)
            if name in machines:
                given = bool(placeholders_of(name, template, prefix))
            else:
                # Through its environment, or from the state machine that invokes it.
                given = prefix in references(environment(template, name)) or any(
                    placeholders_of(m, template, name) and placeholders_of(m, template, prefix)
                    for m in machines
                )
            assert given, f"{name} may write under {prefix}, which it is never given"
            writers.add(name)
    assert writers & set(machines) and writers - set(machines), "functions and machines write"


def test_every_key_prefix_in_a_permission_is_exact(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    prefixes = {
        object_prefix(resource, template)
        for _, statement in principal_statements(resources)
        for resource in as_list(statement["Resource"])
    } - {None}
    assert prefixes
    for prefix in prefixes:
        spec = template["Parameters"][prefix]
        for widened in ("*", f"{spec['Default']}*", f"{spec['Default']}?/"):
            assert not re.fullmatch(spec["AllowedPattern"], widened), (prefix, widened)


def test_state_machine_permissions_are_on_this_stacks_machines(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    machines = set(of_type(resources, STATE_MACHINE))
    found = False
    for name, statement in principal_statements(resources):
        if not any(a.startswith("states:") for a in actions(statement)):
            continue
        found = True
        own = sub_text(props(resources, name).get("Name"))
        for resource in as_list(statement["Resource"]):
            named = references(resource) & machines
            # A machine names itself by its Name (a Ref to itself would be circular).
            itself = own and re.search(
                rf":(stateMachine|execution):{re.escape(own)}([:/]|$)", sub_text(resource) or ""
            )
            assert named or itself, (name, resource)
    assert found


def _needed(machine: str, resources: dict[str, Any]) -> set[tuple[str, str]]:
    """The Step Functions and EventBridge actions (and ARNs) a machine's definition needs."""
    properties = props(resources, machine)
    substitutions = properties.get("DefinitionSubstitutions", {})
    needed: set[tuple[str, str]] = set()
    for _, state in all_states(raw_definition(machine)):
        resource = state.get("Resource", "")
        children = references(
            [substitutions.get(p) for p in PLACEHOLDER.findall(json.dumps(state))]
        )
        children &= set(of_type(resources, STATE_MACHINE))
        if resource.startswith("arn:aws:states:::states:startExecution.sync"):
            for child in children:
                executions = arn("states", f"execution:${{{child}.Name}}:*")
                needed |= {("states:DescribeExecution", executions)}
                needed |= {("states:StopExecution", executions)}
            rule = arn("events", SYNC_RULE)
            needed |= {(a, rule) for a in ("events:PutTargets", "events:PutRule")}
            needed |= {("events:DescribeRule", rule)}
        if resource == "arn:aws:states:::aws-sdk:sfn:describeExecution":
            for child in children:
                needed.add(
                    ("states:DescribeExecution", arn("states", f"execution:${{{child}.Name}}:*"))
                )
        if state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
            name = properties["Name"]["Fn::Sub"]
            needed.add(("states:StartExecution", arn("states", f"stateMachine:{name}")))
            for action in ("states:DescribeExecution", "states:StopExecution"):
                needed.add((action, arn("states", f"execution:{name}/*")))
    return needed


def test_state_machines_may_use_exactly_the_integrations_their_definitions_call(
    resources: dict[str, Any], machine_id: str
) -> None:
    properties = props(resources, machine_id)
    policies = properties["Policies"]
    substitutions = properties.get("DefinitionSubstitutions", {})
    tasks = [s for _, s in all_states(raw_definition(machine_id)) if s["Type"] == "Task"]
    templates = [p for p in policies if isinstance(p, dict) and "Statement" not in p]

    def granted(kind: str) -> list[Any]:
        """The one argument of each SAM policy template of this kind."""
        return [next(iter(p[kind].values())) for p in templates if kind in p]

    def substitution_of(value: str) -> Any:
        """The template expression a placeholder stands for (other values as they are)."""
        match = PLACEHOLDER.fullmatch(value)
        return substitutions[match[1]] if match else value

    invoked = {
        substitution_of(t["Resource"])["Fn::GetAtt"][0]
        for t in tasks
        if PLACEHOLDER.fullmatch(t["Resource"])
    }
    assert {f["Ref"] for f in granted("LambdaInvokePolicy")} == invoked
    buses = [
        substitution_of(entry["EventBusName"])
        for t in tasks
        if t["Resource"].startswith("arn:aws:states:::events:putEvents")
        for entry in t["Parameters"]["Entries"]
    ]
    granted_buses = granted("EventBridgePutEventsPolicy")
    assert all(bus in granted_buses for bus in buses)
    assert all(bus in buses for bus in granted_buses)
    started = {
        substitution_of(t["Parameters"]["StateMachineArn"])["Ref"]
        for t in tasks
        if t["Resource"].startswith("arn:aws:states:::states:startExecution")
    }
    assert {s["Fn::GetAtt"][0] for s in granted("StepFunctionsExecutionPolicy")} == started
    inline = {
        (action, sub_text(resource) or resource)
        for statement in statements(policies)
        for action in actions(statement)
        if action.split(":")[0] in ("states", "events")
        for resource in as_list(statement["Resource"])
    }
    assert inline == _needed(machine_id, resources)
    logs = {a for s in statements(policies) for a in actions(s) if LOG_DELIVERY.fullmatch(a)}
    assert bool(logs) == bool(properties.get("Logging"))


def writer_prefix(machine_id: str, writer: dict[str, Any]) -> str:
    """Return the text a ResultWriter's prefix starts with.

    A path (``Prefix.$``) names a batch's own prefix, which PrepareManifest builds under the
    ``resultsPrefix`` it is given (tests/unit/test_batches.py): that parameter's text.
    """
    parameters = writer["Parameters"]
    if "Prefix" in parameters:
        return str(parameters["Prefix"])
    (results_prefix,) = {
        str(value)
        for _, task in all_states(raw_definition(machine_id))
        if task["Type"] == "Task"
        for key, value in task.get("Parameters", {}).items()
        if key == "resultsPrefix"
    }
    return results_prefix


def test_s3_integrations_of_state_machines_are_granted(
    template: dict[str, Any], resources: dict[str, Any], machine_id: str
) -> None:
    granted: dict[str, set[str]] = {}
    for statement in statements(props(resources, machine_id)["Policies"]):
        for resource in as_list(statement["Resource"]):
            prefix = object_prefix(resource, template)
            for action in actions(statement):
                granted.setdefault(action, set()).add(prefix or "")
    substitutions = props(resources, machine_id).get("DefinitionSubstitutions", {})
    for _, state in all_states(raw_definition(machine_id)):
        if state.get("ItemReader", {}).get("Resource") == "arn:aws:states:::s3:getObject":
            assert granted.get("s3:GetObject")
        writer = state.get("ResultWriter")
        if writer and writer["Resource"] == "arn:aws:states:::s3:putObject":
            (placeholder,) = PLACEHOLDER.findall(writer_prefix(machine_id, writer))
            (prefix,) = references(substitutions[placeholder])
            # A ResultWriter uploads in parts (AWS's documented permissions).
            for action in ("PutObject", "AbortMultipartUpload", "ListMultipartUploadParts"):
                assert prefix in granted.get(f"s3:{action}", set()), action


# --- triggers ---------------------------------------------------------------------------


def test_trigger_roles_may_only_start_their_target(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    triggers = [
        (name, kind, target)
        for kind in SERVICE_PRINCIPALS
        for name, resource in of_type(resources, kind).items()
        for target in resource["Properties"].get("Targets", [resource["Properties"].get("Target")])
        if "Fn::GetAtt" not in target["Arn"]  # a function's: its permission is the next test's
    ]
    assert {kind for _, kind, _ in triggers} == set(SERVICE_PRINCIPALS)
    for name, kind, target in triggers:
        role = props(resources, target["RoleArn"]["Fn::GetAtt"][0])
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": SERVICE_PRINCIPALS[kind]}, name
        assert trust["Condition"] == {
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        }, f"{name}: no confused deputy"
        allowed = [(s["Action"], s["Resource"]) for s in statements(role["Policies"])]
        assert ("states:StartExecution", target["Arn"]) in allowed, name
        queue = target.get("DeadLetterConfig", {}).get("Arn")
        assert queue, f"{name}: what could not start is kept"
        if kind == "AWS::Scheduler::Schedule":
            # The scheduler dead-letters with the schedule's role ...
            assert allowed == [("states:StartExecution", target["Arn"]), ("sqs:SendMessage", queue)]
        else:
            # ... EventBridge with the queue's policy, for this rule only.
            assert allowed == [("states:StartExecution", target["Arn"])], name
            grants = [
                s
                for _, s in resource_statements(resources)
                if s["Effect"] == "Allow" and s.get("Resource") == queue
            ]
            assert any(
                s["Principal"] == {"Service": SERVICE_PRINCIPALS[kind]}
                and s["Condition"]
                == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [name, "Arn"]}}}
                for s in grants
            ), name


def test_a_rule_may_invoke_its_function_target_and_nothing_else(
    resources: dict[str, Any],
) -> None:
    function_targets = [
        (name, target)
        for name, rule in of_type(resources, "AWS::Events::Rule").items()
        for target in rule["Properties"]["Targets"]
        if "Fn::GetAtt" in target["Arn"]
    ]
    assert function_targets
    permissions = of_type(resources, "AWS::Lambda::Permission")
    for name, target in function_targets:
        function = target["Arn"]["Fn::GetAtt"][0]
        assert resources[function]["Type"] == FUNCTION, name
        assert "RoleArn" not in target, f"{name}: a function target is invoked by its permission"
        granted = [
            p["Properties"]
            for p in permissions.values()
            if p["Properties"].get("SourceArn") == {"Fn::GetAtt": [name, "Arn"]}
        ]
        assert granted == [
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": function},
                "Principal": SERVICE_PRINCIPALS["AWS::Events::Rule"],
                "SourceArn": {"Fn::GetAtt": [name, "Arn"]},
            }
        ], name
        queue = target["DeadLetterConfig"]["Arn"]
        assert any(
            s["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [name, "Arn"]}}}
            for _, s in resource_statements(resources)
            if s["Effect"] == "Allow" and s.get("Resource") == queue
        ), f"{name}: what could not be delivered is kept"


def test_sub_variables_in_permissions_name_what_exists(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    known = set(template["Parameters"]) | set(resources) | {"AWS::Partition", "AWS::Region"}
    known |= {"AWS::AccountId", "AWS::StackName"}
    for name, statement in principal_statements(resources):
        for resource in as_list(statement["Resource"]):
            for variable in SUB_VARIABLE.findall(sub_text(resource) or ""):
                assert variable.split(".")[0] in known, (name, variable)
