"""The AI Studios simulator, driven over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from aistudios_local.simulator import (
    DEFAULT_VIDEO_SIZE,
    AiStudiosSimulator,
    Scenario,
    iter_video,
    video_bytes,
    video_sha256,
)
from aistudios_local.simulator.endpoints import SimulatedApi
from aistudios_local.simulator.messages import Request
from aistudios_local.simulator.state import SimulatorState

TIMEOUT = 5
SAMPLE_ID = "65fa6b07dca2e367461a2925"
TOKEN_PATH = "/api/odin/v3/auth/token"
EXPORT_PATH = "/api/odin/v3/editor/project/export"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def sim() -> Iterator[AiStudiosSimulator]:
    with AiStudiosSimulator() as simulator:
        yield simulator


@pytest.fixture
def token(sim: AiStudiosSimulator) -> str:
    return sim.issue_token()


@pytest.fixture
def pid() -> str:
    """A fresh project id per test, so tests sharing the module's simulator never interfere."""
    return f"{next(_ids):024x}"


def mint(sim: AiStudiosSimulator, **creds: str) -> requests.Response:
    body = {"appId": "local-app-id", "userKey": "local-user-key", **creds}
    return requests.post(sim.base_url + TOKEN_PATH, json=body, timeout=TIMEOUT)


def submit(sim: AiStudiosSimulator, token: str | None, body: dict[str, Any]) -> requests.Response:
    headers = {"Authorization": token} if token is not None else {}
    return requests.post(sim.base_url + EXPORT_PATH, json=body, headers=headers, timeout=TIMEOUT)


def poll(sim: AiStudiosSimulator, token: str, project_id: str) -> requests.Response:
    url = f"{sim.base_url}/api/odin/v3/editor/progress/{project_id}"
    return requests.get(url, headers={"Authorization": token}, timeout=TIMEOUT)


def progress(sim: AiStudiosSimulator, token: str, project_id: str) -> dict[str, Any]:
    resp = poll(sim, token, project_id)
    assert resp.status_code == 200
    payload = resp.json()
    assert payload["success"] is True
    data: dict[str, Any] = payload["data"]
    return data


def run_to_url(sim: AiStudiosSimulator, token: str, project_id: str, **extra: str) -> str:
    assert submit(sim, token, {"projectId": project_id, **extra}).status_code == 200
    for _ in range(10):
        data = progress(sim, token, project_id)
        if "downloadUrl" in data:
            url: str = data["downloadUrl"]
            return url
    raise AssertionError("no downloadUrl")


def error_code(resp: requests.Response) -> str:
    payload = resp.json()
    assert payload["success"] is False
    code: str = payload["error"]["code"]
    assert payload["error"]["msg"]
    return code


# -- token -------------------------------------------------------------------------------------


def test_token_flow_mints_independent_valid_tokens(sim: AiStudiosSimulator, pid: str) -> None:
    before = sim.tokens_minted
    first, second = mint(sim), mint(sim)
    assert first.status_code == second.status_code == 200
    tokens = [r.json()["data"]["token"] for r in (first, second)]
    assert tokens[0] != tokens[1]
    assert sim.tokens_minted == before + 2
    for tok in tokens:  # minting again does not revoke the earlier token
        assert submit(sim, tok, {"projectId": pid}).json() == {
            "success": True,
            "data": {"projectId": pid},
        }


def test_wrong_credentials_answer_401(sim: AiStudiosSimulator) -> None:
    before = sim.tokens_minted
    resp = mint(sim, userKey="wrong")
    assert resp.status_code == 401
    assert error_code(resp) == "INVALID_CREDENTIALS"
    bad = requests.post(sim.base_url + TOKEN_PATH, json={"appId": "x"}, timeout=TIMEOUT)
    assert bad.status_code == 400
    assert sim.tokens_minted == before


@pytest.mark.parametrize("header", [None, "not-a-token", "Bearer {token}"])
def test_export_without_a_valid_raw_token_answers_401(
    sim: AiStudiosSimulator, token: str, pid: str, header: str | None
) -> None:
    resp = submit(sim, None if header is None else header.format(token=token), {"projectId": pid})
    assert resp.status_code == 401
    assert error_code(resp) == "UNAUTHORIZED"


