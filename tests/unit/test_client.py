"""The AI Studios HTTP client: envelope, error translation, token re-read, timeouts, no secrets."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from aistudios_export.client import (
    DEFAULT_TIMEOUT,
    EXPORT_PATH,
    PROBE_PROJECT_ID,
    PROGRESS_PATH,
    PROJECT_PATH,
    TOKEN_PATH,
    AiStudiosClient,
    Progress,
    ProjectInfo,
    token_fingerprint,
)
from aistudios_export.errors import (
    ApiError,
    ConfigurationError,
    NetworkError,
    ProjectNotFound,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
    TransientError,
    Unauthorized,
)
from tests.unit._fixtures import PROJECT_ID

BASE = "https://api.aistudios.test"
EXPORT_URL = BASE + EXPORT_PATH
PROGRESS_URL = BASE + PROGRESS_PATH.format(project_id=PROJECT_ID)
TOKEN_URL = BASE + TOKEN_PATH
PROJECT_URL = BASE + PROJECT_PATH.format(project_id=PROJECT_ID)
OLD_TOKEN = "tok-OLD-5ecret"
NEW_TOKEN = "tok-NEW-5ecret"
APP_ID = "app-1d-5ecret"
USER_KEY = "user-key-5ecret"
SIGNED_URL = "https://cdn.example.com/v.mp4?X-Amz-Signature=sig-5ecret"


class Tokens:
    """A token source: ``cached`` for normal reads, ``fresh`` when asked to re-read."""

    def __init__(self, cached: str = OLD_TOKEN, fresh: str | None = None) -> None:
        self.cached = cached
        self.fresh = cached if fresh is None else fresh
        self.calls: list[bool] = []

    def __call__(self, *, fresh: bool = False) -> str:
        self.calls.append(fresh)
        return self.fresh if fresh else self.cached


class SpySession(requests.Session):
    """Records the keyword arguments of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        self.seen.append({"method": method, "url": url, **kwargs})
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def client(
    tokens: Tokens | None = None, session: requests.Session | None = None
) -> AiStudiosClient:
    return AiStudiosClient(BASE + "/", Tokens() if tokens is None else tokens, session=session)


def ok(data: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "data": data}


def progress_answer(**data: Any) -> dict[str, Any]:
    return ok(data)


def no_secret_in(error: BaseException) -> None:
    text = str(error) + repr(error.args)
    for secret in (OLD_TOKEN, NEW_TOKEN, APP_ID, USER_KEY, "sig-5ecret"):
        assert secret not in text


# --- success -----------------------------------------------------------------------------


def test_submit_export_sends_the_body_with_the_raw_token(api: responses.RequestsMock) -> None:
    api.post(EXPORT_URL, json=ok({"projectId": PROJECT_ID}))
    body = {"projectId": PROJECT_ID, "resolution": "1080"}
    assert client().submit_export(body) == PROJECT_ID
    (call,) = api.calls
    assert call.request.headers["Authorization"] == OLD_TOKEN  # raw: no "Bearer"
    assert call.request.headers["Accept"] == "application/json"
    assert json.loads(call.request.body or b"") == body


def test_submit_export_without_data_project_id_uses_the_requested_one(
    api: responses.RequestsMock,
) -> None:
    api.post(EXPORT_URL, json=ok({}))
    assert client().submit_export({"projectId": PROJECT_ID}) == PROJECT_ID


def test_submit_export_with_a_bad_project_id_answer(api: responses.RequestsMock) -> None:
    api.post(EXPORT_URL, json=ok({"projectId": 5}))
    with pytest.raises(ServiceUnavailable, match=r"no data\.projectId"):
        client().submit_export({"projectId": PROJECT_ID})


