"""Pictures of the stack, drawn from its sources: Mermaid flowcharts GitHub renders in the README.

- one flowchart per state machine of ``template.yaml`` (its ``DefinitionUri`` ASL file): every
  state a node, shaped by its type; an edge for every ``Next``, Choice rule (labelled with a
  short form of its condition), ``Default`` ("otherwise") and ``Catch`` (dashed, labelled with
  the error names); a Map's ``ItemProcessor`` and each Parallel branch as a subgraph; states
  with a ``Retry`` say so in their label;
- one architecture flowchart of ``template.yaml``: its resources grouped by kind (triggers,
  state machines, functions, storage and secrets, events, queues), an edge wherever one
  resource refers to another (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``), turned round where the
  reference names what triggers the resource (a function's ``Events``, a rule's
  ``EventPattern``); what ``Globals`` give every function is an edge from the functions'
  group, and AI Studios (the ``ApiBaseUrl`` parameter) is a node of its own.

They live in README.md between ``<!-- diagrams:NAME:start -->`` and ``<!-- diagrams:NAME:end -->``
markers. Regenerate them after changing an ASL file or the template, and check them (what
``tests/unit/test_diagrams.py`` does)::

    python -m tools.diagrams          # rewrite the README's diagrams
    python -m tools.diagrams --check  # exit 1 when they differ from the sources
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aistudios_local.template import load_template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
README = ROOT / "README.md"
REGENERATE = "python -m tools.diagrams"
ARCHITECTURE = "architecture"
"""The name of the architecture picture's block; a state machine's is its ASL file's stem."""
MAX_LABEL = 60
"""Longer edge labels are cut (with an ellipsis): a picture, not a copy of the ASL."""

_ESCAPED = frozenset('"#&<>[]{}()|`;')
_STATE_SHAPES = {
    "Task": ('["', '"]'),
    "Choice": ('{"', '"}'),
    "Wait": ('[/"', '"/]'),
    "Pass": ('(["', '"])'),
    "Succeed": ('(("', '"))'),
    "Fail": ('(("', '"))'),
    "Map": ('[["', '"]]'),
    "Parallel": ('[["', '"]]'),
}
_CLASSES = (
    "classDef succeed fill:#d4f7d4,stroke:#2a7a2a",
    "classDef fail fill:#fadada,stroke:#b22222",
    "classDef choice fill:#fff5cc,stroke:#b8860b",
)
_COMPARATORS = {
    "Equals": "==",
    "LessThan": "<",
    "GreaterThan": ">",
    "LessThanEquals": "<=",
    "GreaterThanEquals": ">=",
    "Matches": "matches",
}
_TESTS = {
    "IsPresent": "is present",
    "IsNull": "is null",
    "IsString": "is a string",
    "IsNumeric": "is a number",
    "IsBoolean": "is a boolean",
    "IsTimestamp": "is a timestamp",
}
# What a resource type is drawn as: (group, kind). Types not listed are left out (roles,
# policies, permissions, log groups, layers, API keys: how it is wired, not what it is).
_KINDS: dict[str, tuple[str, str]] = {
    "AWS::Serverless::Api": ("triggers", "API Gateway REST API"),
    "AWS::ApiGateway::RestApi": ("triggers", "API Gateway REST API"),
    "AWS::Serverless::HttpApi": ("triggers", "API Gateway HTTP API"),
    "AWS::Scheduler::Schedule": ("triggers", "EventBridge Scheduler schedule"),
    "AWS::SecretsManager::RotationSchedule": ("triggers", "Secrets Manager rotation"),
    "AWS::Serverless::StateMachine": ("machines", "Step Functions state machine"),
    "AWS::StepFunctions::StateMachine": ("machines", "Step Functions state machine"),
    "AWS::Serverless::Function": ("functions", "Lambda function"),
    "AWS::Lambda::Function": ("functions", "Lambda function"),
    "AWS::S3::Bucket": ("data", "S3 bucket"),
    "AWS::DynamoDB::Table": ("data", "DynamoDB table"),
    "AWS::SecretsManager::Secret": ("data", "Secrets Manager secret"),
    "AWS::Events::EventBus": ("events", "EventBridge bus"),
    "AWS::Events::Rule": ("events", "EventBridge rule"),
    "AWS::SQS::Queue": ("queues", "SQS queue"),
    "AWS::SNS::Topic": ("queues", "SNS topic"),
}
_GROUPS = {
    "triggers": "Ways in",
    "machines": "State machines",
    "functions": "Functions",
    "data": "Storage and secrets",
    "events": "Events",
    "queues": "Queues and topics",
}
_EXTERNAL = {"ApiBaseUrl": "AI Studios API"}
"""Parameters that stand for a service outside the stack, drawn as a node of their own."""
_TRIGGERING = frozenset({"Events", "EventPattern"})
"""Properties whose references name what triggers the resource (edges turned round)."""


