"""exports: start (dedupe by window or key), read a status, list; over moto or a Stubber."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from aistudios_export.errors import ConfigurationError, InvalidRequest
from aistudios_export.exports import (
    ExportLister,
    ExportStarter,
    StatusReader,
    listing,
    parse_request,
)
from aistudios_export.models import ExportRequest
from aistudios_export.naming import execution_name, is_export_id
from aistudios_export.settings import HttpApiSettings
from tests.unit._fixtures import ACCOUNT, PROJECT_ID, REGION, T0, Clock, fake_aws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

OTHER_PROJECT = "65fa6b07dca2e367461a29ff"
MACHINE = "aistudios-export-ExportStateMachine"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{MACHINE}"
BUCKET = "videos"
WINDOW = 600
PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[SFNClient]:
    """moto Step Functions (executions are recorded, not run) with the export machine."""
    with fake_aws(monkeypatch):
        client = boto3.client("stepfunctions")
        client.create_state_machine(
            name=MACHINE, definition=PASS_MACHINE, roleArn=f"arn:aws:iam::{ACCOUNT}:role/r"
        )
        yield client


@pytest.fixture
def clock() -> Clock:
    # In the middle of a window, so a few seconds either way stay in it.
    return Clock(T0 + WINDOW / 2)


SETTINGS = HttpApiSettings(
    state_machine_arn=MACHINE_ARN, output_bucket=BUCKET, dedupe_window_seconds=WINDOW
)
MACHINE_ONLY = HttpApiSettings(state_machine_arn=MACHINE_ARN)
"""Every other setting at its default: links for a video in any bucket."""


def make(sfn: SFNClient, clock: Clock) -> ExportStarter:
    return ExportStarter(SETTINGS, sfn=sfn, clock=clock)


def reader(sfn: SFNClient, clock: Clock) -> StatusReader:
    return StatusReader(SETTINGS, sfn=sfn, s3=boto3.client("s3"), clock=clock)


def lister(sfn: SFNClient) -> ExportLister:
    return ExportLister(SETTINGS, sfn=sfn)


def executions(sfn: SFNClient) -> list[dict[str, Any]]:
    listed = sfn.list_executions(stateMachineArn=MACHINE_ARN)["executions"]
    return [dict(e) for e in listed]


def execution_input(sfn: SFNClient, name: str) -> Any:
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{MACHINE}:{name}"
    return json.loads(sfn.describe_execution(executionArn=arn)["input"])


# --- start ------------------------------------------------------------------------------


def test_start_names_the_execution_after_the_request_and_the_window(
    sfn: SFNClient, clock: Clock
) -> None:
    started = make(sfn, clock).start({"projectId": PROJECT_ID})
    canonical = ExportRequest.parse({"projectId": PROJECT_ID}).to_input()
    window = int(clock() // WINDOW)
    assert started.export_id == execution_name(canonical, f"window:{WINDOW}:{window}")
    assert started.export_id.startswith(f"{PROJECT_ID}-1080-")
    assert is_export_id(started.export_id)
    assert started.status == "RUNNING"
    [execution] = executions(sfn)
    assert execution["name"] == started.export_id


def test_execution_input_leaves_the_polling_knobs_to_the_deployment(
    sfn: SFNClient, clock: Clock
) -> None:
    starter = make(sfn, clock)
    plain = starter.start(
        {"projectId": PROJECT_ID.upper(), "resolution": "720", "outputPrefix": "a"}
    )
    assert execution_input(sfn, plain.export_id) == {
        "projectId": PROJECT_ID,
        "resolution": "720",
        "outputPrefix": "a/",
    }
    tuned = starter.start({"projectId": PROJECT_ID, "pollSeconds": 5})
    assert execution_input(sfn, tuned.export_id) == {
        "projectId": PROJECT_ID,
        "resolution": "1080",
        "pollSeconds": 5,
    }


def test_equal_requests_in_the_window_start_one_execution(sfn: SFNClient, clock: Clock) -> None:
    starter = make(sfn, clock)
    first = starter.start({"projectId": PROJECT_ID})
    clock.advance(WINDOW / 2 - 1)
    # Equal once validated: default resolution spelled out, upper-case id, other key order.
    second = starter.start({"resolution": "1080", "projectId": PROJECT_ID.upper()})
    assert second == first
    assert len(executions(sfn)) == 1


def test_the_next_window_still_finds_an_export_started_less_than_a_window_ago(
    sfn: SFNClient, clock: Clock
) -> None:
    starter = make(sfn, clock)
    first = starter.start({"projectId": PROJECT_ID})
    clock.advance(WINDOW / 2 + 1)  # the next window, and moto's clock says "just now"
    assert starter.start({"projectId": PROJECT_ID}) == first
    assert len(executions(sfn)) == 1


def test_an_export_started_over_a_window_ago_does_not_dedupe(sfn: SFNClient, clock: Clock) -> None:
    starter = make(sfn, clock)
    first = starter.start({"projectId": PROJECT_ID})
    # moto dates executions with the real clock: run the next request a window and more later.
    later = Clock(datetime.now(UTC).timestamp() + WINDOW + 1)
    second = make(sfn, later).start({"projectId": PROJECT_ID})
    assert second.export_id != first.export_id
    assert len(executions(sfn)) == 2


def test_different_requests_are_different_exports(sfn: SFNClient, clock: Clock) -> None:
    starter = make(sfn, clock)
    ids = {
        starter.start({"projectId": PROJECT_ID}).export_id,
        starter.start({"projectId": PROJECT_ID, "resolution": "720"}).export_id,
        starter.start({"projectId": OTHER_PROJECT}).export_id,
        starter.start({"projectId": PROJECT_ID, "workspaceId": "w1"}).export_id,
    }
    assert len(ids) == 4
    assert len(executions(sfn)) == 4


def test_idempotency_key_names_the_export_whenever_it_is_sent(sfn: SFNClient, clock: Clock) -> None:
    starter = make(sfn, clock)
    first = starter.start({"projectId": PROJECT_ID}, idempotency_key="order-42")
    clock.advance(10 * WINDOW)
    again = starter.start({"projectId": PROJECT_ID}, idempotency_key="order-42")
    other = starter.start({"projectId": PROJECT_ID}, idempotency_key="order-43")
    windowed = starter.start({"projectId": PROJECT_ID})
    assert again == first
    assert len({first.export_id, other.export_id, windowed.export_id}) == 3
    assert len(executions(sfn)) == 3


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there", "new\nline"])
def test_bad_idempotency_key_is_refused_and_starts_nothing(
    sfn: SFNClient, clock: Clock, key: str
) -> None:
    with pytest.raises(InvalidRequest, match="Idempotency-Key: must be 1-255 printable ASCII"):
        make(sfn, clock).start({"projectId": PROJECT_ID}, idempotency_key=key)
    assert executions(sfn) == []


def test_a_finished_export_is_reported_not_restarted(sfn: SFNClient, clock: Clock) -> None:
    starter = make(sfn, clock)
    first = starter.start({"projectId": PROJECT_ID}, idempotency_key="k")
    sfn.stop_execution(executionArn=starter.machine.execution_arn(first.export_id))
    # StartExecution of a closed execution's name raises ExecutionAlreadyExists.
    again = starter.start({"projectId": PROJECT_ID}, idempotency_key="k")
    assert again.export_id == first.export_id
    assert again.status == "ABORTED"
    assert len(executions(sfn)) == 1


def test_a_running_export_started_with_other_knobs_is_reported(
    sfn: SFNClient, clock: Clock
) -> None:
    starter = make(sfn, clock)
    first = starter.start({"projectId": PROJECT_ID}, idempotency_key="k")
    # pollSeconds 15 is the default: the same name, another input (ExecutionAlreadyExists).
    again = starter.start({"projectId": PROJECT_ID, "pollSeconds": 15}, idempotency_key="k")
    assert again == first
    assert len(executions(sfn)) == 1


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        ({"projectId": "nope", "resolution": "8k"}, ["projectId", "resolution"]),
        ({"projectId": PROJECT_ID, "webhookUrl": "http://x", "extra": 1}, ["unknown", "webhook"]),
        ([], ["JSON object"]),
        (None, ["JSON object"]),
    ],
)
def test_invalid_request_names_each_field_and_starts_nothing(
    sfn: SFNClient, clock: Clock, raw: Any, fields: list[str]
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        make(sfn, clock).start(raw)
    for field in fields:
        assert field in str(caught.value)
    assert executions(sfn) == []


def test_parse_request_is_the_rules_of_start() -> None:
    assert parse_request({"projectId": PROJECT_ID}).project_id == PROJECT_ID
    with pytest.raises(InvalidRequest, match="projectId"):
        parse_request({"projectId": "x"})


# --- describe ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "export_id",
    [
        "../etc",
        "x" * 200,
        "\u00e9t\u00e9",
        f"{PROJECT_ID}-1080-{'a' * 19}",
        f"{PROJECT_ID}-8k-{'a' * 20}",
        "",
        f"{PROJECT_ID}-1080-{'a' * 20}:x",
    ],
)
def test_describe_of_a_malformed_id_asks_nothing(export_id: str) -> None:
    sfn = _client("stepfunctions")
    with Stubber(sfn) as stub:  # no responses: any call would raise
        assert StatusReader(MACHINE_ONLY, sfn=sfn, s3=_s3()).read(export_id) is None
        stub.assert_no_pending_responses()


def test_describe_of_an_unknown_id_is_none(sfn: SFNClient, clock: Clock) -> None:
    assert reader(sfn, clock).read(f"{PROJECT_ID}-1080-{'0' * 20}") is None


def test_describe_of_a_new_export(sfn: SFNClient, clock: Clock) -> None:
    started = make(sfn, clock).start({"projectId": PROJECT_ID, "resolution": "4k"})
    status = reader(sfn, clock).read(started.export_id)
    assert status is not None
    assert (status.export_id, status.project_id, status.resolution) == (
        started.export_id,
        PROJECT_ID,
        "4k",
    )
    assert (status.status, status.progress, status.state) == ("RUNNING", 0.0, None)
    assert status.started_at.tzinfo == UTC
    assert status.stopped_at is None and status.video is None and status.error is None


EXPORT_ID = f"{PROJECT_ID}-1080-{'a' * 20}"
EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{MACHINE}:{EXPORT_ID}"
STARTED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STOPPED = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)


def _client(service: str) -> Any:
    """A client with fake credentials and no moto: a Stubber answers, or nothing is called."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        config=Config(signature_version="s3v4"),
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _s3() -> S3Client:
    s3: S3Client = _client("s3")
    return s3