def test_get_progress_reads_state_progress_and_url(api: responses.RequestsMock) -> None:
    api.get(
        PROGRESS_URL, json=progress_answer(state="completed", progress=100, downloadUrl=SIGNED_URL)
    )
    assert client().get_progress(PROJECT_ID) == Progress("completed", 100.0, SIGNED_URL)
    assert api.calls[0].request.headers["Authorization"] == OLD_TOKEN


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"state": "exporting", "progress": "42.5"}, Progress("exporting", 42.5, None)),
        ({"progress": 0}, Progress("", 0.0, None)),
        ({"state": "x", "progress": 7, "downloadUrl": ""}, Progress("x", 7.0, None)),
        ({"state": "x", "progress": 100.0, "downloadUrl": None}, Progress("x", 100.0, None)),
    ],
)
def test_get_progress_tolerates_documented_variations(
    api: responses.RequestsMock, data: dict[str, Any], expected: Progress
) -> None:
    api.get(PROGRESS_URL, json=ok(data))
    assert client().get_progress(PROJECT_ID) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"state": "x"},
        {"state": "x", "progress": None},
        {"state": "x", "progress": "abc"},
        {"state": "x", "progress": "NaN"},
        {"state": "x", "progress": True},
        {"state": "x", "progress": -0.5},
        {"state": "x", "progress": 100.01},
        {"state": "x", "progress": [50]},
        {"state": 5, "progress": 50},
        {"state": None, "progress": 50},
        {"state": "x", "progress": 50, "downloadUrl": 5},
    ],
)
def test_malformed_progress_is_service_unavailable(
    api: responses.RequestsMock, data: dict[str, Any]
) -> None:
    api.get(PROGRESS_URL, json=ok(data))
    with pytest.raises(ServiceUnavailable, match="progress answer is malformed") as info:
        client().get_progress(PROJECT_ID)
    assert info.value.path == PROGRESS_PATH.format(project_id=PROJECT_ID)


def test_progress_repr_hides_the_download_url() -> None:
    assert "sig-5ecret" not in repr(Progress("completed", 100.0, SIGNED_URL))
    assert "<redacted>" in repr(Progress("completed", 100.0, SIGNED_URL))


def test_mint_token_sends_the_credentials_without_a_token(api: responses.RequestsMock) -> None:
    api.post(TOKEN_URL, json=ok({"token": NEW_TOKEN}))
    tokens = Tokens()
    assert client(tokens).mint_token(APP_ID, USER_KEY) == NEW_TOKEN
    (call,) = api.calls
    assert "Authorization" not in call.request.headers
    assert json.loads(call.request.body or b"") == {"appId": APP_ID, "userKey": USER_KEY}
    assert tokens.calls == []


@pytest.mark.parametrize("data", [{}, {"token": ""}, {"token": 5}])
def test_mint_token_without_a_token_in_the_answer(
    api: responses.RequestsMock, data: dict[str, Any]
) -> None:
    api.post(TOKEN_URL, json=ok(data))
    with pytest.raises(ServiceUnavailable, match=r"no data\.token") as info:
        AiStudiosClient(BASE).mint_token(APP_ID, USER_KEY)
    no_secret_in(info.value)


# --- 401/403: one re-read of the token ---------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_re_read_and_the_call_repeated_when_it_changed(
    api: responses.RequestsMock, status: int
) -> None:
    api.get(
        PROGRESS_URL,
        status=status,
        json={"success": False, "error": {"code": "E401", "msg": "bad token"}},
    )
    api.get(PROGRESS_URL, json=progress_answer(state="exporting", progress=10))
    tokens = Tokens(fresh=NEW_TOKEN)
    assert client(tokens).get_progress(PROJECT_ID).progress == 10.0
    assert tokens.calls == [False, True]
    assert [c.request.headers["Authorization"] for c in api.calls] == [OLD_TOKEN, NEW_TOKEN]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_that_did_not_change_is_unauthorized(
    api: responses.RequestsMock, status: int
) -> None:
    api.get(
        PROGRESS_URL,
        status=status,
        json={"success": False, "error": {"code": "E401", "msg": "bad token"}},
    )
    tokens = Tokens()
    with pytest.raises(Unauthorized) as info:
        client(tokens).get_progress(PROJECT_ID)
    assert tokens.calls == [False, True]
    assert len(api.calls) == 1
    assert info.value.status == status
    assert f"answered HTTP {status} (code E401: bad token)" in str(info.value)
    no_secret_in(info.value)


def test_fresh_token_refused_too_is_unauthorized_after_two_calls(
    api: responses.RequestsMock,
) -> None:
    api.post(EXPORT_URL, status=401, body="")
    tokens = Tokens(fresh=NEW_TOKEN)
    with pytest.raises(Unauthorized) as info:
        client(tokens).submit_export({"projectId": PROJECT_ID})
    assert tokens.calls == [False, True]
    assert len(api.calls) == 2
    no_secret_in(info.value)


