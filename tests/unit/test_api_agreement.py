"""The API's quick checks and plain bodies agree with the pydantic models that describe them.

The handler's dispatch (:mod:`exports_api.dispatch`) reads a request through
:mod:`exports_api.checks` and hands any request they do not vouch for, or of a route it does not
know, to the validating resolver of :mod:`exports_api.described`. Here, for generated requests
(well-formed and not, with CORS on and off, of known routes and others), the handler and that
resolver alone answer alike: same status, headers and body, and the same library calls with the
same values. The plain bodies of :mod:`exports_api.bodies` are those the models make of the same
records. And a well-formed request, in a fresh process, never imports pydantic nor Powertools'
event handler.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aistudios_export.exports import Page, Started, Status, Summary, Video, parse_request
from tests.events import load_event
from tests.unit._fixtures import PROJECT_ID, ROOT, LambdaContextStub, load_handler

EXPORT_ID = f"{PROJECT_ID}-1080-{'0' * 20}"
STARTED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EXAMPLES = 400


@dataclass
class Library:
    """Stand-ins of the library objects the routes call; they note each call."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def start(self, fields: dict[str, Any], idempotency_key: str | None = None) -> Started:
        self.calls.append(("start", fields, idempotency_key))
        parse_request(fields)  # the library's rules: InvalidRequest names the bad fields
        return Started(EXPORT_ID, "RUNNING")

    def read(self, export_id: str) -> Status | None:
        self.calls.append(("read", export_id))
        return STATUS if export_id == EXPORT_ID else None

    def page(self, **query: Any) -> Page:
        self.calls.append(("page", query))
        return Page([SUMMARY, SUMMARY], "next")

    def cancel(self, export_id: str) -> Started | None:
        self.calls.append(("cancel", export_id))
        return Started(export_id, "ABORTED") if export_id == EXPORT_ID else None

    def redrive(self, export_id: str) -> Started | None:
        self.calls.append(("redrive", export_id))
        return Started(export_id, "RUNNING") if export_id == EXPORT_ID else None


SUMMARY = Summary(EXPORT_ID, PROJECT_ID, "1080p", "SUCCEEDED", STARTED_AT, None)
VIDEO = Video(
    "s3://videos/a.mp4",
    "videos",
    "a.mp4",
    1234,
    "ab" * 32,
    "video/mp4",
    "https://videos.s3.amazonaws.com/a.mp4?X-Amz-Signature=0",
    datetime(2026, 1, 2, 4, 4, 5, 123000, tzinfo=UTC),
)
STATUS = Status(
    EXPORT_ID,
    PROJECT_ID,
    "1080p",
    "SUCCEEDED",
    STARTED_AT,
    STARTED_AT + timedelta(minutes=3),
    progress=100,
    state="completed",
    error=None,
    cause=None,
    video=VIDEO,
)


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    """The API handler's module (its globals)."""
    globals_: dict[str, Any] = inspect.unwrap(load_handler("api")).__globals__
    return globals_


@pytest.fixture
def library(module: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Library]:
    """The handler's services replaced by a :class:`Library`."""
    library = Library()
    routes = module["routes"]
    provided = routes.Services(
        starter=library,
        status=library,
        lister=library,
        controller=library,
        waker=library,
        webhook_key=None,
    )
    overrides = module["_resolver"]().dependency_overrides
    monkeypatch.setitem(overrides, routes.services, lambda: provided)
    yield library


def _answer(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "body": json.loads(result["body"]) if result.get("body") else None}


def _both(module: dict[str, Any], library: Library, event: dict[str, Any]) -> None:
    """Answer ``event`` with the handler and with the validating resolver; compare."""
    from exports_api import described

    context = LambdaContextStub()
    library.calls.clear()
    handled = _answer(module["lambda_handler"](json.loads(json.dumps(event)), context))
    handled_calls = list(library.calls)
    library.calls.clear()
    validating = described.resolver(module["_resolver"]())
    request = module["body"].as_json_request(json.loads(json.dumps(event)))
    validated = _answer(validating.resolve(request, context))  # type: ignore[arg-type]
    assert handled["statusCode"] < 500, handled
    assert (handled, handled_calls) == (validated, library.calls)


