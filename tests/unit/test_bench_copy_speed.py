"""The copy-speed benchmark copies the right bytes over HTTP and TLS (nothing timed here).

Tiny sizes, every method, both schemes: each run is verified by the benchmark itself (the
sink's byte count and CRC32, the product's SHA-256 and tag, no server-side copy, no open
upload); these tests check that it ran and what it reports.
"""

from __future__ import annotations

import pytest

from bench.copy_speed import (
    METHODS,
    MIB,
    SCHEMES,
    Measurement,
    format_table,
    medians,
    run,
    summarize,
)
from bench.s3_sink import crc32_combine

SIZE = 6 * MIB + 123  # two parts of 5 MiB, the last one short


@pytest.fixture(scope="module")
def results() -> list[Measurement]:
    return run([SIZE], part_size=5 * MIB, uploaders=2, queued=1)


def test_every_method_ran_over_both_schemes(results: list[Measurement]) -> None:
    assert [(r.scheme, r.method, r.size) for r in results] == [
        (scheme, method, SIZE) for scheme in SCHEMES for method in METHODS
    ]
    assert all(r.seconds > 0 and r.max_rss_mib > 0 for r in results)


def test_the_summary_has_the_ratios_and_claims(results: list[Measurement]) -> None:
    summary = summarize(results)
    assert [(row["scheme"], row["size_mib"]) for row in summary["rows"]] == [
        ("http", SIZE // MIB),
        ("https", SIZE // MIB),
    ]
    for row in summary["rows"]:
        assert {"product_vs_limit", "product_vs_fileobj_default", "combined_limit_mib_s"} <= set(
            row
        )
    assert len(summary["claims"]) == 4
    assert len(format_table(results).splitlines()) == len(results) + 1


def test_crc32_combine_is_zlibs() -> None:
    import zlib

    a, b = b"first part" * 1000, b"second" * 777
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_repeated_measurements_count_by_their_median_and_their_largest_rss() -> None:
    rounds = [
        Measurement("http", MIB, "product", seconds, rss)
        for seconds, rss in [(1.0, 100.0), (4.0, 90.0), (2.0, 120.0)]
    ]

    [chosen] = medians(rounds)

    assert (chosen.seconds, chosen.max_rss_mib) == (2.0, 120.0)
