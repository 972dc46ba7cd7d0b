"""The library against the simulator over loopback: unknown projects, get-project, done words.

Each test uses the real client and workflow over real HTTP on 127.0.0.1, and asserts both what
the library decided and the calls the simulator saw.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from aistudios_export import workflow
from aistudios_export.client import AiStudiosClient
from aistudios_export.errors import ProjectNotFound, RequestRejected, TransientError
from aistudios_export.models import MAX_URL_MISSING_CHECKS
from aistudios_local.simulator import NO_PROJECT, AiStudiosSimulator, Scenario
from tests.unit._fixtures import T0, Clock

TIMEOUT = 5
EXPORT_PATH = "/api/odin/v3/editor/project/export"
KNOWN = "65fa6b07dca2e367461a2925"
_ids = itertools.count(0x5000)


@pytest.fixture(scope="module")
def sim() -> Iterator[AiStudiosSimulator]:
    with AiStudiosSimulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def closed() -> Iterator[AiStudiosSimulator]:
    """An account that has one project, KNOWN, and those given a scenario."""
    with AiStudiosSimulator(projects=[KNOWN.upper()]) as simulator:
        yield simulator


@pytest.fixture
def pid() -> str:
    return f"{next(_ids):024x}"


def client(sim: AiStudiosSimulator) -> AiStudiosClient:
    token = sim.issue_token()
    return AiStudiosClient(sim.base_url, lambda *, fresh=False: token)


def calls_about(sim: AiStudiosSimulator, project_id: str) -> list[tuple[str, str, int]]:
    return [(c.method, c.path, c.status) for c in sim.calls if c.project_id == project_id]


# --- unknown projects ----------------------------------------------------------------------


def test_a_project_outside_the_account_fails_at_submit_once_with_project_not_found(
    closed: AiStudiosSimulator, pid: str
) -> None:
    rendering = closed.renders_in_flight
    with pytest.raises(ProjectNotFound) as info:
        client(closed).submit_export({"projectId": pid, "resolution": "1080"})
    error = info.value
    assert isinstance(error, RequestRejected) and not isinstance(error, TransientError)
    assert (error.status, error.code, error.method, error.path) == (
        404,
        "PROJECT_NOT_FOUND",
        "POST",
        EXPORT_PATH,
    )
    assert pid in str(error)
    assert calls_about(closed, pid) == [("POST", EXPORT_PATH, 404)]
    assert closed.renders_in_flight == rendering  # nothing started


def test_a_closed_account_still_exports_its_projects(closed: AiStudiosSimulator) -> None:
    api = client(closed)
    assert api.submit_export({"projectId": KNOWN}) == KNOWN
    assert api.get_progress(KNOWN).state == "exporting"


def test_a_scenario_makes_a_project_the_account_s(closed: AiStudiosSimulator, pid: str) -> None:
    closed.set_scenario(pid, Scenario(progress_steps=(100.0,)))
    assert client(closed).submit_export({"projectId": pid}) == pid


def test_progress_and_get_project_of_an_unknown_project_are_refused(
    closed: AiStudiosSimulator, pid: str
) -> None:
    api = client(closed)
    with pytest.raises(RequestRejected) as progress:
        api.get_progress(pid)
    with pytest.raises(RequestRejected) as project:
        api.get_project(pid)
    assert progress.value.status == project.value.status == 404
    assert progress.value.code == project.value.code == "PROJECT_NOT_FOUND"


def test_the_all_zero_id_is_no_project_even_in_an_open_account(sim: AiStudiosSimulator) -> None:
    with pytest.raises(ProjectNotFound):
        client(sim).submit_export({"projectId": NO_PROJECT})
    # And the token probe, which asks for its progress, still reads the refusal as "token OK".
    assert client(sim).accepts_token(sim.issue_token()) is True


def test_the_standalone_simulator_takes_the_account_s_projects(pid: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aistudios_local.simulator", "--project", KNOWN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        token = requests.post(
            f"{base_url}/api/odin/v3/auth/token",
            json={"appId": "local-app-id", "userKey": "local-user-key"},
            timeout=TIMEOUT,
        ).json()["data"]["token"]
        api = AiStudiosClient(base_url, lambda *, fresh=False: token)
        assert api.submit_export({"projectId": KNOWN}) == KNOWN
        with pytest.raises(ProjectNotFound):
            api.submit_export({"projectId": pid})
    finally:
        proc.terminate()
        proc.communicate(timeout=TIMEOUT)


# --- get-project and the state words -------------------------------------------------------


def test_get_project_has_the_url_the_progress_answer_lacks(
    sim: AiStudiosSimulator, pid: str
) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(100.0,), url_missing_polls=-1))
    api = client(sim)
    api.submit_export({"projectId": pid})
    assert api.get_progress(pid).download_url is None
    info = api.get_project(pid)
    assert (info.state, info.progress) == ("exported", 100.0)
    assert info.download_url is not None and info.download_url.startswith(sim.base_url)
    assert "signature=" not in repr(info)


def test_check_progress_finds_the_url_with_get_project(sim: AiStudiosSimulator, pid: str) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(100.0,), url_missing_polls=-1))
    api = client(sim)
    job = workflow.submit_export({"projectId": pid, "pollSeconds": 0}, {}, api=api, now=Clock(T0))
    job = workflow.check_progress(job, api=api, now=Clock(T0 + 1))
    assert (job["outcome"], job["urlMissingChecks"]) == ("done", 0)
    project_path = f"/api/odin/v3/editor/project/{pid}"
    assert [(m, p) for m, p, _ in calls_about(sim, pid)][-1] == ("GET", project_path)


def test_check_progress_gives_up_when_get_project_has_no_url_either(
    sim: AiStudiosSimulator, pid: str
) -> None:
    scenario = Scenario(progress_steps=(100.0,), url_missing_polls=-1, project_url_missing=True)
    sim.set_scenario(pid, scenario)
    api = client(sim)
    clock = Clock(T0)
    job = workflow.submit_export({"projectId": pid, "pollSeconds": 0}, {}, api=api, now=clock)
    for _ in range(MAX_URL_MISSING_CHECKS + 1):
        clock.advance(2)
        job = workflow.check_progress(job, api=api, now=clock)
    assert (job["outcome"], job["error"]) == ("failed", "DownloadUrlMissing")
    project_calls = [c for c in calls_about(sim, pid) if c[1].endswith(f"/editor/project/{pid}")]
    assert len(project_calls) == MAX_URL_MISSING_CHECKS + 1


@pytest.mark.parametrize("word", ["exported", "Complete"])
def test_the_documented_done_words_finish_the_export(
    sim: AiStudiosSimulator, pid: str, word: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim.set_scenario(pid, Scenario(progress_steps=(50.0, 100.0), done_state=word))
    api = client(sim)
    job = workflow.submit_export({"projectId": pid, "pollSeconds": 0}, {}, api=api, now=Clock(T0))
    job = workflow.check_progress(job, api=api, now=Clock(T0 + 1))
    assert job["outcome"] == "waiting"
    with caplog.at_level(logging.WARNING):
        job = workflow.check_progress(job, api=api, now=Clock(T0 + 2))
    assert (job["outcome"], job["state"], job["unknownStates"]) == ("done", word, [])
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # a known word


def test_get_project_before_any_export_is_refused(sim: AiStudiosSimulator, pid: str) -> None:
    with pytest.raises(RequestRejected):
        client(sim).get_project(pid)
