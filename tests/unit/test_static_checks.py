"""The static checks of the template check what they claim.

The custom checkov policies (checks/checkov) flag bad snippets and pass the real transformed
template; checkov runs from ``.venv-checkov`` (which ``make test`` creates), once for all of
them. The skips file (checks/skips.yaml) is the only place a finding is accepted: every entry
has a reason and still matches a resource.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.skips import SKIPS, annotate, load_skips
from tools.transform import ROOT, load_sam_template, transform_template

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CUSTOM_CHECKS = ROOT / "checks" / "checkov"
LOG_GROUP = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/states/x:*"
ROLE = "arn:aws:iam::123456789012:role/r"


def _state_machine(logging: dict[str, Any] | None, traced: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "RoleArn": ROLE,
        "DefinitionString": "{}",
        "TracingConfiguration": {"Enabled": traced},
    }
    if logging is not None:
        properties["LoggingConfiguration"] = logging
    return {"Type": "AWS::StepFunctions::StateMachine", "Properties": properties}


def _to_log_group(level: str) -> dict[str, Any]:
    return {
        "Level": level,
        "IncludeExecutionData": False,
        "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": LOG_GROUP}}],
    }


def _bucket(rules: list[dict[str, Any]] | None) -> dict[str, Any]:
    properties = {} if rules is None else {"LifecycleConfiguration": {"Rules": rules}}
    return {"Type": "AWS::S3::Bucket", "Properties": properties}


ABORT = {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
# check id → resources of the snippet template that it must flag, and ones it must pass.
FLAGGED = {
    "CKV_AISTUDIOS_1": {
        "NotLogged": _state_machine(None, traced=True),
        "LogsOff": _state_machine(_to_log_group("OFF"), traced=True),
        "LogsFatalOnly": _state_machine(_to_log_group("FATAL"), traced=True),
        "NoDestination": _state_machine({"Level": "ALL"}, traced=True),
        "NotTraced": _state_machine(_to_log_group("ALL"), traced=False),
    },
    "CKV_AISTUDIOS_2": {
        "InlineValue": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {"SecretString": '{"appId": "app", "userKey": "k3y"}'},
        },
        "TemplateWithValue": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "GenerateSecretString": {
                    "SecretStringTemplate": '{"appId": "65fa6b07dca2e367"}',
                    "GenerateStringKey": "userKey",
                }
            },
        },
        "TemplateNotJson": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "GenerateSecretString": {
                    "SecretStringTemplate": "appId=65fa6b07dca2e367",
                    "GenerateStringKey": "userKey",
                }
            },
        },
        "SubWithValue": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "GenerateSecretString": {
                    "SecretStringTemplate": {"Fn::Sub": '{"token": "tok-${AWS::Region}"}'},
                    "GenerateStringKey": "key",
                }
            },
        },
        "PublicKeyWithCredentials": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "GenerateSecretString": {
                    "SecretStringTemplate": '{"baseUrl": "https://user:pw@api.example/v1"}',
                    "GenerateStringKey": "key",
                }
            },
        },
    },
    "CKV_AISTUDIOS_3": {
        "NoLifecycle": _bucket(None),
        "OnlyUnderAPrefix": _bucket([{"Id": "a", "Status": "Enabled", "Prefix": "x/", **ABORT}]),
        "RuleDisabled": _bucket([{"Id": "a", "Status": "Disabled", **ABORT}]),
        "ExpiresButNeverAborts": _bucket(
            [{"Id": "a", "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]
        ),
    },
}
PASSED = {
    "CKV_AISTUDIOS_1": {
        "LogsErrorsTraced": _state_machine(_to_log_group("ERROR"), traced=True),
    },
    "CKV_AISTUDIOS_2": {
        "Placeholders": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "GenerateSecretString": {
                    "SecretStringTemplate": '{"appId": "REPLACE_ME", "token": ""}',
                    "GenerateStringKey": "userKey",
                }
            },
        },
        "SubWithPublicUrl": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "GenerateSecretString": {
                    "SecretStringTemplate": {
                        "Fn::Sub": '{"baseUrl": "https://${AWS::Region}.example/v1"}'
                    },
                    "GenerateStringKey": "key",
                }
            },
        },
    },
    "CKV_AISTUDIOS_3": {"AbortsEverywhere": _bucket([{"Id": "a", "Status": "Enabled", **ABORT}])},
}
# The real template's resources each custom check must pass.
REAL = {
    "CKV_AISTUDIOS_1": {"ExportStateMachine", "BatchStateMachine"},
    "CKV_AISTUDIOS_2": {"CredentialsSecret", "TokenSecret", "WebhookSecret"},
    "CKV_AISTUDIOS_3": {"OutputBucket"},
}


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    return transform_template(load_sam_template())


@pytest.fixture(scope="module")
def checkov_results(
    tmp_path_factory: pytest.TempPathFactory, transformed: dict[str, Any]
) -> dict[str, set[tuple[str, str, str]]]:
    """Run the custom checks once over the snippets and the real template.

    Returns ``{"passed"|"failed": {(check id, file name, logical id)}}``.
    """
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV.relative_to(ROOT)} is missing: `make test` creates it")
    folder = tmp_path_factory.mktemp("checkov")
    (folder / "real.json").write_text(json.dumps(transformed), encoding="utf-8")
    snippets = {
        name: r for group in (*FLAGGED.values(), *PASSED.values()) for name, r in group.items()
    }
    template = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": snippets}
    (folder / "snippets.json").write_text(json.dumps(template), encoding="utf-8")
    # Offline: no platform mappings or policies to download, no update check.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    answer = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(folder),
            "--framework",
            "cloudformation",
            "--external-checks-dir",
            str(CUSTOM_CHECKS),
            "--check",
            ",".join(FLAGGED),
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert answer.returncode in (0, 1), answer.stderr
    report = json.loads(answer.stdout)
    results: dict[str, set[tuple[str, str, str]]] = {}
    for outcome in ("passed", "failed"):
        results[outcome] = {
            (r["check_id"], Path(r["file_path"]).name, r["resource"].split(".")[-1])
            for r in report["results"][f"{outcome}_checks"]
        }
    return results


@pytest.mark.parametrize("check_id", sorted(FLAGGED))
def test_each_custom_check_flags_its_bad_snippets(
    checkov_results: dict[str, set[tuple[str, str, str]]], check_id: str
) -> None:
    flagged = {name for c, f, name in checkov_results["failed"] if c == check_id}
    assert flagged & set(FLAGGED[check_id]) == set(FLAGGED[check_id])
    passed = {name for c, f, name in checkov_results["passed"] if c == check_id}
    assert set(PASSED[check_id]) <= passed


@pytest.mark.parametrize("check_id", sorted(REAL))
def test_each_custom_check_passes_the_real_template(
    checkov_results: dict[str, set[tuple[str, str, str]]], check_id: str
) -> None:
    real = {name for c, f, name in checkov_results["passed"] if c == check_id and f == "real.json"}
    assert real == REAL[check_id]
    assert not [r for r in checkov_results["failed"] if r[1] == "real.json"]


def test_every_skip_has_a_reason_and_matches_a_resource(transformed: dict[str, Any]) -> None:
    skips = load_skips()
    assert set(skips) == {"cfn-lint", "checkov"}
    annotated = annotate(transformed, skips)
    # Custom checks are never skipped: they are this project's own rules.
    skipped = {
        s["id"]
        for r in annotated["Resources"].values()
        for s in r.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert skipped and not {s for s in skipped if s.startswith("CKV_AISTUDIOS_")}
    # The IAM of the stack is never skipped either.
    for resource in annotated["Resources"].values():
        if resource["Type"] == "AWS::IAM::Role":
            assert "Metadata" not in resource or "checkov" not in resource["Metadata"]


def test_annotate_writes_each_skip_where_its_checker_reads_it() -> None:
    template: dict[str, Any] = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "GroupA": {"Type": "AWS::Logs::LogGroup"},
            "GroupB": {"Type": "AWS::Logs::LogGroup", "Metadata": {"keep": 1}},
        }
    }
    skips = {
        "cfn-lint": [{"rule": "ES6000", "resources": ["Queue"], "reason": "a DLQ"}],
        "checkov": [
            {"check": "CKV_AWS_158", "resources": ["AWS::Logs::LogGroup"], "reason": "why\n so"}
        ],
    }
    annotated = annotate(template, skips)["Resources"]
    assert annotated["Queue"]["Metadata"] == {"cfn-lint": {"config": {"ignore_checks": ["ES6000"]}}}
    for name in ("GroupA", "GroupB"):
        assert annotated[name]["Metadata"]["checkov"] == {
            "skip": [{"id": "CKV_AWS_158", "comment": "why so"}]
        }
    assert annotated["GroupB"]["Metadata"]["keep"] == 1
    assert "Metadata" not in template["Resources"]["Queue"]


def test_a_stale_skip_fails() -> None:
    skips = {"checkov": [{"check": "CKV_AWS_18", "resources": ["GoneBucket"], "reason": "x"}]}
    with pytest.raises(ValueError, match="CKV_AWS_18 names GoneBucket, which is not there"):
        annotate({"Resources": {}}, skips)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("checkov:\n  - check: CKV_AWS_18\n    resources: [B]\n", r"lacks \['reason'\]"),
        ("cfn-lint:\n  - rule: W1\n    reason: r\n", r"lacks \['resources'\]"),
        ("trivy: []\n", "unknown checker"),
    ],
)
def test_the_skips_file_needs_a_reason_and_resources(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "skips.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_skips(path)


def test_the_skips_file_is_the_one_in_checks() -> None:
    assert SKIPS == ROOT / "checks" / "skips.yaml"
    assert SKIPS.is_file()
