"""Least privilege, proven: every role of the transformed stack matches the reviewed IAM table.

``tests/iam_expected.yaml`` is the table people reviewed; the template is transformed offline
(samtranslator, no AWS call) for each scenario of parameter values and compared with it. A
new action, a wider resource or a dropped condition shows up as a diff that fails here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistudios_local.template import Resolver
from tools import iam_table
from tools.transform import ROOT, TEMPLATE, load_sam_template, transform_template

KMS_SCENARIO = "credentials-kms-key"
# The FinalizeExport statement the widening tests edit, as written in template.yaml.
FINALIZE_ACTIONS = "                - s3:DeleteObjectVersion\n"
FINALIZE_RESOURCE = (
    FINALIZE_ACTIONS + "              Resource: !Sub ${OutputBucket.Arn}/${OutputKeyPrefix}*\n"
)
KMS_CONDITION = (
    "                    kms:ViaService: !Sub secretsmanager.${AWS::Region}.amazonaws.com\n"
)


@pytest.fixture(scope="module")
def tables() -> dict[str, Any]:
    return iam_table.build_tables()


def _every_table(tables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Scenario → role → grants, with each scenario's unchanged roles taken from the defaults."""
    defaults = tables["defaults"]
    every = {"defaults": defaults}
    for name in iam_table.SCENARIOS.keys() - {"defaults"}:
        merged = {**defaults, **tables[name]["roles"]}
        every[name] = {role: grants for role, grants in merged.items() if grants != "absent"}
    return every