# -- export validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"projectId": "65fa6b07dca2e36746"}, "INVALID_PROJECT_ID"),
        ({"projectId": "65fa6b07dca2e367461a292z"}, "INVALID_PROJECT_ID"),
        ({"projectId": 65}, "INVALID_PROJECT_ID"),
        ({}, "INVALID_PROJECT_ID"),
        ({"projectId": "65fa6b07dca2e367461a2925", "resolution": "1440"}, "INVALID_RESOLUTION"),
        ({"projectId": "65fa6b07dca2e367461a2925", "resolution": 1080}, "INVALID_RESOLUTION"),
        ({"projectId": "65fa6b07dca2e367461a2925", "webhookUrl": 3}, "INVALID_PARAMETER"),
    ],
)
def test_export_validation_answers_400(
    sim: AiStudiosSimulator, token: str, body: dict[str, Any], code: str
) -> None:
    resp = submit(sim, token, body)
    assert resp.status_code == 400
    assert error_code(resp) == code


@pytest.mark.parametrize("resolution", ["4k", "1080", "720", "480"])
def test_every_documented_resolution_is_accepted(
    sim: AiStudiosSimulator, token: str, pid: str, resolution: str
) -> None:
    body = {"projectId": pid, "resolution": resolution, "workspaceId": "w", "webhookUrl": "x"}
    assert submit(sim, token, body).status_code == 200


# -- progress ----------------------------------------------------------------------------------


def test_progress_walks_the_steps_and_hands_out_a_url_at_100(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    submit(sim, token, {"projectId": pid})
    seen = [progress(sim, token, pid) for _ in range(4)]
    assert [(d["state"], d["progress"]) for d in seen] == [
        ("exporting", 0.0),
        ("exporting", 35.5),
        ("exporting", 72.0),
        ("completed", 100.0),
    ]
    assert ["downloadUrl" in d for d in seen] == [False, False, False, True]
    again = progress(sim, token, pid)  # the last step repeats
    assert (again["state"], again["progress"]) == ("completed", 100.0)
    assert sim.poll_count(pid) == 5


def test_progress_of_an_unknown_project_answers_404(sim: AiStudiosSimulator, token: str) -> None:
    resp = poll(sim, token, "ffffffffffffffffffffffff")
    assert resp.status_code == 404
    assert error_code(resp) == "PROJECT_NOT_FOUND"


def test_progress_without_token_answers_401(sim: AiStudiosSimulator, token: str, pid: str) -> None:
    submit(sim, token, {"projectId": pid})
    assert poll(sim, "stale", pid).status_code == 401
    assert sim.poll_count(pid) == 0


def test_resubmit_restarts_the_export(sim: AiStudiosSimulator, token: str, pid: str) -> None:
    submit(sim, token, {"projectId": pid})
    progress(sim, token, pid)
    assert progress(sim, token, pid)["progress"] == 35.5
    submit(sim, token, {"projectId": pid})
    assert progress(sim, token, pid)["progress"] == 0.0


def test_stalled_export_repeats_its_last_step(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(0.0, 12.5)))
    submit(sim, token, {"projectId": pid})
    seen = [progress(sim, token, pid) for _ in range(5)]
    assert [d["progress"] for d in seen] == [0.0, 12.5, 12.5, 12.5, 12.5]
    assert {d["state"] for d in seen} == {"exporting"}


def test_renders_in_flight_count_accepted_exports_until_they_finish_or_fail() -> None:
    # A simulator of its own: the module's is shared by tests whose exports never finish.
    with AiStudiosSimulator() as own:
        token = own.issue_token()
        done, failing, stalled = (f"{next(_ids):024x}" for _ in range(3))
        own.set_scenario(failing, Scenario(fail_at_poll=1))
        own.set_scenario(stalled, Scenario(progress_steps=(10.0,)))
        for project in (done, failing, stalled):
            assert submit(own, token, {"projectId": project}).status_code == 200
        submit(own, token, {"projectId": stalled})  # a resubmit is still one render
        assert submit(own, token, {"projectId": "nope"}).status_code == 400  # never rendered
        assert (own.renders_in_flight, own.max_renders_in_flight) == (3, 3)
        run_to_url(own, token, done)
        progress(own, token, failing)
        progress(own, token, stalled)
        assert (own.renders_in_flight, own.max_renders_in_flight) == (1, 3)
        run_to_url(own, token, done)  # a new render of the same project
        assert (own.renders_in_flight, own.max_renders_in_flight) == (1, 3)