def _exited(event_id: int, name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event_id,
        "timestamp": STARTED,
        "type": "TaskStateExited",
        "stateExitedEventDetails": {"name": name, "output": json.dumps(state)},
    }


def _job(progress: float, state: str) -> dict[str, Any]:
    return {"job": {"projectId": PROJECT_ID, "progress": progress, "state": state}}


def _stubbed(description: dict[str, Any], events: list[dict[str, Any]]) -> tuple[Any, Stubber]:
    sfn = _client("stepfunctions")
    stub = Stubber(sfn)
    stub.add_response(
        "describe_execution",
        {
            "executionArn": EXECUTION_ARN,
            "stateMachineArn": MACHINE_ARN,
            "startDate": STARTED,
            **description,
        },
        {"executionArn": EXECUTION_ARN},
    )
    stub.add_response(
        "get_execution_history",
        {"events": events},
        {
            "executionArn": EXECUTION_ARN,
            "reverseOrder": True,
            "maxResults": 100,
            "includeExecutionData": True,
        },
    )
    return sfn, stub


def test_progress_and_state_come_from_the_latest_job_in_the_history() -> None:
    events = [  # newest first, as reverseOrder asks; one state output without a job
        {"id": 9, "timestamp": STARTED, "type": "WaitStateEntered"},
        _exited(8, "IsExportDone", _job(72.0, "exporting")),
        _exited(7, "CheckProgress", _job(72.0, "exporting")),
        _exited(4, "CheckProgress", _job(35.5, "exporting")),
        _exited(2, "Init", {"request": {"projectId": PROJECT_ID}}),
    ]
    sfn, stub = _stubbed({"status": "RUNNING"}, events)
    with stub:
        status = StatusReader(MACHINE_ONLY, sfn=sfn, s3=_s3()).read(EXPORT_ID)
        stub.assert_no_pending_responses()
    assert status is not None
    assert (status.status, status.progress, status.state) == ("RUNNING", 72.0, "exporting")