def escape(text: str) -> str:
    """Return ``text`` as a quoted Mermaid label's content: entity codes for what would break it.

    Examples
    --------
    >>> escape('a "b" [c] <d>')
    'a #34;b#34; #91;c#93; #60;d#62;'
    """
    return "".join(f"#{ord(c)};" if c in _ESCAPED else c for c in " ".join(text.split()))


def node_id(name: str, prefix: str = "s") -> str:
    """Return a Mermaid node id for a state (or, with another ``prefix``, anything else).

    Letters, digits and ``_`` only, never a keyword (every id has a prefix), and distinct for
    distinct names: each character that is not an ASCII letter or digit is spelled out in hex.
    State names are unique in a whole state machine (Step Functions requires it), nested
    states included, so a state's name is enough.

    Examples
    --------
    >>> node_id("Wait for it"), node_id("end"), node_id("a_b"), node_id("triggers", "g")
    ('s_Wait_20_for_20_it', 's_end', 's_a_5f_b', 'g_triggers')
    """
    return (
        prefix + "_" + "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):x}_" for c in name)
    )


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def _path(value: Any) -> str:
    text = str(value)
    return text[2:] if text.startswith("$.") else text


def condition(rule: Mapping[str, Any]) -> str:
    """Return a short form of a Choice rule's condition (JSONPath Choice rules).

    Examples
    --------
    >>> condition({"Variable": "$.job.outcome", "StringEquals": "done"})
    "job.outcome == 'done'"
    >>> condition({"And": [{"Variable": "$.n", "NumericGreaterThan": 0},
    ...                    {"Not": {"Variable": "$.x", "IsPresent": True}}]})
    'n > 0 and not (x is present)'
    """
    for word, joiner in (("And", " and "), ("Or", " or ")):
        if word in rule:
            return joiner.join(condition(r) for r in rule[word])
    if "Not" in rule:
        return f"not ({condition(rule['Not'])})"
    variable = _path(rule.get("Variable", "?"))
    for key, value in rule.items():
        if key in ("Variable", "Next"):
            continue
        if key in _TESTS:
            return f"{variable} {_TESTS[key]}" if value else f"not ({variable} {_TESTS[key]})"
        compared = key.removesuffix("Path")
        # Longest first: "LessThanEquals" is not "Equals".
        for suffix, symbol in sorted(_COMPARATORS.items(), key=lambda item: -len(item[0])):
            if compared.endswith(suffix) and compared != suffix:
                if key.endswith("Path"):
                    shown = _path(value)
                elif isinstance(value, str):
                    shown = f"'{value}'"
                else:
                    shown = json.dumps(value)
                return f"{variable} {symbol} {shown}"
    return variable


def _errors(names: Sequence[str]) -> str:
    return ", ".join("any error" if n == "States.ALL" else n for n in names)


@dataclass
class _Flowchart:
    """Lines of a flowchart being drawn, and the classes of its nodes."""

    lines: list[str] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)

    def edge(self, source: str, target: str, label: str = "", *, dashed: bool = False) -> None:
        arrow = "-.->" if dashed else "-->"
        shown = f'|"{escape(_cut(label))}"|' if label else ""
        self.lines.append(f"    {source} {arrow}{shown} {target}")

    def text(self) -> str:
        classes = [
            f"    class {','.join(ids)} {name}" for name, ids in sorted(self.classes.items())
        ]
        defined = [f"    {c}" for c in _CLASSES if c.split()[1] in self.classes]
        return "\n".join(["flowchart TD", *self.lines, *defined, *classes])