VALUES = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from([PROJECT_ID, "1080p", "720p", "\ud800", "a\udfff", "", "exports/a", "x,y"]),
    st.integers(-5, 5),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.sampled_from([PROJECT_ID, 1, None]), max_size=2),
    st.dictionaries(st.sampled_from(["projectId", "a"]), st.just(PROJECT_ID), max_size=1),
)
BODY_KEYS = st.sampled_from(
    ["projectId", "resolution", "workspaceId", "webhookUrl", "outputPrefix", "project_id", "x"]
)
WELL_FORMED_BODIES = st.fixed_dictionaries(
    {"projectId": st.sampled_from([PROJECT_ID, "\ud800", "abc"])},
    optional={
        "resolution": st.sampled_from(["1080p", "720p", None, 5]),
        "workspaceId": st.sampled_from(["w-1", None, "\udfff"]),
        "outputPrefix": st.sampled_from(["a/b", "", None]),
        "project_id": st.sampled_from([PROJECT_ID, None]),
        "extra": st.sampled_from(["x", None]),
    },
).map(json.dumps)
BODIES = st.one_of(
    WELL_FORMED_BODIES,
    WELL_FORMED_BODIES,
    st.dictionaries(BODY_KEYS, VALUES, max_size=6).map(json.dumps),
    VALUES.map(json.dumps),
    st.sampled_from(["", "{", "[]", "null", "{} x", f'[{{"projectId": "{PROJECT_ID}"}}]']),
    st.none(),
)
IDEMPOTENCY_KEYS = st.sampled_from(["k-1", "", "\u00e9", "\ud800", "a,b", "x" * 256])
HEADER_NAMES = st.sampled_from(["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"])


@st.composite
def with_idempotency_key(draw: st.DrawFn, event: dict[str, Any]) -> dict[str, Any]:
    """Put an Idempotency-Key in ``event`` (or none) in the ways API Gateway and clients may."""
    how = draw(st.sampled_from(["none", "both", "single only", "multi only", "twice", "cases"]))
    name, value = draw(HEADER_NAMES), draw(IDEMPOTENCY_KEYS)
    if how in ("both", "single only", "cases"):
        event["headers"][name] = value
    if how in ("both", "multi only", "cases"):
        event["multiValueHeaders"][name if how != "cases" else name.swapcase()] = [value]
    if how == "twice":
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value, draw(IDEMPOTENCY_KEYS)]
    if how == "single only" and draw(st.booleans()):
        event["multiValueHeaders"] = None
    return event


@st.composite
def post_exports(draw: st.DrawFn) -> dict[str, Any]:
    event = load_event("api_post_exports")
    event["body"] = draw(BODIES)
    return draw(with_idempotency_key(event))


QUERY_VALUES = st.one_of(
    st.sampled_from(
        [
            *("", "1", "20", "100", "101", "0", "020", " 5", "5.0", "-1", "1_0", "abc", "a,b"),
            *(PROJECT_ID, "RUNNING", "x" * 4096, "x" * 4097, "\ud800", "\u00e9"),
        ]
    ),
    st.text(max_size=6),
)


@st.composite
def list_exports(draw: st.DrawFn) -> dict[str, Any]:
    event = load_event("api_list_exports")
    names = st.sampled_from(["projectId", "status", "limit", "nextToken", "project_id", "x"])
    once = QUERY_VALUES.map(lambda value: [value])
    values = st.one_of(once, once, once, st.lists(QUERY_VALUES, min_size=2, max_size=2))
    query = draw(st.dictionaries(names, values, max_size=3))
    how = draw(st.sampled_from(["both", "single only", "multi only"]))
    single = {k: v[-1] for k, v in query.items()}
    event["queryStringParameters"] = (single or None) if how != "multi only" else None
    event["multiValueQueryStringParameters"] = (query or None) if how != "single only" else None
    return event