def test_history_order_does_not_matter() -> None:
    # moto ignores reverseOrder: the event id decides.
    events = [
        _exited(4, "CheckProgress", _job(35.5, "exporting")),
        _exited(7, "CheckProgress", _job(100.0, "completed")),
    ]
    sfn, stub = _stubbed({"status": "RUNNING"}, events)
    with stub:
        status = StatusReader(MACHINE_ONLY, sfn=sfn, s3=_s3()).read(EXPORT_ID)
    assert status is not None and (status.progress, status.state) == (100.0, "completed")


def test_a_succeeded_export_has_its_video_and_a_presigned_link() -> None:
    video = {
        "bucket": BUCKET,
        "key": f"exports/{PROJECT_ID}/1080/t.mp4",
        "size": 123,
        "sha256": "ab" * 32,
        "versionId": "v1",
        "contentType": "video/mp4",
    }
    output = {"projectId": PROJECT_ID, "resolution": "1080", "video": video}
    sfn, stub = _stubbed(
        {"status": "SUCCEEDED", "stopDate": STOPPED, "output": json.dumps(output)},
        [_exited(7, "CheckProgress", _job(100.0, "completed"))],
    )
    clock = Clock(T0)
    settings = HttpApiSettings(
        state_machine_arn=MACHINE_ARN, output_bucket=BUCKET, download_link_seconds=120
    )
    with stub:
        status = StatusReader(settings, sfn=sfn, s3=_s3(), clock=clock).read(EXPORT_ID)
    assert status is not None and status.video is not None
    assert status.stopped_at == STOPPED
    assert status.video.s3_uri == f"s3://{BUCKET}/{video['key']}"
    assert (status.video.size, status.video.sha256) == (123, "ab" * 32)
    assert status.video.content_type == "video/mp4"
    url = urlsplit(status.video.download_url or "")
    query = parse_qs(url.query)
    assert url.scheme == "https"
    assert url.hostname == f"{BUCKET}.s3.amazonaws.com"
    assert url.path == f"/{video['key']}"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Signature"]
    assert status.video.download_url_expires_at == datetime.fromtimestamp(T0 + 120, UTC)


