"""template.yaml and its state machine definitions, read the way the local stack reads them.

Helpers only (``conftest.py`` makes fixtures of them). The template is parsed with the local
stack's loader, which turns the short tags (``!Ref``, ``!Sub``, ...) into their long form
(``{"Ref": ...}``, ``{"Fn::Sub": ...}``). A definition is its ASL file with the template's
``DefinitionSubstitutions`` resolved against the parameters' defaults and the local stack's
names for the resources: what the tests check is what the local stack runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from aistudios_local.resources import _identify, resolver_for
from aistudios_local.template import Resolver, load_template
from tests.unit._fixtures import ROOT

TEMPLATE = ROOT / "template.yaml"
FUNCTION = "AWS::Serverless::Function"
STATE_MACHINE = "AWS::Serverless::StateMachine"
SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")
"""A ``${Name}`` or ``${Name.Attribute}`` of ``Fn::Sub`` (``${!Literal}`` is not one)."""
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")
"""A ``${Name}`` DefinitionSubstitution placeholder of an ASL file."""
S3_READ = re.compile(r"s3:(Get|List)\w*")


@cache
def _loaded() -> dict[str, Any]:
    return load_template(TEMPLATE)


def template() -> dict[str, Any]:
    """Return the parsed template (one copy per session: do not change it)."""
    return _loaded()


def of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The resources of one type, by logical id."""
    return {name: res for name, res in resources.items() if res["Type"] == kind}


def props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    """A resource's Properties."""
    found: dict[str, Any] = resources[name].get("Properties", {})
    return found


def walk(node: Any) -> Iterator[Any]:
    """Yield every node of a parsed template fragment, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else a list of it (IAM's Action and Resource take both)."""
    return value if isinstance(value, list) else [value]


def references(node: Any) -> set[str]:
    """Names referenced by Ref / GetAtt / Sub anywhere in ``node``."""
    names: set[str] = set()
    for item in walk(node):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("Ref"), str):
            names.add(item["Ref"])
        if "Fn::GetAtt" in item:
            names.add(item["Fn::GetAtt"][0])
        if "Fn::Sub" in item:
            text = as_list(item["Fn::Sub"])[0]
            names |= {v.split(".")[0] for v in SUB_VARIABLE.findall(text)}
    return names


def statements(policies: list[Any]) -> Iterator[dict[str, Any]]:
    """The inline IAM statements of a SAM or IAM ``Policies`` list (not SAM policy templates)."""
    for policy in policies:
        if isinstance(policy, dict):
            document = policy.get("PolicyDocument", policy)
            if isinstance(document, dict) and "Statement" in document:
                yield from document["Statement"]


def principal_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(logical id, statement)`` of every identity policy: functions, state machines, roles."""
    for name, resource in resources.items():
        for statement in statements(resource.get("Properties", {}).get("Policies", [])):
            yield name, statement


def actions(statement: dict[str, Any]) -> set[str]:
    """A statement's actions."""
    return set(as_list(statement["Action"]))


def sub_text(value: Any) -> str | None:
    """The text of a ``Fn::Sub`` (either form), or None if ``value`` is not one."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        text: str = as_list(value["Fn::Sub"])[0]
        return text
    return None


def s3_writes(statement: dict[str, Any]) -> set[str]:
    """The S3 actions of a statement that write or delete."""
    return {a for a in actions(statement) if a.startswith("s3:") and not S3_READ.match(a)}


def object_prefix(resource: Any, template: dict[str, Any]) -> str | None:
    """The key prefix parameter P of an object ARN ``${Bucket.Arn}/${P}*``, else None."""
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}/\$\{(\w+)\}\*", sub_text(resource) or "")
    if not match or match[1] not in of_type(template["Resources"], "AWS::S3::Bucket"):
        return None
    return match[2] if match[2] in template["Parameters"] else None


@cache
def resolver() -> Resolver:
    """The local stack's Resolver of the template's parameter defaults.

    It names the resources (ARNs, names) and pseudo parameters as the local stack does, so
    that no test keeps a copy of that naming.
    """
    default_api = str(_loaded()["Parameters"]["ApiBaseUrl"]["Default"])
    resolved = resolver_for(_loaded(), default_api, {})
    for logical, resource in _loaded()["Resources"].items():
        _identify(resolved, logical, resource["Type"])
    return resolved


def machine_ids() -> list[str]:
    """The logical ids of the template's state machines."""
    return sorted(of_type(_loaded()["Resources"], STATE_MACHINE))


def definition_path(machine: str) -> Path:
    """The ASL file of a state machine."""
    return ROOT / str(props(_loaded()["Resources"], machine)["DefinitionUri"])


def substitutions(machine: str) -> dict[str, str]:
    """A state machine's DefinitionSubstitutions, resolved."""
    raw = props(_loaded()["Resources"], machine).get("DefinitionSubstitutions", {})
    return {name: str(value) for name, value in resolver().resolve(raw).items()}


def substituted(machine: str) -> str:
    """A state machine's ASL text with its DefinitionSubstitutions resolved.

    A placeholder without a substitution is left as it is, for the tests to find.
    """
    values = substitutions(machine)
    text = definition_path(machine).read_text(encoding="utf-8")
    return PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), text)


def definition(machine: str) -> dict[str, Any]:
    """A state machine's definition as it runs: parsed, substitutions resolved."""
    value: dict[str, Any] = json.loads(substituted(machine))
    return value


def raw_definition(machine: str) -> dict[str, Any]:
    """A state machine's definition before substitution (placeholders sit in JSON strings)."""
    value: dict[str, Any] = json.loads(definition_path(machine).read_text(encoding="utf-8"))
    return value
