"""The export's part in the render limit: queue for a slot, keep it while rendering, free it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import Stubber

from aistudios_export import render_slots
from aistudios_export.errors import ConfigurationError, InvalidRequest, NoSlotFree
from aistudios_export.limiter import RenderLimiter
from aistudios_export.render_slots import (
    MAX_ATTEMPTS,
    RENEW_MARGIN_SECONDS,
    free_after_end,
    free_slot,
    keep_slot,
    start_render,
    take_slot,
)
from aistudios_export.settings import SlotSettings
from aistudios_local.moto_shims import atomic_requests
from tests.events import load_event
from tests.unit._fixtures import (
    T0,
    Clock,
    LambdaContextStub,
    create_render_slots_table,
    fake_aws,
    load_handler,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE = "render-slots"
LEASE = 1200
SETTINGS = SlotSettings(TABLE, limit=2, lease_seconds=LEASE, retry_seconds=30, max_wait_seconds=600)


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBClient]:
    with fake_aws(monkeypatch), atomic_requests():
        yield create_render_slots_table(TABLE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slots(ddb: DynamoDBClient, clock: Clock) -> RenderLimiter:
    return RenderLimiter(TABLE, client=ddb, limit=2, lease_seconds=LEASE, now=clock)


def holders(slots: RenderLimiter) -> list[str]:
    return sorted(slot.holder for slot in slots.held())


def take(slots: RenderLimiter, clock: Clock, holder: str, queue: Any = None, r: float = 0.5) -> Any:
    return take_slot(holder, queue, limiter=slots, settings=SETTINGS, now=clock, rand=lambda: r)


# --- queueing ------------------------------------------------------------------------------


def test_a_free_slot_is_taken_at_once(slots: RenderLimiter, clock: Clock) -> None:
    assert take(slots, clock, "a", {"acquired": False, "attempts": 0}) == {
        "acquired": True,
        "holder": "a",
        "expires": T0 + LEASE,
    }
    assert holders(slots) == ["a"]


def test_a_full_limit_answers_how_long_to_wait_growing_with_jitter(
    slots: RenderLimiter, clock: Clock
) -> None:
    take(slots, clock, "a")
    take(slots, clock, "b")
    queue: Any = {"acquired": False, "attempts": 0}
    waits = []
    for _ in range(8):
        queue = take(slots, clock, "c", queue, r=1.0)
        assert queue["acquired"] is False and (queue["held"], queue["limit"]) == (2, 2)
        assert queue["since"] == T0  # the first ask, kept
        waits.append(queue["waitSeconds"])
    # 30 s, then 1.5 times longer each time, never past ten first waits.
    assert waits == [30, 45, 68, 101, 152, 228, 300, 300]
    assert holders(slots) == ["a", "b"]
    # Equal jitter: at least half of each wait, so that a queue does not ask in step.
    low = take(slots, clock, "c", {"attempts": 3, "since": T0}, r=0.0)
    assert low["waitSeconds"] == 51


def test_the_waiter_takes_a_slot_once_one_is_freed(slots: RenderLimiter, clock: Clock) -> None:
    take(slots, clock, "a")
    take(slots, clock, "b")
    queue = take(slots, clock, "c")
    free_slot("a", limiter=slots)
    clock.advance(queue["waitSeconds"])
    assert take(slots, clock, "c", queue)["acquired"] is True
    assert holders(slots) == ["b", "c"]


def test_the_wait_ends_with_no_slot_free_after_the_longest_wait(
    slots: RenderLimiter, clock: Clock
) -> None:
    take(slots, clock, "a")
    take(slots, clock, "b")
    queue = take(slots, clock, "c")
    clock.advance(SETTINGS.max_wait_seconds - 10)
    queue = take(slots, clock, "c", queue)
    assert queue["waitSeconds"] <= 11  # never past the longest wait
    clock.advance(10)
    with pytest.raises(
        NoSlotFree,
        match=r"^no render slot became free in 600 s \(3 tries\): 2 of 2 renders in flight$",
    ):
        take(slots, clock, "c", queue)


def test_the_number_of_asks_is_bounded_whatever_the_clock_says(
    slots: RenderLimiter, clock: Clock
) -> None:
    take(slots, clock, "a")
    take(slots, clock, "b")
    queue: Any = None
    with pytest.raises(NoSlotFree, match=rf"\({MAX_ATTEMPTS} tries\)"):
        for _ in range(MAX_ATTEMPTS):
            queue = take(slots, clock, "c", queue)  # the clock never moves
    assert queue["attempts"] == MAX_ATTEMPTS - 1


@pytest.mark.parametrize("attempts", [-1, MAX_ATTEMPTS, "3", True, 1.5e9])
def test_a_count_this_module_did_not_write_is_spent_not_a_fresh_start(
    slots: RenderLimiter, clock: Clock, attempts: Any
) -> None:
    take(slots, clock, "a")
    take(slots, clock, "b")
    with pytest.raises(NoSlotFree):
        take(slots, clock, "c", {"attempts": attempts, "since": T0})


# --- starting the render under a slot (SubmitExport) ----------------------------------------


def start(
    slots: RenderLimiter, clock: Clock, holder: str, job: Any, attempt: int = 0
) -> tuple[dict[str, Any], list[float]]:
    submitted: list[float] = []

    def submit(expires: float) -> dict[str, Any]:
        submitted.append(expires)
        return {"outcome": "waiting", "slotExpires": expires, "submittedUtc": "now"}

    started = start_render(
        job,
        holder,
        attempt=attempt,
        limiter=slots,
        settings=SETTINGS,
        submit=submit,
        now=clock,
        rand=lambda: 0.5,
    )
    return started, submitted


QUEUED = {"state": "queued", "progress": 0}
"""The job before the submit (the state machine's Init)."""


def test_the_render_is_submitted_under_the_slot_it_took(slots: RenderLimiter, clock: Clock) -> None:
    job, submitted = start(slots, clock, "a", QUEUED)
    assert submitted == [T0 + LEASE] and job["slotExpires"] == T0 + LEASE
    assert holders(slots) == ["a"]


def test_without_a_free_slot_the_job_is_queued_and_nothing_is_submitted(
    slots: RenderLimiter, clock: Clock
) -> None:
    start(slots, clock, "a", QUEUED)
    start(slots, clock, "b", QUEUED)
    job, submitted = start(slots, clock, "c", QUEUED)
    assert submitted == []
    # GET /exports/{id} reads state and progress; the state machine reads outcome and the wait.
    assert (job["state"], job["progress"], job["outcome"]) == ("queued", 0, "queued")
    assert job["waitSeconds"] == job["queue"]["waitSeconds"] >= 1
    assert (job["queue"]["attempts"], job["queue"]["attempt"]) == (1, 0)
    again, _ = start(slots, clock, "c", job)
    assert again["queue"]["attempts"] == 2  # the queue's budget carries on
    # A redrive (a later attempt) queues afresh.
    redriven, _ = start(slots, clock, "c", again, attempt=1)
    assert (redriven["queue"]["attempts"], redriven["queue"]["attempt"]) == (1, 1)
    slots.release("a")
    job, submitted = start(slots, clock, "c", redriven, attempt=1)
    assert submitted == [T0 + LEASE] and job["outcome"] == "waiting"


def test_a_redriven_render_is_resumed_under_a_new_slot_never_submitted_twice(
    slots: RenderLimiter, clock: Clock
) -> None:
    running = {"outcome": "waiting", "submittedUtc": "2026-01-01T00:00:00Z", "nextPollSeconds": 300}
    job, submitted = start(slots, clock, "a", running, attempt=1)
    assert submitted == []
    # Checked at once, as the render may have finished while the export was failed.
    assert job == {**running, "slotExpires": T0 + LEASE, "nextPollSeconds": 0}
    assert holders(slots) == ["a"]


def test_a_retried_submit_keeps_the_one_slot(slots: RenderLimiter, clock: Clock) -> None:
    start(slots, clock, "a", QUEUED)
    start(slots, clock, "a", QUEUED)  # a retry, or the submit again after a token refresh
    assert holders(slots) == ["a"]


# --- keeping the slot while rendering -------------------------------------------------------


def waiting_job(expires: float, next_poll: int = 15, outcome: str = "waiting") -> dict[str, Any]:
    return {"outcome": outcome, "nextPollSeconds": next_poll, "slotExpires": expires}


def test_a_lease_far_from_its_end_is_left_alone(
    slots: RenderLimiter, clock: Clock, ddb: DynamoDBClient
) -> None:
    take(slots, clock, "a")
    clock.advance(LEASE - 15 - RENEW_MARGIN_SECONDS - 1)
    with Stubber(ddb):  # any DynamoDB call would fail
        job = keep_slot(waiting_job(T0 + LEASE), "a", limiter=lambda: slots, now=clock)
    assert job["slotExpires"] == T0 + LEASE


def test_a_lease_near_its_end_is_renewed_past_the_next_wait(
    slots: RenderLimiter, clock: Clock
) -> None:
    take(slots, clock, "a")
    clock.advance(LEASE - 15 - RENEW_MARGIN_SECONDS)
    job = keep_slot(waiting_job(T0 + LEASE), "a", limiter=lambda: slots, now=clock)
    # Long enough for the next wait and its check, with the margin, twice over.
    lease = max(LEASE, 2 * (15 + RENEW_MARGIN_SECONDS))
    assert job["slotExpires"] == clock() + lease
    assert [s.expires for s in slots.held()] == [clock() + lease]


def test_a_long_poll_interval_gets_a_lease_longer_than_it(
    slots: RenderLimiter, clock: Clock
) -> None:
    take(slots, clock, "a")
    job = keep_slot(waiting_job(T0 + LEASE, next_poll=900), "a", limiter=lambda: slots, now=clock)
    assert job["slotExpires"] == T0 + 2 * (900 + RENEW_MARGIN_SECONDS)


def test_the_check_that_finds_the_render_done_frees_the_slot(
    slots: RenderLimiter, clock: Clock
) -> None:
    take(slots, clock, "a")
    job = keep_slot(waiting_job(T0 + LEASE, outcome="done"), "a", limiter=lambda: slots, now=clock)
    assert job["slotExpires"] == 0 and holders(slots) == []


def test_a_release_that_fails_leaves_the_slot_to_its_lease(
    slots: RenderLimiter, clock: Clock, ddb: DynamoDBClient
) -> None:
    take(slots, clock, "a")
    with Stubber(ddb) as stub:  # DynamoDB fails
        stub.add_client_error("update_item", "InternalServerError", http_status_code=500)
        stub.add_client_error("update_item", "InternalServerError", http_status_code=500)
        stub.add_client_error("update_item", "InternalServerError", http_status_code=500)
        done = waiting_job(T0 + LEASE, outcome="done")
        assert keep_slot(done, "a", limiter=lambda: slots, now=clock) == done


@pytest.mark.parametrize(
    "job",
    [
        waiting_job(0),  # holds no slot (a job from before the limit)
        waiting_job(T0, outcome="failed"),
        {"outcome": "waiting", "nextPollSeconds": 15},
    ],
)
def test_only_a_waiting_export_with_a_slot_renews_it(job: dict[str, Any]) -> None:
    def no_limiter() -> RenderLimiter:
        raise AssertionError("no renewal was due")

    assert keep_slot(job, "a", limiter=no_limiter, now=lambda: T0 + 1) == job


def test_a_lost_slot_is_taken_again_when_one_is_free(slots: RenderLimiter, clock: Clock) -> None:
    # "a" expired and was reclaimed by a stranger to the limit; a slot is still free.
    job = keep_slot(waiting_job(T0 + 10), "a", limiter=lambda: slots, now=clock)
    assert job["slotExpires"] == T0 + LEASE
    assert holders(slots) == ["a"]


def test_a_lost_slot_with_none_free_carries_on_without_one(
    slots: RenderLimiter, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    take(slots, clock, "b")
    take(slots, clock, "c")
    with caplog.at_level(logging.WARNING):
        job = keep_slot(waiting_job(T0 + 10), "a", limiter=lambda: slots, now=clock)
    assert job["slotExpires"] == 0
    assert "render continues without a slot" in caplog.text
    assert holders(slots) == ["b", "c"]


def test_a_failed_renewal_never_fails_the_poll(
    slots: RenderLimiter, clock: Clock, ddb: DynamoDBClient
) -> None:
    job = waiting_job(T0 + 10)
    with Stubber(ddb) as stub:
        stub.add_client_error(
            "update_item", "ProvisionedThroughputExceededException", http_status_code=400
        )
        assert keep_slot(job, "a", limiter=lambda: slots, now=clock) == job
        stub.assert_no_pending_responses()


# --- freeing --------------------------------------------------------------------------------


def test_freeing_twice_is_no_error(slots: RenderLimiter, clock: Clock) -> None:
    take(slots, clock, "a")
    assert free_slot("a", limiter=slots) == {"holder": "a", "released": True}
    assert free_slot("a", limiter=slots) == {"holder": "a", "released": False}
    assert holders(slots) == []


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED", "SUCCEEDED"])
def test_an_ended_execution_is_freed_from_its_status_change(
    slots: RenderLimiter, clock: Clock, status: str
) -> None:
    take(slots, clock, "a")
    take(slots, clock, "b")
    detail = {"name": "a", "status": status, "executionArn": "arn:...:a"}
    assert free_after_end(detail, limiter=slots) == {"holder": "a", "released": True}
    assert holders(slots) == ["b"]


def test_a_running_execution_keeps_its_slot(slots: RenderLimiter, clock: Clock) -> None:
    take(slots, clock, "a")
    assert free_after_end({"name": "a", "status": "RUNNING"}, limiter=slots) == {
        "holder": "a",
        "released": None,
    }
    assert holders(slots) == ["a"]


@pytest.mark.parametrize("detail", [{}, {"name": "", "status": "FAILED"}, {"name": 7}])
def test_an_event_without_an_execution_is_refused(
    slots: RenderLimiter, detail: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError, match="without an execution name"):
        free_after_end(detail, limiter=slots)


# --- the function, with its sample events ------------------------------------------------


@pytest.fixture
def handler(ddb: DynamoDBClient, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RENDER_SLOTS_TABLE", TABLE)
    monkeypatch.setenv("MAX_RENDERS_IN_FLIGHT", "1")
    return load_handler("render_slot")


def test_the_function_takes_frees_and_frees_after_an_end(handler: Any) -> None:
    # The state machine's earlier definition takes slots here (SubmitExport takes them now).
    context = LambdaContextStub()
    acquire, release = load_event("render_slot_acquire"), load_event("render_slot_release")
    ended = load_event("render_slot_status_change")
    holder = acquire["holder"]
    assert handler(acquire, context)["acquired"] is True
    other = {**acquire, "holder": "other"}
    queued = handler(other, context)
    assert (queued["acquired"], queued["attempts"]) == (False, 1)
    # The holder's execution was aborted: EventBridge brings its status change.
    assert handler(ended, context) == {"holder": holder, "released": True}
    assert handler({**other, "slot": queued}, context)["acquired"] is True
    assert handler({**release, "holder": "other"}, context) == {
        "holder": "other",
        "released": True,
    }
    assert handler(release, context) == {"holder": holder, "released": False}


@pytest.mark.parametrize(
    ("event", "field"),
    [({"action": "acquire"}, "holder"), ({"action": "take", "holder": "a"}, "action")],
)
def test_the_function_names_what_is_wrong_with_a_step(
    handler: Any, event: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        handler(event, LambdaContextStub())
    assert [f for f, _ in raised.value.problems] == [field]


def test_settings_bound_the_limit() -> None:
    env = {"RENDER_SLOTS_TABLE": TABLE, "MAX_RENDERS_IN_FLIGHT": "1001"}
    with pytest.raises(ConfigurationError, match="MAX_RENDERS_IN_FLIGHT must be a whole number"):
        SlotSettings.from_env(env)
    with pytest.raises(ConfigurationError, match="RENDER_SLOTS_TABLE is not set"):
        SlotSettings.from_env({})
    assert SlotSettings.from_env({"RENDER_SLOTS_TABLE": TABLE}) == SlotSettings(TABLE)
    assert {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"} == render_slots.END_STATUSES
