"""The render limiter: never more holders than the limit, however many race (moto DynamoDB)."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from aistudios_export import errors
from aistudios_export.errors import ConfigurationError, NoSlotFree, SlotLost, StorageError
from aistudios_export.limiter import ATTEMPTS, MAX_LIMIT, RECLAIM_BATCH, RenderLimiter, Slot
from aistudios_local.moto_shims import atomic_requests
from tests.unit._fixtures import T0, Clock, create_render_slots_table, fake_aws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE = "render-slots"
LEASE = 600


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBClient]:
    with fake_aws(monkeypatch), atomic_requests():
        yield create_render_slots_table(TABLE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(
    client: DynamoDBClient, clock: Clock, limit: int = 10, table: str = TABLE
) -> RenderLimiter:
    return RenderLimiter(table, client=client, limit=limit, lease_seconds=LEASE, now=clock)


def stored(client: DynamoDBClient) -> dict[str, float]:
    """The semaphore item's holders and expiries, as DynamoDB holds them."""
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": "renders"}}, ConsistentRead=True)
    holders = item.get("Item", {}).get("holders", {}).get("M", {})
    return {holder: float(value["N"]) for holder, value in holders.items()}


def race(count: int, run: Callable[[int], object]) -> list[object]:
    """Run ``run(0..count-1)`` on ``count`` threads released at once; return results or errors."""
    start = threading.Barrier(count)
    results: list[object] = [None] * count

    def one(n: int) -> None:
        start.wait(timeout=30)
        try:
            results[n] = run(n)
        except Exception as error:
            results[n] = error

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


# --- the limit holds under concurrency --------------------------------------------------------


def test_thirty_acquirers_at_once_get_exactly_ten_slots(ddb: DynamoDBClient, clock: Clock) -> None:
    slots = limiter(ddb, clock)
    seen: list[int] = []  # the stored count, read by each racer as soon as its answer came

    def acquire(n: int) -> Slot:
        try:
            return slots.acquire(f"export-{n}")
        finally:
            seen.append(len(stored(ddb)))

    results = race(30, acquire)
    won = [r for r in results if isinstance(r, Slot)]
    lost = [r for r in results if isinstance(r, NoSlotFree)]
    assert len(won) == 10 and len(lost) == 20, results
    assert {str(e) for e in lost} == {"no render slot free: 10 of 10 held"}
    assert {(e.held, e.limit) for e in lost} == {(10, 10)}
    assert set(stored(ddb)) == {slot.holder for slot in won}
    assert {slot.expires for slot in won} == {T0 + LEASE}
    assert len(seen) == 30 and max(seen) == 10
    assert [s.holder for s in slots.held()] == sorted(slot.holder for slot in won)


def test_churn_of_acquire_and_release_never_has_more_holders_than_the_limit(
    ddb: DynamoDBClient, clock: Clock
) -> None:
    limit, threads, rounds = 4, 12, 15
    slots = limiter(ddb, clock, limit=limit)
    lock = threading.Lock()
    inside = most = acquired = refused = 0

    def churn(n: int) -> None:
        nonlocal inside, most, acquired, refused
        for i in range(rounds):
            holder = f"export-{n}-{i}"
            try:
                slots.acquire(holder)
            except NoSlotFree:
                with lock:
                    refused += 1
                continue
            with lock:
                inside += 1
                most = max(most, inside)
                acquired += 1
            assert len(stored(ddb)) <= limit
            with lock:
                inside -= 1
            assert slots.release(holder) is True

    results = race(threads, churn)
    assert results == [None] * threads
    assert acquired + refused == threads * rounds and acquired >= limit
    assert 1 <= most <= limit
    assert stored(ddb) == {}


@pytest.mark.parametrize("dead", [1, 2])
def test_expired_leases_go_to_as_many_racing_acquirers_as_died(
    ddb: DynamoDBClient, clock: Clock, dead: int
) -> None:
    slots = limiter(ddb, clock, limit=3)
    for n in range(dead):
        slots.acquire(f"dead-{n}")
    clock.advance(100)
    for n in range(3 - dead):
        slots.acquire(f"alive-{n}")
    clock.advance(LEASE - 50)  # the dead leases ended 50 s ago; the live ones end in 50 s
    results = race(10, lambda n: slots.acquire(f"new-{n}"))
    won = sorted(r.holder for r in results if isinstance(r, Slot))
    assert len(won) == dead
    assert sum(isinstance(r, NoSlotFree) for r in results) == 10 - dead
    assert set(stored(ddb)) == {f"alive-{n}" for n in range(3 - dead)} | set(won)


# --- acquire, release, renew ------------------------------------------------------------------


