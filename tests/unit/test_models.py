"""ExportRequest.parse (every field's rule, defaults, normalisation, one message) and Job."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aistudios_export.errors import InvalidRequest
from aistudios_export.models import (
    MIN_POLL_SECONDS,
    POLL_SECONDS,
    REQUEST_FIELDS,
    STALL_SECONDS,
    TIMEOUT_SECONDS,
    ExportRequest,
    Job,
    min_poll_seconds,
)
from aistudios_local.template import load_template
from tests.unit._fixtures import PROJECT_ID, ROOT, T0

# What the state machine passes (statemachine/export.asl.json substitutes the template's values).
DEFAULTS = {"pollSeconds": "15", "timeoutSeconds": "1800", "stallSeconds": "600"}


def parse(raw: Any) -> ExportRequest:
    return ExportRequest.parse(raw, DEFAULTS)


def rejected(raw: Any, defaults: dict[str, Any] | None = None) -> str:
    with pytest.raises(InvalidRequest) as info:
        ExportRequest.parse(raw, DEFAULTS if defaults is None else defaults)
    return str(info.value)


# --- defaults and normalisation --------------------------------------------------------


def test_minimal_request_gets_every_default() -> None:
    request = parse({"projectId": PROJECT_ID})
    assert request == ExportRequest(
        project_id=PROJECT_ID,
        resolution="1080",
        workspace_id=None,
        webhook_url=None,
        output_prefix="",
        poll_seconds=15,
        timeout_seconds=1800,
        stall_seconds=600,
    )


def test_parse_without_defaults_uses_the_class_defaults() -> None:
    request = ExportRequest.parse({"projectId": PROJECT_ID})
    assert (request.poll_seconds, request.timeout_seconds, request.stall_seconds) == (15, 1800, 600)


def test_defaults_may_be_strings_as_template_substitutions_are() -> None:
    defaults = {"pollSeconds": "5", "timeoutSeconds": " 60 ", "stallSeconds": "30"}
    request = ExportRequest.parse({"projectId": PROJECT_ID}, defaults)
    assert (request.poll_seconds, request.timeout_seconds, request.stall_seconds) == (5, 60, 30)


def test_request_values_win_over_defaults() -> None:
    defaults = {"pollSeconds": "5", "timeoutSeconds": "60", "stallSeconds": "30"}
    raw = {"projectId": PROJECT_ID, "pollSeconds": 7, "timeoutSeconds": "90", "stallSeconds": 45}
    request = ExportRequest.parse(raw, defaults)
    assert (request.poll_seconds, request.timeout_seconds, request.stall_seconds) == (7, 90, 45)


def test_bad_default_is_reported_like_a_bad_field() -> None:
    message = rejected({"projectId": PROJECT_ID}, DEFAULTS | {"pollSeconds": "soon"})
    assert "pollSeconds: must be a whole number of seconds from 0 to 900" in message


def test_upper_case_project_id_is_lowered() -> None:
    assert parse({"projectId": PROJECT_ID.upper()}).project_id == PROJECT_ID


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [("4K", "4k"), ("4k", "4k"), (1080, "1080"), ("1080", "1080"), (" 720 ", "720"), (480, "480")],
)
def test_resolution_is_normalised(given_value: object, expected: str) -> None:
    raw = {"projectId": PROJECT_ID, "resolution": given_value}
    assert parse(raw).resolution == expected


def test_output_prefix_gets_a_trailing_slash() -> None:
    assert parse({"projectId": PROJECT_ID, "outputPrefix": "team/a"}).output_prefix == "team/a/"
    assert parse({"projectId": PROJECT_ID, "outputPrefix": "team/"}).output_prefix == "team/"
    assert parse({"projectId": PROJECT_ID, "outputPrefix": ""}).output_prefix == ""
    assert parse({"projectId": PROJECT_ID, "outputPrefix": None}).output_prefix == ""


def test_optional_fields_are_kept_and_sent_to_the_api() -> None:
    raw = {
        "projectId": PROJECT_ID,
        "resolution": "720",
        "workspaceId": "ws_1-A",
        "webhookUrl": "https://hooks.example.com/aistudios?team=a",
    }
    request = parse(raw)
    assert request.workspace_id == "ws_1-A"
    assert request.webhook_url == "https://hooks.example.com/aistudios?team=a"
    assert request.api_body() == {
        "projectId": PROJECT_ID,
        "resolution": "720",
        "workspaceId": "ws_1-A",
        "webhookUrl": "https://hooks.example.com/aistudios?team=a",
    }


def test_api_body_leaves_out_what_was_not_given() -> None:
    body = parse({"projectId": PROJECT_ID, "outputPrefix": "x/"}).api_body()
    assert body == {"projectId": PROJECT_ID, "resolution": "1080"}


# --- each field's rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, "", PROJECT_ID[:-1], PROJECT_ID + "0", "65fa6b07dca2e367461a292g", 12345, [PROJECT_ID]],
)
def test_bad_project_id(value: object) -> None:
    raw: dict[str, Any] = {} if value is None else {"projectId": value}
    assert "projectId: must be a 24-character hexadecimal ObjectId" in rejected(raw)


@pytest.mark.parametrize("value", ["8k", "", 1081, 4, True, None, 1080.0, ["1080"]])
def test_bad_resolution(value: object) -> None:
    message = rejected({"projectId": PROJECT_ID, "resolution": value})
    assert "resolution: must be one of 4k | 1080 | 720 | 480" in message


@pytest.mark.parametrize("value", ["", "a b", "x" * 65, "ws/1", 5, False])
def test_bad_workspace_id(value: object) -> None:
    message = rejected({"projectId": PROJECT_ID, "workspaceId": value})
    assert "workspaceId: must be letters, digits, _ or -, 1-64" in message


def test_workspace_id_of_64_characters_is_accepted() -> None:
    assert parse({"projectId": PROJECT_ID, "workspaceId": "w" * 64}).workspace_id == "w" * 64


@pytest.mark.parametrize(
    "value",
    [
        "http://hooks.example.com/x",
        "https://user:secret@hooks.example.com/x",
        "https://user@hooks.example.com/x",
        "https://:secret@hooks.example.com/x",
        "https:///no-host",
        "https://0*",  # what openapi.json's pattern refuses, parse refuses too
        "https://hooks_example.com/x",
        "https://[::1]/x",
        "https://b\u00fccher.example/x",
        "hooks.example.com/x",
        "",
        "https://hooks.example.com/" + "x" * 2048,
        42,
        {"url": "https://hooks.example.com"},
    ],
)
def test_bad_webhook_url(value: object) -> None:
    message = rejected({"projectId": PROJECT_ID, "webhookUrl": value})
    assert (
        "webhookUrl: must be an https URL without credentials, at most 2048 characters" in message
    )
    assert "secret" not in message


@pytest.mark.parametrize(
    "value",
    [
        "/abs/",
        "a//b/",
        "a/../b/",
        "./a/",
        "..",
        "a/./b",
        "a b/",
        "a?b/",
        "x" * 257,
        5,
        False,
        ["a/"],
    ],
)
def test_bad_output_prefix(value: object) -> None:
    message = rejected({"projectId": PROJECT_ID, "outputPrefix": value})
    assert "outputPrefix: must be a relative key prefix" in message


@pytest.mark.parametrize(
    ("name", "bounds"),
    [
        ("pollSeconds", POLL_SECONDS),
        ("timeoutSeconds", TIMEOUT_SECONDS),
        ("stallSeconds", STALL_SECONDS),
    ],
)
def test_seconds_bounds_are_inclusive(name: str, bounds: tuple[int, int]) -> None:
    low, high = bounds
    for ok in (low, high, str(high)):
        request = parse({"projectId": PROJECT_ID, name: ok})
        assert {
            "pollSeconds": request.poll_seconds,
            "timeoutSeconds": request.timeout_seconds,
            "stallSeconds": request.stall_seconds,
        }[name] == int(ok)
    for bad in (low - 1, high + 1, str(high + 1), "-1", 1.5, 15.0, "1e3", "", None, True, [1]):
        message = rejected({"projectId": PROJECT_ID, name: bad})
        assert f"{name}: must be a whole number of seconds from {low} to {high}" in message


def test_every_bad_field_is_named_in_one_message() -> None:
    raw = {
        "projectId": "nope",
        "resolution": "8k",
        "workspaceId": "a b",
        "webhookUrl": "http://x",
        "outputPrefix": "../",
        "pollSeconds": -1,
        "timeoutSeconds": 0,
        "stallSeconds": "x",
        "colour": "red",
    }
    message = rejected(raw)
    assert message.startswith("invalid request: ")
    for field in (
        "unknown field(s): colour",
        "projectId:",
        "resolution:",
        "workspaceId:",
        "webhookUrl:",
        "outputPrefix:",
        "pollSeconds:",
        "timeoutSeconds:",
        "stallSeconds:",
    ):
        assert field in message
    assert message.count("; ") == 8


def test_unknown_fields_are_listed_sorted() -> None:
    message = rejected({"projectId": PROJECT_ID, "zeta": 1, "alpha": 2})
    assert message == "invalid request: unknown field(s): alpha, zeta"


@pytest.mark.parametrize(
    "raw", [None, "65fa6b07dca2e367461a2925", 5, [PROJECT_ID], [{"projectId": PROJECT_ID}]]
)
def test_non_object_input_is_rejected(raw: object) -> None:
    assert rejected(raw) == "the request must be a JSON object"


# --- hostile values ------------------------------------------------------------------------


def test_superscript_digit_seconds_are_an_invalid_request() -> None:
    assert "pollSeconds" in rejected({"projectId": PROJECT_ID, "pollSeconds": "²"})


@pytest.mark.parametrize("url", ["https://[hooks.example.com/x", "https://\uff0fexample.com@x/"])
def test_unparseable_webhook_url_is_an_invalid_request(url: str) -> None:
    assert "webhookUrl" in rejected({"projectId": PROJECT_ID, "webhookUrl": url})


@pytest.mark.parametrize(
    ("parameter", "name", "bounds"),
    [
        ("DefaultPollSeconds", "pollSeconds", POLL_SECONDS),
        ("DefaultTimeoutSeconds", "timeoutSeconds", TIMEOUT_SECONDS),
        ("DefaultStallSeconds", "stallSeconds", STALL_SECONDS),
    ],
)
def test_every_default_the_template_allows_is_accepted(
    parameter: str, name: str, bounds: tuple[int, int]
) -> None:
    spec = load_template(ROOT / "template.yaml")["Parameters"][parameter]
    for value in (spec["MinValue"], spec["Default"], spec["MaxValue"]):
        ExportRequest.parse({"projectId": PROJECT_ID}, DEFAULTS | {name: str(value)})


# --- property: nothing but InvalidRequest ---------------------------------------------

NOTHING: st.SearchStrategy[Any] = st.nothing()
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _json_like(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(_SCALARS, text),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=8,
    )


def _requests(
    text: st.SearchStrategy[str], edges: st.SearchStrategy[Any] = NOTHING
) -> st.SearchStrategy[Any]:
    value = _json_like(text)
    known = st.fixed_dictionaries({}, optional=dict.fromkeys(sorted(REQUEST_FIELDS), edges | value))
    unknown = st.dictionaries(text, value, max_size=2)
    as_object = st.builds(lambda a, b: {**b, **a}, known, unknown)
    return st.one_of(value, as_object)


# Values near the rules' edges, so that the search reaches them every run.
_EDGE_TEXT = st.sampled_from(
    [
        PROJECT_ID,
        "4K",
        "15",
        " 15 ",
        "https://hooks.example.com/",
        "https://[",
        "²",
        "a/../",
        "https://u@h/",
    ]
)


@settings(
    derandomize=True, database=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    _requests(st.text(alphabet=st.characters(codec="ascii", exclude_characters="[]"), max_size=30))
)
def test_parse_raises_only_invalid_request_on_ascii_input(raw: Any) -> None:
    with contextlib.suppress(InvalidRequest):
        ExportRequest.parse(raw, DEFAULTS)


@settings(
    derandomize=True,
    database=None,
    max_examples=150,
    phases=[Phase.generate],  # the bugs have their own tests: no need to shrink
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_requests(st.text(max_size=30), _EDGE_TEXT))
def test_parse_raises_only_invalid_request_on_any_json_like_input(raw: Any) -> None:
    with contextlib.suppress(InvalidRequest):
        ExportRequest.parse(raw, DEFAULTS)


# --- Job ----------------------------------------------------------------------------


def _request(**overrides: Any) -> ExportRequest:
    return parse({"projectId": PROJECT_ID, "outputPrefix": "team/", **overrides})


def test_job_start() -> None:
    job = Job.start(
        _request(pollSeconds=10, timeoutSeconds=600, stallSeconds=120), T0, export_id="exec-1"
    )
    assert job.to_dict() == {
        "projectId": PROJECT_ID,
        "resolution": "1080",
        "outputPrefix": "team/",
        "submittedAt": T0,
        "deadline": T0 + 600,
        "pollSeconds": 10,
        "stallSeconds": 120,
        # Adaptive waits may be as short as 1 s here (no floor): the bound follows them.
        "maxPolls": 610,
        "polls": 0,
        "progress": 0.0,
        "state": "",
        "lastChangeAt": T0,
        "urlMissingChecks": 0,
        "outcome": "waiting",
        "nextPollSeconds": 1,
        "error": None,
        "cause": None,
        "exportId": "exec-1",
        "submittedUtc": "2026-01-01T00:00:00Z",
        "slotExpires": 0.0,
        "minPollSeconds": 1,
        "webhookPollSeconds": 0,
        "checkedAt": 0.0,
        "predictedDoneAt": 0.0,
        "wake": None,
        "wakes": 0,
        "relayWebhookUrl": None,
        "relayedProgress": -1.0,
        "unknownStates": [],
    }


@pytest.mark.parametrize(
    ("poll", "floor", "timeout", "expected"),
    [(15, 0, 1800, 1810), (7, 5, 100, 30), (0, 0, 60, 70), (900, 10, 1, 11)],
)
def test_max_polls_bounds_the_loop_beside_the_deadline(
    poll: int, floor: int, timeout: int, expected: int
) -> None:
    # The shortest wait is the floor (at least 1 s): adaptive waits may be that short.
    job = Job.start(_request(pollSeconds=poll, timeoutSeconds=timeout), T0, min_poll_seconds=floor)
    assert job.maxPolls == expected == math.ceil(timeout / max(job.minPollSeconds, 1)) + 10


def test_job_round_trips_through_json() -> None:
    job = Job.start(_request(resolution="4K"), T0)
    job.polls, job.progress, job.state, job.outcome = 3, 42.5, "exporting", "waiting"
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_job_from_dict_ignores_fields_it_does_not_know() -> None:
    data = Job.start(_request(), T0).to_dict() | {"video": {"key": "k"}}
    assert Job.from_dict(data).to_dict() == Job.start(_request(), T0).to_dict()


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "job",
        {"projectId": PROJECT_ID},
        Job.start(_request(), T0).to_dict() | {"projectId": "nope"},
        Job.start(_request(), T0).to_dict() | {"resolution": "8k"},
    ],
)
def test_job_from_dict_rejects_what_the_library_did_not_write(raw: Any) -> None:
    with pytest.raises(InvalidRequest, match=r"^job: "):
        Job.from_dict(raw)


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        (None, MIN_POLL_SECONDS),
        ({}, MIN_POLL_SECONDS),
        ({"minPollSeconds": " 5 "}, 5),
        ({"minPollSeconds": 900}, 900),
    ],
)
def test_min_poll_seconds_comes_from_the_deployment(
    defaults: dict[str, Any] | None, expected: int
) -> None:
    assert min_poll_seconds(defaults) == expected


def test_min_poll_seconds_raises_max_polls_with_the_interval() -> None:
    job = Job.start(
        _request(pollSeconds=0, timeoutSeconds=TIMEOUT_SECONDS[1]), T0, min_poll_seconds=5
    )
    assert (job.pollSeconds, job.nextPollSeconds) == (5, 5)
    assert job.maxPolls == math.ceil(TIMEOUT_SECONDS[1] / 5) + 10 == 1090