def test_fail_at_poll_reports_the_failure_state_from_then_on(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(fail_at_poll=2, failure_state="Cancelled"))
    submit(sim, token, {"projectId": pid})
    states = [progress(sim, token, pid) for _ in range(5)]
    assert [d["state"] for d in states] == ["exporting"] + ["Cancelled"] * 4
    assert not any("downloadUrl" in d for d in states)


def test_url_missing_polls_omits_the_url_then_hands_it_out(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(100.0,), url_missing_polls=2))
    submit(sim, token, {"projectId": pid})
    seen = [progress(sim, token, pid) for _ in range(3)]
    assert [d["state"] for d in seen] == ["completed"] * 3
    assert ["downloadUrl" in d for d in seen] == [False, False, True]


def test_url_missing_forever(sim: AiStudiosSimulator, token: str, pid: str) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(100.0,), url_missing_polls=-1))
    submit(sim, token, {"projectId": pid})
    assert not any("downloadUrl" in progress(sim, token, pid) for _ in range(6))


def test_get_project_reads_without_advancing(sim: AiStudiosSimulator, token: str, pid: str) -> None:
    url = f"{sim.base_url}/api/odin/v3/editor/project/{pid}"
    headers = {"Authorization": token}
    assert requests.get(url, headers=headers, timeout=TIMEOUT).status_code == 404
    submit(sim, token, {"projectId": pid})
    project = requests.get(url, headers=headers, timeout=TIMEOUT).json()["data"]["project"]
    assert (project["_id"], project["state"], project["progress"]) == (pid, "exporting", 0)
    assert project["download_url"] is None
    progress(sim, token, pid)
    progress(sim, token, pid)
    project = requests.get(url, headers=headers, timeout=TIMEOUT).json()["data"]["project"]
    assert (project["state"], project["progress"]) == ("exporting", 35)
    assert sim.poll_count(pid) == 2
    done_url = run_to_url(sim, token, pid)
    project = requests.get(url, headers=headers, timeout=TIMEOUT).json()["data"]["project"]
    # The progress answer says "completed"; get-project uses the documented word.
    assert (project["state"], project["progress"], project["download_url"]) == (
        "exported",
        100,
        done_url,
    )
    assert requests.get(url, timeout=TIMEOUT).status_code == 401


# -- injected faults -----------------------------------------------------------------------------


def test_submit_failures_answer_before_accepting(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(submit_failures=(503, 429, 500)))
    answers = [submit(sim, token, {"projectId": pid}) for _ in range(4)]
    assert [r.status_code for r in answers] == [503, 429, 500, 200]
    assert answers[0].headers["Content-Type"].startswith("text/html")
    assert error_code(answers[1]) == "TOO_MANY_REQUESTS"
    assert answers[3].json()["data"] == {"projectId": pid}
    assert progress(sim, token, pid)["progress"] == 0.0


def test_progress_failures_answer_the_first_calls(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_failures=(503, 429, "malformed", "bad-envelope")))
    submit(sim, token, {"projectId": pid})
    assert poll(sim, token, pid).status_code == 503
    assert error_code(poll(sim, token, pid)) == "TOO_MANY_REQUESTS"
    malformed = poll(sim, token, pid)
    assert malformed.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        malformed.json()
    bad = poll(sim, token, pid)
    assert bad.status_code == 200
    assert "success" not in bad.json()
    assert "data" not in bad.json()
    assert progress(sim, token, pid)["progress"] == 0.0  # faults did not advance the export


def test_progress_reset_closes_the_connection_without_an_answer(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_failures=("reset",)))
    submit(sim, token, {"projectId": pid})
    with pytest.raises(requests.ConnectionError):
        poll(sim, token, pid)
    assert progress(sim, token, pid)["state"] == "exporting"
    assert [c.status for c in sim.calls if c.project_id == pid][-2:] == [0, 200]