def test_acquiring_again_returns_the_slot_held_and_renews_it(
    ddb: DynamoDBClient, clock: Clock
) -> None:
    slots = limiter(ddb, clock, limit=2)
    assert slots.acquire("a") == Slot("a", T0 + LEASE)
    clock.advance(10)
    assert slots.acquire("a") == Slot("a", T0 + 10 + LEASE)
    assert stored(ddb) == {"a": T0 + 10 + LEASE}
    slots.acquire("b")
    with pytest.raises(NoSlotFree, match=r"^no render slot free: 2 of 2 held$"):
        slots.acquire("c")
    # A retried acquire of a holder when every slot is held still finds its own.
    assert slots.acquire("b") == Slot("b", T0 + 10 + LEASE)
    assert set(stored(ddb)) == {"a", "b"}


def test_release_is_idempotent_and_frees_the_slot(ddb: DynamoDBClient, clock: Clock) -> None:
    slots = limiter(ddb, clock, limit=1)
    assert slots.release("a") is False  # no item yet
    slots.acquire("a")
    with pytest.raises(NoSlotFree):
        slots.acquire("b")
    assert slots.release("a") is True
    assert slots.release("a") is False
    assert slots.release("never-held") is False
    assert slots.acquire("b") == Slot("b", T0 + LEASE)
    assert stored(ddb) == {"b": T0 + LEASE}


def test_an_expired_lease_is_reclaimed_by_the_next_acquirer_only(
    ddb: DynamoDBClient, clock: Clock
) -> None:
    slots = limiter(ddb, clock, limit=2)
    slots.acquire("dead")
    clock.advance(300)
    slots.acquire("alive")
    clock.advance(LEASE - 300)  # "dead" expires now, exactly
    assert [s.holder for s in slots.held()] == ["alive"]
    assert slots.acquire("c") == Slot("c", T0 + 2 * LEASE)
    assert set(stored(ddb)) == {"alive", "c"}
    with pytest.raises(NoSlotFree, match="2 of 2 held"):
        slots.acquire("d")
    assert slots.release("dead") is False
    with pytest.raises(SlotLost, match=r"^dead holds no render slot to renew$"):
        slots.renew("dead")


def test_a_renewal_between_the_read_and_the_reclaim_keeps_the_lease(
    ddb: DynamoDBClient, clock: Clock
) -> None:
    slots = limiter(ddb, clock, limit=1)
    slots.acquire("slow")
    clock.advance(LEASE + 1)
    renewed: list[Slot] = []

    def renew_first(params: dict[str, Any], **_: Any) -> None:
        if params["UpdateExpression"].startswith("REMOVE") and not renewed:
            renewed.append(limiter(ddb, clock, limit=1).renew("slow"))

    other = boto3.client("dynamodb")
    other.meta.events.register("before-parameter-build.dynamodb.UpdateItem", renew_first)
    with pytest.raises(NoSlotFree, match="1 of 1 held"):
        limiter(other, clock, limit=1).acquire("eager")
    assert renewed == [Slot("slow", T0 + 2 * LEASE + 1)]
    assert stored(ddb) == {"slow": T0 + 2 * LEASE + 1}


def test_one_write_reclaims_at_most_a_batch_of_expired_leases(
    ddb: DynamoDBClient, clock: Clock
) -> None:
    limit = RECLAIM_BATCH + 6
    slots = limiter(ddb, clock, limit=limit)
    for n in range(limit):
        slots.acquire(f"export-{n:03}")
        clock.advance(1)
    clock.advance(LEASE)
    slots.acquire("new")
    # The longest-dead go first; the youngest six stay until a write needs them.
    assert set(stored(ddb)) == {f"export-{n:03}" for n in range(RECLAIM_BATCH, limit)} | {"new"}


def test_renew_extends_the_lease(ddb: DynamoDBClient, clock: Clock) -> None:
    slots = limiter(ddb, clock, limit=1)
    slots.acquire("long")
    clock.advance(LEASE - 100)
    assert slots.renew("long") == Slot("long", T0 + 2 * LEASE - 100)
    clock.advance(200)  # past the first lease: the renewed one still holds
    with pytest.raises(NoSlotFree, match="1 of 1 held"):
        slots.acquire("other")
    assert slots.renew("long", lease_seconds=7200) == Slot("long", T0 + LEASE + 100 + 7200)
    assert stored(ddb) == {"long": T0 + LEASE + 100 + 7200}
    clock.advance(7200)  # expired, but nobody took it: a late renewal still keeps it
    assert slots.renew("long") == Slot("long", T0 + 2 * LEASE + 7300)
    with pytest.raises(SlotLost, match=r"^nobody holds no render slot to renew$"):
        slots.renew("nobody")
    assert set(stored(ddb)) == {"long"}