EXPORT_IDS = st.sampled_from([EXPORT_ID, "other", "\ud800", "a b", "\u00e9t\u00e9", ""])


@st.composite
def on_an_export(draw: st.DrawFn) -> dict[str, Any]:
    verb = draw(st.sampled_from(["get", "cancel", "redrive"]))
    export_id = draw(EXPORT_IDS)
    if verb == "get":
        event = load_event("api_get_export")
        event["path"] = f"/exports/{export_id}"
    else:
        event = load_event(f"api_{verb}_export")
        event["path"] = f"/exports/{export_id}/{verb}"
    event["pathParameters"] = {"exportId": export_id}
    return event


@st.composite
def webhooks(draw: st.DrawFn) -> dict[str, Any]:
    event = load_event("api_webhook")
    token = draw(st.sampled_from(["0" * 64, "\ud800"]))
    event["path"] = f"/webhooks/{draw(EXPORT_IDS)}/{token}"
    return event


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(event=st.one_of(post_exports(), post_exports(), list_exports(), on_an_export(), webhooks()))
def test_the_handler_answers_as_the_validating_resolver(
    module: dict[str, Any], library: Library, event: dict[str, Any]
) -> None:
    _both(module, library, event)


def _listing(query: dict[str, list[str]]) -> dict[str, Any]:
    event = load_event("api_list_exports")
    event["queryStringParameters"] = {k: v[-1] for k, v in query.items()}
    event["multiValueQueryStringParameters"] = query
    return event


def _post(body: Any, **headers: str) -> dict[str, Any]:
    event = load_event("api_post_exports")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    for name, value in headers.items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


EDGES = [
    *(_listing({"limit": [limit]}) for limit in ["0", "1", "100", "101", "020", " 5", "5.0"]),
    *(_listing({"limit": [limit]}) for limit in ["-1", "1_0", "abc", "", "+5", "1e2"]),
    *(_listing({"nextToken": ["x" * n]}) for n in (4096, 4097)),
    _listing({"status": ["RUNNING", "FAILED"]}),
    _listing({"projectId": [PROJECT_ID], "status": ["RUNNING"], "limit": ["7"]}),
    _post({"projectId": PROJECT_ID}),
    _post({"projectId": PROJECT_ID, "extra": "x"}),
    _post({"projectId": PROJECT_ID, "project_id": PROJECT_ID}),
    _post({"resolution": "1080p"}),
    _post({"projectId": None}),
    _post({"projectId": PROJECT_ID, "resolution": 1080}),
    _post([{"projectId": PROJECT_ID}]),
    _post("null"),
    _post({"projectId": PROJECT_ID}, **{"Idempotency-Key": "k"}),
    _post({"projectId": PROJECT_ID}, **{"idempotency-key": "\ud800"}),
]


@pytest.mark.parametrize("event", EDGES)
def test_the_handler_answers_edge_cases_as_the_validating_resolver(
    module: dict[str, Any], library: Library, event: dict[str, Any]
) -> None:
    _both(module, library, event)


ORIGIN = "https://app.example.com"
ORIGINS = st.sampled_from([None, ORIGIN, "https://evil.example", "", "*", ORIGIN.upper()])
METHODS = st.sampled_from(["OPTIONS", "GET", "POST", "DELETE", "PUT", "get", "options"])
PATHS = st.sampled_from(
    [
        "/exports",
        f"/exports/{EXPORT_ID}",
        f"/exports/{EXPORT_ID}/cancel",
        f"/webhooks/{EXPORT_ID}/{'0' * 64}",
        *("/exports/", "/exports\n", "/exports/a/b", "/exports/a?b", "/nope", "/", ""),
    ]
)


