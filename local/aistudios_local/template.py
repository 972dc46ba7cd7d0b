"""Read ``template.yaml`` and resolve the intrinsic functions the local stack needs.

The local stack never keeps its own copy of a handler, a variable or a substitution: it asks
this module. Supported: ``Ref`` (parameters, pseudo parameters, resources), ``Fn::GetAtt``,
``Fn::Sub`` (both forms), ``Fn::If``/``Fn::Equals``/``Fn::Not``/``Fn::And``/``Fn::Or`` with
``Conditions``, ``Fn::Join`` and ``Fn::Select``. Anything else raises, naming the function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
"""The repository: template.yaml, functions/ and statemachine/ are read from here."""

_SHORT_TAGS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Base64",
    "Cidr",
    "Length",
    "ToJsonString",
)


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation's short tags into their long form."""


def _tag_constructor(tag: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {key: value}

    return construct


for _tag in _SHORT_TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _tag_constructor(_tag))


def parameter_pattern(name: str, path: Path | None = None) -> re.Pattern[str]:
    """Return the ``AllowedPattern`` of a template parameter, compiled.

    The command line checks its arguments against the very rule CloudFormation applies.
    """
    parameters = load_template(path or ROOT / "template.yaml")["Parameters"]
    return re.compile(str(parameters[name]["AllowedPattern"]))


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template in YAML (short or long intrinsic forms)."""
    with path.open(encoding="utf-8") as f:
        document = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


@dataclass
class Resolver:
    """Evaluates intrinsic functions against parameter values and resource identities.

    Parameters
    ----------
    template
        The parsed template.
    parameters
        Parameter overrides; the template's defaults fill the rest.
    refs
        Logical id → what ``Ref`` returns for that resource.
    attributes
        ``(logical id, attribute)`` → what ``Fn::GetAtt`` returns.
    pseudo
        ``AWS::Region`` and the like.
    """

    template: Mapping[str, Any]
    parameters: Mapping[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    pseudo: Mapping[str, str] = field(default_factory=dict)

    def parameter_values(self) -> dict[str, str]:
        """Return every parameter's value: the override, else the template's default."""
        values: dict[str, str] = {}
        for name, spec in self.template.get("Parameters", {}).items():
            if name in self.parameters:
                values[name] = str(self.parameters[name])
            elif "Default" in spec:
                values[name] = str(spec["Default"])
            else:
                raise ValueError(f"template parameter {name} has no default and no value")
        unknown = set(self.parameters) - set(values)
        if unknown:
            raise ValueError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
        return values

    def condition(self, name: str) -> bool:
        """Evaluate the template condition ``name``."""
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, node: Any) -> Any:
        """Return ``node`` with every intrinsic function evaluated."""
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self._ref(str(arg))
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        return {k: self.resolve(v) for k, v in node.items()}

    def _ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        params = self.parameter_values()
        if name in params:
            return params[name]
        if name in self.refs:
            return self.refs[name]
        raise ValueError(f"Ref to {name}, which the local stack does not know")

    def _function(self, name: str, arg: Any) -> Any:
        if name == "GetAtt":
            logical, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            try:
                return self.attributes[(logical, attribute)]
            except KeyError:
                raise ValueError(f"GetAtt {logical}.{attribute} is not known locally") from None
        if name == "Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return re.sub(
                r"\$\{([^}!][^}]*)\}",
                lambda m: str(extra[m[1]]) if m[1] in extra else self._sub_name(m[1]),
                text,
            ).replace("${!", "${")
        if name == "If":
            condition, when_true, when_false = arg
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        if name == "Not":
            return not self.resolve(arg[0])
        if name == "And":
            return all(self.resolve(item) for item in arg)
        if name == "Or":
            return any(self.resolve(item) for item in arg)
        if name == "Join":
            separator, items = arg
            return str(separator).join(str(i) for i in self.resolve(items))
        if name == "Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        raise ValueError(f"Fn::{name} is not supported by the local stack")

    def _sub_name(self, name: str) -> str:
        if "." in name:
            logical, attribute = name.split(".", 1)
            return str(self._function("GetAtt", [logical, attribute]))
        return self._ref(name)