def test_no_link_is_made_for_another_bucket() -> None:
    output = {"video": {"bucket": "elsewhere", "key": "k.mp4", "size": 1, "sha256": "00"}}
    sfn, stub = _stubbed({"status": "SUCCEEDED", "output": json.dumps(output)}, [])
    with stub:
        status = StatusReader(SETTINGS, sfn=sfn, s3=_s3()).read(EXPORT_ID)
    assert status is not None and status.video is not None
    assert status.video.s3_uri == "s3://elsewhere/k.mp4"
    assert status.video.download_url is None and status.video.download_url_expires_at is None


def test_a_failed_export_says_why_without_a_stack_trace() -> None:
    cause = json.dumps(
        {
            "errorMessage": "invalid request: projectId: must be a 24-character hexadecimal id",
            "errorType": "InvalidRequest",
            "stackTrace": ['  File "/var/task/app.py", line 3'],
        }
    )
    sfn, stub = _stubbed(
        {"status": "FAILED", "stopDate": STOPPED, "error": "InvalidRequest", "cause": cause}, []
    )
    with stub:
        status = StatusReader(MACHINE_ONLY, sfn=sfn, s3=_s3()).read(EXPORT_ID)
    assert status is not None
    assert status.error == "InvalidRequest"
    assert status.cause == "invalid request: projectId: must be a 24-character hexadecimal id"
    assert status.video is None and status.progress == 0.0


def test_a_plain_cause_is_kept() -> None:
    sfn, stub = _stubbed(
        {"status": "FAILED", "error": "ExportTimedOut", "cause": "no progress for 600 s"}, []
    )
    with stub:
        status = StatusReader(MACHINE_ONLY, sfn=sfn, s3=_s3()).read(EXPORT_ID)
    assert status is not None and status.cause == "no progress for 600 s"


@pytest.mark.parametrize(
    ("progress", "reported"),
    [
        (0, 0.0),
        (42.5, 42.5),
        (100, 100.0),
        (-5, 0.0),
        (-0.1, 0.0),
        (100.5, 100.0),
        (1e9, 100.0),
        (math.nan, 0.0),
        (math.inf, 0.0),
        (-math.inf, 0.0),
        (True, 0.0),
        (False, 0.0),
        ("50", 0.0),
        (None, 0.0),
    ],
)
def test_progress_is_a_percentage_from_0_to_100(progress: Any, reported: float) -> None:
    # The job is the state machine's data: whatever AI Studios said lands here as it was.
    job = {"job": {"projectId": PROJECT_ID, "progress": progress, "state": "exporting"}}
    sfn, stub = _stubbed({"status": "RUNNING"}, [_exited(7, "CheckProgress", job)])
    with stub:
        status = StatusReader(MACHINE_ONLY, sfn=sfn, s3=_s3()).read(EXPORT_ID)
    assert status is not None
    assert status.progress == reported
    assert type(status.progress) is float