def test_empty_token_is_re_read_before_any_call(api: responses.RequestsMock) -> None:
    api.get(PROGRESS_URL, json=progress_answer(state="exporting", progress=1))
    tokens = Tokens(cached="", fresh=NEW_TOKEN)
    client(tokens).get_progress(PROJECT_ID)
    assert tokens.calls == [False, True]
    assert [c.request.headers["Authorization"] for c in api.calls] == [NEW_TOKEN]


def test_no_token_yet_is_unauthorized_without_a_call(api: responses.RequestsMock) -> None:
    tokens = Tokens(cached="", fresh="")
    with pytest.raises(Unauthorized, match="holds no token yet"):
        client(tokens).get_progress(PROJECT_ID)
    assert len(api.calls) == 0


def test_client_without_token_source_is_unauthorized(api: responses.RequestsMock) -> None:
    with pytest.raises(Unauthorized, match="no token source"):
        AiStudiosClient(BASE).get_progress(PROJECT_ID)
    assert len(api.calls) == 0


def test_refused_credentials_on_mint_are_unauthorized_without_re_read(
    api: responses.RequestsMock,
) -> None:
    api.post(
        TOKEN_URL,
        status=401,
        json={"success": False, "error": {"code": "AUTH", "msg": "invalid key"}},
    )
    tokens = Tokens()
    with pytest.raises(Unauthorized) as info:
        client(tokens).mint_token(APP_ID, USER_KEY)
    assert tokens.calls == []
    no_secret_in(info.value)


# --- error translation -------------------------------------------------------------------


def test_429_is_rate_limited_with_retry_after(api: responses.RequestsMock) -> None:
    api.get(PROGRESS_URL, status=429, headers={"Retry-After": "7"}, body="slow down")
    with pytest.raises(RateLimited) as info:
        client().get_progress(PROJECT_ID)
    assert "Retry-After 7" in str(info.value)
    assert info.value.status == 429
    assert isinstance(info.value, TransientError)
    no_secret_in(info.value)


def test_429_without_retry_after(api: responses.RequestsMock) -> None:
    api.get(
        PROGRESS_URL,
        status=429,
        json={"success": False, "error": {"code": "RATE", "msg": "too many"}},
    )
    with pytest.raises(RateLimited) as info:
        client().get_progress(PROJECT_ID)
    assert "Retry-After" not in str(info.value)
    assert info.value.code == "RATE"


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (500, '{"success": false, "error": {"code": "E500", "msg": "boom"}}', "application/json"),
        (502, "<html><body>Bad Gateway</body></html>", "text/html"),
        (503, "", "text/plain"),
        (504, "<html>timeout</html>", "text/html"),
    ],
)
def test_5xx_is_service_unavailable(
    api: responses.RequestsMock, status: int, body: str, content_type: str
) -> None:
    api.post(EXPORT_URL, status=status, body=body, content_type=content_type)
    with pytest.raises(ServiceUnavailable) as info:
        client().submit_export({"projectId": PROJECT_ID})
    assert info.value.status == status
    assert f"POST {EXPORT_PATH} answered HTTP {status}" in str(info.value)
    assert isinstance(info.value, TransientError)


@pytest.mark.parametrize(
    "body",
    ["<html>maintenance</html>", "", "not json", '["success", true]', '{"data": {}}', "null"],
)
def test_200_without_the_envelope_is_service_unavailable(
    api: responses.RequestsMock, body: str
) -> None:
    api.get(PROGRESS_URL, status=200, body=body)
    with pytest.raises(ServiceUnavailable, match="not the JSON envelope"):
        client().get_progress(PROJECT_ID)


@pytest.mark.parametrize("data", [None, [], "ok"])
def test_success_without_a_data_object_is_service_unavailable(
    api: responses.RequestsMock, data: object
) -> None:
    api.get(PROGRESS_URL, json={"success": True, "data": data})
    with pytest.raises(ServiceUnavailable, match="without a data object"):
        client().get_progress(PROJECT_ID)


def test_success_false_is_request_rejected_with_code_and_message(
    api: responses.RequestsMock,
) -> None:
    api.post(
        EXPORT_URL, json={"success": False, "error": {"code": "C402", "msg": "not enough credit"}}
    )
    with pytest.raises(RequestRejected) as info:
        client().submit_export({"projectId": PROJECT_ID})
    assert type(info.value) is RequestRejected
    assert (
        str(info.value)
        == f"POST {EXPORT_PATH} answered success: false (code C402: not enough credit)"
    )
    assert (info.value.code, info.value.status, info.value.method) == ("C402", 200, "POST")


