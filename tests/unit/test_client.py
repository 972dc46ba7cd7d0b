"""The AI Studios HTTP client: envelope, error translation, token re-read, timeouts, no secrets.

Every call goes over real HTTP to a loopback server whose answers each test scripts
(:mod:`tests.unit._scripted_api`); the tests assert what the client returns or raises and what
the server saw.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import urllib3

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
from tests.unit._downloads import free_port
from tests.unit._fixtures import PROJECT_ID
from tests.unit._scripted_api import ScriptedApi, scripted_api, unanswered_port

PROGRESS = PROGRESS_PATH.format(project_id=PROJECT_ID)
PROJECT = PROJECT_PATH.format(project_id=PROJECT_ID)
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


class RecordingPool(urllib3.PoolManager):
    """A pool manager like the client's own (no retries) recording each request's timeout.

    It records the method, URL and ``timeout`` of every request, then makes it.
    """

    def __init__(self) -> None:
        super().__init__(retries=False)
        self.seen: list[tuple[str, str, Any]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        self.seen.append((method, url, kwargs.get("timeout")))
        return super().request(method, url, *args, **kwargs)

    def timeouts(self) -> list[tuple[object, object]]:
        """The ``(connect, read)`` seconds of each request; a request without any fails."""
        found: list[tuple[object, object]] = []
        for _, _, timeout in self.seen:
            assert isinstance(timeout, urllib3.Timeout)
            assert timeout.total is None
            found.append((timeout.connect_timeout, timeout.read_timeout))
        return found


@pytest.fixture
def api() -> Iterator[ScriptedApi]:
    """The AI Studios API on loopback: answers as the test scripts, records what it is asked."""
    with scripted_api() as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[ScriptedApi]:
    """A second origin, where a redirect may point."""
    with scripted_api() as server:
        yield server


def client(
    api: ScriptedApi, tokens: Tokens | None = None, http: urllib3.PoolManager | None = None
) -> AiStudiosClient:
    return AiStudiosClient(api.origin + "/", Tokens() if tokens is None else tokens, http=http)


def ok(data: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "data": data}


def progress_answer(**data: Any) -> dict[str, Any]:
    return ok(data)


def authorizations(api: ScriptedApi) -> list[str | None]:
    """The ``Authorization`` header of each request the server saw, in order."""
    return [seen.headers.get("Authorization") for seen in api.seen]


def no_secret_in(error: BaseException) -> None:
    text = str(error) + repr(error.args)
    for secret in (OLD_TOKEN, NEW_TOKEN, APP_ID, USER_KEY, "sig-5ecret"):
        assert secret not in text


# --- success -----------------------------------------------------------------------------


def test_submit_export_sends_the_body_with_the_raw_token(api: ScriptedApi) -> None:
    api.answer("POST", EXPORT_PATH, json=ok({"projectId": PROJECT_ID}))
    body = {"projectId": PROJECT_ID, "resolution": "1080"}
    assert client(api).submit_export(body) == PROJECT_ID
    (seen,) = api.seen
    assert (seen.method, seen.path) == ("POST", EXPORT_PATH)
    assert seen.headers.get_all("Authorization") == [OLD_TOKEN]  # raw: no "Bearer"
    assert seen.headers.get("Accept") == "application/json"
    assert seen.headers.get("Content-Type") == "application/json"
    assert seen.json() == body


def test_submit_export_without_data_project_id_uses_the_requested_one(api: ScriptedApi) -> None:
    api.answer("POST", EXPORT_PATH, json=ok({}))
    assert client(api).submit_export({"projectId": PROJECT_ID}) == PROJECT_ID


def test_submit_export_with_a_bad_project_id_answer(api: ScriptedApi) -> None:
    api.answer("POST", EXPORT_PATH, json=ok({"projectId": 5}))
    with pytest.raises(ServiceUnavailable, match=r"no data\.projectId"):
        client(api).submit_export({"projectId": PROJECT_ID})


def test_get_progress_reads_state_progress_and_url(api: ScriptedApi) -> None:
    api.answer(
        "GET",
        PROGRESS,
        json=progress_answer(state="completed", progress=100, downloadUrl=SIGNED_URL),
    )
    assert client(api).get_progress(PROJECT_ID) == Progress("completed", 100.0, SIGNED_URL)
    (seen,) = api.seen
    assert (seen.method, seen.path, seen.body) == ("GET", PROGRESS, b"")
    assert seen.headers.get_all("Authorization") == [OLD_TOKEN]
    assert seen.headers.get("Accept") == "application/json"


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
    api: ScriptedApi, data: dict[str, Any], expected: Progress
) -> None:
    api.answer("GET", PROGRESS, json=ok(data))
    assert client(api).get_progress(PROJECT_ID) == expected


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
def test_malformed_progress_is_service_unavailable(api: ScriptedApi, data: dict[str, Any]) -> None:
    api.answer("GET", PROGRESS, json=ok(data))
    with pytest.raises(ServiceUnavailable, match="progress answer is malformed") as info:
        client(api).get_progress(PROJECT_ID)
    assert info.value.path == PROGRESS


def test_progress_repr_hides_the_download_url() -> None:
    assert "sig-5ecret" not in repr(Progress("completed", 100.0, SIGNED_URL))
    assert "<redacted>" in repr(Progress("completed", 100.0, SIGNED_URL))


def test_mint_token_sends_the_credentials_without_a_token(api: ScriptedApi) -> None:
    api.answer("POST", TOKEN_PATH, json=ok({"token": NEW_TOKEN}))
    tokens = Tokens()
    assert client(api, tokens).mint_token(APP_ID, USER_KEY) == NEW_TOKEN
    (seen,) = api.seen
    assert (seen.method, seen.path) == ("POST", TOKEN_PATH)
    assert "Authorization" not in seen.headers
    assert seen.json() == {"appId": APP_ID, "userKey": USER_KEY}
    assert tokens.calls == []


@pytest.mark.parametrize("data", [{}, {"token": ""}, {"token": 5}])
def test_mint_token_without_a_token_in_the_answer(api: ScriptedApi, data: dict[str, Any]) -> None:
    api.answer("POST", TOKEN_PATH, json=ok(data))
    with pytest.raises(ServiceUnavailable, match=r"no data\.token") as info:
        AiStudiosClient(api.origin).mint_token(APP_ID, USER_KEY)
    no_secret_in(info.value)


# --- 401/403: one re-read of the token ---------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_re_read_and_the_call_repeated_when_it_changed(
    api: ScriptedApi, status: int
) -> None:
    api.answer(
        "GET",
        PROGRESS,
        status,
        json={"success": False, "error": {"code": "E401", "msg": "bad token"}},
    )
    api.answer("GET", PROGRESS, json=progress_answer(state="exporting", progress=10))
    tokens = Tokens(fresh=NEW_TOKEN)
    assert client(api, tokens).get_progress(PROJECT_ID).progress == 10.0
    assert tokens.calls == [False, True]
    assert authorizations(api) == [OLD_TOKEN, NEW_TOKEN]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_that_did_not_change_is_unauthorized(api: ScriptedApi, status: int) -> None:
    api.answer(
        "GET",
        PROGRESS,
        status,
        json={"success": False, "error": {"code": "E401", "msg": "bad token"}},
    )
    tokens = Tokens()
    with pytest.raises(Unauthorized) as info:
        client(api, tokens).get_progress(PROJECT_ID)
    assert tokens.calls == [False, True]
    assert len(api.seen) == 1
    assert info.value.status == status
    assert f"answered HTTP {status} (code E401: bad token)" in str(info.value)
    no_secret_in(info.value)


def test_fresh_token_refused_too_is_unauthorized_after_two_calls(api: ScriptedApi) -> None:
    api.answer("POST", EXPORT_PATH, 401, body="")
    tokens = Tokens(fresh=NEW_TOKEN)
    with pytest.raises(Unauthorized) as info:
        client(api, tokens).submit_export({"projectId": PROJECT_ID})
    assert tokens.calls == [False, True]
    assert authorizations(api) == [OLD_TOKEN, NEW_TOKEN]
    assert [seen.json() for seen in api.seen] == [{"projectId": PROJECT_ID}] * 2
    no_secret_in(info.value)


def test_empty_token_is_re_read_before_any_call(api: ScriptedApi) -> None:
    api.answer("GET", PROGRESS, json=progress_answer(state="exporting", progress=1))
    tokens = Tokens(cached="", fresh=NEW_TOKEN)
    client(api, tokens).get_progress(PROJECT_ID)
    assert tokens.calls == [False, True]
    assert authorizations(api) == [NEW_TOKEN]


def test_no_token_yet_is_unauthorized_without_a_call(api: ScriptedApi) -> None:
    tokens = Tokens(cached="", fresh="")
    with pytest.raises(Unauthorized, match="holds no token yet"):
        client(api, tokens).get_progress(PROJECT_ID)
    assert api.seen == []


def test_client_without_token_source_is_unauthorized(api: ScriptedApi) -> None:
    with pytest.raises(Unauthorized, match="no token source"):
        AiStudiosClient(api.origin).get_progress(PROJECT_ID)
    assert api.seen == []


def test_refused_credentials_on_mint_are_unauthorized_without_re_read(api: ScriptedApi) -> None:
    api.answer(
        "POST",
        TOKEN_PATH,
        401,
        json={"success": False, "error": {"code": "AUTH", "msg": "invalid key"}},
    )
    tokens = Tokens()
    with pytest.raises(Unauthorized) as info:
        client(api, tokens).mint_token(APP_ID, USER_KEY)
    assert tokens.calls == []
    assert authorizations(api) == [None]
    no_secret_in(info.value)


# --- error translation -------------------------------------------------------------------


def test_429_is_rate_limited_with_retry_after(api: ScriptedApi) -> None:
    api.answer("GET", PROGRESS, 429, headers={"Retry-After": "7"}, body="slow down")
    with pytest.raises(RateLimited) as info:
        client(api).get_progress(PROJECT_ID)
    assert "Retry-After 7" in str(info.value)
    assert info.value.status == 429
    assert isinstance(info.value, TransientError)
    assert len(api.seen) == 1
    no_secret_in(info.value)


def test_429_without_retry_after(api: ScriptedApi) -> None:
    api.answer(
        "GET",
        PROGRESS,
        429,
        json={"success": False, "error": {"code": "RATE", "msg": "too many"}},
    )
    with pytest.raises(RateLimited) as info:
        client(api).get_progress(PROJECT_ID)
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
    api: ScriptedApi, status: int, body: str, content_type: str
) -> None:
    api.answer("POST", EXPORT_PATH, status, body=body, content_type=content_type)
    with pytest.raises(ServiceUnavailable) as info:
        client(api).submit_export({"projectId": PROJECT_ID})
    assert info.value.status == status
    assert f"POST {EXPORT_PATH} answered HTTP {status}" in str(info.value)
    assert isinstance(info.value, TransientError)
    assert len(api.seen) == 1


@pytest.mark.parametrize(
    "body",
    ["<html>maintenance</html>", "", "not json", '["success", true]', '{"data": {}}', "null"],
)
def test_200_without_the_envelope_is_service_unavailable(api: ScriptedApi, body: str) -> None:
    api.answer("GET", PROGRESS, 200, body=body)
    with pytest.raises(ServiceUnavailable, match="not the JSON envelope"):
        client(api).get_progress(PROJECT_ID)


@pytest.mark.parametrize("data", [None, [], "ok"])
def test_success_without_a_data_object_is_service_unavailable(
    api: ScriptedApi, data: object
) -> None:
    api.answer("GET", PROGRESS, json={"success": True, "data": data})
    with pytest.raises(ServiceUnavailable, match="without a data object"):
        client(api).get_progress(PROJECT_ID)


def test_success_false_is_request_rejected_with_code_and_message(api: ScriptedApi) -> None:
    api.answer(
        "POST",
        EXPORT_PATH,
        json={"success": False, "error": {"code": "C402", "msg": "not enough credit"}},
    )
    with pytest.raises(RequestRejected) as info:
        client(api).submit_export({"projectId": PROJECT_ID})
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
    api: ScriptedApi, status: int, error: dict[str, Any]
) -> None:
    api.answer("POST", EXPORT_PATH, status, json={"success": False, "error": error})
    with pytest.raises(ProjectNotFound) as info:
        client(api).submit_export({"projectId": PROJECT_ID})
    assert isinstance(info.value, RequestRejected) and not isinstance(info.value, TransientError)
    assert (info.value.status, info.value.code, info.value.method) == (
        status,
        str(error["code"]),
        "POST",
    )
    assert str(info.value).startswith(f"AI Studios does not know project {PROJECT_ID} ")


def test_a_404_page_that_is_not_json_is_not_read_as_an_unknown_project(api: ScriptedApi) -> None:
    api.answer("POST", EXPORT_PATH, 404, body="<html>Not Found</html>")
    with pytest.raises(ServiceUnavailable) as info:
        client(api).submit_export({"projectId": PROJECT_ID})
    assert type(info.value) is ServiceUnavailable
    assert info.value.status == 404


def test_get_project_reads_state_progress_and_download_url(api: ScriptedApi) -> None:
    project = {"_id": PROJECT_ID, "state": "exported", "progress": 100, "download_url": SIGNED_URL}
    api.answer("GET", PROJECT, json=ok({"project": project}))
    info = client(api).get_project(PROJECT_ID)
    assert info == ProjectInfo("exported", 100.0, SIGNED_URL)
    assert "sig-5ecret" not in repr(info)
    (seen,) = api.seen
    assert (seen.method, seen.path) == ("GET", PROJECT)
    assert seen.headers.get_all("Authorization") == [OLD_TOKEN]


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ({"state": "exporting", "progress": 40, "download_url": None}, ("exporting", 40.0, None)),
        ({"state": None, "download_url": ""}, ("", None, None)),
    ],
)
def test_get_project_without_a_url_says_none(
    api: ScriptedApi, project: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    api.answer("GET", PROJECT, json=ok({"project": project}))
    assert client(api).get_project(PROJECT_ID) == ProjectInfo(*expected)


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
    api: ScriptedApi, data: dict[str, Any]
) -> None:
    api.answer("GET", PROJECT, json=ok(data))
    with pytest.raises(ServiceUnavailable, match="project answer"):
        client(api).get_project(PROJECT_ID)


def test_get_project_has_a_timeout_and_maps_errors(api: ScriptedApi) -> None:
    api.answer("GET", PROJECT, 503, body="busy")
    pool = RecordingPool()
    with pytest.raises(ServiceUnavailable) as info:
        client(api, http=pool).get_project(PROJECT_ID)
    assert info.value.status == 503
    assert pool.timeouts() == [DEFAULT_TIMEOUT]


def test_error_message_is_bounded(api: ScriptedApi) -> None:
    api.answer(
        "POST", EXPORT_PATH, json={"success": False, "error": {"code": 7, "msg": "x" * 5000}}
    )
    with pytest.raises(RequestRejected) as info:
        client(api).submit_export({"projectId": PROJECT_ID})
    assert info.value.code == "7"
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_envelope_is_request_rejected(api: ScriptedApi, status: int) -> None:
    api.answer(
        "POST", EXPORT_PATH, status, json={"success": False, "error": {"code": "BAD", "msg": "no"}}
    )
    with pytest.raises(RequestRejected) as info:
        client(api).submit_export({"projectId": PROJECT_ID})
    assert info.value.status == status
    assert f"answered HTTP {status} (code BAD: no)" in str(info.value)


def test_4xx_that_is_not_json_is_service_unavailable(api: ScriptedApi) -> None:
    api.answer("POST", EXPORT_PATH, 404, body="<html>not here</html>", content_type="text/html")
    with pytest.raises(ServiceUnavailable):
        client(api).submit_export({"projectId": PROJECT_ID})


def failing_origin(api: ScriptedApi, failure: str, stack: ExitStack) -> tuple[str, float, float]:
    """Script ``failure`` of the progress call: the origin to ask and the timeouts to use."""
    if failure == "no connection":
        return f"http://127.0.0.1:{stack.enter_context(unanswered_port())}", 0.05, 15.0
    answer = progress_answer(state="exporting", progress=5, token=OLD_TOKEN)
    if failure == "no answer":
        api.answer("GET", PROGRESS, json=answer, hold=True)
        return api.origin, 3.05, 0.05
    if failure == "reset":
        api.answer("GET", PROGRESS, json=answer, drop=True)
    else:
        api.answer("GET", PROGRESS, json=answer, cut_after=10)
    return api.origin, 3.05, 15.0


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        ("no answer", "the answer timed out (ReadTimeoutError)"),
        ("no connection", "the connection timed out (ConnectTimeoutError)"),
        ("reset", "the connection was reset before an answer arrived (ProtocolError)"),
        ("cut", "the answer was cut off before its end (ProtocolError)"),
    ],
)
def test_timeouts_and_connection_errors_are_network_errors(
    api: ScriptedApi, failure: str, words: str
) -> None:
    with ExitStack() as stack:
        origin, connect, read = failing_origin(api, failure, stack)
        c = AiStudiosClient(origin, Tokens(), timeout=(connect, read))
        with pytest.raises(NetworkError) as info:
            c.get_progress(PROJECT_ID)
    assert str(info.value) == f"GET {origin}{PROGRESS} failed: {words}"
    assert info.value.status is None
    assert isinstance(info.value, TransientError)
    assert len(api.seen) == (0 if failure == "no connection" else 1)
    no_secret_in(info.value)


# --- every request has a timeout ---------------------------------------------------------


def test_every_request_has_a_timeout(api: ScriptedApi) -> None:
    api.answer("POST", TOKEN_PATH, json=ok({"token": NEW_TOKEN}))
    api.answer("POST", EXPORT_PATH, json=ok({"projectId": PROJECT_ID}))
    api.answer("GET", PROGRESS, 401, body="")
    api.answer("GET", PROGRESS, json=progress_answer(state="exporting", progress=5))
    pool = RecordingPool()
    c = client(api, Tokens(fresh=NEW_TOKEN), pool)
    c.mint_token(APP_ID, USER_KEY)
    c.submit_export({"projectId": PROJECT_ID})
    c.get_progress(PROJECT_ID)
    assert len(api.seen) == 4
    assert pool.timeouts() == [DEFAULT_TIMEOUT] * 4


def test_custom_timeout_is_applied(api: ScriptedApi) -> None:
    api.answer("GET", PROGRESS, json=progress_answer(state="exporting", progress=5))
    pool = RecordingPool()
    AiStudiosClient(api.origin, Tokens(), http=pool, timeout=(1.0, 2.0)).get_progress(PROJECT_ID)
    assert pool.timeouts() == [(1.0, 2.0)]
    assert [(method, url) for method, url, _ in pool.seen] == [("GET", api.origin + PROGRESS)]


# --- no redirect is followed -----------------------------------------------------------------


# The client's own pool retries nothing; a caller's pool may have urllib3's default retries,
# which follow redirects unless the request says not to.
POOLS = pytest.mark.parametrize(
    "pool", [lambda: None, urllib3.PoolManager], ids=["own pool", "default PoolManager"]
)


@POOLS
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed(
    api: ScriptedApi, status: int, pool: Callable[[], urllib3.PoolManager | None]
) -> None:
    api.answer("GET", PROGRESS, status, headers={"Location": PROJECT})
    api.answer("GET", PROJECT, json=ok({"project": {"state": "exported", "progress": 100}}))
    with pytest.raises(ServiceUnavailable) as info:
        client(api, http=pool()).get_progress(PROJECT_ID)
    assert str(info.value) == (
        f"GET {PROGRESS} answered HTTP {status}, which is not an answer (no redirect is followed)"
    )
    assert info.value.status == status
    assert [(seen.method, seen.path) for seen in api.seen] == [("GET", PROGRESS)]


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("POST", EXPORT_PATH, lambda c: c.submit_export({"projectId": PROJECT_ID})),
        ("GET", PROGRESS, lambda c: c.get_progress(PROJECT_ID)),
        ("POST", TOKEN_PATH, lambda c: c.mint_token(APP_ID, USER_KEY)),
    ],
    ids=["submit_export", "get_progress", "mint_token"],
)
@POOLS
def test_the_token_never_goes_to_a_redirect_target(
    api: ScriptedApi,
    elsewhere: ScriptedApi,
    method: str,
    path: str,
    call: Callable[[AiStudiosClient], object],
    pool: Callable[[], urllib3.PoolManager | None],
) -> None:
    api.answer(method, path, 307, headers={"Location": elsewhere.origin + path})
    elsewhere.answer(method, path, json=ok({"projectId": PROJECT_ID, "token": NEW_TOKEN}))
    with pytest.raises(ServiceUnavailable, match="answered HTTP 307") as info:
        call(client(api, Tokens(fresh=NEW_TOKEN), pool()))
    assert elsewhere.seen == []
    assert len(api.seen) == 1
    no_secret_in(info.value)


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_never_read_as_the_answer(api: ScriptedApi, status: int) -> None:
    # A 3xx is not the API's answer, whatever its body: the call did not reach the endpoint.
    answer = progress_answer(state="completed", progress=100, downloadUrl=SIGNED_URL)
    api.answer("GET", PROGRESS, status, json=answer, headers={"Location": PROJECT})
    with pytest.raises(ServiceUnavailable) as info:
        client(api).get_progress(PROJECT_ID)
    assert info.value.status == status
    assert f"GET {PROGRESS} answered HTTP {status}" in str(info.value)
    assert len(api.seen) == 1
    no_secret_in(info.value)


# --- nothing is retried behind the client's back ---------------------------------------------


def test_a_callers_pool_does_not_make_the_client_retry(api: ScriptedApi) -> None:
    # urllib3's default retries would repeat the call on a reset (and sleep out a
    # Retry-After of a GET's 429 or 503), past MAX_THROTTLED_TRIES and rate_limit_wait.
    api.answer("GET", PROGRESS, drop=True)
    with pytest.raises(NetworkError) as info:
        client(api, http=urllib3.PoolManager()).get_progress(PROJECT_ID)
    assert len(api.seen) == 1
    assert str(info.value) == (
        f"GET {api.origin}{PROGRESS} failed: "
        "the connection was reset before an answer arrived (ProtocolError)"
    )


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
def test_no_token_or_credential_in_any_error(api: ScriptedApi, status: int, body: str) -> None:
    for method, path in (("POST", TOKEN_PATH), ("POST", EXPORT_PATH), ("GET", PROGRESS)):
        api.answer(method, path, status, body=body)
    c = client(api, Tokens(fresh=NEW_TOKEN))
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
    assert {seen.path for seen in api.seen} == {TOKEN_PATH, EXPORT_PATH, PROGRESS}


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
        "the host name does not resolve (NameResolutionError)"
    )
    no_secret_in(info.value)


def test_a_closed_port_is_a_network_error_saying_so() -> None:
    port = free_port()
    with pytest.raises(NetworkError) as info:
        AiStudiosClient(f"http://127.0.0.1:{port}").mint_token(APP_ID, USER_KEY)
    assert str(info.value) == (
        f"POST http://127.0.0.1:{port}/api/odin/v3/auth/token failed: the connection was "
        "refused (nothing listens on that port) (NewConnectionError)"
    )


@pytest.mark.parametrize(
    "url",
    ["notaurl", "", "ftp://app.aistudios.com", "https://", "https://u:p@host", "https://h/x?y"],
)
def test_a_base_url_that_is_not_an_origin_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not an http\\(s\\) origin"):
        AiStudiosClient(url)


def test_a_host_name_that_is_not_ascii_is_a_configuration_error_saying_how_to_write_it() -> None:
    with pytest.raises(ConfigurationError, match=r"not ASCII: write it in its IDNA \(xn--\) form"):
        AiStudiosClient("https://스튜디오.example")
    assert AiStudiosClient("https://xn--ob0bo5d9rd.example").base_url.endswith(".example")


def test_a_base_url_keeps_its_origin_only() -> None:
    assert AiStudiosClient("https://app.aistudios.com/").base_url == "https://app.aistudios.com"


def test_accepts_token_asks_once_with_that_token(api: ScriptedApi) -> None:
    probe = PROGRESS_PATH.format(project_id=PROBE_PROJECT_ID)
    api.answer("GET", probe, 404, json={"success": False, "error": {"code": "NOT_FOUND"}})
    api.answer("GET", probe, 401, json={"success": False})
    assert client(api, Tokens()).accepts_token("tok-probe") is True
    assert client(api, Tokens()).accepts_token("tok-probe") is False
    assert [seen.path for seen in api.seen] == [probe] * 2
    assert authorizations(api) == ["tok-probe"] * 2


def test_unauthorized_names_the_refused_token_by_fingerprint(api: ScriptedApi) -> None:
    api.answer("GET", PROGRESS, 401, json={"success": False})
    with pytest.raises(Unauthorized) as info:
        client(api, Tokens(cached=OLD_TOKEN, fresh=NEW_TOKEN)).get_progress(PROJECT_ID)
    # The cached token was refused, the re-read one too: the fresh one is the one to replace.
    assert info.value.token_fingerprint == token_fingerprint(NEW_TOKEN)
    assert str(info.value).endswith(f"(refused token {token_fingerprint(NEW_TOKEN)})")
    cause = json.dumps({"errorMessage": str(info.value), "errorType": "Unauthorized"})
    assert Unauthorized.refused_fingerprint(cause) == token_fingerprint(NEW_TOKEN)
    no_secret_in(info.value)


def test_no_token_yet_is_refused_without_a_call(api: ScriptedApi) -> None:
    with pytest.raises(Unauthorized) as info:
        client(api, Tokens(cached="")).get_progress(PROJECT_ID)
    assert info.value.token_fingerprint == "none"
    assert api.seen == []


# --- Retry-After -----------------------------------------------------------------------------


def throttled_client(api: ScriptedApi, budget: float, slept: list[float]) -> AiStudiosClient:
    return AiStudiosClient(api.origin, Tokens(), rate_limit_wait=budget, sleep=slept.append)


def test_retry_after_within_the_budget_is_waited_out_and_the_call_repeated(
    api: ScriptedApi,
) -> None:
    api.answer("GET", PROGRESS, 429, headers={"Retry-After": "2"}, body="slow down")
    api.answer("GET", PROGRESS, json=progress_answer(state="exporting", progress=5))
    slept: list[float] = []
    assert throttled_client(api, 10, slept).get_progress(PROJECT_ID).progress == 5
    assert slept == [2.0]
    assert len(api.seen) == 2


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
    api: ScriptedApi, header: str, why: str
) -> None:
    api.answer("GET", PROGRESS, 429, headers={"Retry-After": header}, body="slow down")
    slept: list[float] = []
    with pytest.raises(RateLimited):
        throttled_client(api, 10, slept).get_progress(PROJECT_ID)
    assert slept == [], why
    assert len(api.seen) == 1


def test_a_service_that_always_says_retry_now_is_tried_a_bounded_number_of_times(
    api: ScriptedApi,
) -> None:
    past = "Thu, 01 Jan 1970 00:00:00 GMT"
    api.answer("GET", PROGRESS, 429, headers={"Retry-After": past}, body="slow down")
    slept: list[float] = []
    with pytest.raises(RateLimited) as info:
        throttled_client(api, 10, slept).get_progress(PROJECT_ID)
    assert info.value.retry_after == 0.0
    assert slept == [0.0, 0.0]
    assert len(api.seen) == 3


def test_retry_after_as_an_http_date_is_read_as_seconds_from_now(
    api: ScriptedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aistudios_export.answers.time.time", lambda: 1_767_225_600.0)
    api.answer(
        "GET",
        PROGRESS,
        429,
        headers={"Retry-After": "Thu, 01 Jan 2026 00:00:04 GMT"},
        body="slow down",
    )
    with pytest.raises(RateLimited) as info:
        client(api).get_progress(PROJECT_ID)
    assert info.value.retry_after == 4.0
