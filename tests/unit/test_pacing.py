"""Adaptive waits: predicted from the pace, bounded, jittered, and landing just after the end."""

from __future__ import annotations

import pytest

from aistudios_export.pacing import JITTER, Pace, next_wait, predicted_end


def no_jitter() -> float:
    return 0.5


def test_the_end_is_predicted_from_the_pace_since_the_previous_check() -> None:
    assert predicted_end(Pace(now=10.0, progress=20.0, since=0.0, since_progress=0.0)) == 50.0
    assert predicted_end(Pace(now=20.0, progress=40.0, since=10.0, since_progress=30.0)) == 80.0
    # No progress, backwards, or done: nothing to predict.
    assert predicted_end(Pace(now=20.0, progress=30.0, since=10.0, since_progress=30.0)) == 0.0
    assert predicted_end(Pace(now=20.0, progress=20.0, since=10.0, since_progress=30.0)) == 0.0
    assert predicted_end(Pace(now=20.0, progress=100.0, since=10.0, since_progress=30.0)) == 0.0


def test_a_linear_export_is_found_in_three_checks() -> None:
    # Progress grows linearly to 100 % at t = 600 (a ten-minute export), checks take no time.
    total, t, progress, since, since_progress, predicted = 600.0, 10.0, 0.0, 0.0, 0.0, 0.0
    checks = []
    while True:
        progress = min(100.0, 100.0 * t / total)
        checks.append(t)
        if progress >= 100:
            break
        pace = Pace(t, progress, since, since_progress, predicted)
        wait, predicted = next_wait(pace, shortest=10, longest=600, started=0.0, random=no_jitter)
        since, since_progress, t = t, progress, t + wait
    assert len(checks) == 3, checks
    assert 600.0 <= checks[-1] <= 601.0


def test_waits_stay_within_their_bounds() -> None:
    fast = Pace(now=1.0, progress=99.0, since=0.0, since_progress=0.0)
    slow = Pace(now=100.0, progress=1.0, since=0.0, since_progress=0.0)
    assert next_wait(fast, shortest=5, longest=60, started=0.0, random=no_jitter)[0] == 5
    assert next_wait(slow, shortest=5, longest=60, started=0.0, random=no_jitter)[0] == 60
    assert next_wait(slow, shortest=0, longest=0, started=0.0, random=no_jitter) == (0, 0.0)


def test_without_a_pace_the_probes_double() -> None:
    still = Pace(now=20.0, progress=0.0, since=10.0, since_progress=0.0)
    assert next_wait(still, shortest=5, longest=60, started=0.0, random=no_jitter)[0] == 20
    assert next_wait(still, shortest=30, longest=60, started=0.0, random=no_jitter)[0] == 30


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.75, 0.999])
def test_unconfirmed_predictions_are_jittered_so_batches_spread(draw: float) -> None:
    pace = Pace(now=100.0, progress=10.0, since=0.0, since_progress=0.0)  # 900 s to go
    wait, _ = next_wait(pace, shortest=5, longest=1000, started=0.0, random=lambda: draw)
    assert 450 * (1 - JITTER) - 1 <= wait <= 450 * (1 + JITTER) + 1
