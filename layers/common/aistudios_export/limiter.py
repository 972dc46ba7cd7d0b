"""One account-wide limit on AI Studios renders in flight, whoever started them, in DynamoDB.

The semaphore is ONE item, ``{"pk": "renders", "holders": {holder: lease expiry, ...}}``: each
holder is an export id (its execution name), each value the epoch second its lease ends. One item
rather than one per slot, because DynamoDB makes each write to an item atomic, so a single
conditional ``UpdateItem`` can check the count, check the holder and write the lease together;
and ``held()`` is one strongly consistent read. An entry is about 100 bytes, so the 1000 slots
this module allows use a quarter of DynamoDB's 400 KB item limit; a write costs one write unit
per KB of the item, one unit at a limit of 10.

Why concurrent acquirers can never exceed the limit:

- Taking a free slot is one write conditioned on ``size(holders) < limit`` (or on the holder
  being in the map already: acquiring again only renews the lease). DynamoDB evaluates the
  condition and applies the write as one step per item, so of N writers at ``limit - 1`` exactly
  one adds a key; the rest fail the condition. The map never grows past ``limit``.
- Reclaiming leases whose holders died happens only when the map is full, in one write that
  removes the expired holders and adds the new one, conditioned on each removed holder still
  having the expiry that was read (a renewal or a release in between makes it fail) and on the
  size not exceeding ``limit + removed - 1``. Two acquirers that saw the same dead lease cannot
  both reclaim it: the second's condition fails, it reads again and finds the map full.
- A failed condition is retried from a fresh read a bounded number of times; a full map of live
  leases raises :class:`~aistudios_export.errors.NoSlotFree` (transient: the state machine waits
  and tries again). Throttling and 5xx become :class:`~aistudios_export.errors.StorageError`,
  a missing table or a refused permission :class:`~aistudios_export.errors.ConfigurationError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from aistudios_export import clients
from aistudios_export.aws_errors import error_code, translate
from aistudios_export.errors import NoSlotFree, SlotLost

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from aistudios_export.settings import SlotSettings

logger = Logger(service="aistudios-export", child=True)

KEY = "pk"
"""The table's partition key (a string); the table needs no sort key."""
SEMAPHORE = "renders"
"""The partition key of the render semaphore's item."""
HOLDERS = "holders"
"""The item's map of holder → lease expiry (epoch seconds)."""
MAX_LIMIT = 1000
"""The largest limit one item holds well within DynamoDB's 400 KB (about 100 bytes a holder)."""
ATTEMPTS = 8
"""How many times a write whose condition another writer invalidated is tried from a new read."""
RECLAIM_BATCH = 64
"""The most expired leases one write removes, to stay within DynamoDB's 4 KB expression limit."""

_CONDITION_FAILED = "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Slot:
    """A render slot held by ``holder`` until ``expires`` (epoch seconds), unless renewed.

    Examples
    --------
    >>> Slot("export-1", 1_767_232_800.0).remaining(1_767_225_600.0)
    7200.0
    """

    holder: str
    expires: float

    def remaining(self, now: float) -> float:
        """Return the seconds left of the lease at ``now`` (negative once it expired)."""
        return self.expires - now


