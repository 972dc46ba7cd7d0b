"""template.yaml and samconfig.toml: the linters pass, and what the design promises holds.

The linters run once per module (``sam validate`` takes seconds). The structural checks read
the template with cfn-lint's own decoder, which turns the short tags (``!Ref``, ``!Sub``, ...)
into their long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
# The venv's console scripts live next to its interpreter (do not resolve the symlink).
BIN = Path(sys.executable).parent

FUNCTIONS = {
    "SubmitExportFunction": "submit_export",
    "CheckProgressFunction": "check_progress",
    "FinalizeExportFunction": "finalize_export",
    "RefreshTokenFunction": "refresh_token",
}
SUBSTITUTIONS = {
    "SubmitExportFunctionArn",
    "CheckProgressFunctionArn",
    "FinalizeExportFunctionArn",
    "RefreshTokenFunctionArn",
    "EventBusName",
    "EventSource",
    "DefaultPollSeconds",
    "DefaultTimeoutSeconds",
    "DefaultStallSeconds",
}
# What the embedded local stack resolves (see the comment at the top of template.yaml).
LOCAL_INTRINSICS = {
    "Ref",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::If",
    "Fn::Equals",
    "Fn::Not",
    "Fn::And",
    "Fn::Or",
}
PSEUDO_PARAMETERS = {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName"}
SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")


# --- fixtures -------------------------------------------------------------------------


def _run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a venv tool offline-friendly: no telemetry, a region and dummy credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    executable = BIN / argv[0]
    assert executable.exists(), f"{executable} is missing: run `make test` to set up the venv"
    return subprocess.run(
        [str(executable), *argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def cfn_lint_run() -> subprocess.CompletedProcess[str]:
    return _run_tool("cfn-lint", str(TEMPLATE))


@pytest.fixture(scope="module")
def sam_validate_run() -> subprocess.CompletedProcess[str]:
    return _run_tool(
        "sam", "validate", "--lint", "--template", str(TEMPLATE), "--region", "us-east-1"
    )


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode(str(TEMPLATE))
    assert not problems, [str(p) for p in problems]
    assert isinstance(decoded, dict)
    return decoded


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


# --- helpers --------------------------------------------------------------------------


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in resources.items() if res["Type"] == kind}


def _props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = resources[name]["Properties"]
    return props


def _walk(node: Any) -> Iterator[Any]:
    """Yield every node of a decoded template fragment, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _statements(policies: list[Any]) -> Iterator[dict[str, Any]]:
    """The inline IAM statements of a SAM ``Policies`` list (not its policy templates)."""
    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            yield from policy["Statement"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _references(node: Any) -> set[str]:
    """Names referenced by Ref / GetAtt / Sub anywhere in ``node``."""
    names: set[str] = set()
    for item in _walk(node):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("Ref"), str):
            names.add(item["Ref"])
        if "Fn::GetAtt" in item:
            names.add(item["Fn::GetAtt"][0])
        if "Fn::Sub" in item:
            text = _as_list(item["Fn::Sub"])[0]
            names |= {v.split(".")[0] for v in SUB_VARIABLE.findall(text)}
    return names


def _asl_text() -> str:
    return (ROOT / "statemachine" / "export.asl.json").read_text(encoding="utf-8")


# --- the linters ----------------------------------------------------------------------


def test_cfn_lint_reports_nothing(cfn_lint_run: subprocess.CompletedProcess[str]) -> None:
    output = cfn_lint_run.stdout + cfn_lint_run.stderr
    assert cfn_lint_run.returncode == 0, output
    assert cfn_lint_run.stdout.strip() == ""


def test_sam_validate_lint_passes(sam_validate_run: subprocess.CompletedProcess[str]) -> None:
    output = sam_validate_run.stdout + sam_validate_run.stderr
    assert sam_validate_run.returncode == 0, output
    assert "is a valid SAM Template" in output


# --- functions ------------------------------------------------------------------------


