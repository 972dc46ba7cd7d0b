"""Hostile requests to the HTTP API: each answers 4xx naming what is wrong, never 5xx.

Each case is what a client can send through API Gateway (which passes a body that is not UTF-8
as base64 with ``isBase64Encoded``); the answers name the field or the rule broken and quote
at most a short excerpt of the input.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.unit import _api
from tests.unit._api import Answer, Api, get_event, post_event
from tests.unit._fixtures import PROJECT_ID

aws, loaded_api, api = _api.aws, _api.loaded_api, _api.api  # the fixtures, by their names

VALID = json.dumps({"projectId": PROJECT_ID})
ANSWER_LIMIT = 2048
"""No answer to a hostile request is longer: it never echoes the input."""


def _base64_post(raw: bytes) -> dict[str, Any]:
    event = post_event(base64.b64encode(raw).decode("ascii"))
    event["isBase64Encoded"] = True
    return event


def _refused(answer: Answer, loc: list[Any], msg: str | None = None) -> None:
    assert answer.status == 422, (answer.status, answer.body)
    assert [d["loc"] for d in answer.body["detail"]] == [loc]
    assert answer.body["message"] == f"invalid request: {loc[1] if len(loc) > 1 else loc[0]}"
    if msg is not None:
        assert answer.body["detail"][0]["msg"] == msg
    assert len(json.dumps(answer.body)) < ANSWER_LIMIT


# --- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe{}", b'{"projectId": "\xe9"}', b"\x80", b'{"projectId": "' + b"\xc3" + b'"}']
)
def test_a_body_that_is_not_utf8_is_422_saying_so(api: Api, raw: bytes) -> None:
    _refused(api.call(_base64_post(raw)), ["body"], "the body is not UTF-8 text")
    assert api.executions() == []


def test_a_base64_body_that_is_utf8_json_is_read(api: Api) -> None:
    answer = api.call(_base64_post(VALID.encode()))
    assert answer.status == 202
    assert api.executions() == [answer.body["exportId"]]


def test_a_body_that_is_not_the_base64_it_claims_is_422(api: Api) -> None:
    event = post_event("!!!not base64")
    event["isBase64Encoded"] = True
    answer = api.call(event)
    assert answer.status == 422
    assert answer.body["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    "body",
    [
        '{"projectId": ' + "1" * 4301 + "}",
        '{"projectId": "' + PROJECT_ID + '", "resolution": [' + "9" * 100_000 + "]}",
        "-" + "7" * 5000,
    ],
)
def test_a_number_of_more_than_4300_digits_is_422_saying_so(api: Api, body: str) -> None:
    msg = "the body is not JSON that can be read: a number has more than 4300 digits"
    _refused(api.post(body), ["body"], msg)


def test_a_number_of_4300_digits_is_only_a_wrong_value(api: Api) -> None:
    answer = api.post('{"projectId": ' + "1" * 4300 + "}")
    assert answer.status == 422
    assert [d["loc"] for d in answer.body["detail"]] == [["body", "projectId"]]


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ("{", "the body is not JSON: Expecting property name enclosed in double quotes (at 1)"),
        ('{"projectId": "\x00"}', "the body is not JSON: Invalid control character at (at 15)"),
        (VALID + "\x00", f"the body is not JSON: Extra data (at {len(VALID)})"),
        ("not json", "the body is not JSON: Expecting value (at 0)"),
    ],
)
def test_a_body_that_is_no_json_says_why_and_where(api: Api, body: str, msg: str) -> None:
    answer = api.post(body)
    assert answer.status == 422
    assert answer.body["message"] == "invalid request: body"
    assert [(d["loc"][0], d["msg"]) for d in answer.body["detail"]] == [("body", msg)]


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        '{"a":' * 100_000,
        '{"projectId": "' + PROJECT_ID + '", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_deep_nesting_is_422(api: Api, body: str) -> None:
    _refused(api.post(body), ["body"], "the JSON is nested too deeply")


def test_a_10_mb_body_is_refused_without_echoing_it(api: Api) -> None:
    answer = api.post(json.dumps({"projectId": "a" * 10 * 1024 * 1024}))
    _refused(answer, ["body", "projectId"], "must be a 24-character hexadecimal ObjectId")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("projectId", "\ud800"),
        ("resolution", "\udfff"),
        ("workspaceId", "a\ud800"),
        ("outputPrefix", "\ud800/"),
        ("projectId", "\x00" * 24),
    ],
)
def test_lone_surrogates_and_nul_in_a_value_are_a_wrong_value(
    api: Api, field: str, value: str
) -> None:
    body = {"projectId": PROJECT_ID, field: value}
    _refused(api.post(json.dumps(body)), ["body", field])
    assert api.executions() == []


def test_a_lone_surrogate_in_a_name_is_422(api: Api) -> None:
    answer = api.post('{"\\ud800": 1, "projectId": "' + PROJECT_ID + '"}')
    assert answer.status == 422
    assert answer.body["detail"][0]["loc"][0] == "body"
    assert api.executions() == []


@pytest.mark.parametrize(
    "content_type", ["text/xml", "application/x-www-form-urlencoded", "é/\x00"]
)
def test_any_content_type_is_read_as_json(api: Api, content_type: str) -> None:
    answer = api.post(VALID, {"Content-Type": content_type})
    assert answer.status == 202


# --- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "x" * 256, "x" * 100_000, "é", "a\tb", "\ud800", "\x7f"])
def test_an_idempotency_key_outside_the_rule_is_422(api: Api, key: str) -> None:
    answer = api.post(VALID, {"Idempotency-Key": key})
    _refused(answer, ["header", "Idempotency-Key"], "must be 1-255 printable ASCII characters")
    assert api.executions() == []


@pytest.mark.parametrize("key", ["x", "x" * 255, " ~!", "order 1"])
def test_an_idempotency_key_within_the_rule_is_used(api: Api, key: str) -> None:
    assert api.post(VALID, {"Idempotency-Key": key}).status == 202


def test_an_idempotency_key_sent_twice_is_422(api: Api) -> None:
    event = post_event(VALID, {"Idempotency-Key": "a"})
    event["multiValueHeaders"]["Idempotency-Key"] = ["a", "b"]
    answer = api.call(event)
    _refused(answer, ["header", "idempotency-key"], "must be given once")
    assert api.executions() == []


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Ünïcode": "välüe"},
        {"X-Forwarded-Proto": "\ud800"},
        {"X-Long": "v" * 100_000},
        {"Host": "\x00"},
    ],
)
def test_odd_headers_that_mean_nothing_to_the_api_are_ignored(
    api: Api, headers: dict[str, str]
) -> None:
    assert api.post(VALID, headers).status == 202


def test_an_event_without_headers_is_read(api: Api) -> None:
    event = post_event(VALID)
    event["headers"] = event["multiValueHeaders"] = None
    assert api.call(event).status == 202


# --- paths and methods ------------------------------------------------------------------


@pytest.mark.parametrize(
    "export_id",
    ["..", "../../etc/passwd", "%2e%2e", "%2e%2e%2f", "a" * 100_000, "\ud800", "\x00", "a/b"],
)
def test_odd_export_ids_are_404(api: Api, export_id: str) -> None:
    answer = api.get(f"/exports/{export_id}")
    assert answer.status == 404
    assert answer.body["statusCode"] == 404 and len(answer.body["message"]) < 40


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/exports"),
        ("PUT", "/exports/x"),
        ("PATCH", "/exports"),
        ("GET", "/"),
        ("POST", "/exports/x"),
        ("GET", "/\ud800"),
    ],
)
def test_unknown_routes_and_methods_are_404(api: Api, method: str, path: str) -> None:
    event = get_event("/exports")
    event["path"] = path
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    answer = api.call(event)
    assert (answer.status, answer.body) == (404, {"statusCode": 404, "message": "Not found"})


# --- query strings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "1e9"},
        {"limit": "-1"},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "9" * 5000},
        {"limit": "1.5"},
        {"limit": ""},
        {"limit": "\ud800"},
        {"nextToken": "%%%"},
        {"nextToken": "A" * 100_000},
        {"nextToken": "\ud800"},
        {"nextToken": base64.urlsafe_b64encode(b"\xff\xfe").decode()},
        {"nextToken": base64.urlsafe_b64encode(b'{"t":null,"s":' + b"9" * 3000 + b"}").decode()},
        {"nextToken": base64.urlsafe_b64encode(b"[" * 3000).decode()},
        {"nextToken": base64.urlsafe_b64encode(b'{"t":"forged","s":0}').decode()},
        {"projectId": "\ud800"},
        {"projectId": "x" * 100_000},
        {"status": "\x00"},
    ],
)
def test_odd_query_values_are_422_naming_the_parameter(api: Api, query: dict[str, str]) -> None:
    (name,) = query
    answer = api.get("/exports", query)
    assert answer.status == 422, (answer.status, answer.body)
    assert [d["loc"] for d in answer.body["detail"]] == [["query", name]]
    assert len(json.dumps(answer.body)) < ANSWER_LIMIT


@pytest.mark.parametrize("name", ["limit", "projectId", "status", "nextToken"])
def test_a_parameter_given_twice_is_422_naming_it(api: Api, name: str) -> None:
    values = {"limit": "5", "projectId": PROJECT_ID, "status": "RUNNING", "nextToken": "x"}
    event = get_event("/exports", {name: values[name]})
    event["multiValueQueryStringParameters"] = {name: [values[name], values[name]]}
    _refused(api.call(event), ["query", name], "must be given once")


def test_unknown_query_parameters_are_ignored(api: Api) -> None:
    assert api.get("/exports", {"x": "\ud800", "\x00": "1"}).status == 200
