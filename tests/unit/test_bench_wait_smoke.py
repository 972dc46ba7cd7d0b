"""The wait benchmark runs every mode to a stored video and reports it (correctness only)."""

from __future__ import annotations

import pytest

from bench.wait_loop import MODES, format_table, run_mode, summarize


@pytest.mark.integration
def test_every_mode_finishes_and_is_reported() -> None:
    results = [
        r for mode in MODES for r in run_mode(mode, total=1.5, exports=1, interval=1, seed=3)
    ]
    assert [(r.mode, r.status) for r in results] == [(m, "SUCCEEDED") for m in MODES]
    assert all(r.delay_seconds >= 0 and r.transitions > 0 for r in results)
    summary = summarize(results)
    assert set(summary["ratios"]) == {"adaptive", "webhooks"}
    assert set(summary["goalsMet"]) == {"adaptive", "webhooks"}
    assert len(format_table(summary).splitlines()) == 1 + len(MODES)