def test_functions_run_python313_on_arm64_with_tracing_through_globals(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Tracing"] == "Active"
    assert globals_["Layers"] == [{"Ref": "CommonLayer"}]
    functions = _of_type(resources, "AWS::Serverless::Function")
    assert set(FUNCTIONS) <= set(functions)
    for name, function in functions.items():
        overrides = {"Runtime", "Architectures", "Tracing", "Layers"} & set(function["Properties"])
        assert not overrides, f"{name} overrides {overrides} from Globals"


def test_common_layer_is_built_by_sam_for_python313_arm64(resources: dict[str, Any]) -> None:
    layer = resources["CommonLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert (ROOT / "layers" / "common" / "requirements.txt").is_file()
    assert (ROOT / "layers" / "common" / "aistudios_export" / "__init__.py").is_file()


def test_every_function_has_handler_code_timeout_and_memory(resources: dict[str, Any]) -> None:
    for name, function in _of_type(resources, "AWS::Serverless::Function").items():
        props = function["Properties"]
        assert props["Handler"] == "app.lambda_handler", name
        assert isinstance(props["Timeout"], int), name
        assert isinstance(props["MemorySize"], int), name
        assert 3 <= props["Timeout"] <= 900, name
        assert 128 <= props["MemorySize"] <= 10240, name
    for name, folder in FUNCTIONS.items():
        assert _props(resources, name)["CodeUri"] == f"functions/{folder}/"
        assert (ROOT / "functions" / folder).is_dir()
    finalize = _props(resources, "FinalizeExportFunction")
    assert (finalize["MemorySize"], finalize["Timeout"]) == (1024, 900)


def test_environment_variables_follow_the_contract(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert template["Globals"]["Function"]["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "aistudios-export",
        "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
        "AISTUDIOS_API_URL": {"Ref": "ApiBaseUrl"},
        "TOKEN_SECRET_ID": {"Ref": "TokenSecret"},
    }
    assert _props(resources, "FinalizeExportFunction")["Environment"]["Variables"] == {
        "OUTPUT_BUCKET": {"Ref": "OutputBucket"},
        "OUTPUT_PREFIX": {"Ref": "OutputKeyPrefix"},
        "TRUSTED_DOWNLOAD_ORIGIN": {"Ref": "TrustedDownloadOrigin"},
        "DOWNLOAD_PART_SIZE_MIB": {"Ref": "DownloadPartSizeMiB"},
    }
    assert _props(resources, "RefreshTokenFunction")["Environment"]["Variables"] == {
        "CREDENTIALS_SECRET_ID": {
            "Fn::If": [
                "CreateCredentialsSecret",
                {"Ref": "CredentialsSecret"},
                {"Ref": "CredentialsSecretArn"},
            ]
        }
    }


def test_local_stack_fragments_use_only_intrinsics_it_resolves(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    known = set(template["Parameters"]) | set(resources) | PSEUDO_PARAMETERS
    fragments: list[Any] = [template["Globals"]["Function"]["Environment"]]
    fragments += [f["Properties"].get("Environment", {}) for f in resources.values()]
    fragments.append(_props(resources, "ExportStateMachine")["DefinitionSubstitutions"])
    fragments += list(template["Conditions"].values())
    for item in _walk(fragments):
        if not isinstance(item, dict):
            continue
        functions = {key for key in item if key == "Ref" or key.startswith("Fn::")}
        assert functions <= LOCAL_INTRINSICS, functions
        if "Fn::GetAtt" in item:
            assert item["Fn::GetAtt"][1] == "Arn", item
        if "Fn::If" in item:
            assert item["Fn::If"][0] in template["Conditions"], item
        if "Fn::Sub" in item:
            text, *mapping = _as_list(item["Fn::Sub"])
            local = set(mapping[0]) if mapping else set()
            for variable in SUB_VARIABLE.findall(text):
                name, _, attribute = variable.partition(".")
                assert name in known | local and attribute in {"", "Arn"}, variable
    assert _references(fragments) <= known


def test_every_log_group_is_the_functions_own_and_has_retention(
    resources: dict[str, Any],
) -> None:
    log_groups = _of_type(resources, "AWS::Logs::LogGroup")
    for name, group in log_groups.items():
        assert group["Properties"].get("RetentionInDays") == {"Ref": "LogRetentionInDays"}, name
    used = [
        function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        for function in _of_type(resources, "AWS::Serverless::Function").values()
    ]
    assert len(set(used)) == len(used)
    assert set(used) <= set(log_groups)


# --- state machine --------------------------------------------------------------------


def test_state_machine_logs_without_execution_data_and_traces(resources: dict[str, Any]) -> None:
    machine = resources["ExportStateMachine"]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    props = machine["Properties"]
    assert props["Type"] == "STANDARD"
    assert props["DefinitionUri"] == "statemachine/export.asl.json"
    assert props["Logging"]["Level"] == "ALL"
    assert props["Logging"]["IncludeExecutionData"] is False
    assert props["Tracing"] == {"Enabled": True}
    (destination,) = props["Logging"]["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert _props(resources, group)["LogGroupName"] == {
        "Fn::Sub": "/aws/vendedlogs/states/${AWS::StackName}-export"
    }


def test_state_machine_may_invoke_the_four_functions_and_publish_events(
    resources: dict[str, Any],
) -> None:
    policies = _props(resources, "ExportStateMachine")["Policies"]
    invoked = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in policies
        if "LambdaInvokePolicy" in p
    }
    assert invoked == set(FUNCTIONS)
    assert {"EventBridgePutEventsPolicy": {"EventBusName": "default"}} in policies


def test_definition_substitutions_match_the_asl_placeholders(resources: dict[str, Any]) -> None:
    substitutions = _props(resources, "ExportStateMachine")["DefinitionSubstitutions"]
    assert set(substitutions) == SUBSTITUTIONS
    for name in FUNCTIONS:
        assert substitutions[f"{name}Arn"] == {"Fn::GetAtt": [name, "Arn"]}
    assert set(SUB_VARIABLE.findall(_asl_text())) == SUBSTITUTIONS


def test_asl_task_and_execution_timeouts_fit_the_functions(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Placeholders sit inside JSON strings, so the file is JSON before substitution too.
    asl = json.loads(_asl_text())
    lambda_timeouts = {f"${{{name}Arn}}": _props(resources, name)["Timeout"] for name in FUNCTIONS}
    tasks = [s for s in asl["States"].values() if s["Type"] == "Task"]
    assert {t["Resource"] for t in tasks} >= set(lambda_timeouts)
    for task in tasks:
        # The function times out first, so the error the state machine sees is Lambda's own.
        assert task["TimeoutSeconds"] >= lambda_timeouts.get(task["Resource"], 1), task
    budget = template["Parameters"]["DefaultTimeoutSeconds"]["MaxValue"]
    finalize = _props(resources, "FinalizeExportFunction")["Timeout"]
    assert budget + finalize < asl["TimeoutSeconds"]


# --- bucket ---------------------------------------------------------------------------


def test_output_bucket_is_private_encrypted_versioned_and_aborts_uploads(
    resources: dict[str, Any],
) -> None:
    bucket = _props(resources, "OutputBucket")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert {"DaysAfterInitiation": 1} in [r.get("AbortIncompleteMultipartUpload") for r in rules]
    assert any("NoncurrentVersionExpiration" in r for r in rules)


def test_output_bucket_refuses_plain_http(resources: dict[str, Any]) -> None:
    policy = _props(resources, "OutputBucketPolicy")
    assert policy["Bucket"] == {"Ref": "OutputBucket"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["OutputBucket", "Arn"]},
        {"Fn::Sub": "${OutputBucket.Arn}/*"},
    ]


# --- least privilege and secrets ------------------------------------------------------


def test_no_iam_statement_allows_every_action(resources: dict[str, Any]) -> None:
    for name, res in resources.items():
        for statement in _statements(res.get("Properties", {}).get("Policies", [])):
            assert statement["Effect"] == "Allow", name
            actions = _as_list(statement["Action"])
            assert not [a for a in actions if a == "*" or a.endswith(":*")], (name, actions)
            if statement["Resource"] == "*":
                # Only vended log delivery, which has no resource-level permissions.
                assert all(a.startswith("logs:") for a in actions), (name, actions)


def test_only_refresh_token_reads_credentials_or_writes_the_token(
    resources: dict[str, Any],
) -> None:
    credentials = {"CredentialsSecret", "CredentialsSecretArn"}
    read_token = {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "TokenSecret"}}}
    for name in set(FUNCTIONS) - {"RefreshTokenFunction"}:
        policies = _props(resources, name)["Policies"]
        assert policies[0] == read_token, name
        assert not _references(policies) & credentials, name
        actions = {a for s in _statements(policies) for a in _as_list(s["Action"])}
        assert not {a for a in actions if a.startswith("secretsmanager:")}, name
    statements = {
        s["Sid"]: s for s in _statements(_props(resources, "RefreshTokenFunction")["Policies"])
    }
    assert set(statements) == {"ReadCredentials", "RotateToken"}
    assert statements["ReadCredentials"]["Action"] == "secretsmanager:GetSecretValue"
    assert _references(statements["ReadCredentials"]["Resource"]) == credentials
    assert set(statements["RotateToken"]["Action"]) == {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    }
    assert statements["RotateToken"]["Resource"] == {"Ref": "TokenSecret"}


def test_finalize_writes_only_under_the_output_prefix(resources: dict[str, Any]) -> None:
    (statement,) = _statements(_props(resources, "FinalizeExportFunction")["Policies"])
    assert set(statement["Action"]) == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
    }
    assert statement["Resource"] == {"Fn::Sub": "${OutputBucket.Arn}/${OutputKeyPrefix}*"}