def test_held_lists_the_live_leases_soonest_first(ddb: DynamoDBClient, clock: Clock) -> None:
    slots = limiter(ddb, clock, limit=5)
    assert slots.held() == []
    for holder in ("c", "a", "b"):
        slots.acquire(holder)
        clock.advance(100)
    slots.renew("c")
    clock.advance(LEASE - 150)  # "a" ended 50 s ago
    assert slots.held() == [Slot("b", T0 + 200 + LEASE), Slot("c", T0 + 300 + LEASE)]


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400), ("", 500)],
)
@pytest.mark.parametrize(
    ("call", "operation", "what"),
    [
        (lambda s: s.acquire("a"), "update_item", "acquire a render slot"),
        (lambda s: s.release("a"), "update_item", "release a render slot"),
        (lambda s: s.renew("a"), "update_item", "renew a render slot"),
        (lambda s: s.held(), "get_item", "read the render slots"),
    ],
)
def test_throttling_and_server_errors_are_transient(
    ddb: DynamoDBClient,
    clock: Clock,
    code: str,
    status: int,
    call: Callable[[RenderLimiter], object],
    operation: str,
    what: str,
) -> None:
    code = code or "InternalServerError"
    with Stubber(ddb) as stub:
        stub.add_client_error(operation, code, http_status_code=status)
        with pytest.raises(StorageError, match=rf"^could not {what} in table {TABLE}: {code}$"):
            call(limiter(ddb, clock))
        stub.assert_no_pending_responses()


def test_throttled_read_after_a_failed_condition_is_transient(
    ddb: DynamoDBClient, clock: Clock
) -> None:
    with Stubber(ddb) as stub:
        stub.add_client_error("update_item", "ConditionalCheckFailedException")
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException")
        with pytest.raises(StorageError, match=r"ProvisionedThroughputExceededException$"):
            limiter(ddb, clock).acquire("a")
        stub.assert_no_pending_responses()


def test_writers_that_keep_changing_the_item_end_in_no_slot_free(
    ddb: DynamoDBClient, clock: Clock
) -> None:
    """Each write fails its condition, each read then shows a free slot: bounded, not forever."""
    item = {"Item": {"pk": {"S": "renders"}, "holders": {"M": {"x": {"N": str(T0 + LEASE)}}}}}
    with Stubber(ddb) as stub:
        for _ in range(ATTEMPTS):
            stub.add_client_error("update_item", "ConditionalCheckFailedException")
            stub.add_response("get_item", item)
        with pytest.raises(NoSlotFree, match=f"^no render slot free after {ATTEMPTS} contended"):
            limiter(ddb, clock, limit=2).acquire("a")
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda s: s.acquire("a"), "acquire a render slot"),
        (lambda s: s.release("a"), "release a render slot"),
        (lambda s: s.renew("a"), "renew a render slot"),
        (lambda s: s.held(), "read the render slots"),
    ],
)
def test_a_missing_table_is_a_configuration_error_naming_it(
    ddb: DynamoDBClient, clock: Clock, call: Callable[[RenderLimiter], object], what: str
) -> None:
    with pytest.raises(
        ConfigurationError,
        match=rf"^could not {what} in table no-such-table: ResourceNotFoundException$",
    ):
        call(limiter(ddb, clock, table="no-such-table"))


@pytest.mark.parametrize(
    ("limit", "lease", "problem"),
    [
        (0, LEASE, "limit must be 1 to 1000, not 0"),
        (MAX_LIMIT + 1, LEASE, "limit must be 1 to 1000, not 1001"),
        (10, 0, "lease_seconds must be positive, not 0"),
    ],
)
def test_a_limiter_needs_a_sane_limit_and_lease(
    ddb: DynamoDBClient, limit: int, lease: float, problem: str
) -> None:
    with pytest.raises(ValueError, match=f"^{problem}$"):
        RenderLimiter(TABLE, client=ddb, limit=limit, lease_seconds=lease)


def test_an_empty_holder_is_refused(ddb: DynamoDBClient, clock: Clock) -> None:
    with pytest.raises(ValueError, match="non-empty export id"):
        limiter(ddb, clock).acquire("")


def test_no_slot_free_is_retried_by_the_state_machine_and_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(NoSlotFree(7, 10)))
    assert (type(error), error.held, error.limit, str(error)) == (
        NoSlotFree,
        7,
        10,
        "no render slot free: 7 of 10 held",
    )
    assert isinstance(error, errors.TransientError)
    assert "NoSlotFree" in errors.TRANSIENT_ERROR_NAMES
    assert issubclass(SlotLost, errors.FinalError)
