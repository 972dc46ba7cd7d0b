"""What a Step Functions retrier costs in waiting, read from its fields."""

from __future__ import annotations

from typing import Any


def delays(retrier: dict[str, Any]) -> list[float]:
    """The longest wait before each retry (``MaxAttempts`` of them), before jitter."""
    interval = retrier.get("IntervalSeconds", 1)
    rate = retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    return [min(interval * rate**k, cap) for k in range(retrier.get("MaxAttempts", 3))]


def worst_case_wait(retrier: dict[str, Any]) -> float:
    """Seconds a retrier may wait in all before it gives up."""
    return sum(delays(retrier))


def expected_wait(retrier: dict[str, Any]) -> float:
    """Seconds a retrier waits in all on average before it gives up (FULL jitter: half)."""
    full = retrier.get("JitterStrategy") == "FULL"
    return worst_case_wait(retrier) / 2 if full else worst_case_wait(retrier)
