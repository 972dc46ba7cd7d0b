"""The sample events of ``tests/events``: one per function at least, each shaped as its trigger
sends it, and each loaded by a test (so that ``sam local invoke -e`` runs what the tests run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.events import EVENTS, load_event
from tests.unit import _asl, _template

TESTS = Path(__file__).resolve().parents[1]
FUNCTION = "AWS::Serverless::Function"
ARN_PLACEHOLDER = re.compile(r"\$\{(\w+)Arn\}")


def functions() -> dict[str, str]:
    """Each function's logical id and the folder its code is in (its events' name prefix)."""
    resources = _template.template()["Resources"]
    return {
        name: Path(str(props["CodeUri"])).name
        for name, props in (
            (name, _template.props(resources, name))
            for name in _template.of_type(resources, FUNCTION)
        )
    }


def events_of(folder: str) -> dict[str, dict[str, Any]]:
    """The sample events of a function, by name: ``<folder>.json`` and ``<folder>_*.json``."""
    return {
        path.stem: load_event(path.stem)
        for path in sorted(EVENTS.glob("*.json"))
        if path.stem == folder or path.stem.startswith(f"{folder}_")
    }


def test_every_function_has_a_sample_event() -> None:
    missing = [name for name, folder in functions().items() if not events_of(folder)]
    assert missing == []


def test_every_sample_event_belongs_to_a_function_and_is_loaded_by_a_test() -> None:
    folders = set(functions().values())
    sources = [
        path.read_text(encoding="utf-8")
        for path in TESTS.rglob("*.py")
        if path.name != Path(__file__).name and path.parent != EVENTS
    ]
    for path in sorted(EVENTS.glob("*.json")):
        assert any(path.stem == f or path.stem.startswith(f"{f}_") for f in folders), path.name
        assert any(f'"{path.stem}"' in text for text in sources), f"{path.name} is used by no test"


def test_state_machine_tasks_send_what_the_sample_events_hold() -> None:
    """Each Lambda task's Parameters are the keys of one of its function's sample events."""
    folders = functions()
    for machine in _template.machine_ids():
        for name, state in _asl.of_type(_template.raw_definition(machine), "Task").items():
            found = ARN_PLACEHOLDER.fullmatch(state["Resource"])
            if found is None or found[1] not in folders:
                continue
            keys = {key.removesuffix(".$") for key in state.get("Parameters", {})}
            shapes = [set(event) for event in events_of(folders[found[1]]).values()]
            assert keys in shapes, f"{machine}.{name} sends {sorted(keys)}"


def test_the_api_events_are_proxy_events_of_the_template_s_routes() -> None:
    resources = _template.template()["Resources"]
    routes = set()
    for name, folder in functions().items():
        for trigger in _template.props(resources, name).get("Events", {}).values():
            if trigger["Type"] == "Api":
                routes.add((trigger["Properties"]["Method"].upper(), trigger["Properties"]["Path"]))
                assert folder == "api"
    assert routes, "the API function has no Api events"
    sampled = set()
    for event in events_of("api").values():
        # REST API (Type: Api) proxy integration: payload format 1.0.
        context = event["requestContext"]
        assert (context["httpMethod"], context["resourcePath"]) == (
            event["httpMethod"],
            event["resource"],
        )
        assert "version" not in event and "routeKey" not in event
        sampled.add((event["httpMethod"], event["resource"]))
    assert sampled == routes, "every route has a sample event"


def test_the_eventbridge_event_matches_the_rule_that_delivers_it() -> None:
    resources = _template.template()["Resources"]
    event = load_event("render_slot_status_change")
    rules = [
        props["EventPattern"]
        for props in (
            _template.props(resources, name)
            for name in _template.of_type(resources, "AWS::Events::Rule")
        )
        if any("RenderSlotFunction" in json.dumps(t) for t in props.get("Targets", []))
    ]
    assert rules
    for pattern in rules:
        assert event["source"] in pattern["source"]
        assert event["detail-type"] in pattern["detail-type"]
        assert event["detail"]["status"] in pattern["detail"]["status"]


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.stem)
def test_sample_events_are_json_objects(path: Path) -> None:
    assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