def test_reject_submit_answers_an_error_envelope(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(reject_submit=("NO_CREDIT", "not enough credit")))
    resp = submit(sim, token, {"projectId": pid})
    assert resp.status_code == 400
    assert resp.json() == {
        "success": False,
        "error": {"code": "NO_CREDIT", "msg": "not enough credit"},
    }
    assert poll(sim, token, pid).status_code == 404


def test_revoke_token_after_revokes_every_token_until_a_new_mint() -> None:
    project_id = "65fa6b07dca2e367461a2925"
    with AiStudiosSimulator(default_scenario=Scenario(revoke_token_after=2)) as own:
        seeded = own.issue_token()
        assert submit(own, seeded, {"projectId": project_id}).status_code == 200
        assert poll(own, seeded, project_id).status_code == 200  # 2nd call, then revoked
        assert poll(own, seeded, project_id).status_code == 401
        fresh = mint(own).json()["data"]["token"]
        assert [progress(own, fresh, project_id)["progress"] for _ in range(2)] == [35.5, 72.0]
        assert poll(own, seeded, project_id).status_code == 401
        assert own.tokens_minted == 1
        assert [c.authorized for c in own.calls] == [True, True, False, False, True, True, False]


# -- downloads -----------------------------------------------------------------------------------


def test_download_serves_the_deterministic_video(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    url = run_to_url(sim, token, pid, resolution="720")
    assert url.startswith(f"{sim.base_url}/downloads/")
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {"expires", "signature"}
    resp = requests.get(url, timeout=TIMEOUT, stream=True)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "video/mp4"
    assert int(resp.headers["Content-Length"]) == DEFAULT_VIDEO_SIZE
    data = b"".join(resp.iter_content(256 * 1024))
    assert data == video_bytes(pid, "720")
    assert data[4:12] == b"ftypisom"
    assert hashlib.sha256(data).hexdigest() == video_sha256(pid, "720")
    assert sim.expected_sha256(pid) == video_sha256(pid, "720")
    assert video_sha256(pid, "720") != video_sha256(pid, "1080")
    assert sim.download_count(pid) == 1


def test_head_gives_the_length_without_counting_a_download(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(video_size=1000))
    resp = requests.head(run_to_url(sim, token, pid), timeout=TIMEOUT)
    assert (resp.status_code, resp.headers["Content-Length"]) == (200, "1000")
    assert sim.download_count(pid) == 0


def test_video_size_override(sim: AiStudiosSimulator, token: str, pid: str) -> None:
    sim.set_scenario(pid, Scenario(video_size=70_001))
    resp = requests.get(run_to_url(sim, token, pid), timeout=TIMEOUT)
    assert resp.content == video_bytes(pid, "1080", 70_001)
    assert sim.expected_sha256(pid) == hashlib.sha256(resp.content).hexdigest()


def test_each_done_poll_hands_out_a_new_signed_url(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(100.0,), video_size=5000))
    submit(sim, token, {"projectId": pid})
    urls = [progress(sim, token, pid)["downloadUrl"] for _ in range(3)]
    signatures = {parse_qs(urlsplit(u).query)["signature"][0] for u in urls}
    assert len(signatures) == 3
    bodies = {requests.get(u, timeout=TIMEOUT).content for u in urls}
    assert bodies == {video_bytes(pid, "1080", 5000)}


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_download_urls_name_the_host_the_client_used(
    sim: AiStudiosSimulator, token: str, pid: str, host: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(100.0,)))
    submit(sim, token, {"projectId": pid})
    port = urlsplit(sim.base_url).port
    resp = requests.get(
        f"{sim.base_url}/api/odin/v3/editor/progress/{pid}",
        headers={"Authorization": token, "Host": f"{host}:{port}"},
        timeout=TIMEOUT,
    )
    assert urlsplit(resp.json()["data"]["downloadUrl"]).netloc == f"{host}:{port}"


def test_a_foreign_host_header_does_not_steer_download_urls(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(100.0,)))
    submit(sim, token, {"projectId": pid})
    resp = requests.get(
        f"{sim.base_url}/api/odin/v3/editor/progress/{pid}",
        headers={"Authorization": token, "Host": "evil.example:443"},
        timeout=TIMEOUT,
    )
    assert resp.json()["data"]["downloadUrl"].startswith(sim.base_url + "/downloads/")