# The answer for an unknown project is undocumented: each plausible shape is read as one.
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (200, {"code": "P404", "msg": "project not found"}),
        (200, {"code": 1004, "msg": "Project does not exist"}),
        (200, {"code": "NO_SUCH_PROJECT", "msg": ""}),
        (404, {"code": "PROJECT_NOT_FOUND", "msg": "project not found"}),
        (404, {"code": 40400, "msg": "oops"}),
        (400, {"code": "INVALID", "msg": "unknown project"}),
    ],
)
def test_an_unknown_project_at_submit_is_project_not_found(
    api: responses.RequestsMock, status: int, error: dict[str, Any]
) -> None:
    api.post(EXPORT_URL, status=status, json={"success": False, "error": error})
    with pytest.raises(ProjectNotFound) as info:
        client().submit_export({"projectId": PROJECT_ID})
    assert isinstance(info.value, RequestRejected) and not isinstance(info.value, TransientError)
    assert (info.value.status, info.value.code, info.value.method) == (
        status,
        str(error["code"]),
        "POST",
    )
    assert str(info.value).startswith(f"AI Studios does not know project {PROJECT_ID} ")


def test_a_404_page_that_is_not_json_is_not_read_as_an_unknown_project(
    api: responses.RequestsMock,
) -> None:
    api.post(EXPORT_URL, status=404, body="<html>Not Found</html>")
    with pytest.raises(ServiceUnavailable):
        client().submit_export({"projectId": PROJECT_ID})


def test_get_project_reads_state_progress_and_download_url(api: responses.RequestsMock) -> None:
    project = {"_id": PROJECT_ID, "state": "exported", "progress": 100, "download_url": SIGNED_URL}
    api.get(PROJECT_URL, json=ok({"project": project}))
    info = client().get_project(PROJECT_ID)
    assert info == ProjectInfo("exported", 100.0, SIGNED_URL)
    assert "sig-5ecret" not in repr(info)
    call = api.calls[0].request
    assert call.headers["Authorization"] == OLD_TOKEN


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ({"state": "exporting", "progress": 40, "download_url": None}, ("exporting", 40.0, None)),
        ({"state": None, "download_url": ""}, ("", None, None)),
    ],
)
def test_get_project_without_a_url_says_none(
    api: responses.RequestsMock, project: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    api.get(PROJECT_URL, json=ok({"project": project}))
    assert client().get_project(PROJECT_ID) == ProjectInfo(*expected)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"project": []},
        {"project": {"state": 3}},
        {"project": {"download_url": 7}},
        {"project": {"progress": "half"}},
        {"project": {"progress": True}},
    ],
)
def test_a_malformed_get_project_answer_is_service_unavailable(
    api: responses.RequestsMock, data: dict[str, Any]
) -> None:
    api.get(PROJECT_URL, json=ok(data))
    with pytest.raises(ServiceUnavailable, match="project answer"):
        client().get_project(PROJECT_ID)


def test_get_project_has_a_timeout_and_maps_errors(api: responses.RequestsMock) -> None:
    api.get(PROJECT_URL, status=503, body="busy")
    session = SpySession()
    with pytest.raises(ServiceUnavailable):
        client(session=session).get_project(PROJECT_ID)
    assert [seen["timeout"] for seen in session.seen] == [DEFAULT_TIMEOUT]


def test_error_message_is_bounded(api: responses.RequestsMock) -> None:
    api.post(EXPORT_URL, json={"success": False, "error": {"code": 7, "msg": "x" * 5000}})
    with pytest.raises(RequestRejected) as info:
        client().submit_export({"projectId": PROJECT_ID})
    assert info.value.code == "7"
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_envelope_is_request_rejected(api: responses.RequestsMock, status: int) -> None:
    api.post(
        EXPORT_URL, status=status, json={"success": False, "error": {"code": "BAD", "msg": "no"}}
    )
    with pytest.raises(RequestRejected) as info:
        client().submit_export({"projectId": PROJECT_ID})
    assert info.value.status == status
    assert f"answered HTTP {status} (code BAD: no)" in str(info.value)


def test_4xx_that_is_not_json_is_service_unavailable(api: responses.RequestsMock) -> None:
    api.post(EXPORT_URL, status=404, body="<html>not here</html>", content_type="text/html")
    with pytest.raises(ServiceUnavailable):
        client().submit_export({"projectId": PROJECT_ID})