def test_secrets_are_placeholders_without_any_value(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    secrets = _of_type(resources, "AWS::SecretsManager::Secret")
    assert set(secrets) == {"CredentialsSecret", "TokenSecret"}
    for name, secret in secrets.items():
        assert "SecretString" not in secret["Properties"], name
    credentials = secrets["CredentialsSecret"]
    assert credentials["Condition"] == "CreateCredentialsSecret"
    assert template["Conditions"]["CreateCredentialsSecret"] == {
        "Fn::Equals": [{"Ref": "CredentialsSecretArn"}, ""]
    }
    generated = credentials["Properties"]["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {"appId": "REPLACE_ME"}
    assert generated["GenerateStringKey"] == "userKey"
    token = secrets["TokenSecret"]["Properties"]["GenerateSecretString"]
    assert json.loads(token["SecretStringTemplate"]) == {"token": ""}
    # Whatever looks like a secret in an environment variable is a reference, never a literal.
    for function in [template["Globals"]["Function"], *resources.values()]:
        variables = function.get("Properties", function).get("Environment", {}).get("Variables", {})
        for key, value in variables.items():
            if re.search("SECRET|TOKEN|KEY|PASSWORD", key):
                assert isinstance(value, dict), key


def test_token_secret_is_rotated_by_refresh_token(resources: dict[str, Any]) -> None:
    (schedule,) = _of_type(resources, "AWS::SecretsManager::RotationSchedule").values()
    props = schedule["Properties"]
    assert props["SecretId"] == {"Ref": "TokenSecret"}
    assert props["RotationLambdaARN"] == {"Fn::GetAtt": ["RefreshTokenFunction", "Arn"]}
    assert props["RotationRules"] == {"ScheduleExpression": {"Ref": "TokenRotationSchedule"}}
    permission = resources[schedule["DependsOn"]]
    assert permission["Type"] == "AWS::Lambda::Permission"
    assert permission["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    assert permission["Properties"]["FunctionName"] == {
        "Fn::GetAtt": ["RefreshTokenFunction", "Arn"]
    }
    assert permission["Properties"]["SourceArn"] == {"Ref": "TokenSecret"}


# --- parameters and outputs -----------------------------------------------------------


def test_every_parameter_has_a_default_that_passes_its_own_constraints(
    template: dict[str, Any],
) -> None:
    for name, parameter in template["Parameters"].items():
        assert "Default" in parameter, name
        default = parameter["Default"]
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], str(default)), name
        if "AllowedValues" in parameter:
            assert default in parameter["AllowedValues"], name
        if parameter["Type"] == "Number":
            assert (
                parameter.get("MinValue", default) <= default <= parameter.get("MaxValue", default)
            )


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("ApiBaseUrl", "https://app.aistudios.com", True),
        ("ApiBaseUrl", "https://app.aistudios.cn/", True),
        ("ApiBaseUrl", "http://127.0.0.1:8080", True),
        ("ApiBaseUrl", "http://localhost:9000", True),
        ("ApiBaseUrl", "http://app.aistudios.com", False),
        ("ApiBaseUrl", "https://user:pw@app.aistudios.com", False),
        ("ApiBaseUrl", "http://169.254.169.254", False),
        ("TrustedDownloadOrigin", "", True),
        ("TrustedDownloadOrigin", "http://127.0.0.1:8080", True),
        ("TrustedDownloadOrigin", "https://cdn.example.com", False),
        ("TrustedDownloadOrigin", "http://169.254.169.254", False),
        ("TrustedDownloadOrigin", "http://10.0.0.1:80", False),
        ("OutputKeyPrefix", "", True),
        ("OutputKeyPrefix", "videos/2024/", True),
        ("OutputKeyPrefix", "exports", False),
        ("OutputKeyPrefix", "exports/*", False),
        (
            "CredentialsSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf",
            True,
        ),
        ("CredentialsSecretArn", "my-secret", False),
        ("TokenRotationSchedule", "rate(1 day)", True),
        ("TokenRotationSchedule", "cron(0 */12 * * ? *)", True),
        ("TokenRotationSchedule", "12h", False),
    ],
)
def test_parameter_patterns(
    template: dict[str, Any], parameter: str, value: str, accepted: bool
) -> None:
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_trusted_download_origin_cannot_be_set_in_aws(template: dict[str, Any]) -> None:
    rule = template["Rules"]["TrustedDownloadOriginIsLocalOnly"]
    assert "Condition" not in rule
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "TrustedDownloadOrigin"}, ""]}


