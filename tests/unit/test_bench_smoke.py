"""The copy benchmark copies the right bytes (correctness only: nothing timed or measured)."""

from __future__ import annotations

import pytest

from aistudios_export.transfer import MIB
from aistudios_local.simulator import AiStudiosSimulator, video_sha256
from bench.copy_memory import BASELINE, METHODS, PRODUCT, CopyResult, format_table, measure

SIZE = 12 * MIB + 345  # not a multiple of the part size: the last part is short


@pytest.fixture(scope="module")
def expected() -> str:
    return video_sha256(f"{SIZE:024x}", "1080", SIZE)


@pytest.fixture(scope="module")
def results(expected: str) -> list[CopyResult]:
    with AiStudiosSimulator() as sim:
        return [
            measure(sim, SIZE, method, part_size=5 * MIB, expected_sha256=expected)
            for method in METHODS
        ]


def test_both_methods_copy_the_video(results: list[CopyResult], expected: str) -> None:
    assert [(r.method, r.size, r.sha256) for r in results] == [
        (BASELINE, SIZE, expected),
        (PRODUCT, SIZE, expected),
    ]
    for r in results:
        assert r.peak_bytes > 0
        assert r.seconds > 0


def test_table_lists_every_result(results: list[CopyResult]) -> None:
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["size", "MiB", "method", "peak", "MiB", "MiB/s"]
    assert [line.split()[:2] for line in lines[1:]] == [["12", BASELINE], ["12", PRODUCT]]


def test_unknown_method_is_refused() -> None:
    # Refused before the simulator is asked for anything, so it need not be running.
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        measure(AiStudiosSimulator(), MIB, "nope")