def state_machine(definition: Mapping[str, Any]) -> str:
    """Return the Mermaid flowchart of a state machine's ASL definition (JSONPath)."""
    chart = _Flowchart()
    chart.lines.append('    start(("start"))')
    chart.edge("start", node_id(str(definition["StartAt"])))
    _states(chart, definition["States"])
    return chart.text()


def _states(chart: _Flowchart, states: Mapping[str, Any]) -> None:
    # Nodes (and nested subgraphs) first, then the edges between them.
    for name, state in states.items():
        _node(chart, name, state)
    for name, state in states.items():
        for target, label, dashed in _transitions(state):
            chart.edge(node_id(name), node_id(target), label, dashed=dashed)


def _node(chart: _Flowchart, name: str, state: Mapping[str, Any]) -> None:
    kind = str(state.get("Type", "?"))
    me = node_id(name)
    opening, closing = _STATE_SHAPES.get(kind, ('["', '"]'))
    detail = kind + (", retries" if state.get("Retry") else "")
    chart.lines.append(f"    {me}{opening}{escape(name)}<br/><i>{escape(detail)}</i>{closing}")
    if kind in ("Succeed", "Fail", "Choice"):
        chart.classes.setdefault(kind.lower(), []).append(me)
    nested: list[tuple[str, str, Mapping[str, Any]]] = []
    if kind == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator") or {}
        nested.append((f"{name}: each item", "each item", processor))
    for number, branch in enumerate(state.get("Branches") or [], start=1):
        nested.append((f"{name}: branch {number}", f"branch {number}", branch))
    for number, (title, label, inner) in enumerate(nested, start=1):
        chart.lines.append(f'    subgraph {node_id(f"{name} {number}", "g")}["{escape(title)}"]')
        _states(chart, inner.get("States") or {})
        chart.lines.append("    end")
        chart.edge(me, node_id(str(inner["StartAt"])), label, dashed=True)