def test_outputs_name_what_users_and_tests_need(template: dict[str, Any]) -> None:
    assert {
        "ExportStateMachineArn",
        "OutputBucketName",
        "CredentialsSecretArn",
        "TokenSecretArn",
        *(f"{name}Name" for name in FUNCTIONS),
    } <= set(template["Outputs"])


# --- samconfig.toml -------------------------------------------------------------------


def test_samconfig_profiles_deploy_safely_without_account_details() -> None:
    text = SAMCONFIG.read_text(encoding="utf-8")
    config = tomllib.loads(text)
    assert config["version"] == 0.1
    stacks = set()
    for env in ("default", "dev", "prod"):
        stacks.add(config[env]["global"]["parameters"]["stack_name"])
        assert config[env]["build"]["parameters"] == {"cached": True, "parallel": True}
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert deploy["resolve_s3"] is True
    assert len(stacks) == 3
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert not re.search(r"^\s*region\s*=", text, re.MULTILINE)
    assert not re.search(r"\b\d{12}\b", text)


# --- batches: manifests, the S3 rule, the schedule (issue #3) ---------------------------------

BATCH_FUNCTIONS = {
    "PrepareManifestFunction": "prepare_manifest",
    "SummarizeBatchFunction": "summarize_batch",
}
BATCH_SUBSTITUTIONS = {
    "PrepareManifestFunctionArn",
    "SummarizeBatchFunctionArn",
    "ExportStateMachineArn",
    "ExportExecutionArnPrefix",
    "OutputBucketName",
    "ManifestKeyPrefix",
    "ResultsKeyPrefix",
    "BatchMaxConcurrency",
    "BatchToleratedFailurePercentage",
    "DefaultPollSeconds",
    "DefaultTimeoutSeconds",
    "DefaultStallSeconds",
}
EXPORT_EXECUTIONS = {
    "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
    ":execution:${ExportStateMachine.Name}:*"
}