@st.composite
def from_browsers(draw: st.DrawFn) -> dict[str, Any]:
    """Any method on known and unknown paths, with an Origin header (or none) put any way."""
    event = load_event("api_get_export")
    event["httpMethod"], event["path"] = draw(METHODS), draw(PATHS)
    event["pathParameters"] = None
    event["body"] = json.dumps({"projectId": PROJECT_ID})
    origin = draw(ORIGINS)
    how = draw(st.sampled_from(["both", "single only", "multi only", "twice", "cases"]))
    if origin is not None:
        if how in ("both", "single only", "cases"):
            event["headers"]["Origin"] = origin
        if how in ("both", "multi only"):
            event["multiValueHeaders"]["origin"] = [origin]
        if how == "twice":
            event["multiValueHeaders"]["Origin"] = [origin, ORIGIN]
        if how == "cases":
            event["headers"]["ORIGIN"] = ORIGIN
            event["multiValueHeaders"] = None
    return event


@pytest.fixture
def with_cors(module: dict[str, Any], monkeypatch: pytest.MonkeyPatch, library: Library) -> None:
    """The handler with CORS on, as a container whose ``CORS_ALLOW_ORIGIN`` is set."""
    from exports_api import dispatch

    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:x")
    monkeypatch.setenv("CORS_ALLOW_ORIGIN", ORIGIN)
    cors = module["_cors"]()
    assert cors is not None
    resolver = dispatch.Resolver(cors)
    resolver.dependency_overrides = module["_resolver"]().dependency_overrides
    monkeypatch.setitem(module, "_resolver", lambda: resolver)


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(event=from_browsers())
def test_with_cors_the_handler_answers_any_route_as_the_validating_resolver(
    module: dict[str, Any], library: Library, with_cors: None, event: dict[str, Any]
) -> None:
    _both(module, library, event)


@pytest.mark.parametrize("method", ["OPTIONS", "DELETE", "get"])
@pytest.mark.parametrize("path", ["/exports", "/exports/x", "/exports/x/cancel", "/nope"])
def test_without_cors_the_handler_answers_other_routes_as_the_validating_resolver(
    module: dict[str, Any], library: Library, method: str, path: str
) -> None:
    event = load_event("api_list_exports")
    event["httpMethod"], event["path"] = method, path
    _both(module, library, event)


