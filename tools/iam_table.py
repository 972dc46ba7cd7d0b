"""The IAM table: what every role of the deployed stack may do, as a file people can review.

Each scenario (a set of parameter values) is transformed offline (:mod:`tools.transform`);
every ``AWS::IAM::Role`` of the result becomes a list of grants (actions, resources, and
condition), with the template's conditions evaluated for that scenario and intrinsic
functions rendered as ``${Name}`` / ``${Name.Attribute}`` text. ``tests/iam_expected.yaml``
holds the reviewed table; ``tests/unit/test_iam.py`` fails when the template grants anything
else. After a deliberate change of permissions, regenerate it and review the diff::

    python -m tools.iam_table --write
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from aistudios_local.template import Resolver
from tools.transform import ROOT, load_sam_template, transform_template

EXPECTED = ROOT / "tests" / "iam_expected.yaml"
REGENERATE = "python -m tools.iam_table --write"
# Every switch of the template that changes a role, with values that turn it on; the first
# is the full table, the others record how they differ from it.
SCENARIOS: dict[str, dict[str, str]] = {
    "defaults": {},
    "credentials-kms-key": {
        "CredentialsKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/"
        "1234abcd-12ab-34cd-56ef-1234567890ab",
    },
    "existing-credentials-api-keys-no-logging-role": {
        "CredentialsSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:creds-AbCdEf",
        "ApiAuth": "API_KEY",
        "ApiGatewayLoggingRole": "false",
    },
}
_NO_VALUE = object()

Grant = dict[str, Any]


def render(node: Any) -> Any:
    """Render intrinsic functions as readable text (``{"Ref": "X"}`` becomes ``${X}``)."""
    if isinstance(node, list):
        return [render(item) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return f"${{{arg}}}"
        if key == "Fn::GetAtt":
            return "${" + (".".join(arg) if isinstance(arg, list) else str(arg)) + "}"
        if key == "Fn::Sub":
            if isinstance(arg, str):
                return arg
            text, variables = arg
            for name, value in variables.items():
                text = text.replace(f"${{{name}}}", str(render(value)))
            return text
        if key.startswith("Fn::"):
            return f"{key[4:]}({', '.join(json.dumps(render(a)) for a in _as_list(arg))})"
    return {key: render(value) for key, value in node.items()}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def decide(node: Any, resolver: Resolver) -> Any:
    """Evaluate every ``Fn::If`` of ``node`` for the scenario; drop ``AWS::NoValue``."""
    if isinstance(node, list):
        kept = [decide(item, resolver) for item in node]
        return [item for item in kept if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if node == {"Ref": "AWS::NoValue"}:
        return _NO_VALUE
    if len(node) == 1 and "Fn::If" in node:
        condition, when_true, when_false = node["Fn::If"]
        return decide(when_true if resolver.condition(condition) else when_false, resolver)
    kept_items = {key: decide(value, resolver) for key, value in node.items()}
    return {key: value for key, value in kept_items.items() if value is not _NO_VALUE}


def role_grants(role: Mapping[str, Any]) -> list[Grant]:
    """Return a role's grants: one per statement of its inline and managed policies.

    Parameters
    ----------
    role
        An ``AWS::IAM::Role`` resource whose conditions are already decided.

    Returns
    -------
    list of dict
        ``{"actions", "resources"}`` (and ``"condition"`` when the statement has one), with
        ``"effect"`` only for statements that do not allow; an AWS managed policy is one grant
        ``{"managed_policy": ARN}`` (its content is AWS's, not the template's).
    """
    properties = role.get("Properties", {})
    grants: list[Grant] = []
    for policy in properties.get("Policies", []):
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            grant: Grant = {
                "actions": sorted(render(_as_list(statement.get("Action", [])))),
                "resources": sorted(render(_as_list(statement.get("Resource", [])))),
            }
            if "NotAction" in statement or "NotResource" in statement:
                grant["not"] = render(
                    {k: statement[k] for k in ("NotAction", "NotResource") if k in statement}
                )
            if "Condition" in statement:
                grant["condition"] = render(statement["Condition"])
            if statement.get("Effect", "Allow") != "Allow":
                grant["effect"] = statement["Effect"]
            grants.append(grant)
    grants.extend(
        {"managed_policy": render(arn)} for arn in properties.get("ManagedPolicyArns", [])
    )
    return sorted(grants, key=lambda g: json.dumps(g, sort_keys=True))


def iam_table(transformed: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """Return role name → grants for every role the scenario ``parameters`` deploys.

    Parameters
    ----------
    transformed
        The CloudFormation template (:func:`tools.transform.transform_template`).
    parameters
        The scenario's parameter values (the template's defaults fill the rest).
    """
    resolver = Resolver(transformed, parameters=parameters)
    table: dict[str, Any] = {}
    for name, resource in sorted(transformed["Resources"].items()):
        if resource["Type"] != "AWS::IAM::Role":
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        table[name] = role_grants(decide(resource, resolver))
    return table


def build_tables(template_path: Path | None = None) -> dict[str, Any]:
    """Return the IAM tables of :data:`SCENARIOS` for ``template_path``.

    Returns
    -------
    dict
        ``{"defaults": table}``, then per other scenario its ``parameters`` and the ``roles``
        whose grants differ from the defaults (``absent`` for a role it does not deploy), so
        that each switch's effect reads on its own.
    """
    template = load_sam_template(template_path) if template_path else load_sam_template()
    tables = {
        name: iam_table(transform_template(template, parameters), parameters)
        for name, parameters in SCENARIOS.items()
    }
    defaults = tables.pop("defaults")
    result: dict[str, Any] = {"defaults": defaults}
    for name, table in tables.items():
        changed = {
            role: table.get(role, "absent")
            for role in sorted(set(defaults) | set(table))
            if table.get(role) != defaults.get(role)
        }
        result[name] = {"parameters": SCENARIOS[name], "roles": changed}
    return result


def dump(tables: Mapping[str, Any]) -> str:
    """Serialise the tables as the YAML of :data:`EXPECTED` (with its header)."""
    header = (
        "# What every IAM role of the stack may do, per scenario of parameter values.\n"
        f"# Generated by `{REGENERATE}` from template.yaml; review its diff like code.\n"
    )
    body = yaml.safe_dump(dict(tables), sort_keys=False, width=100, default_flow_style=False)
    return header + body


def diff(expected: str, actual: str) -> str:
    """Return the unified diff from the reviewed table to the template's, role by role.

    Each changed role gets its own hunk, headed ``scenario / role``, so a failure names what
    changed; the whole text is diffed when the reviewed file is no longer a table.
    """
    if expected == actual:
        return ""
    try:
        before, after = yaml.safe_load(expected), yaml.safe_load(actual)
        sections = _roles(before), _roles(after)
    except (yaml.YAMLError, AttributeError, KeyError, TypeError):
        return _unified(expected, actual, "tests/iam_expected.yaml (reviewed)", "template.yaml")
    hunks = [
        _unified(_yaml(sections[0].get(key)), _yaml(sections[1].get(key)), f"{key} (reviewed)", key)
        for key in sorted(sections[0].keys() | sections[1].keys())
        if sections[0].get(key) != sections[1].get(key)
    ]
    # Only the header changed: show the text.
    return "".join(hunks) or _unified(expected, actual, "reviewed", "now")


def _roles(tables: dict[str, Any]) -> dict[str, Any]:
    """Flatten a dumped table into ``"scenario / role"`` → grants."""
    flat = {f"defaults / {role}": grants for role, grants in tables["defaults"].items()}
    for scenario, section in tables.items():
        if scenario != "defaults":
            flat[f"{scenario} / parameters"] = section["parameters"]
            flat |= {f"{scenario} / {role}": grants for role, grants in section["roles"].items()}
    return flat


def _yaml(node: Any) -> str:
    return "" if node is None else yaml.safe_dump(node, sort_keys=False, width=100)


def _unified(before: str, after: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
        )
    )


def compare(template_path: Path | None = None, expected_path: Path = EXPECTED) -> str:
    """Return the diff from the reviewed table to the template's ("" when they match)."""
    expected = expected_path.read_text(encoding="utf-8") if expected_path.exists() else ""
    return diff(expected, dump(build_tables(template_path)))


def main(argv: Sequence[str] | None = None) -> int:
    """Check or (``--write``) regenerate the reviewed IAM table."""
    parser = argparse.ArgumentParser(prog="python -m tools.iam_table", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite {EXPECTED.name}")
    args = parser.parse_args(argv)
    if args.write:
        EXPECTED.write_text(dump(build_tables()), encoding="utf-8")
        return 0
    changes = compare()
    sys.stdout.write(changes or "the IAM table matches the template\n")
    return 1 if changes else 0


if __name__ == "__main__":
    raise SystemExit(main())