def _batch_asl() -> dict[str, Any]:
    text = (ROOT / "statemachine" / "batch.asl.json").read_text(encoding="utf-8")
    assert set(SUB_VARIABLE.findall(text)) == BATCH_SUBSTITUTIONS
    value: dict[str, Any] = json.loads(text)
    return value


def _all_states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state, those of the Map's ItemProcessor included."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in asl["States"].items():
        found[name] = state
        if "ItemProcessor" in state:
            found |= _all_states(state["ItemProcessor"])
    return found


def _statement_by_sid(policies: list[Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in _statements(policies) if "Sid" in s}


def test_batch_functions_are_thin_and_never_touch_secrets(resources: dict[str, Any]) -> None:
    for name, folder in BATCH_FUNCTIONS.items():
        props = _props(resources, name)
        assert props["CodeUri"] == f"functions/{folder}/"
        assert (ROOT / "functions" / folder / "app.py").is_file()
        assert (ROOT / "functions" / folder / "__init__.py").is_file()
        actions = {a for s in _statements(props["Policies"]) for a in _as_list(s["Action"])}
        assert not {a for a in actions if a.startswith("secretsmanager:")}, name
        assert not _references(props["Policies"]) & {"CredentialsSecret", "TokenSecret"}
    prepare = _statement_by_sid(_props(resources, "PrepareManifestFunction")["Policies"])
    assert prepare["ReadManifests"]["Action"] == "s3:GetObject"
    assert prepare["ReadManifests"]["Resource"] == {
        "Fn::Sub": "${OutputBucket.Arn}/${ManifestKeyPrefix}*"
    }
    assert prepare["WriteBatchFiles"]["Action"] == "s3:PutObject"
    assert prepare["WriteBatchFiles"]["Resource"] == {
        "Fn::Sub": "${OutputBucket.Arn}/${ResultsKeyPrefix}*"
    }
    summarize = _statement_by_sid(_props(resources, "SummarizeBatchFunction")["Policies"])
    assert summarize["ReadExportOutcomes"]["Action"] == "states:DescribeExecution"
    assert summarize["ReadExportOutcomes"]["Resource"] == EXPORT_EXECUTIONS
    assert summarize["ReadAndWriteBatchFiles"]["Resource"] == {
        "Fn::Sub": "${OutputBucket.Arn}/${ResultsKeyPrefix}*"
    }


def test_batch_state_machine_logs_without_execution_data_and_traces(
    resources: dict[str, Any],
) -> None:
    props = _props(resources, "BatchStateMachine")
    assert props["Type"] == "STANDARD"
    assert props["DefinitionUri"] == "statemachine/batch.asl.json"
    assert props["Name"] == {"Fn::Sub": "${AWS::StackName}-batch"}
    assert props["Logging"]["Level"] == "ALL"
    assert props["Logging"]["IncludeExecutionData"] is False
    assert props["Tracing"] == {"Enabled": True}
    (destination,) = props["Logging"]["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert _props(resources, group)["LogGroupName"] == {
        "Fn::Sub": "/aws/vendedlogs/states/${AWS::StackName}-batch"
    }


def test_batch_substitutions_cover_every_placeholder_and_resolve_locally(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    substitutions = _props(resources, "BatchStateMachine")["DefinitionSubstitutions"]
    assert set(substitutions) == BATCH_SUBSTITUTIONS
    _batch_asl()
    for name in BATCH_FUNCTIONS:
        assert substitutions[f"{name}Arn"] == {"Fn::GetAtt": [name, "Arn"]}
    assert substitutions["ExportStateMachineArn"] == {"Ref": "ExportStateMachine"}
    for parameter in (
        BATCH_SUBSTITUTIONS
        - {f"{n}Arn" for n in BATCH_FUNCTIONS}
        - {
            "ExportStateMachineArn",
            "ExportExecutionArnPrefix",
            "OutputBucketName",
        }
    ):
        assert substitutions[parameter] == {"Ref": parameter}, parameter
    known = set(template["Parameters"]) | set(resources) | PSEUDO_PARAMETERS
    for item in _walk(substitutions):
        if isinstance(item, dict) and "Fn::Sub" in item:
            for variable in SUB_VARIABLE.findall(item["Fn::Sub"]):
                name, _, attribute = variable.partition(".")
                assert name in known and attribute in {"", "Arn", "Name"}, variable


def test_batch_asl_is_bounded_and_retries_with_jitter(resources: dict[str, Any]) -> None:
    asl = _batch_asl()
    export_asl = json.loads(_asl_text())
    assert isinstance(asl["TimeoutSeconds"], int)
    assert "QueryLanguage" not in asl
    states = _all_states(asl)
    timeouts = {f"${{{n}Arn}}": _props(resources, n)["Timeout"] for n in BATCH_FUNCTIONS}
    tasks = {n: s for n, s in states.items() if s["Type"] == "Task"}
    assert {t["Resource"] for t in tasks.values()} >= set(timeouts)
    for name, task in tasks.items():
        assert task["TimeoutSeconds"] >= timeouts.get(task["Resource"], 1), name
        for retry in task.get("Retry", []):
            assert retry["JitterStrategy"] == "FULL", name
            assert retry["MaxDelaySeconds"] <= 60, name
            assert "States.ALL" not in retry["ErrorEquals"], name
        if task["Resource"] in timeouts:
            retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
            assert "StorageError" in retried, name
    assert tasks["ExportRow"]["TimeoutSeconds"] > export_asl["TimeoutSeconds"]
    for name, state in states.items():
        if state["Type"] == "Choice":
            assert "Default" in state, name
        for key in ("Next", "Default"):
            if key in state:
                assert state[key] in states, (name, state[key])


def test_batch_asl_runs_each_row_once_through_a_distributed_map() -> None:
    states = _batch_asl()["States"]
    assert _batch_asl()["StartAt"] == "Configure"
    assert states["Configure"]["Next"] == "PrepareManifest"
    assert states["PrepareManifest"]["Resource"] == "${PrepareManifestFunctionArn}"
    assert states["PrepareManifest"]["Catch"][0]["Next"] == "ManifestRejected"
    assert states["ManifestRejected"]["Type"] == "Fail"
    run = states["ExportRows"]
    assert run["Type"] == "Map"
    assert run["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert run["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert run["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert run["MaxConcurrencyPath"] == "$.limits.maxConcurrency"
    assert run["ToleratedFailurePercentagePath"] == "$.limits.toleratedFailurePercentage"
    assert run["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert run["ResultWriter"]["Parameters"]["Prefix"].startswith("${ResultsKeyPrefix}")
    assert run["Next"] == run["Catch"][0]["Next"] == "SummarizeBatch"
    row = run["ItemProcessor"]["States"]
    export = row["ExportRow"]
    assert export["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert export["Parameters"] == {
        "StateMachineArn": "${ExportStateMachineArn}",
        "Name.$": "$.name",
        "Input.$": "$.input",
    }
    (already,) = export["Catch"]
    assert already["ErrorEquals"] == ["StepFunctions.ExecutionAlreadyExistsException"]
    describe = row[already["Next"]]
    assert describe["Resource"] == "arn:aws:states:::aws-sdk:sfn:describeExecution"
    assert "${ExportExecutionArnPrefix}" in describe["Parameters"]["ExecutionArn.$"]
    assert states["SummarizeBatch"]["Next"] == "BatchOutcome"
    assert states["BatchOutcome"]["Default"] == "BatchFailed"


def test_batch_state_machine_may_do_exactly_what_it_needs(resources: dict[str, Any]) -> None:
    policies = _props(resources, "BatchStateMachine")["Policies"]
    invoked = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in policies
        if "LambdaInvokePolicy" in p
    }
    assert invoked == set(BATCH_FUNCTIONS)
    assert {
        "StepFunctionsExecutionPolicy": {
            "StateMachineName": {"Fn::GetAtt": ["ExportStateMachine", "Name"]}
        }
    } in policies
    statements = _statement_by_sid(policies)
    assert set(statements["FollowExports"]["Action"]) == {
        "states:DescribeExecution",
        "states:StopExecution",
    }
    assert statements["FollowExports"]["Resource"] == EXPORT_EXECUTIONS
    assert set(statements["SyncExecutionEvents"]["Action"]) == {
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    }
    assert statements["SyncExecutionEvents"]["Resource"]["Fn::Sub"].endswith(
        ":rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"
    )
    assert statements["RunDistributedMap"]["Action"] == "states:StartExecution"
    assert statements["RunDistributedMap"]["Resource"]["Fn::Sub"].endswith(
        ":stateMachine:${AWS::StackName}-batch"
    )
    s3_resources = [
        r["Fn::Sub"]
        for s in statements.values()
        if any(a.startswith("s3:") for a in _as_list(s["Action"]))
        for r in _as_list(s["Resource"])
    ]
    assert set(s3_resources) == {
        "${OutputBucket.Arn}/${ManifestKeyPrefix}*",
        "${OutputBucket.Arn}/${ResultsKeyPrefix}*",
    }
    write = statements["WriteMapResults"]
    assert write["Resource"] == {"Fn::Sub": "${OutputBucket.Arn}/${ResultsKeyPrefix}*"}


def _resolved_pattern() -> dict[str, Any]:
    """The rule's EventPattern as the local stack resolves it (default prefix, bucket-1)."""
    from aistudios_local.template import Resolver, load_template

    raw = load_template(TEMPLATE)
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


def test_the_rule_starts_the_batch_with_bucket_and_key(resources: dict[str, Any]) -> None:
    assert _props(_of_type(resources, "AWS::S3::Bucket"), "OutputBucket")[
        "NotificationConfiguration"
    ] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    rule = _props(resources, "ManifestUploadedRule")
    assert rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": "BatchStateMachine"}
    assert target["InputTransformer"]["InputPathsMap"] == {
        "bucket": "$.detail.bucket.name",
        "key": "$.detail.object.key",
    }
    template_text = target["InputTransformer"]["InputTemplate"]
    filled = template_text.replace("<bucket>", "b").replace("<key>", "manifests/a.csv")
    assert json.loads(filled) == {"bucket": "b", "key": "manifests/a.csv"}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]}}
    role = _props(resources, target["RoleArn"]["Fn::GetAtt"][0])
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    (policy,) = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "states:StartExecution",
            "Resource": {"Ref": "BatchStateMachine"},
        }
    ]


