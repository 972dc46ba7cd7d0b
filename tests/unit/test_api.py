"""functions/api: the HTTP API's handler on API Gateway proxy events, over moto; its template.

The events start from the sample files ``tests/events/api_*.json`` (what API Gateway sends).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cfnlint.decode import decode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aistudios_export.exports import ExportStarter, Status, StatusReader, Video
from tests.events import load_event
from tests.unit import _api
from tests.unit._api import API_HOST, BUCKET, Api, get_event, load_api, post_event, with_headers
from tests.unit._fixtures import PROJECT_ID

ROOT = Path(__file__).resolve().parents[2]
aws, loaded_api, api = _api.aws, _api.loaded_api, _api.api  # the fixtures, by their names


# --- POST /exports ----------------------------------------------------------------------


def test_post_starts_an_export_and_answers_202_with_where_to_follow_it(api: Api) -> None:
    answer = api.call(load_event("api_post_exports"))
    assert answer.status == 202
    export_id = answer.body["exportId"]
    assert export_id.startswith(f"{PROJECT_ID}-720-")
    assert answer.body["status"] == "RUNNING"
    url = f"https://{API_HOST}/v1/exports/{export_id}"
    assert answer.body["statusUrl"] == url
    assert answer.headers["Location"] == url
    assert api.executions() == [export_id]


def test_the_same_post_twice_starts_one_export(api: Api) -> None:
    first = api.post({"projectId": PROJECT_ID})
    second = api.post({"projectId": PROJECT_ID})
    assert (first.status, second.status) == (202, 202)
    assert second.body["exportId"] == first.body["exportId"]
    assert api.executions() == [first.body["exportId"]]


def test_curl_form_content_type_is_read_as_json(api: Api) -> None:
    # curl -d labels its body application/x-www-form-urlencoded.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = api.post(json.dumps({"projectId": PROJECT_ID}), form)
    assert answer.status == 202
    assert api.executions() == [answer.body["exportId"]]


@pytest.mark.parametrize("header", ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"])
def test_idempotency_key_header_in_any_case(api: Api, header: str) -> None:
    plain = api.post({"projectId": PROJECT_ID})
    keyed = api.post({"projectId": PROJECT_ID}, {header: "order-1"})
    again = api.post({"projectId": PROJECT_ID}, {"Idempotency-Key": "order-1"})
    assert keyed.status == 202
    assert keyed.body["exportId"] != plain.body["exportId"]
    assert again.body["exportId"] == keyed.body["exportId"]
    assert len(api.executions()) == 2


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"projectId": "nope"}, ["projectId"]),
        ({"projectId": PROJECT_ID, "resolution": "8k"}, ["resolution"]),
        (
            {"projectId": "x", "resolution": "8k", "webhookUrl": "http://a", "outputPrefix": "../"},
            ["projectId", "resolution", "webhookUrl", "outputPrefix"],
        ),
        ({"projectId": PROJECT_ID, "colour": "red", "pollSeconds": 1}, ["colour", "pollSeconds"]),
        ({"projectId": 12, "resolution": "8k"}, ["projectId", "resolution"]),
        ({"resolution": 1080, "workspaceId": "bad id"}, ["projectId", "resolution", "workspaceId"]),
        ({}, ["projectId"]),
    ],
)
def test_invalid_body_is_422_naming_each_field_and_starts_nothing(
    api: Api, body: dict[str, Any], fields: list[str]
) -> None:
    answer = api.post(body)
    assert answer.status == 422
    named = [d["loc"][1] for d in answer.body["detail"]]
    assert sorted(named) == sorted(fields)
    assert all(d["loc"][0] == "body" and d["msg"] for d in answer.body["detail"])
    assert answer.body["message"] == "invalid request: " + ", ".join(named)
    assert api.executions() == []


def test_snake_case_names_are_unknown_fields(api: Api) -> None:
    answer = api.post({"project_id": PROJECT_ID, "output_prefix": "a"})
    assert answer.status == 422
    named = sorted(d["loc"][1] for d in answer.body["detail"])
    assert named == ["output_prefix", "projectId", "project_id"]
    assert api.executions() == []


@pytest.mark.parametrize(
    "raw", ["", None, "not json", "[1, 2]", '"projectId"', "{", "[" * 100_000, "null"]
)
def test_a_body_that_is_no_json_object_is_422(api: Api, raw: str | None) -> None:
    answer = api.post(raw)
    assert answer.status == 422
    assert answer.body["detail"][0]["loc"][0] == "body"
    assert api.executions() == []


def test_a_bad_idempotency_key_is_422_naming_the_header(api: Api) -> None:
    answer = api.post({"projectId": PROJECT_ID}, {"Idempotency-Key": "x" * 300})
    assert answer.status == 422
    assert answer.body["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert api.executions() == []


def test_validation_errors_do_not_echo_the_input(api: Api) -> None:
    answer = api.post({"projectId": "s3cr3t-looking-value", "x-secret": "hunter2"})
    text = json.dumps(answer.body)
    assert "s3cr3t-looking-value" not in text and "hunter2" not in text


# --- GET /exports/{exportId} ------------------------------------------------------------


def test_get_reports_the_export(api: Api) -> None:
    export_id = api.post({"projectId": PROJECT_ID}).body["exportId"]
    answer = api.get(f"/exports/{export_id}")
    assert answer.status == 200
    body = answer.body
    assert (body["exportId"], body["projectId"], body["resolution"]) == (
        export_id,
        PROJECT_ID,
        "1080",
    )
    assert (body["status"], body["progress"], body["state"], body["stoppedAt"]) == (
        "RUNNING",
        0.0,
        None,
        None,
    )
    assert body["startedAt"].endswith("Z") or body["startedAt"].endswith("+00:00")
    assert body["video"] is None and body["error"] is None


def test_get_of_a_finished_export_answers_every_field_in_camel_case(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_id = f"{PROJECT_ID}-720-{'b' * 20}"
    started, stopped = datetime(2026, 1, 1, 12, tzinfo=UTC), datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    video = Video(
        s3_uri=f"s3://{BUCKET}/exports/v.mp4",
        bucket=BUCKET,
        key="exports/v.mp4",
        size=123,
        sha256="ab" * 32,
        content_type="video/mp4",
        download_url="https://videos.s3.amazonaws.com/exports/v.mp4?X-Amz-Signature=s",
        download_url_expires_at=datetime(2026, 1, 1, 12, 20, tzinfo=UTC),
    )
    status = Status(
        export_id=export_id,
        project_id=PROJECT_ID,
        resolution="720",
        status="SUCCEEDED",
        started_at=started,
        stopped_at=stopped,
        progress=100.0,
        state="completed",
        error=None,
        cause=None,
        video=video,
    )

    def read(self: StatusReader, wanted: str) -> Status | None:
        return status if wanted == export_id else None

    monkeypatch.setattr(StatusReader, "read", read)
    answer = api.get(f"/exports/{export_id}")
    assert answer.status == 200
    assert answer.body == {
        "exportId": export_id,
        "projectId": PROJECT_ID,
        "resolution": "720",
        "status": "SUCCEEDED",
        "progress": 100.0,
        "state": "completed",
        "startedAt": "2026-01-01T12:00:00Z",
        "stoppedAt": "2026-01-01T12:05:00Z",
        "error": None,
        "cause": None,
        "video": {
            "s3Uri": f"s3://{BUCKET}/exports/v.mp4",
            "size": 123,
            "sha256": "ab" * 32,
            "contentType": "video/mp4",
            "downloadUrl": "https://videos.s3.amazonaws.com/exports/v.mp4?X-Amz-Signature=s",
            "downloadUrlExpiresAt": "2026-01-01T12:20:00Z",
        },
    }


@pytest.mark.parametrize(
    "export_id",
    [
        f"{PROJECT_ID}-1080-{'0' * 20}",  # well formed, never started
        "../etc",
        "..%2Fetc",
        "%2e%2e%2fetc",
        "x" * 200,
        "\u00e9t\u00e9",
        "\U0001f600",
        "a b",
    ],
)
def test_unknown_or_malformed_id_is_404(api: Api, export_id: str) -> None:
    answer = api.get(f"/exports/{export_id}")
    assert answer.status == 404
    assert answer.body["statusCode"] == 404


# --- GET /exports -----------------------------------------------------------------------


def test_list_filters_by_project_and_pages(api: Api) -> None:
    other = "65fa6b07dca2e367461a29ff"
    mine = [
        api.post({"projectId": PROJECT_ID}, {"Idempotency-Key": f"k{n}"}).body["exportId"]
        for n in range(3)
    ]
    api.post({"projectId": other})
    first = api.get("/exports", {"projectId": PROJECT_ID, "limit": "2"})
    assert first.status == 200
    assert [e["exportId"] for e in first.body["exports"]] == mine[::-1][:2]
    assert first.body["exports"][0]["statusUrl"] == f"https://{API_HOST}/v1/exports/{mine[2]}"
    rest = api.get(
        "/exports", {"projectId": PROJECT_ID, "limit": "2", "nextToken": first.body["nextToken"]}
    )
    assert [e["exportId"] for e in rest.body["exports"]] == [mine[0]]
    assert rest.body["nextToken"] is None
    everything = api.get("/exports")
    assert len(everything.body["exports"]) == 4


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"projectId": "abc"}, "projectId"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "DONE"}, "status"),
        ({"nextToken": "garbage"}, "nextToken"),
    ],
)
def test_list_with_bad_parameters_is_422_naming_them(
    api: Api, query: dict[str, str], field: str
) -> None:
    answer = api.get("/exports", query)
    assert answer.status == 422
    assert [d["loc"] for d in answer.body["detail"]] == [["query", field]]


# --- errors of the platform -------------------------------------------------------------


def _failing_starts(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    def start(self: ExportStarter, raw_request: Any, *, idempotency_key: str | None = None) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "arn:aws:... details"}}, "X")

    monkeypatch.setattr(ExportStarter, "start", start)


def test_throttling_is_503_with_retry_after(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_starts(monkeypatch, "ThrottlingException")
    answer = api.post({"projectId": PROJECT_ID})
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "2"
    assert answer.body == {"statusCode": 503, "message": "busy, try again"}


def test_other_aws_errors_are_a_plain_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_starts(monkeypatch, "AccessDeniedException")
    answer = api.post({"projectId": PROJECT_ID})
    assert (answer.status, answer.body) == (500, {"statusCode": 500, "message": "internal error"})


def test_missing_configuration_is_a_plain_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_MACHINE_ARN")
    api.module["_services"].cache_clear()
    answer = api.get("/exports")
    assert (answer.status, answer.body["message"]) == (500, "internal error")


# --- CORS -------------------------------------------------------------------------------


def test_cors_is_off_by_default(api: Api) -> None:
    answer = api.call(with_headers(get_event("/exports"), {"Origin": "https://app.example.com"}))
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_cors_allows_the_configured_origin(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = "https://app.example.com"
    api = load_api(monkeypatch, CORS_ALLOW_ORIGIN=origin)
    answer = api.call(with_headers(get_event("/exports"), {"Origin": origin}))
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    other = api.call(with_headers(get_event("/exports"), {"Origin": "https://evil.example"}))
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_is_read_at_the_first_request_and_kept(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = "https://app.example.com"
    api = load_api(monkeypatch)  # importing the handler reads no setting
    monkeypatch.setenv("CORS_ALLOW_ORIGIN", origin)
    first = api.call(with_headers(get_event("/exports"), {"Origin": origin}))
    monkeypatch.delenv("CORS_ALLOW_ORIGIN")
    later = api.call(with_headers(get_event("/exports"), {"Origin": origin}))
    assert first.headers["Access-Control-Allow-Origin"] == origin
    assert later.headers["Access-Control-Allow-Origin"] == origin  # once per container


# --- never a 5xx ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=8,
)
field_values = st.one_of(
    json_values,
    st.sampled_from([PROJECT_ID, PROJECT_ID.upper(), "4k", "1080", "https://h.example/x", "a/"]),
)
request_bodies = st.one_of(
    st.dictionaries(
        st.sampled_from(
            ["projectId", "resolution", "workspaceId", "webhookUrl", "outputPrefix", "pollSeconds"]
        ),
        field_values,
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.none(),
)
paths = st.one_of(
    st.just("/exports"),
    st.text(max_size=90).map(lambda s: "/exports/" + s),
    st.text(max_size=30).map(lambda s: "/" + s),
)
queries = st.none() | st.dictionaries(
    st.sampled_from(["projectId", "status", "limit", "nextToken", "x"]) | st.text(max_size=8),
    st.text(max_size=40) | st.sampled_from([PROJECT_ID, "RUNNING", "1", "100", "eyJ0IjoiYSJ9"]),
    max_size=4,
)
headers = st.dictionaries(
    st.sampled_from(["Idempotency-Key", "Content-Type", "X-Forwarded-Proto"]),
    st.text(max_size=40),
    max_size=3,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=paths,
    query=queries,
    extra_headers=headers,
    body=request_bodies,
)
def test_generated_requests_never_get_a_5xx(
    api: Api,
    method: str,
    path: str,
    query: dict[str, str] | None,
    extra_headers: dict[str, str],
    body: str | None,
) -> None:
    event = get_event(path, query) if path.startswith("/exports/") else get_event("/exports", query)
    event["path"] = path
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["body"] = body
    answer = api.call(with_headers(event, extra_headers))
    assert answer.status < 500, (answer.status, answer.body)
    assert isinstance(answer.body, dict)


# --- template ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode(str(ROOT / "template.yaml"))
    assert not problems and isinstance(decoded, dict)
    return decoded


def test_api_function_gets_its_settings_from_the_template(template: dict[str, Any]) -> None:
    props = template["Resources"]["ApiFunction"]["Properties"]
    assert props["CodeUri"] == "functions/api/"
    assert props["Handler"] == "app.lambda_handler"
    assert props["Environment"]["Variables"] == {
        "STATE_MACHINE_ARN": {"Ref": "ExportStateMachine"},
        "OUTPUT_BUCKET": {"Ref": "OutputBucket"},
        "DEDUPE_WINDOW_SECONDS": {"Ref": "DedupeWindowSeconds"},
        "DOWNLOAD_LINK_SECONDS": {"Ref": "DownloadLinkSeconds"},
        "CORS_ALLOW_ORIGIN": {"Ref": "ApiCorsOrigin"},
        "WEBHOOK_SECRET_ID": {"Fn::Sub": "${AWS::StackName}-webhook"},
    }
    assert props["Timeout"] < 29  # API Gateway's own limit


def test_api_function_has_least_privilege(template: dict[str, Any]) -> None:
    props = template["Resources"]["ApiFunction"]["Properties"]
    [policy] = props["Policies"]
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert set(statements) == {
        "StartAndListExports",
        "FollowExports",
        "PresignDownloadLinks",
        "ReadWebhookSecret",
        "WakeExports",
        "CancelAndRedriveExports",
    }
    assert statements["WakeExports"]["Action"] == "states:SendTaskSuccess"
    start = statements["StartAndListExports"]
    assert set(start["Action"]) == {"states:StartExecution", "states:ListExecutions"}
    assert start["Resource"] == {"Ref": "ExportStateMachine"}
    follow = statements["FollowExports"]
    assert set(follow["Action"]) == {"states:DescribeExecution", "states:GetExecutionHistory"}
    assert follow["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
        ":execution:${ExportStateMachine.Name}:*"
    }
    control = statements["CancelAndRedriveExports"]
    assert set(control["Action"]) == {"states:StopExecution", "states:RedriveExecution"}
    assert control["Resource"] == follow["Resource"]  # the export machine's executions only
    presign = statements["PresignDownloadLinks"]
    assert presign["Action"] == "s3:GetObject"
    assert presign["Resource"] == {"Fn::Sub": "${OutputBucket.Arn}/${OutputKeyPrefix}*"}


def test_api_is_iam_authenticated_by_default_or_uses_keys(template: dict[str, Any]) -> None:
    assert template["Parameters"]["ApiAuth"]["Default"] == "AWS_IAM"
    assert template["Conditions"]["UseApiKeys"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "API_KEY"]}
    api = template["Resources"]["ExportApi"]
    assert api["Type"] == "AWS::Serverless::Api"
    body = api["Properties"]["DefinitionBody"]
    schemes = body["components"]["securitySchemes"]
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert schemes["apiKey"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    security = {"Fn::If": ["UseApiKeys", [{"apiKey": []}], [{"sigv4": []}]]}
    methods = [
        (path, method)
        for path, item in body["paths"].items()
        for method in item
        if method != "options" and not path.startswith("/webhooks/")
    ]
    assert sorted(methods) == [
        ("/exports", "get"),
        ("/exports", "post"),
        ("/exports/{exportId}", "get"),
        ("/exports/{exportId}/cancel", "post"),
        ("/exports/{exportId}/redrive", "post"),
    ]
    # AI Studios has no AWS credentials: its webhook's token (in the path) is the check.
    assert body["paths"]["/webhooks/{exportId}/{token}"] == {"post": {"security": []}}
    for path, method in methods:
        assert body["paths"][path][method]["security"] == security
    for name in ("ExportApiUsagePlan", "ExportApiKey", "ExportApiUsagePlanKey"):
        assert template["Resources"][name]["Condition"] == "UseApiKeys"


def test_api_stage_is_throttled_logged_traced_and_cors_is_opt_in(
    template: dict[str, Any],
) -> None:
    props = template["Resources"]["ExportApi"]["Properties"]
    [setting] = props["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurstLimit"}
    assert props["TracingEnabled"] is True
    group = props["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert template["Resources"][group]["Properties"]["RetentionInDays"] == {
        "Ref": "LogRetentionInDays"
    }
    assert '$context.identity.apiKey"' not in props["AccessLogSetting"]["Format"]
    assert template["Parameters"]["ApiCorsOrigin"]["Default"] == ""
    for path, item in props["DefinitionBody"]["paths"].items():
        if path.startswith("/webhooks/"):
            continue  # called by AI Studios' servers, never by a browser
        assert item["options"]["Fn::If"][0] == "EnableCors"
        assert item["options"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert "ApiUrl" in template["Outputs"]


def test_status_url_echoes_only_a_sane_host_and_scheme(api: Api) -> None:
    event = post_event(json.dumps({"projectId": PROJECT_ID}), {"X-Forwarded-Proto": "javascript"})
    answer = api.call(event)
    assert answer.body["statusUrl"].startswith(f"https://{API_HOST}/v1/exports/")
    event = post_event(json.dumps({"projectId": PROJECT_ID}))
    event["requestContext"]["domainName"] = "evil.example/\r\nX-Injected: 1"
    answer = api.call(event)
    assert answer.body["statusUrl"] == f"/v1/exports/{answer.body['exportId']}"