# --- list -------------------------------------------------------------------------------


def _start_many(sfn: SFNClient, clock: Clock) -> list[str]:
    """Start exports of two projects and one execution that is no export; newest first."""
    starter = make(sfn, clock)
    names = []
    for n in range(7):
        project = PROJECT_ID if n % 2 == 0 else OTHER_PROJECT
        names.append(starter.start({"projectId": project}, idempotency_key=f"k{n}").export_id)
    sfn.start_execution(stateMachineArn=MACHINE_ARN, name="local-run")
    return names[::-1]


def test_list_is_most_recent_first_and_skips_executions_that_are_no_exports(
    sfn: SFNClient, clock: Clock
) -> None:
    names = _start_many(sfn, clock)
    page = lister(sfn).page()
    assert [s.export_id for s in page.exports] == names
    assert page.next_token is None
    first = page.exports[0]
    assert (first.status, first.stopped_at, first.started_at.tzinfo) == ("RUNNING", None, UTC)


@pytest.mark.parametrize("sfn_page", [3, 100])
def test_pages_cover_every_export_once(
    sfn: SFNClient, clock: Clock, monkeypatch: pytest.MonkeyPatch, sfn_page: int
) -> None:
    monkeypatch.setattr(listing, "_LIST_PAGE", sfn_page)
    names = _start_many(sfn, clock)
    wanted = [n for n in names if n.startswith(PROJECT_ID)]
    exports = lister(sfn)
    seen: list[str] = []
    token = None
    for _ in range(10):
        page = exports.page(project_id=PROJECT_ID.upper(), limit=2, next_token=token)
        assert len(page.exports) <= 2
        seen += [s.export_id for s in page.exports]
        token = page.next_token
        if token is None:
            break
    assert seen == wanted


def test_list_filters_by_status(sfn: SFNClient, clock: Clock) -> None:
    names = _start_many(sfn, clock)
    exports = lister(sfn)
    sfn.stop_execution(executionArn=exports.machine.execution_arn(names[1]))
    assert [s.export_id for s in exports.page(status="ABORTED").exports] == [names[1]]
    assert names[1] not in [s.export_id for s in exports.page(status="RUNNING").exports]


def test_a_sparse_filter_answers_a_short_page_with_a_token(
    sfn: SFNClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "_LIST_PAGE", 1)
    monkeypatch.setattr(listing, "_LIST_PAGES_PER_CALL", 2)
    names = _start_many(sfn, clock)
    page = lister(sfn).page(project_id=PROJECT_ID, limit=5)
    assert [s.export_id for s in page.exports] == [names[0]]  # two executions looked at
    assert page.next_token is not None


SFN_PAGES = [(0, 3, "p2"), (3, 6, "p3"), (6, 7, None)]
"""Seven exports in Step Functions pages of three: (first, end, the next page's token)."""


def _listed(n: int) -> dict[str, Any]:
    export_id = f"{PROJECT_ID}-1080-{n:020d}"
    return {
        "executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{MACHINE}:{export_id}",
        "stateMachineArn": MACHINE_ARN,
        "name": export_id,
        "status": "RUNNING",
        "startDate": STARTED,
    }


def _expect_page(stub: Stubber, token: str | None) -> None:
    """Queue the ListExecutions page that ``token`` asks for (None: the first)."""
    starts = [None, *(following for _, _, following in SFN_PAGES)]
    first, end, following = SFN_PAGES[starts.index(token)]
    answer: dict[str, Any] = {"executions": [_listed(n) for n in range(first, end)]}
    if following:
        answer["nextToken"] = following
    params: dict[str, Any] = {"stateMachineArn": MACHINE_ARN, "maxResults": 3}
    if token:
        params["nextToken"] = token
    stub.add_response("list_executions", answer, params)