def test_unknown_or_tampered_signature_answers_403(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    url = run_to_url(sim, token, pid)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    base = f"{sim.base_url}{parts.path}"
    forged = f"{base}?expires={query['expires'][0]}&signature={'0' * 64}"
    tampered = f"{base}?expires={int(query['expires'][0]) + 1}&signature={query['signature'][0]}"
    for bad in (forged, tampered, base):
        resp = requests.get(bad, timeout=TIMEOUT)
        assert resp.status_code == 403
        assert b"SignatureDoesNotMatch" in resp.content
    assert sim.download_count(pid) == 0


def test_expired_urls_answer_403_then_a_fresh_one_works(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(expired_urls=1, video_size=4096))
    first = run_to_url(sim, token, pid)
    expired = requests.get(first, timeout=TIMEOUT)
    assert expired.status_code == 403
    assert b"Request has expired" in expired.content
    second = progress(sim, token, pid)["downloadUrl"]
    assert requests.get(second, timeout=TIMEOUT).content == video_bytes(pid, "1080", 4096)


def test_cut_download_delivers_fewer_bytes_than_promised(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(cut_downloads=1))
    url = run_to_url(sim, token, pid)
    received = bytearray()
    with requests.get(url, timeout=TIMEOUT, stream=True) as resp:
        assert int(resp.headers["Content-Length"]) == DEFAULT_VIDEO_SIZE
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in resp.iter_content(64 * 1024):
                received += chunk
    assert 0 < len(received) < DEFAULT_VIDEO_SIZE
    assert bytes(received) == video_bytes(pid)[: len(received)]
    whole = requests.get(url, timeout=TIMEOUT)  # the second download is complete
    assert hashlib.sha256(whole.content).hexdigest() == video_sha256(pid)
    assert sim.download_count(pid) == 2


def test_download_url_override_is_handed_out_verbatim(
    sim: AiStudiosSimulator, token: str, pid: str
) -> None:
    forbidden = "http://169.254.169.254/latest/meta-data/video.mp4"
    sim.set_scenario(pid, Scenario(download_url=forbidden))
    assert run_to_url(sim, token, pid) == forbidden  # never fetched here


# -- records, video helpers, lifecycle -------------------------------------------------------------


def test_calls_are_recorded_without_secrets(sim: AiStudiosSimulator, pid: str) -> None:
    start = len(sim.calls)
    fresh: str = mint(sim).json()["data"]["token"]
    url = run_to_url(sim, fresh, pid)
    requests.get(url, timeout=TIMEOUT).close()
    calls = sim.calls[start:]
    assert [(c.method, c.status) for c in calls] == [("POST", 200)] * 2 + [("GET", 200)] * 5
    token_call = calls[0]
    assert (token_call.path, token_call.body, token_call.authorized) == (TOKEN_PATH, None, False)
    assert calls[1].body == {"projectId": pid}
    assert calls[-1].path == urlsplit(url).path
    assert (calls[-1].project_id, calls[-1].authorized) == (pid, False)
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    recorded = repr(calls)
    for secret in (fresh, "local-app-id", "local-user-key", signature):
        assert secret not in recorded


def test_unknown_route_answers_404(sim: AiStudiosSimulator) -> None:
    resp = requests.get(f"{sim.base_url}/api/odin/v3/nothing", timeout=TIMEOUT)
    assert resp.status_code == 404
    assert error_code(resp) == "NOT_FOUND"


# -- the endpoints without a server -------------------------------------------------------------


def offline_api(**scenario: Any) -> SimulatedApi:
    state = SimulatorState(
        app_id="app", user_key="key", default_scenario=Scenario(**scenario), video_size=100
    )
    return SimulatedApi(state)


def request(method: str, target: str, token: str | None = None, body: object = None) -> Request:
    parts = urlsplit(target)
    raw = json.dumps(body).encode() if body is not None else b""
    return Request(method, parts.path, parts.query, token, raw, "http://localhost:9")


def test_endpoints_answer_and_record_a_whole_export_without_a_server() -> None:
    api = offline_api(progress_steps=(100.0,))
    minted = api.dispatch(request("POST", TOKEN_PATH, body={"appId": "app", "userKey": "key"}))
    token = json.loads(minted.body)["data"]["token"]
    accepted = api.dispatch(request("POST", EXPORT_PATH, token, {"projectId": SAMPLE_ID}))
    assert json.loads(accepted.body) == {"success": True, "data": {"projectId": SAMPLE_ID}}
    done = api.dispatch(request("GET", f"/api/odin/v3/editor/progress/{SAMPLE_ID}", token))
    url: str = json.loads(done.body)["data"]["downloadUrl"]
    assert url.startswith("http://localhost:9/downloads/")
    video = api.dispatch(request("GET", url.removeprefix("http://localhost:9")))
    assert (video.status, video.content_type, video.cut) == (200, "video/mp4", False)
    assert video.video is not None
    assert (video.video.project_id, video.video.resolution, video.video.size) == (
        SAMPLE_ID,
        "1080",
        100,
    )
    calls = api.state.answered()
    assert [(c.method, c.status, c.project_id, c.authorized) for c in calls] == [
        ("POST", 200, None, False),
        ("POST", 200, SAMPLE_ID, True),
        ("GET", 200, SAMPLE_ID, True),
        ("GET", 200, SAMPLE_ID, False),
    ]
    assert api.state.counts(SAMPLE_ID) == (1, 1)
    assert api.state.minted_over_http() == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/api/odin/v3/editor/progress/{SAMPLE_ID}"),
        ("HEAD", f"/api/odin/v3/editor/project/{SAMPLE_ID}"),
        ("GET", TOKEN_PATH),
        ("GET", "/downloads/abc.mp4/more"),
    ],
)
def test_a_route_answers_only_its_own_methods_and_whole_paths(method: str, path: str) -> None:
    api = offline_api()
    answer = api.dispatch(request(method, path, api.state.issue_token(), {"projectId": SAMPLE_ID}))
    assert answer.status == 404
    assert json.loads(answer.body)["error"]["code"] == "NOT_FOUND"
    assert [(c.status, c.project_id, c.authorized) for c in api.state.answered()] == [
        (404, None, True)
    ]