def test_the_schedule_is_off_by_default_retries_and_dead_letters(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    (name,) = _of_type(resources, "AWS::Scheduler::Schedule")
    schedule = _props(resources, name)
    assert schedule["State"] == {"Ref": "BatchScheduleState"}
    assert template["Parameters"]["BatchScheduleState"]["Default"] == "DISABLED"
    assert schedule["ScheduleExpression"] == {"Ref": "BatchScheduleExpression"}
    target = schedule["Target"]
    assert target["Arn"] == {"Ref": "BatchStateMachine"}
    text = target["Input"]["Fn::Sub"]
    filled = (
        text.replace("${OutputBucket}", "b")
        .replace("${BatchScheduleManifestKey}", "manifests/s.csv")
        .replace("<aws.scheduler.scheduled-time>", "2026-01-01T03:00:00Z")
    )
    assert json.loads(filled) == {
        "bucket": "b",
        "key": "manifests/s.csv",
        "scope": "2026-01-01T03:00:00Z",
    }
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    queue = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    assert _props(resources, queue)["SqsManagedSseEnabled"] is True
    role = _props(resources, target["RoleArn"]["Fn::GetAtt"][0])
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    (policy,) = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "states:StartExecution",
            "Resource": {"Ref": "BatchStateMachine"},
        },
        {
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": [queue, "Arn"]},
        },
    ]


