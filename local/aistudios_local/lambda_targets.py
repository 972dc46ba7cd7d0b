"""Deliver EventBridge events to Lambda targets asynchronously, as EventBridge does.

EventBridge invokes a Lambda target with ``InvocationType=Event``: whoever put the event does
not wait for the function, and the function's failure is nobody's exception. Here each delivery
is a ``lambda:Invoke`` made on a thread of a small pool, through boto3's default session, so that
the local stack's `LambdaBridge` runs the real handler in-process. The invoking thread waits for
the handler's answer only to record the outcome (a `LambdaDelivery`); nothing else waits for it.

The put that produced the event (an execution ending on the engine's thread, a ``PutEvents``
request holding moto's request lock) only queues the delivery: the handler's own AWS calls then
take that lock on the pool's thread, never on the thread that holds it.

Lambda's own retries of a failed asynchronous invocation (two, minutes apart) are not modelled:
a failure is recorded and logged once.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3

__all__ = ["DeliveriesNotSettled", "LambdaDeliveries", "LambdaDelivery"]

logger = logging.getLogger(__name__)

MAX_CONCURRENT_DELIVERIES = 4
"""Threads that invoke Lambda targets at once; further deliveries queue behind them."""

_CLIENT_LOCK = threading.Lock()
"""boto3's default session is not safe for making clients from several threads at once."""


@dataclass(frozen=True)
class LambdaDelivery:
    """One event a rule delivered to a Lambda function, and how the invocation ended.

    Attributes
    ----------
    rule
        The rule's name.
    target_arn
        The function's ARN (the target's ``Arn``).
    input
        The payload sent: the event, or the target's ``Input`` / ``InputTransformer`` output.
    result
        The handler's answer, or Lambda's error payload when it failed; None when the
        invocation itself could not be made.
    error
        None on success; the handler's error type (``FunctionError``), or the invocation's
        exception as ``"Type: message"``.
    """

    rule: str
    target_arn: str
    input: str
    result: Any
    error: str | None

    @property
    def succeeded(self) -> bool:
        """Whether the handler ran and returned."""
        return self.error is None


class DeliveriesNotSettled(TimeoutError):
    """Deliveries were still running when the caller stopped waiting for them."""


class LambdaDeliveries:
    """Invoke Lambda targets on a bounded pool; record each outcome; let callers wait for them.

    Examples
    --------
    >>> deliveries = LambdaDeliveries()
    >>> deliveries.settle(timeout=1)  # nothing delivered: returns at once
    []
    >>> deliveries.close()
    """

    def __init__(self, max_workers: int = MAX_CONCURRENT_DELIVERIES) -> None:
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._changed = threading.Condition()
        self._pending = 0
        self.finished: list[LambdaDelivery] = []
        """Every delivery that has ended, in the order they ended."""

    @property
    def pending(self) -> int:
        """How many deliveries are queued or running."""
        with self._changed:
            return self._pending

    def submit(self, rule: str, target_arn: str, payload: str) -> None:
        """Queue one invocation of ``target_arn`` with ``payload``; return at once."""
        with self._changed:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="rule-delivery"
                )
            self._pending += 1
            self._pool.submit(self._deliver, rule, target_arn, payload)

    def settle(self, timeout: float) -> list[LambdaDelivery]:
        """Wait until every delivery so far (and any they caused) has ended.

        Parameters
        ----------
        timeout
            Seconds to wait at most.

        Returns
        -------
        list[LambdaDelivery]
            Every delivery that has ended, in order.

        Raises
        ------
        DeliveriesNotSettled
            When some are still running after ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._pending == 0, timeout=timeout):
                raise DeliveriesNotSettled(
                    f"{self._pending} rule deliveries to Lambda still running after {timeout} s"
                )
            return list(self.finished)

    def close(self) -> None:
        """Stop the pool (after what is queued); a later delivery starts a new one."""
        with self._changed:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def _deliver(self, rule: str, target_arn: str, payload: str) -> None:
        try:
            result, error = _invoke(target_arn, payload)
        except Exception as e:  # the engine must never see a target's failure
            result, error = None, f"{type(e).__name__}: {e}"
        if error is not None:
            logger.warning("rule %s: delivery to %s failed: %s", rule, target_arn, error)
        delivery = LambdaDelivery(rule, target_arn, payload, result, error)
        with self._changed:
            self.finished.append(delivery)
            self._pending -= 1
            self._changed.notify_all()


def _invoke(target_arn: str, payload: str) -> tuple[Any, str | None]:
    """Invoke the function and wait for its answer: ``(result, error type or None)``."""
    region = target_arn.split(":")[3]
    with _CLIENT_LOCK:
        client = boto3.client("lambda", region_name=region)
    answer = client.invoke(FunctionName=target_arn, Payload=payload.encode())
    body = answer["Payload"].read()
    result = json.loads(body) if body else None
    function_error = answer.get("FunctionError")
    return result, _error_type(result, function_error) if function_error else None


def _error_type(result: Any, function_error: str) -> str:
    if isinstance(result, dict) and isinstance(result.get("errorType"), str):
        return str(result["errorType"])
    return function_error