@pytest.mark.parametrize("size", [0, 5, 32, 40, 41, 65_536 + 40, 200_001])
def test_video_bytes_have_the_requested_size_and_an_mp4_header(size: int) -> None:
    data = video_bytes(SAMPLE_ID, "1080", size)
    assert len(data) == size
    assert data == b"".join(iter_video(SAMPLE_ID, "1080", size))
    assert video_sha256(SAMPLE_ID, "1080", size) == hashlib.sha256(data).hexdigest()
    if size >= 40:
        assert data[4:8] == b"ftyp"
        assert data[36:40] == b"mdat"
        assert int.from_bytes(data[32:36]) == size - 32
    assert all(len(c) <= 64 * 1024 for c in iter_video(SAMPLE_ID, "1080", size))


def test_scenario_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="progress_steps"):
        Scenario(progress_steps=())
    with pytest.raises(ValueError, match="unknown progress failure"):
        Scenario(progress_failures=("explode",))


def test_stop_closes_idle_keep_alive_connections_and_is_idempotent() -> None:
    own = AiStudiosSimulator()
    with pytest.raises(RuntimeError):
        _ = own.base_url
    base_url = own.start().base_url
    with requests.Session() as session:
        resp = session.post(base_url + TOKEN_PATH, json={}, timeout=TIMEOUT)
        assert resp.status_code == 400
        own.stop()  # would hang on the idle keep-alive connection if it were not closed
        own.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(base_url + TOKEN_PATH, json={}, timeout=TIMEOUT)
    with pytest.raises(RuntimeError):
        _ = own.base_url


def test_runs_standalone_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aistudios_local.simulator", "--video-size", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        resp = requests.post(
            base_url + TOKEN_PATH,
            json={"appId": "local-app-id", "userKey": "local-user-key"},
            timeout=TIMEOUT,
        )
        assert resp.json()["success"] is True
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0
        assert stderr == ""  # quiet: no request log lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