@pytest.mark.parametrize(
    ("exception", "words"),
    [
        (requests.ReadTimeout("read timed out " + PROGRESS_URL), "timed out"),
        (requests.ConnectTimeout("connect timed out"), "timed out"),
        (
            requests.ConnectionError(f"connection reset by {BASE} with token {OLD_TOKEN}"),
            "ConnectionError",
        ),
        (requests.exceptions.ChunkedEncodingError("cut"), "ChunkedEncodingError"),
    ],
)
def test_timeouts_and_connection_errors_are_network_errors(
    api: responses.RequestsMock, exception: Exception, words: str
) -> None:
    api.get(PROGRESS_URL, body=exception)
    with pytest.raises(NetworkError) as info:
        client().get_progress(PROJECT_ID)
    assert words in str(info.value)
    assert info.value.status is None
    assert isinstance(info.value, TransientError)
    no_secret_in(info.value)


# --- every request has a timeout ---------------------------------------------------------


def test_every_request_has_a_timeout(api: responses.RequestsMock) -> None:
    api.post(TOKEN_URL, json=ok({"token": NEW_TOKEN}))
    api.post(EXPORT_URL, json=ok({"projectId": PROJECT_ID}))
    api.get(PROGRESS_URL, status=401, body="")
    api.get(PROGRESS_URL, json=progress_answer(state="exporting", progress=5))
    session = SpySession()
    c = client(Tokens(fresh=NEW_TOKEN), session)
    c.mint_token(APP_ID, USER_KEY)
    c.submit_export({"projectId": PROJECT_ID})
    c.get_progress(PROJECT_ID)
    assert len(session.seen) == 4
    assert [s["timeout"] for s in session.seen] == [DEFAULT_TIMEOUT] * 4


def test_custom_timeout_is_applied(api: responses.RequestsMock) -> None:
    api.get(PROGRESS_URL, json=progress_answer(state="exporting", progress=5))
    session = SpySession()
    AiStudiosClient(BASE, Tokens(), session=session, timeout=(1.0, 2.0)).get_progress(PROJECT_ID)
    assert session.seen[0]["timeout"] == (1.0, 2.0)
    assert session.seen[0]["url"] == PROGRESS_URL


# --- no secret in any error ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, ""),
        (403, "<html>forbidden</html>"),
        (429, ""),
        (500, ""),
        (400, '{"success": false, "error": {"code": "X", "msg": "rejected"}}'),
        (200, '{"success": false, "error": {"code": "X", "msg": "rejected"}}'),
        (200, "garbage"),
        (200, '{"success": true, "data": {"projectId": 5, "progress": "bad"}}'),
    ],
)
def test_no_token_or_credential_in_any_error(
    api: responses.RequestsMock, status: int, body: str
) -> None:
    for method, url in (("POST", TOKEN_URL), ("POST", EXPORT_URL), ("GET", PROGRESS_URL)):
        api.add(method, url, status=status, body=body)
    c = client(Tokens(fresh=NEW_TOKEN))
    calls = (
        lambda: c.mint_token(APP_ID, USER_KEY),
        lambda: c.submit_export({"projectId": PROJECT_ID}),
        lambda: c.get_progress(PROJECT_ID),
    )
    for call in calls:
        with pytest.raises(ApiError) as info:
            call()
        no_secret_in(info.value)
        assert "?" not in info.value.path


# --- an API that cannot be reached, or is not a URL -----------------------------------------


def test_a_host_that_does_not_resolve_is_a_network_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(NetworkError) as info:
        AiStudiosClient("https://app.aistudios.invalid").mint_token(APP_ID, USER_KEY)
    assert str(info.value) == (
        "POST https://app.aistudios.invalid/api/odin/v3/auth/token failed: "
        "the host name does not resolve (ConnectionError)"
    )
    no_secret_in(info.value)


def test_a_closed_port_is_a_network_error_saying_so() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError) as info:
        AiStudiosClient(f"http://127.0.0.1:{port}").mint_token(APP_ID, USER_KEY)
    assert str(info.value) == (
        f"POST http://127.0.0.1:{port}/api/odin/v3/auth/token failed: the connection was "
        "refused (nothing listens on that port) (ConnectionError)"
    )


@pytest.mark.parametrize(
    "url",
    ["notaurl", "", "ftp://app.aistudios.com", "https://", "https://u:p@host", "https://h/x?y"],
)
def test_a_base_url_that_is_not_an_origin_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not an http\\(s\\) origin"):
        AiStudiosClient(url)


