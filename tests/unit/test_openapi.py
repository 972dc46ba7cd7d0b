"""openapi.json is what the API handler's models say, and the template routes the same paths."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from tests.unit._fixtures import load_handler

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.json"
REGENERATE = ".venv/bin/python functions/api/app.py > openapi.json"


def _generated() -> str:
    handler = load_handler("api")
    text: str = inspect.unwrap(handler).__globals__["openapi_json"]()
    return text


def test_openapi_json_is_up_to_date() -> None:
    assert OPENAPI.read_text(encoding="utf-8") == _generated(), (
        f"openapi.json differs from the API's models: regenerate it with `{REGENERATE}`"
    )


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method != "options"
    }


def test_the_template_routes_exactly_the_documented_operations() -> None:
    template, problems = decode(str(ROOT / "template.yaml"))
    assert not problems and isinstance(template, dict)
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    routed = {
        (e["Properties"]["Path"], e["Properties"]["Method"].upper())
        for e in events
        if e["Type"] == "Api"
    }
    for event in events:
        assert event["Properties"]["RestApiId"] == {"Ref": "ExportApi"}
    documented = _operations(json.loads(OPENAPI.read_text(encoding="utf-8")))
    assert routed == documented
    definition = template["Resources"]["ExportApi"]["Properties"]["DefinitionBody"]
    assert _operations(definition) == documented


def test_the_description_names_the_contract() -> None:
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    post = document["paths"]["/exports"]["post"]
    assert set(post["responses"]) >= {"202", "422"}
    assert [p["name"] for p in post["parameters"]] == ["idempotency-key"]
    schemas = document["components"]["schemas"]
    assert set(schemas["ExportRequestBody"]["properties"]) == {
        "projectId",
        "resolution",
        "workspaceId",
        "webhookUrl",
        "outputPrefix",
    }
    assert schemas["ExportRequestBody"]["required"] == ["projectId"]
    assert set(schemas["ExportAccepted"]["properties"]) == {"exportId", "status", "statusUrl"}
    assert set(schemas["ExportStatusBody"]["properties"]) >= {
        "exportId",
        "status",
        "progress",
        "state",
        "startedAt",
        "stoppedAt",
        "error",
        "cause",
        "video",
    }
    assert set(schemas["VideoBody"]["properties"]) >= {"s3Uri", "size", "sha256", "downloadUrl"}
    get = document["paths"]["/exports/{exportId}"]["get"]
    assert set(get["responses"]) >= {"200", "404"}
    listing = document["paths"]["/exports"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "projectId",
        "status",
        "limit",
        "nextToken",
    }
    assert document["security"] == [{"sigv4": []}, {"apiKey": []}]
