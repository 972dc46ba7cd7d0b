"""How long to wait before the next progress check: predicted from the pace seen so far.

A fixed interval pays for polls that cannot find the video ready and still finds it late. The
pace of an export is steady enough to predict its end: from the progress gained between the last
two checks (or since the submit), :func:`next_wait` predicts when it reaches 100 %, and waits

- half the time still to go, with jitter, while predictions disagree (a batch of exports then
  does not poll in lockstep);
- until the predicted end, once two predictions in a row agree: the check lands just after it;
- the time elapsed so far (doubling probes) while there is no progress to learn a pace from;

always within ``[shortest, longest]`` seconds. A webhook (when AI Studios calls one) ends any
wait early; these waits are the fall-back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

FRACTION = 0.5
"""The share of the predicted time to go that an unconfirmed prediction waits."""
JITTER = 0.1
"""Waits of unconfirmed predictions vary by up to this share either way."""
AGREEMENT = 0.1
"""Two predictions agree when their ends differ by at most this share of the predicted duration."""


@dataclass(frozen=True)
class Pace:
    """What a check knows of the export's pace.

    Attributes
    ----------
    now, progress
        This check's time (epoch seconds) and progress (0-100).
    since, since_progress
        The previous check's time and progress (the submit's, 0 %, before the first check).
    predicted_before
        The end the previous check predicted (0: none).
    """

    now: float
    progress: float
    since: float
    since_progress: float
    predicted_before: float = 0.0


def predicted_end(pace: Pace) -> float:
    """Return when the export reaches 100 % at the pace since the previous check (0: unknown).

    Examples
    --------
    >>> predicted_end(Pace(now=30.0, progress=50.0, since=0.0, since_progress=0.0))
    60.0
    >>> predicted_end(Pace(now=30.0, progress=50.0, since=20.0, since_progress=50.0))
    0.0
    """
    gained, took = pace.progress - pace.since_progress, pace.now - pace.since
    if gained <= 0 or took <= 0 or pace.progress >= 100:
        return 0.0
    return pace.now + (100.0 - pace.progress) * took / gained


def next_wait(
    pace: Pace,
    *,
    shortest: int,
    longest: int,
    started: float,
    random: Callable[[], float],
) -> tuple[int, float]:
    """Return ``(seconds to wait, predicted end)`` for the next check.

    Parameters
    ----------
    pace
        What this check saw.
    shortest, longest
        The bounds of the wait (``longest`` 0: never wait).
    started
        When the export was submitted: with no pace known, probes wait as long as it ran so far.
    random
        A uniform draw from [0, 1), for the jitter.

    Examples
    --------
    >>> half = lambda: 0.5  # no jitter
    >>> next_wait(Pace(1.0, 2.0, 0.0, 0.0), shortest=1, longest=60, started=0.0, random=half)
    (25, 50.0)
    >>> agreed = Pace(26.0, 52.0, 1.0, 2.0, predicted_before=50.0)
    >>> next_wait(agreed, shortest=1, longest=60, started=0.0, random=half)
    (24, 50.0)
    """
    if longest <= 0:
        return 0, 0.0
    end = predicted_end(pace)
    if not end:
        seconds = float(max(pace.now - started, shortest))
    else:
        to_go = end - pace.now
        before = pace.predicted_before
        if before and abs(end - before) <= AGREEMENT * max(end - started, 1.0):
            seconds = float(math.ceil(to_go))
        else:
            seconds = to_go * FRACTION * (1 + JITTER * (2 * random() - 1))
    return min(longest, max(shortest, math.floor(seconds + 0.5))), end