def _copy_of_the_template(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of template.yaml (and the ASL it reads) with ``old`` replaced by ``new``."""
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is no longer in template.yaml once"
    shutil.copytree(ROOT / "statemachine", tmp_path / "statemachine")
    copy = tmp_path / "template.yaml"
    copy.write_text(text.replace(old, new), encoding="utf-8")
    return copy


def test_every_role_matches_the_reviewed_iam_table(tables: dict[str, Any]) -> None:
    expected = iam_table.EXPECTED.read_text(encoding="utf-8")
    changes = iam_table.diff(expected, iam_table.dump(tables))
    assert not changes, (
        "The template's IAM permissions differ from tests/iam_expected.yaml.\n"
        f"{changes}\n"
        "If this change of permissions is deliberate, regenerate the table with\n"
        f"    make iam-table    (or: {iam_table.REGENERATE})\n"
        "and commit it with the template, so the diff is reviewed."
    )


def test_the_table_covers_every_role_of_the_transformed_template(tables: dict[str, Any]) -> None:
    transformed = transform_template(load_sam_template())
    roles = {n for n, r in transformed["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert set(tables["defaults"]) == roles
    # SAM's generated roles are there, not only the template's own.
    assert {"FinalizeExportFunctionRole", "ExportStateMachineRole"} <= roles


def test_no_role_allows_every_action_or_every_resource_beyond_log_delivery(
    tables: dict[str, Any],
) -> None:
    for scenario, table in _every_table(tables).items():
        for role, grants in table.items():
            for grant in grants:
                if "managed_policy" in grant:
                    continue
                where = (scenario, role, grant)
                assert "not" not in grant and "effect" not in grant, where
                assert not [a for a in grant["actions"] if a == "*" or a.endswith(":*")], where
                if "*" in grant["resources"]:
                    # Vended log delivery has no resource-level permissions.
                    assert all(a.startswith("logs:") for a in grant["actions"]), where


def test_the_kms_key_is_decryptable_only_by_refresh_token_through_secrets_manager(
    tables: dict[str, Any],
) -> None:
    every = _every_table(tables)
    kms = {
        (scenario, role): grant
        for scenario, table in every.items()
        for role, grants in table.items()
        for grant in grants
        if any(a.startswith("kms:") for a in grant.get("actions", []))
    }
    assert set(kms) == {(KMS_SCENARIO, "RefreshTokenFunctionRole")}
    grant = kms[(KMS_SCENARIO, "RefreshTokenFunctionRole")]
    assert grant["actions"] == ["kms:Decrypt"]
    assert grant["resources"] == ["${CredentialsKmsKeyArn}"]
    assert grant["condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.${AWS::Region}.amazonaws.com"}
    }


def test_the_kms_key_encrypts_the_created_credentials_secret_only_when_set() -> None:
    template = load_sam_template()
    for parameters in ({}, iam_table.SCENARIOS[KMS_SCENARIO]):
        transformed = transform_template(template, parameters)
        resolver = Resolver(transformed, parameters=parameters)
        secret = iam_table.decide(transformed["Resources"]["CredentialsSecret"], resolver)
        token = iam_table.decide(transformed["Resources"]["TokenSecret"], resolver)
        assert "KmsKeyId" not in token["Properties"]
        if parameters:
            assert secret["Properties"]["KmsKeyId"] == {"Ref": "CredentialsKmsKeyArn"}
        else:
            assert "KmsKeyId" not in secret["Properties"]


def test_finalize_may_list_unfinished_uploads_of_the_bucket_and_abort_only_its_own(
    tables: dict[str, Any],
) -> None:
    grants = tables["defaults"]["FinalizeExportFunctionRole"]
    by_action = {a: g["resources"] for g in grants for a in g.get("actions", [])}
    assert by_action["s3:ListBucketMultipartUploads"] == ["${OutputBucket.Arn}"]
    assert by_action["s3:AbortMultipartUpload"] == ["${OutputBucket.Arn}/${OutputKeyPrefix}*"]
    # Nothing in the library lists an upload's parts.
    assert "s3:ListMultipartUploadParts" not in by_action


@pytest.mark.parametrize(
    ("old", "new", "added"),
    [
        (FINALIZE_ACTIONS, FINALIZE_ACTIONS + "                - s3:*\n", "-s3:*"),
        (
            FINALIZE_ACTIONS,
            FINALIZE_ACTIONS + "                - s3:PutBucketPolicy\n",
            "-s3:PutBucketPolicy",
        ),
        (
            FINALIZE_RESOURCE,
            FINALIZE_RESOURCE.replace("${OutputKeyPrefix}*", "*"),
            "-${OutputBucket.Arn}/*",
        ),
    ],
    ids=["wildcard-action", "new-action", "wider-resource"],
)
def test_a_widened_role_fails_the_comparison(
    tmp_path: Path, old: str, new: str, added: str
) -> None:
    changes = iam_table.compare(_copy_of_the_template(tmp_path, old, new))
    assert f"+{added}" in [line.replace(" ", "") for line in changes.splitlines()]
    assert "FinalizeExportFunctionRole" in changes


def test_the_unchanged_copy_passes_the_comparison(tmp_path: Path) -> None:
    # The widening tests above fail for the edit alone, not for the copying.
    assert (
        iam_table.compare(_copy_of_the_template(tmp_path, FINALIZE_ACTIONS, FINALIZE_ACTIONS)) == ""
    )


def test_a_dropped_condition_fails_the_comparison(tmp_path: Path) -> None:
    condition = (
        "                    kms:ViaService: !Sub secretsmanager.${AWS::Region}.amazonaws.com\n"
    )
    widened = _copy_of_the_template(
        tmp_path, condition, condition.replace("kms:ViaService", "aws:RequestedRegion")
    )
    changes = iam_table.compare(widened)
    assert any(line.startswith("-") and "kms:ViaService" in line for line in changes.splitlines())


def test_render_writes_intrinsic_functions_as_text() -> None:
    assert iam_table.render({"Ref": "TokenSecret"}) == "${TokenSecret}"
    assert iam_table.render({"Fn::GetAtt": ["OutputBucket", "Arn"]}) == "${OutputBucket.Arn}"
    assert iam_table.render({"Fn::GetAtt": "OutputBucket.Arn"}) == "${OutputBucket.Arn}"
    assert (
        iam_table.render({"Fn::Sub": ["arn:${p}:x:${name}*", {"name": {"Ref": "Fn"}}]})
        == "arn:${p}:x:${Fn}*"
    )
    assert iam_table.render({"Fn::Join": ["", ["a", {"Ref": "B"}]]}) == 'Join("", ["a", "${B}"])'


def test_the_reviewed_table_is_yaml_with_every_scenario() -> None:
    reviewed = yaml.safe_load(iam_table.EXPECTED.read_text(encoding="utf-8"))
    assert list(reviewed) == list(iam_table.SCENARIOS)
    for name in list(iam_table.SCENARIOS)[1:]:
        assert reviewed[name]["parameters"] == iam_table.SCENARIOS[name]
        # A scenario that changed no role would test nothing.
        assert reviewed[name]["roles"], name


@pytest.mark.parametrize("scenario", sorted(iam_table.SCENARIOS))
def test_each_scenario_sets_values_cloudformation_accepts(scenario: str) -> None:
    parameters = load_sam_template()["Parameters"]
    for name, value in iam_table.SCENARIOS[scenario].items():
        spec = parameters[name]
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