def _transitions(state: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """Yield ``(next state, label, dashed)`` for every way out of ``state``."""
    if state.get("Next"):
        yield str(state["Next"]), "", False
    for rule in state.get("Choices") or []:
        yield str(rule["Next"]), condition(rule), False
    if state.get("Default"):
        yield str(state["Default"]), "otherwise", False
    for catcher in state.get("Catch") or []:
        yield str(catcher["Next"]), _errors(catcher.get("ErrorEquals") or []), True


# --- the architecture -------------------------------------------------------------------


def references(node: Any) -> Iterator[str]:
    """Yield the logical ids and parameters ``node`` refers to (``Ref``, ``GetAtt``, ``Sub``).

    Examples
    --------
    >>> sorted(set(references({"Fn::Sub": "${A.Arn}/x/${B}", "k": [{"Ref": "C"}]})))
    ['A', 'B', 'C']
    """
    if isinstance(node, list):
        for item in node:
            yield from references(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            yield value
        elif key == "Fn::GetAtt":
            target = value[0] if isinstance(value, list) else str(value).split(".", 1)[0]
            yield str(target)
        elif key == "Fn::Sub":
            text, variables = (value[0], value[1]) if isinstance(value, list) else (value, {})
            for name in re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}", str(text)):
                if name not in variables:
                    yield name
            yield from references(variables)
        else:
            yield from references(value)


def architecture(template: Mapping[str, Any]) -> str:
    """Return the Mermaid flowchart of a template's resources and how they refer to each other."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    parameters: Mapping[str, Any] = template.get("Parameters") or {}
    drawn = {name: _KINDS[r["Type"]] for name, r in resources.items() if r.get("Type") in _KINDS}
    externals = {name: label for name, label in _EXTERNAL.items() if name in parameters}
    chart = _Flowchart(lines=[])
    for group, title in _GROUPS.items():
        members = [name for name, (g, _) in drawn.items() if g == group]
        if not members:
            continue
        chart.lines.append(f'    subgraph {node_id(group, "g")}["{escape(title)}"]')
        for name in members:
            kind = drawn[name][1]
            condition_name = resources[name].get("Condition")
            detail = kind + (f", if {condition_name}" if condition_name else "")
            chart.lines.append(
                f'    {node_id(name, "r")}["{escape(name)}<br/><i>{escape(detail)}</i>"]'
            )
        chart.lines.append("    end")
    for name, label in externals.items():
        chart.lines.append(f'    {node_id(name, "x")}[/"{escape(label)}"/]')
    edges: dict[tuple[str, str], None] = {}
    for name in drawn:
        for key, value in (resources[name].get("Properties") or {}).items():
            for source, target in _edges_of(name, key, value):
                if source != target and {source, target} <= {*drawn, *externals}:
                    edges[(source, target)] = None
    prefixes = {**dict.fromkeys(drawn, "r"), **dict.fromkeys(externals, "x")}
    for source, target in edges:
        chart.edge(node_id(source, prefixes[source]), node_id(target, prefixes[target]))
    # What Globals give every function, from the functions' group as a whole.
    if any(group == "functions" for group, _ in drawn.values()):
        shared = (template.get("Globals") or {}).get("Function") or {}
        for target in dict.fromkeys(references(shared)):
            if target in prefixes:
                chart.edge(node_id("functions", "g"), node_id(target, prefixes[target]), "all")
    return chart.text().replace("flowchart TD", "flowchart LR", 1)


def _edges_of(name: str, key: str, value: Any) -> Iterator[tuple[str, str]]:
    intrinsic = isinstance(value, dict) and any(k == "Ref" or k.startswith("Fn::") for k in value)
    if isinstance(value, dict) and not intrinsic and key not in _TRIGGERING:
        for inner_key, inner in value.items():
            yield from _edges_of(name, inner_key, inner)
        return
    for target in references(value):
        yield (target, name) if key in _TRIGGERING else (name, target)


# --- the README's blocks ------------------------------------------------------------------


def pictures(template_path: Path = TEMPLATE) -> dict[str, str]:
    """Return every picture, by block name: the architecture, then each state machine."""
    template = load_template(template_path)
    drawn = {ARCHITECTURE: architecture(template)}
    for resource in (template.get("Resources") or {}).values():
        uri = (resource.get("Properties") or {}).get("DefinitionUri")
        if resource.get("Type") in _KINDS and isinstance(uri, str) and uri.endswith(".json"):
            path = template_path.parent / uri
            name = path.name.removesuffix(".json").removesuffix(".asl")
            drawn[name] = state_machine(json.loads(path.read_text(encoding="utf-8")))
    return drawn


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- diagrams:{name}:start -->", f"<!-- diagrams:{name}:end -->"


def render_into(document: str, drawn: Mapping[str, str]) -> str:
    """Return ``document`` with each block between its markers replaced by its picture.

    Raises
    ------
    ValueError
        When a block's markers are missing, repeated or out of order.
    """
    for name, chart in drawn.items():
        start, end = _markers(name)
        if document.count(start) != 1 or document.count(end) != 1:
            raise ValueError(f"README needs exactly one {start} and one {end}")
        head, rest = document.split(start)
        if end not in rest:
            raise ValueError(f"{end} comes before {start}")
        _, tail = rest.split(end)
        document = f"{head}{start}\n```mermaid\n{chart}\n```\n{end}{tail}"
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the README's pictures, or (``--check``) fail when they differ from the sources."""
    parser = argparse.ArgumentParser(prog="python -m tools.diagrams", description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on drift")
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    try:
        wanted = render_into(current, pictures())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if wanted == current:
        return 0
    if args.check:
        print(
            f"{args.readme.name}'s diagrams differ from the ASL files and template.yaml: "
            f"regenerate them with `{REGENERATE}`",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(wanted, encoding="utf-8")
    print(f"wrote the diagrams into {args.readme.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