def _pages(
    monkeypatch: pytest.MonkeyPatch, limit: int, asks: list[list[str | None]]
) -> list[list[int]]:
    """List with ``limit`` while Step Functions answers ``asks[i]`` for page i; the numbers seen."""
    monkeypatch.setattr(listing, "_LIST_PAGE", 3)
    sfn = _client("stepfunctions")
    exports = ExportLister(MACHINE_ONLY, sfn=sfn)
    seen: list[list[int]] = []
    token = None
    with Stubber(sfn) as stub:
        for ask in asks:
            for sfn_token in ask:
                _expect_page(stub, sfn_token)
            page = exports.page(limit=limit, next_token=token)
            stub.assert_no_pending_responses()  # asked exactly these pages, no more
            seen.append([int(s.export_id.rsplit("-", 1)[1]) for s in page.exports])
            token = page.next_token
    assert token is None
    return seen


def test_a_page_that_ends_with_a_step_functions_page_continues_with_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _pages(monkeypatch, 3, [[None], ["p2"], ["p3"]])
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_page_that_ends_mid_page_continues_at_the_next_export(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _pages(monkeypatch, 2, [[None], [None, "p2"], ["p2"], ["p3"]])
    assert seen == [[0, 1], [2, 3], [4, 5], [6]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project_id": "abc"}, "projectId: must be a 24-character"),
        ({"status": "DONE"}, "status: must be one of RUNNING"),
        ({"limit": 0}, "limit: must be from 1 to 100"),
        ({"limit": 101}, "limit: must be from 1 to 100"),
        ({"next_token": "%%%"}, "nextToken: is not a token of this listing"),
        ({"next_token": "eyJ4IjoxfQ"}, "nextToken: is not a token of this listing"),
        ({"next_token": listing._encode_token(None, 100)}, "nextToken: is not a token"),
    ],
)
def test_list_refuses_bad_parameters(
    sfn: SFNClient, clock: Clock, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        lister(sfn).page(**kwargs)


def test_a_token_step_functions_refuses_is_invalid_request(sfn: SFNClient, clock: Clock) -> None:
    token = listing._encode_token("not-a-real-token", 0)
    with pytest.raises(InvalidRequest, match="nextToken"):
        lister(sfn).page(next_token=token)


# --- configuration ----------------------------------------------------------------------


def _from_env(env: dict[str, str]) -> tuple[ExportStarter, StatusReader, ExportLister]:
    """What the API builds from its environment: the three, from one HttpApiSettings."""
    settings = HttpApiSettings.from_env(env)
    return ExportStarter(settings), StatusReader(settings), ExportLister(settings)


def test_from_env_reads_the_template_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_aws(monkeypatch):
        starter, status, exports = _from_env(
            {
                "STATE_MACHINE_ARN": MACHINE_ARN,
                "OUTPUT_BUCKET": BUCKET,
                "DEDUPE_WINDOW_SECONDS": "60",
                "DOWNLOAD_LINK_SECONDS": "300",
            }
        )
        default_starter, defaults, _ = _from_env({"STATE_MACHINE_ARN": MACHINE_ARN})
    assert (
        status.settings.output_bucket,
        starter.settings.dedupe_window_seconds,
        status.settings.download_link_seconds,
    ) == (
        BUCKET,
        60,
        300,
    )
    assert (defaults.settings.output_bucket, default_starter.settings.dedupe_window_seconds) == (
        None,
        600,
    )
    assert defaults.settings.download_link_seconds == 900
    for machine in (starter.machine, status.machine, exports.machine):
        assert machine.execution_arn("x") == (
            f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{MACHINE}:x"
        )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "STATE_MACHINE_ARN is not set"),
        ({"STATE_MACHINE_ARN": "arn:aws:states:r:1:activity:x"}, "not a state machine ARN"),
        ({"STATE_MACHINE_ARN": MACHINE_ARN, "DEDUPE_WINDOW_SECONDS": "0"}, "DEDUPE_WINDOW"),
        ({"STATE_MACHINE_ARN": MACHINE_ARN, "DOWNLOAD_LINK_SECONDS": "soon"}, "DOWNLOAD_LINK"),
    ],
)
def test_from_env_fails_fast_on_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with fake_aws(monkeypatch), pytest.raises(ConfigurationError, match=message):
        _from_env(env)