def test_manifests_and_batch_files_live_apart(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["ManifestKeyPrefix"]["Default"] != parameters["ResultsKeyPrefix"]["Default"]
    pattern = parameters["ManifestKeyPrefix"]["AllowedPattern"]
    assert not re.fullmatch(pattern, "")  # an empty prefix would read results as manifests
    assert re.fullmatch(pattern, "manifests/team-a/")
    assert not re.fullmatch(pattern, "manifests/*")
    assertions = template["Rules"]["BatchPrefixesAreApart"]["Assertions"]
    assert {json.dumps(a["Assert"], sort_keys=True) for a in assertions} == {
        json.dumps(
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "ManifestKeyPrefix"}, {"Ref": other}]}]},
            sort_keys=True,
        )
        for other in ("ResultsKeyPrefix", "OutputKeyPrefix")
    }
    key = parameters["BatchScheduleManifestKey"]
    assert key["Default"].startswith(parameters["ManifestKeyPrefix"]["Default"])
    assert re.fullmatch(key["AllowedPattern"], key["Default"])
    assert not re.fullmatch(key["AllowedPattern"], "manifests/a.txt")
    assert parameters["BatchMaxConcurrency"]["Default"] == 10


def test_batch_outputs(template: dict[str, Any]) -> None:
    assert {
        "BatchStateMachineArn",
        "ManifestUploadLocation",
        "BatchReportsLocation",
        "BatchDeadLetterQueueUrl",
        *(f"{name}Name" for name in BATCH_FUNCTIONS),
    } <= set(template["Outputs"])