class RenderLimiter:
    """Acquire, renew and release the account's render slots, kept in one DynamoDB item.

    Parameters
    ----------
    table_name
        The DynamoDB table (partition key ``pk``, a string).
    client
        A DynamoDB client (see :func:`aistudios_export.clients.dynamodb`).
    limit
        How many renders may be in flight at once, 1 to :data:`MAX_LIMIT`.
    lease_seconds
        How long a slot is held without a renewal; a holder that dies without releasing frees
        its slot to the next acquirer after this long.
    now
        The clock (epoch seconds).
    semaphore
        The item's key, to keep several limits in one table.

    Examples
    --------
    >>> from aistudios_export import clients
    >>> limiter = RenderLimiter(
    ...     "render-slots", client=clients.dynamodb(), limit=10, lease_seconds=3 * 3600
    ... )  # doctest: +SKIP
    >>> limiter.acquire("export-1")  # doctest: +SKIP
    Slot(holder='export-1', expires=1767236400.0)
    >>> limiter.release("export-1")  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient,
        limit: int,
        lease_seconds: float,
        now: Callable[[], float] = time.time,
        semaphore: str = SEMAPHORE,
    ) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, not {lease_seconds}")
        self.table_name = table_name
        self.limit = limit
        self.lease_seconds = lease_seconds
        self._client = client
        self._now = now
        self._key = {KEY: {"S": semaphore}}

    @classmethod
    def from_settings(
        cls, settings: SlotSettings, *, client: DynamoDBClient | None = None
    ) -> RenderLimiter:
        """Return the limiter ``settings`` describe (a default DynamoDB client when None)."""
        return cls(
            settings.table,
            client=clients.dynamodb(client),
            limit=settings.limit,
            lease_seconds=settings.lease_seconds,
        )

    def acquire(self, holder: str) -> Slot:
        """Take a slot for ``holder``, or renew the one it holds (a retried call takes no second).

        When every slot is held, leases that expired (their holders died) are reclaimed in the
        same write that gives ``holder`` its slot.

        Raises
        ------
        NoSlotFree
            ``limit`` slots are held by live leases (or writers kept changing the item).
        StorageError
            DynamoDB throttled or failed; try again.
        ConfigurationError
            The table is missing or the role may not use it.
        """
        _check(holder)
        live = self.limit
        for _ in range(ATTEMPTS):
            expires = self._expiry(self.lease_seconds)
            if self._take_free(holder, expires):
                return Slot(holder, expires)
            leases = self._read("acquire a render slot")
            if leases is None:
                if self._create(holder, expires):
                    return Slot(holder, expires)
                continue
            if holder in leases or len(leases) < self.limit:
                continue  # the item changed since the write failed: try it again
            now = self._now()
            # The longest-dead first: a batch this write cannot fit waits for the next one.
            expired = sorted((float(t), h) for h, t in leases.items() if float(t) <= now)
            live = len(leases) - len(expired)
            if not expired:
                raise NoSlotFree(live, self.limit)
            if self._reclaim(holder, expires, {h: leases[h] for _, h in expired[:RECLAIM_BATCH]}):
                return Slot(holder, expires)
        raise NoSlotFree(
            live, self.limit, f"no render slot free after {ATTEMPTS} contended attempts"
        )

    def renew(self, holder: str, *, lease_seconds: float | None = None) -> Slot:
        """Extend ``holder``'s lease to ``lease_seconds`` (default: the limiter's) from now.

        A lease that expired but was not reclaimed yet is renewed too.

        Raises
        ------
        SlotLost
            ``holder`` holds no slot (it was released, or reclaimed after its lease expired).
        StorageError, ConfigurationError
            As for :meth:`acquire`.
        """
        _check(holder)
        expires = self._expiry(self.lease_seconds if lease_seconds is None else lease_seconds)
        if not self._update(
            "renew a render slot",
            UpdateExpression="SET #h.#me = :expires",
            ConditionExpression="attribute_exists(#h.#me)",
            ExpressionAttributeNames={"#h": HOLDERS, "#me": holder},
            ExpressionAttributeValues={":expires": _number(expires)},
        ):
            raise SlotLost(f"{holder} holds no render slot to renew")
        return Slot(holder, expires)

    def release(self, holder: str) -> bool:
        """Free ``holder``'s slot; return False when it held none (released already, reclaimed)."""
        _check(holder)
        released = self._update(
            "release a render slot",
            UpdateExpression="REMOVE #h.#me",
            ConditionExpression="attribute_exists(#h.#me)",
            ExpressionAttributeNames={"#h": HOLDERS, "#me": holder},
        )
        if not released:
            logger.info("render slot already free", extra={"holder": holder})
        return released

    def held(self) -> list[Slot]:
        """Return the slots live leases hold, soonest to expire first (a consistent read)."""
        leases = self._read("read the render slots") or {}
        now = self._now()
        slots = [Slot(holder, float(expires)) for holder, expires in leases.items()]
        return sorted(
            (slot for slot in slots if slot.expires > now), key=lambda s: (s.expires, s.holder)
        )

    # The writes: each returns False when its condition failed, and raises for anything else.

    def _take_free(self, holder: str, expires: float) -> bool:
        return self._update(
            "acquire a render slot",
            UpdateExpression="SET #h.#me = :expires",
            ConditionExpression=(
                "attribute_exists(#h) AND (size(#h) < :limit OR attribute_exists(#h.#me))"
            ),
            ExpressionAttributeNames={"#h": HOLDERS, "#me": holder},
            ExpressionAttributeValues={
                ":expires": _number(expires),
                ":limit": _number(self.limit),
            },
        )

    def _create(self, holder: str, expires: float) -> bool:
        """Write the semaphore's item with ``holder`` in it, unless someone wrote it first."""
        return self._write(
            "acquire a render slot",
            lambda: self._client.put_item(
                TableName=self.table_name,
                Item={**self._key, HOLDERS: {"M": {holder: _number(expires)}}},
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": KEY},
            ),
        )

    def _reclaim(self, holder: str, expires: float, expired: dict[str, str]) -> bool:
        """Replace the ``expired`` leases (holder → stored expiry) with ``holder``'s, atomically."""
        names = {"#h": HOLDERS, "#me": holder}
        values = {
            ":expires": _number(expires),
            ":cap": _number(self.limit + len(expired) - 1),
        }
        checks = []
        for i, (dead, stored) in enumerate(expired.items()):
            names[f"#x{i}"] = dead
            values[f":x{i}"] = {"N": stored}
            checks.append(f"#h.#x{i} = :x{i}")
        removes = ", ".join(f"#h.#x{i}" for i in range(len(expired)))
        reclaimed = self._update(
            "acquire a render slot",
            UpdateExpression=f"REMOVE {removes} SET #h.#me = :expires",
            ConditionExpression=" AND ".join(
                [*checks, "attribute_not_exists(#h.#me)", "size(#h) <= :cap"]
            ),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        if reclaimed:
            logger.warning(
                "reclaimed render slots of expired leases",
                extra={"holder": holder, "reclaimed": sorted(expired)},
            )
        return reclaimed

    def _update(self, what: str, **request: Any) -> bool:
        return self._write(
            what,
            lambda: self._client.update_item(TableName=self.table_name, Key=self._key, **request),
        )

    def _write(self, what: str, call: Callable[[], object]) -> bool:
        try:
            call()
        except ClientError as error:
            if error_code(error) == _CONDITION_FAILED:
                return False
            raise translate(error, self._what(what)) from error
        except BotoCoreError as error:
            raise translate(error, self._what(what)) from error
        return True

    def _read(self, what: str) -> dict[str, str] | None:
        """Return the stored leases (holder → expiry as DynamoDB's number text), None if no item."""
        try:
            answer = self._client.get_item(
                TableName=self.table_name, Key=self._key, ConsistentRead=True
            )
        except (BotoCoreError, ClientError) as error:
            raise translate(error, self._what(what)) from error
        if "Item" not in answer:
            return None
        stored = answer["Item"].get(HOLDERS, {}).get("M", {})
        return {holder: value["N"] for holder, value in stored.items()}

    def _expiry(self, seconds: float) -> float:
        # Whole seconds, rounded up: a lease is never shorter than asked.
        return float(math.ceil(self._now() + seconds))

    def _what(self, what: str) -> str:
        return f"could not {what} in table {self.table_name}"


def _number(value: float) -> dict[str, str]:
    return {"N": str(int(value)) if float(value).is_integer() else repr(value)}


def _check(holder: str) -> None:
    if not holder:
        raise ValueError("a render slot's holder must be a non-empty export id")
