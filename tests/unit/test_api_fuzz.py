"""Requests generated from openapi.json (schemathesis), answered by the real handler in process.

A small WSGI app stands in for API Gateway: it routes a request by the template's ``Api``
events and builds the proxy event exactly as ``aistudios-export local serve`` does
(:func:`aistudios_local.serve.proxy_event`), then calls the handler over moto. Every answer must
be no 5xx, conform to the description (status, content type, headers, body), accept what the
description allows and refuse what it does not. Deterministic (``derandomize``) and bounded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cfnlint.decode import decode
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi import checks

from aistudios_local.serve import Route, proxy_event, routes_of
from tests.unit import _api
from tests.unit._api import Api
from tests.unit._fixtures import LambdaContextStub

aws, loaded_api, api = _api.aws, _api.loaded_api, _api.api  # the fixtures, by their names

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 150
"""Per generation mode: a few hundred requests in all, in seconds."""

type StartResponse = Callable[[str, list[tuple[str, str]]], Any]
type WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _routes() -> list[Route]:
    template, problems = decode(str(ROOT / "template.yaml"))
    assert not problems and isinstance(template, dict)
    return routes_of(template)


def gateway(handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> WsgiApp:
    """Return a WSGI app that answers as API Gateway in front of ``handler`` would."""
    routes = _routes()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        target = environ.get("REQUEST_URI") or environ["PATH_INFO"]
        path = target.split("?", 1)[0]
        for route in routes:
            parameters = route.match(method, path)
            if parameters is not None:
                break
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [json.dumps({"message": f"no route for {method}"}).encode()]
        if "?" not in target and environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        size = int(environ.get("CONTENT_LENGTH") or 0)
        event = proxy_event(
            method=method,
            target=target,
            headers=list(_headers(environ)),
            body=environ["wsgi.input"].read(size) if size else b"",
            resource=route.resource,
            path_parameters=parameters,
        )
        result = handler(event, LambdaContextStub())
        headers = {k: [str(v)] for k, v in (result.get("headers") or {}).items()}
        headers.update(result.get("multiValueHeaders") or {})
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        status = int(result["statusCode"])
        start_response(f"{status} -", [(k, str(v)) for k, vs in headers.items() for v in vs])
        return [body]

    return app


def _headers(environ: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").title(), value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            yield key.replace("_", "-").title(), value


@pytest.fixture(scope="module")
def schema() -> schemathesis.BaseSchema:
    document = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    return schemathesis.openapi.from_dict(document)


IGNORED = [checks.ignored_auth]
"""Authentication is enforced by API Gateway in AWS and not at all locally (``local serve``
says so): a request without credentials is answered, as documented."""


def _fuzz(api: Api, schema: schemathesis.BaseSchema, mode: schemathesis.GenerationMode) -> int:
    schema.app = gateway(api.handler)
    answered: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(mode))
    def requests(case: schemathesis.Case[Any]) -> None:
        if mode is schemathesis.GenerationMode.POSITIVE and case.query:
            # A continuation token is opaque: only one a listing answered is valid, and no
            # schema can generate those (test_api.py follows real ones).
            case.query.pop("nextToken", None)
        response = case.call()
        assert response.status_code < 500, (response.status_code, response.text[:300])
        case.validate_response(response, excluded_checks=IGNORED)
        answered.append(response.status_code)

    requests()
    return len(answered)


def test_schema_valid_requests_are_answered_as_described(
    api: Api, schema: schemathesis.BaseSchema
) -> None:
    assert _fuzz(api, schema, schemathesis.GenerationMode.POSITIVE) >= EXAMPLES


def test_schema_invalid_requests_are_refused_as_described(
    api: Api, schema: schemathesis.BaseSchema
) -> None:
    assert _fuzz(api, schema, schemathesis.GenerationMode.NEGATIVE) >= EXAMPLES
