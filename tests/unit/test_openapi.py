"""openapi.json is what the API handler's models say, and the template routes the same paths."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aistudios_export.errors import InvalidRequest
from aistudios_export.exports import MAX_LIMIT, MAX_TOKEN_LENGTH, STATUSES
from aistudios_export.models import RESOLUTIONS, ExportRequest
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


# --- every rule the handler enforces, stated -----------------------------------------------


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return document


def _parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p["schema"] for p in operation["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found
    return schema


def _whole(pattern: str) -> re.Pattern[str]:
    """A JSON Schema pattern as a rule on whole values (it is anchored: ``^(?:...)$``)."""
    assert pattern.startswith("^(?:") and pattern.endswith("$")
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


def _values(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(_whole(pattern), fullmatch=True)


REQUEST = _document()["components"]["schemas"]["ExportRequestBody"]["properties"]
ACCEPTED_EXAMPLES = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.mark.parametrize("field", ["projectId", "workspaceId", "webhookUrl", "outputPrefix"])
def test_every_value_the_body_schema_allows_is_accepted(field: str) -> None:
    schema = REQUEST[field]
    limit = schema.get("maxLength", 10_000)

    @ACCEPTED_EXAMPLES
    @given(_values(schema["pattern"]).filter(lambda v: len(v) <= limit))
    def accepted(value: str) -> None:
        ExportRequest.parse({"projectId": "65fa6b07dca2e367461a2925", field: value})

    accepted()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("projectId", "65fa6b07dca2e367461a292"),
        ("projectId", "65fa6b07dca2e367461a2925\n"),
        ("projectId", "65fa6b07dca2e367461a292g"),
        ("workspaceId", "a b"),
        ("workspaceId", "w" * 65),
        ("webhookUrl", "http://h.example/"),
        ("webhookUrl", "https://user:pw@h.example/"),
        ("webhookUrl", "https://"),
        ("outputPrefix", "/abs"),
        ("outputPrefix", "a//b"),
        ("outputPrefix", "a/../b"),
        ("outputPrefix", "."),
        ("outputPrefix", "p" * 257),
        ("outputPrefix", "a b"),
    ],
)
def test_values_the_body_schema_refuses_are_refused_by_the_rules(field: str, value: str) -> None:
    schema = REQUEST[field]
    stated = _whole(schema["pattern"]).fullmatch(value) and len(value) <= schema.get(
        "maxLength", len(value)
    )
    assert not stated
    with pytest.raises(InvalidRequest) as refused:
        ExportRequest.parse({"projectId": "65fa6b07dca2e367461a2925", field: value})
    assert [f for f, _ in refused.value.problems] == [field]


def test_the_enums_are_the_library_s() -> None:
    document = _document()
    schemas = document["components"]["schemas"]
    assert REQUEST["resolution"]["enum"] == [*RESOLUTIONS, None]
    for name in ("ExportAccepted", "ExportSummaryBody", "ExportStatusBody"):
        assert schemas[name]["properties"]["status"]["enum"] == list(STATUSES)
    listing = document["paths"]["/exports"]["get"]
    assert _parameter(listing, "status")["enum"] == list(STATUSES)


def test_the_parameters_state_their_rules() -> None:
    paths = _document()["paths"]
    listing = paths["/exports"]["get"]
    assert (_parameter(listing, "limit")["minimum"], _parameter(listing, "limit")["maximum"]) == (
        1,
        MAX_LIMIT,
    )
    assert _parameter(listing, "nextToken")["anyOf"][0]["maxLength"] == MAX_TOKEN_LENGTH
    assert _whole(_parameter(listing, "projectId")["pattern"]).fullmatch("65FA6B07DCA2E367461A2925")
    key = _whole(_parameter(paths["/exports"]["post"], "idempotency-key")["pattern"])
    assert key.fullmatch(" ~" + "x" * 253) and not key.fullmatch("x" * 256)
    assert not key.fullmatch("") and not key.fullmatch("\u00e9") and not key.fullmatch("\x7f")
    export_id = _whole(_parameter(paths["/exports/{exportId}"]["get"], "exportId")["pattern"])
    assert export_id.fullmatch(f"65fa6b07dca2e367461a2925-4k-{'0' * 20}")
    assert not export_id.fullmatch("../etc")


def test_every_status_the_handler_answers_is_described() -> None:
    paths = _document()["paths"]
    answered = {
        ("/exports", "post"): {"202", "422", "500", "503"},
        ("/exports", "get"): {"200", "422", "500", "503"},
        ("/exports/{exportId}", "get"): {"200", "404", "422", "500", "503"},
        ("/exports/{exportId}/cancel", "post"): {"202", "404", "409", "422", "500", "503"},
        ("/exports/{exportId}/redrive", "post"): {"202", "404", "409", "422", "500", "503"},
    }
    for (path, method), statuses in answered.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses
        assert "Retry-After" in responses["503"]["headers"]
        assert responses["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/InvalidRequestBody"
        }
    assert "Location" in paths["/exports"]["post"]["responses"]["202"]["headers"]
