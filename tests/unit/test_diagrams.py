"""The README's pictures: drawn from the ASL files and template.yaml, and kept in step with them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aistudios_local.template import load_template
from tools import diagrams

ROOT = Path(__file__).resolve().parents[2]
MACHINES = {"export": "statemachine/export.asl.json", "batch": "statemachine/batch.asl.json"}
NODE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# A node: id, then a shape holding a quoted label; an edge: ids, an arrow, a quoted label.
NODE = re.compile(r'^\s*([A-Za-z][A-Za-z0-9_]*)(\[\[|\[/|\(\(|\(\[|\[|\{)"([^"]*)"')
EDGE = re.compile(r'^\s*(\S+) (-->|-\.->)(?:\|"([^"]*)"\|)? (\S+)$')


def _asl(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads((ROOT / MACHINES[name]).read_text(encoding="utf-8"))
    return definition


def _nodes(chart: str) -> dict[str, str]:
    return {m[1]: m[3] for line in chart.splitlines() if (m := NODE.match(line))}


def _edges(chart: str) -> list[tuple[str, str, str, str]]:
    """``(source, arrow, label, target)`` of every edge."""
    return [
        (m[1], m[2], m[3] or "", m[4]) for line in chart.splitlines() if (m := EDGE.match(line))
    ]


def _all_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = dict(states)
    for state in states.values():
        inner = [state.get("ItemProcessor") or state.get("Iterator") or {}]
        inner += state.get("Branches") or []
        for nested in inner:
            found |= _all_states(nested.get("States") or {})
    return found


# --- drift --------------------------------------------------------------------------------


def test_the_readme_s_pictures_are_what_the_sources_give() -> None:
    assert diagrams.main(["--check"]) == 0, (
        f"README.md's diagrams differ from the ASL files and template.yaml: regenerate them "
        f"with `{diagrams.REGENERATE}`"
    )


def test_check_fails_on_drift_and_writing_mends_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    readme.write_text(text.replace("s_SubmitExport -->", "s_SubmitExport -.->", 1))
    assert diagrams.main(["--check", "--readme", str(readme)]) == 1
    assert diagrams.main(["--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == text
    assert diagrams.main(["--check", "--readme", str(readme)]) == 0


def test_missing_markers_are_an_error_not_a_silent_pass(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# nothing to draw into\n")
    assert diagrams.main(["--check", "--readme", str(readme)]) == 2


def test_every_state_machine_of_the_template_is_drawn() -> None:
    drawn = diagrams.pictures()
    assert set(drawn) == {"architecture", *MACHINES}


# --- the state machines -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_every_state_is_a_node_shaped_by_its_type(name: str) -> None:
    states = _all_states(_asl(name)["States"])
    chart = diagrams.state_machine(_asl(name))
    nodes = _nodes(chart)
    assert {diagrams.node_id(s) for s in states} <= set(nodes)
    shapes = {"Choice": "{", "Task": "[", "Map": "[[", "Wait": "[/", "Pass": "(["}
    opened = {m[1]: m[2] for line in chart.splitlines() if (m := NODE.match(line))}
    for state_name, state in states.items():
        me = diagrams.node_id(state_name)
        assert nodes[me].startswith(diagrams.escape(state_name))
        assert state["Type"] in nodes[me]
        if state["Type"] in shapes:
            assert opened[me] == shapes[state["Type"]], state_name


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_every_transition_is_an_edge(name: str) -> None:
    definition = _asl(name)
    chart = diagrams.state_machine(definition)
    edges = {(s, arrow, t) for s, arrow, _, t in _edges(chart)}
    wanted: set[tuple[str, str, str]] = {("start", "-->", diagrams.node_id(definition["StartAt"]))}
    for state_name, state in _all_states(definition["States"]).items():
        me = diagrams.node_id(state_name)
        solid = [state.get("Next"), state.get("Default")]
        solid += [rule["Next"] for rule in state.get("Choices") or []]
        wanted |= {(me, "-->", diagrams.node_id(t)) for t in solid if t}
        dashed = [c["Next"] for c in state.get("Catch") or []]
        nested = [state.get("ItemProcessor") or state.get("Iterator")]
        nested += state.get("Branches") or []
        dashed += [n["StartAt"] for n in nested if n]
        wanted |= {(me, "-.->", diagrams.node_id(t)) for t in dashed}
    assert edges == wanted


def test_a_choice_s_rules_and_default_are_labelled() -> None:
    chart = diagrams.state_machine(_asl("export"))
    out_of = [(label, t) for s, _, label, t in _edges(chart) if s == "s_IsExportDone"]
    assert ("otherwise", "s_RecordUnexpectedOutcome") in out_of
    assert ("job.outcome == 'done'", "s_FinalizeExport") in out_of
    # ">" spelled as an entity, so that nothing in a label can end it.
    assert ("job.outcome == 'waiting' and job.nextPollSeconds #62; 0", "s_WaitForExport") in out_of


def test_catches_are_dashed_and_name_their_errors() -> None:
    chart = diagrams.state_machine(_asl("export"))
    caught = {(label, t) for s, arrow, label, t in _edges(chart) if s == "s_SubmitExport"}
    assert ("Unauthorized", "s_AuthFailedInSubmitExport") in caught
    assert ("any error", "s_WasSubmitted") in caught
    assert all(arrow == "-.->" for s, arrow, label, _ in _edges(chart) if label == "Unauthorized")


def test_a_map_s_item_states_are_a_subgraph() -> None:
    chart = diagrams.state_machine(_asl("batch")).splitlines()
    start = next(i for i, line in enumerate(chart) if line.strip().startswith("subgraph "))
    end = next(i for i in range(start, len(chart)) if chart[i].strip() == "end")
    inside = {m[1] for line in chart[start:end] if (m := NODE.match(line))}
    item_states = _asl("batch")["States"]["ExportRows"]["ItemProcessor"]["States"]
    assert inside == {diagrams.node_id(s) for s in item_states}


def test_parallel_branches_are_subgraphs_and_odd_names_make_valid_ids() -> None:
    definition = {
        "StartAt": 'Fan "out"',
        "States": {
            'Fan "out"': {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "end", "States": {"end": {"Type": "Pass", "End": True}}},
                    {"StartAt": "a [b] {c}", "States": {"a [b] {c}": {"Type": "Succeed"}}},
                ],
                "Next": "Wait|1",
            },
            "Wait|1": {"Type": "Wait", "Seconds": 1, "Next": "Gone"},
            "Gone": {"Type": "Fail", "Error": "X"},
        },
    }
    chart = diagrams.state_machine(definition)
    assert chart.count("subgraph ") == 2
    ids = [diagrams.node_id(n) for n in ('Fan "out"', "end", "a [b] {c}", "Wait|1", "Gone")]
    assert len(set(ids)) == len(ids)
    assert all(NODE_ID.fullmatch(i) and i.lower() != "end" for i in ids)
    labels = _nodes(chart)
    assert labels[ids[0]].startswith("Fan #34;out#34;")
    assert labels[ids[2]].startswith("a #91;b#93; #123;c#125;")
    # Inside a quoted label, nothing but the closing quote ends it.
    for label in [*labels.values(), *(e[2] for e in _edges(chart))]:
        text = label.replace("<br/><i>", "").replace("</i>", "")
        assert not set(text) & set('"[]{}()|<>'), label


def test_conditions_are_short_and_readable() -> None:
    assert diagrams.condition({"Variable": "$.a", "BooleanEquals": True}) == "a == true"
    assert diagrams.condition({"Variable": "$.a", "IsPresent": False}) == "not (a is present)"
    assert (
        diagrams.condition({"Or": [{"Variable": "$.n", "NumericLessThanEqualsPath": "$.m"}]})
        == "n <= m"
    )
    assert diagrams.condition({"Not": {"Variable": "$.s", "StringMatches": "x*"}}) == (
        "not (s matches 'x*')"
    )


def test_every_edge_label_fits() -> None:
    for name in MACHINES:
        for _, _, label, _ in _edges(diagrams.state_machine(_asl(name))):
            assert len(label) <= diagrams.MAX_LABEL * 2  # entities may lengthen it a little


# --- the architecture ---------------------------------------------------------------------


def test_the_architecture_has_each_kind_of_resource_and_how_they_connect() -> None:
    template = load_template(ROOT / "template.yaml")
    chart = diagrams.architecture(template)
    nodes = _nodes(chart)
    for logical, resource in template["Resources"].items():
        kind = resource["Type"]
        if kind in (
            "AWS::Serverless::Function",
            "AWS::Serverless::StateMachine",
            "AWS::S3::Bucket",
            "AWS::DynamoDB::Table",
            "AWS::SecretsManager::Secret",
            "AWS::Events::Rule",
            "AWS::Events::EventBus",
            "AWS::SQS::Queue",
            "AWS::Scheduler::Schedule",
            "AWS::Serverless::Api",
        ):
            assert diagrams.node_id(logical, "r") in nodes, logical
        if kind in ("AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::Lambda::Permission"):
            assert diagrams.node_id(logical, "r") not in nodes, logical
    edges = {(s, t) for s, _, _, t in _edges(chart)}
    # The three ways in reach the state machines.
    assert ("r_ExportApi", "r_ApiFunction") in edges  # the function's Api events, turned round
    assert ("r_ApiFunction", "r_ExportStateMachine") in edges
    assert ("r_OutputBucket", "r_ManifestUploadedRule") in edges  # its EventPattern, turned round
    assert ("r_ManifestUploadedRule", "r_BatchStateMachine") in edges
    assert ("r_BatchSchedule", "r_BatchStateMachine") in edges
    assert ("r_BatchStateMachine", "r_ExportStateMachine") in edges
    assert ("r_ExportStateMachine", "r_SubmitExportFunction") in edges
    assert ("r_ExportStateMachine", "r_RenderSlotReleaseRule") in edges
    assert ("r_RenderSlotReleaseRule", "r_RenderSlotFunction") in edges
    assert ("r_ManifestUploadedRule", "r_BatchDeadLetterQueue") in edges
    assert ("g_functions", "x_ApiBaseUrl") in edges  # Globals: every function's AI Studios URL


def test_the_architecture_follows_the_template() -> None:
    template = load_template(ROOT / "template.yaml")
    template["Resources"]["ExtraQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"RedriveAllowPolicy": {"sourceQueueArns": [{"Ref": "OutputBucket"}]}},
    }
    del template["Resources"]["BatchSchedule"]
    chart = diagrams.architecture(template)
    assert "r_ExtraQueue" in _nodes(chart) and "r_BatchSchedule" not in chart
    assert ("r_ExtraQueue", "r_OutputBucket") in {(s, t) for s, _, _, t in _edges(chart)}


def test_references_are_found_in_every_intrinsic_form() -> None:
    node = {
        "a": {"Ref": "A"},
        "b": {"Fn::GetAtt": ["B", "Arn"]},
        "c": {"Fn::GetAtt": "C.Arn"},
        "d": {"Fn::Sub": "x${D.Name}y${AWS::Region}"},
        "e": {"Fn::Sub": ["${v}", {"v": {"Ref": "E"}}]},
    }
    assert set(diagrams.references(node)) == {"A", "B", "C", "D", "E"}
