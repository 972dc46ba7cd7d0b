"""``python -m bench``: measure the copy benchmark and check the bounded-memory claim.

Exits 1 when the product's peak memory at the largest size exceeds 3 parts + 16 MiB.
``python -m bench cold``: the handlers' cold starts and the packages' sizes (bench.cold_start).
"""

from __future__ import annotations

import argparse
import sys

from aistudios_export.transfer import MIB, MIN_PART_SIZE
from bench import cold_start
from bench.copy_memory import BASELINE, DEFAULT_PART_SIZE, PRODUCT, format_table, memory_bound, run


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as e:
        raise argparse.ArgumentTypeError("sizes must be comma-separated integers") from e
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print its table, and return the exit status.

    Parameters
    ----------
    argv
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when the memory claim holds, 1 when it fails.
    """
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["cold"]:
        return cold_start.main(given[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Peak memory and throughput of a URL → S3 copy: naive download against "
        "copy_url_to_s3, on the local AI Studios simulator.",
    )
    parser.add_argument(
        "--sizes-mib",
        type=_sizes,
        default=[64, 256],
        help="comma-separated video sizes in MiB (default: 64,256)",
    )
    parser.add_argument(
        "--part-size-mib",
        type=int,
        default=DEFAULT_PART_SIZE // MIB,
        help="the product's multipart part size in MiB (default: 8)",
    )
    args = parser.parse_args(argv)
    part_size = args.part_size_mib * MIB
    if part_size < MIN_PART_SIZE:
        parser.error("--part-size-mib must be at least 5")

    results = run(args.sizes_mib, part_size=part_size)
    print(format_table(results))
    print("(peak: tracemalloc peak during a traced run; MiB/s: a separate untraced run)")

    largest = max(r.size for r in results)
    peak = {r.method: r.peak_bytes for r in results if r.size == largest}
    bound = memory_bound(part_size)
    print(
        f"at {largest // MIB} MiB the product's peak is {peak[PRODUCT] / peak[BASELINE]:.3f} "
        f"of the baseline's ({peak[PRODUCT] / MIB:.1f} vs {peak[BASELINE] / MIB:.1f} MiB); "
        f"bound {bound / MIB:.0f} MiB"
    )
    if peak[PRODUCT] > bound:
        print(f"CLAIM FAILS: product peak exceeds 3 x part size + 16 MiB = {bound / MIB:.0f} MiB")
        return 1
    print("claim holds: product peak within 3 x part size + 16 MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