def test_the_dispatch_answers_a_preflight_and_a_browsers_request_itself(
    module: dict[str, Any], library: Library, with_cors: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exports_api import described

    handed: list[str] = []
    monkeypatch.setattr(described, "resolver", lambda plain: handed.append("handed on"))
    preflight = with_headers_of(load_event("api_list_exports"), Origin=ORIGIN)
    preflight["httpMethod"] = "OPTIONS"
    listing = with_headers_of(load_event("api_list_exports"), Origin=ORIGIN)
    answers = [module["lambda_handler"](e, LambdaContextStub()) for e in (preflight, listing)]
    assert [a["statusCode"] for a in answers] == [204, 200]
    assert all(a["multiValueHeaders"]["Access-Control-Allow-Origin"] == [ORIGIN] for a in answers)
    assert handed == []


def with_headers_of(event: dict[str, Any], **headers: str) -> dict[str, Any]:
    for name, value in headers.items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


def test_the_checks_take_the_well_formed_requests_themselves(
    module: dict[str, Any], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exports_api import described

    # Were every request handed on, the comparison above would compare the validating
    # resolver with itself.
    handed: list[str] = []
    original = described.resolver

    def noting(plain: Any) -> Any:
        handed.append("handed on")
        return original(plain)

    monkeypatch.setattr(described, "resolver", noting)
    post = load_event("api_post_exports")
    post["body"] = json.dumps({"projectId": PROJECT_ID, "resolution": None})
    listing = load_event("api_list_exports")
    listing["queryStringParameters"] = {"limit": "5", "status": "RUNNING"}
    listing["multiValueQueryStringParameters"] = {"limit": ["5"], "status": ["RUNNING"]}
    answers = [
        module["lambda_handler"](event, LambdaContextStub())["statusCode"]
        for event in (post, listing, load_event("api_get_export"))
    ]
    assert (answers, handed) == ([202, 200, 404], [])
    post["body"] = json.dumps({"projectId": 5})
    assert module["lambda_handler"](post, LambdaContextStub())["statusCode"] == 422
    assert handed == ["handed on"]


def test_the_plain_bodies_are_the_models_bodies() -> None:
    from exports_api import bodies, checks, models

    def names(model: type[Any]) -> tuple[str, ...]:
        return tuple(model.model_fields)

    assert names(models.ExportAccepted) == names(models.ExportControlled) == bodies.ACCEPTED
    assert names(models.ExportSummaryBody) == bodies.SUMMARY
    assert names(models.ExportStatusBody) == bodies.STATUS
    assert names(models.VideoBody) == bodies.VIDEO
    request_fields = models.ExportRequestBody.model_fields.values()
    assert tuple(f.alias for f in request_fields) == checks.BODY_FIELDS
    plus_two = timezone(timedelta(hours=2))
    for status in (
        STATUS,
        Status(**{**vars(STATUS), "video": None, "stopped_at": None, "progress": 12.5}),
        Status(**{**vars(STATUS), "started_at": datetime(2026, 1, 2, 3, 4, 5, 6, plus_two)}),
    ):
        expected = models.ExportStatusBody.model_validate(status).model_dump(
            mode="json", by_alias=True
        )
        assert bodies.status(status) == expected
    summary = {**vars(SUMMARY), "status_url": "https://h/v1/exports/x"}
    assert bodies.listing([summary], None) == models.ExportListBody.model_validate(
        {"exports": [summary], "next_token": None}
    ).model_dump(mode="json", by_alias=True)
    error = models.ErrorBody(status_code=404, message="no")
    assert bodies.error(404, "no") == error.model_dump(by_alias=True)
    webhook = models.WebhookAccepted(status="accepted")
    assert webhook.model_dump() == bodies.WEBHOOK_ACCEPTED


CHILD = """
import json, sys
watched = sys.argv[1]
import app
from aistudios_export.exports import Page, Started
from exports_api import routes
from tests.events import load_event

class Library:
    def start(self, fields, idempotency_key=None):
        return Started("e", "RUNNING")
    def page(self, **query):
        return Page([], None)
    def read(self, export_id):
        return None

class Context:
    function_name, function_version, memory_limit_in_mb = "api", "$LATEST", 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

library = Library()
services = routes.Services(library, library, library, library, library, None)
app._resolver().dependency_overrides[routes.services] = lambda: services
post = load_event("api_post_exports")
post["body"] = json.dumps({"projectId": "65fa6b07dca2e367461a2925"})
answers = [app.lambda_handler(e, Context())["statusCode"]
           for e in (post, load_event("api_list_exports"), load_event("api_get_export"))]
well_formed = watched in sys.modules
post["body"] = "{"
answers.append(app.lambda_handler(post, Context())["statusCode"])
print(json.dumps({"answers": answers, "well_formed": well_formed,
                  "malformed": watched in sys.modules}))
"""


def _cold(watched: str) -> dict[str, Any]:
    """Answer well-formed requests, then a malformed one, in a fresh process; say when
    ``watched`` was imported."""
    api = ROOT / "functions" / "api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join([str(api), str(ROOT / "layers" / "common"), str(ROOT)])
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, watched],
        env=env,
        cwd=api,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_well_formed_request_imports_no_pydantic_a_malformed_one_does() -> None:
    result = _cold("pydantic")
    assert result == {"answers": [202, 200, 404, 422], "well_formed": False, "malformed": True}


def test_a_well_formed_request_imports_no_powertools_resolver_a_malformed_one_does() -> None:
    # The event handler package imports every resolver and event class: a cold start's worth.
    result = _cold("aws_lambda_powertools.event_handler")
    assert result == {"answers": [202, 200, 404, 422], "well_formed": False, "malformed": True}