def test_a_base_url_keeps_its_origin_only() -> None:
    assert AiStudiosClient("https://app.aistudios.com/").base_url == "https://app.aistudios.com"


def test_accepts_token_asks_once_with_that_token(api: responses.RequestsMock) -> None:
    probe = BASE + PROGRESS_PATH.format(project_id=PROBE_PROJECT_ID)
    api.get(probe, status=404, json={"success": False, "error": {"code": "NOT_FOUND"}})
    assert client(Tokens()).accepts_token("tok-probe") is True
    api.replace(responses.GET, probe, status=401, json={"success": False})
    assert client(Tokens()).accepts_token("tok-probe") is False
    assert [c.request.headers["Authorization"] for c in api.calls] == ["tok-probe"] * 2


def test_unauthorized_names_the_refused_token_by_fingerprint(api: responses.RequestsMock) -> None:
    api.get(PROGRESS_URL, status=401, json={"success": False})
    with pytest.raises(Unauthorized) as info:
        client(Tokens(cached=OLD_TOKEN, fresh=NEW_TOKEN)).get_progress(PROJECT_ID)
    # The cached token was refused, the re-read one too: the fresh one is the one to replace.
    assert info.value.token_fingerprint == token_fingerprint(NEW_TOKEN)
    assert str(info.value).endswith(f"(refused token {token_fingerprint(NEW_TOKEN)})")
    cause = json.dumps({"errorMessage": str(info.value), "errorType": "Unauthorized"})
    assert Unauthorized.refused_fingerprint(cause) == token_fingerprint(NEW_TOKEN)
    no_secret_in(info.value)


def test_no_token_yet_is_refused_without_a_call(api: responses.RequestsMock) -> None:
    with pytest.raises(Unauthorized) as info:
        client(Tokens(cached="")).get_progress(PROJECT_ID)
    assert info.value.token_fingerprint == "none"
    assert len(api.calls) == 0


# --- Retry-After -----------------------------------------------------------------------------


def throttled_client(budget: float, slept: list[float]) -> AiStudiosClient:
    return AiStudiosClient(BASE, Tokens(), rate_limit_wait=budget, sleep=slept.append)


def test_retry_after_within_the_budget_is_waited_out_and_the_call_repeated(
    api: responses.RequestsMock,
) -> None:
    api.get(PROGRESS_URL, status=429, headers={"Retry-After": "2"}, body="slow down")
    api.get(PROGRESS_URL, json=progress_answer(state="exporting", progress=5))
    slept: list[float] = []
    assert throttled_client(10, slept).get_progress(PROJECT_ID).progress == 5
    assert slept == [2.0]
    assert len(api.calls) == 2


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("30", "beyond the budget"),
        ("99999999999999999999", "a lie, read as an hour"),
        ("soon", "unreadable"),
        ("-5", "negative"),
        ("Thu, 01 Jan 2099 00:00:00", "a date without a zone"),
    ],
)
def test_retry_after_that_cannot_be_honoured_raises_at_once(
    api: responses.RequestsMock, header: str, why: str
) -> None:
    api.get(PROGRESS_URL, status=429, headers={"Retry-After": header}, body="slow down")
    slept: list[float] = []
    with pytest.raises(RateLimited):
        throttled_client(10, slept).get_progress(PROJECT_ID)
    assert slept == [], why
    assert len(api.calls) == 1


def test_a_service_that_always_says_retry_now_is_tried_a_bounded_number_of_times(
    api: responses.RequestsMock,
) -> None:
    past = "Thu, 01 Jan 1970 00:00:00 GMT"
    api.get(PROGRESS_URL, status=429, headers={"Retry-After": past}, body="slow down")
    slept: list[float] = []
    with pytest.raises(RateLimited) as info:
        throttled_client(10, slept).get_progress(PROJECT_ID)
    assert info.value.retry_after == 0.0
    assert slept == [0.0, 0.0]
    assert len(api.calls) == 3


def test_retry_after_as_an_http_date_is_read_as_seconds_from_now(
    api: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aistudios_export.answers.time.time", lambda: 1_767_225_600.0)
    api.get(
        PROGRESS_URL,
        status=429,
        headers={"Retry-After": "Thu, 01 Jan 2026 00:00:04 GMT"},
        body="slow down",
    )
    with pytest.raises(RateLimited) as info:
        client().get_progress(PROJECT_ID)
    assert info.value.retry_after == 4.0
