"""The scale benchmark exports every row with the right bytes (correctness only: nothing timed).

A handful of rows through the same code as ``python -m bench scale``; its measurements are
only checked to be there, never compared with a number.
"""

from __future__ import annotations

import json

import pytest

from aistudios_local.simulator import video_sha256
from bench import footprint, scale
from bench.__main__ import main

pytestmark = pytest.mark.integration

ROWS = 5
SIZE = 1000 + 7


@pytest.fixture(scope="module")
def result() -> scale.ScaleResult:
    return scale.run_scale(ROWS, video_size=SIZE, concurrency=3, deadline_seconds=120)


def test_every_row_is_exported_with_the_simulators_bytes(result: scale.ScaleResult) -> None:
    assert (result.status, result.exported, result.verified) == ("SUCCEEDED", ROWS, ROWS)
    assert result.video_sha256 == {
        pid: video_sha256(pid, "1080", SIZE) for pid in scale.project_ids(ROWS)
    }
    assert result.failures == []


def test_the_batch_mints_one_token_and_renders_within_its_concurrency(
    result: scale.ScaleResult,
) -> None:
    assert result.token_mints == 1  # the stack starts without a token: single-flight refresh
    assert 1 <= result.max_renders_in_flight <= 3


def test_the_summary_has_every_measurement(result: scale.ScaleResult) -> None:
    summary = result.to_json()
    assert set(summary["cpu_by_part"]) == set(scale.PARTS)
    assert "video_sha256" not in summary
    again = scale.ScaleResult.from_json(json.loads(json.dumps(summary))).to_json()
    derived = ("exports_per_second", "cpu_per_export")  # recomputed from rounded inputs
    assert {k: v for k, v in again.items() if k not in derived} == {
        k: v for k, v in summary.items() if k not in derived
    }
    for key in derived:
        assert again[key] == pytest.approx(summary[key], abs=0.01)
    assert set(result.services_by_name) == set(footprint.SERVICES)
    assert result.services_mib > result.stored_mib  # the videos and every execution's history
    assert result.records_mib > 0
    lines = scale.format_table([result]).splitlines()
    assert lines[1].split()[:3] == [str(ROWS), "SUCCEEDED", str(ROWS)]
    assert [p for p in scale.PARTS if p in scale.format_parts(result)] == list(scale.PARTS)


def test_growth_is_per_1000_rows_and_less_the_videos() -> None:
    small = scale.ScaleResult.from_json(
        {**_zeros(), "rows": 250, "peak_rss_mib": 300.0, "stored_mib": 25.0}
    )
    large = scale.ScaleResult.from_json(
        {**_zeros(), "rows": 1000, "peak_rss_mib": 450.0, "stored_mib": 100.0}
    )
    assert scale.growth_per_1000_rows(small, large) == (200.0, 100.0)


def test_memory_growth_is_split_between_the_services_and_the_stack() -> None:
    small = scale.ScaleResult.from_json(
        {
            **_zeros(),
            "rows": 250,
            "peak_rss_mib": 300.0,
            "end_rss_mib": 280.0,
            "stored_mib": 25.0,
            "services_mib": 40.0,
            "records_mib": 1.0,
        }
    )
    large = scale.ScaleResult.from_json(
        {
            **_zeros(),
            "rows": 1000,
            "peak_rss_mib": 450.0,
            "end_rss_mib": 400.0,
            "stored_mib": 100.0,
            "services_mib": 130.0,
            "records_mib": 4.0,
        }
    )
    growth = scale.memory_growth(small, large)
    assert growth == scale.MemoryGrowth(
        peak=200.0, videos=100.0, services=120.0, own=80.0, records=4.0, end=40.0
    )
    assert growth.own == growth.peak - growth.services
    assert growth.stored == 124.0  # the services' data and the stack's records
    assert not growth.claim_met  # 200 MiB per 1,000 rows is above 1.25 x 124
    assert "not met" in scale.format_growth(small, large)
    within = scale.MemoryGrowth(peak=150.0, videos=0, services=116.0, own=34.0, records=4.0, end=0)
    assert within.claim_met and within.ratio == 1.25


def test_the_copy_benchmark_is_still_the_default_command() -> None:
    # Both refuse a part size below S3's minimum before measuring anything.
    for argv in (["--part-size-mib", "1"], ["copy", "--part-size-mib", "1"]):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert refused.value.code == 2


def _zeros() -> dict[str, object]:
    return {
        "status": "SUCCEEDED",
        "exported": 0,
        "verified": 0,
        "wall_seconds": 0.0,
        "cpu_seconds": 0.0,
        "rss_before_mib": 0.0,
        "max_renders_in_flight": 0,
        "token_mints": 0,
        "concurrency": 1,
    }


def test_rss_is_read_before_the_footprint_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The footprint's walk allocates with the rows it measures; the stack's peak excludes it."""
    spike = 256 * scale.MIB
    during: list[float] = []
    measure = footprint.service_bytes

    def allocating(*args: object, **kwargs: object) -> dict[str, int]:
        held = b"x" * spike  # touched pages, as a walk's set of ids would be
        during.append(scale.current_rss_mib())
        del held
        return measure(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scale, "service_bytes", allocating)
    first, second = scale.run_batches([2, 3], video_size=SIZE, concurrency=2, deadline_seconds=120)
    assert (first.status, second.status) == ("SUCCEEDED", "SUCCEEDED")
    assert len(during) == 2
    # Each batch's peak is its own: the second's excludes the walk after the first.
    for result, walked in zip((first, second), during, strict=True):
        assert result.peak_rss_mib < walked - spike / scale.MIB / 2
        assert result.end_rss_mib < walked - spike / scale.MIB / 2


def test_later_batches_add_rows_to_the_same_stack() -> None:
    first, second = scale.run_batches([2, 3], video_size=SIZE, concurrency=2, deadline_seconds=120)
    assert [(r.rows, r.rows_run, r.verified) for r in (first, second)] == [(2, 2, 2), (3, 5, 3)]
    assert set(second.video_sha256) == set(scale.project_ids(3, first=3))  # rows of its own
    assert second.stored_mib == pytest.approx(5 * SIZE / scale.MIB)  # both batches' videos
    assert second.services_mib > first.services_mib
    growth = scale.memory_growth(first, second)
    assert growth.videos == pytest.approx(SIZE * 1000 / scale.MIB)  # 3 more videos, per 1,000
