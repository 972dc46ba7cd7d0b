"""``python -m bench``: the copy benchmark; ``python -m bench scale``: the scale benchmark.

``python -m bench [copy] [--sizes-mib ...]`` measures the copy and exits 1 when the product's
peak memory at the largest size exceeds 3 parts + 16 MiB. ``python -m bench copy-speed`` runs
the throughput and RSS benchmark of the pipelined copy against its baselines. ``python -m bench
scale`` runs two manifests, one after the other, through the local stack and exits 1 when a row
was not exported with the right bytes (see bench/README.md). ``python -m bench cold``: the handlers'
cold starts and the packages' sizes (bench.cold_start). ``python -m bench wait``: the wait loop's
delay and transitions, fixed against adaptive and webhooks (bench.wait_loop).
"""

from __future__ import annotations

import argparse
import json
import sys

from aistudios_export.transfer import MIB, MIN_PART_SIZE
from bench import cold_start, scale, wait_loop
from bench.copy_memory import BASELINE, DEFAULT_PART_SIZE, PRODUCT, format_table, memory_bound, run
from bench.copy_speed_cli import main as copy_speed_main


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as e:
        raise argparse.ArgumentTypeError("sizes must be comma-separated integers") from e
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the first argument names (``copy`` by default); return the exit status.

    Parameters
    ----------
    argv
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when the benchmark's claims (copy, copy-speed) or correctness (scale) hold, 1 otherwise.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["scale"]:
        return scale_main(args[1:])
    if args[:1] == ["copy-speed"]:
        return copy_speed_main(args[1:])
    if args[:1] == ["cold"]:
        return cold_start.main(args[1:])
    if args[:1] == ["wait"]:
        return wait_loop.main(args[1:])
    return copy_main(args[1:] if args[:1] == ["copy"] else args)


def copy_main(argv: list[str]) -> int:
    """Run the copy benchmark, print its table, and return the exit status.

    Parameters
    ----------
    argv
        The copy benchmark's arguments.

    Returns
    -------
    int
        0 when the memory claim holds, 1 when it fails.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench [copy]",
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


def scale_main(argv: list[str]) -> int:
    """Run the scale benchmark's two batches (in one fresh process), print and summarise it.

    Parameters
    ----------
    argv
        The scale benchmark's arguments.

    Returns
    -------
    int
        0 when every row of every batch was exported with the right bytes, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench scale",
        description="A manifest of distinct projects through the local stack: throughput, CPU "
        "per export and where it goes, peak RSS and its growth with rows, renders in flight, "
        "token mints.",
    )
    parser.add_argument("--rows", type=_positive, default=scale.DEFAULT_ROWS)
    parser.add_argument(
        "--small-rows",
        type=_positive,
        default=scale.DEFAULT_SMALL_ROWS,
        help="a first batch, run before --rows on the same stack, that the growth of memory "
        "with rows is measured from (0: skip it)",
    )
    parser.add_argument("--video-size", type=_positive, default=scale.DEFAULT_VIDEO_SIZE)
    parser.add_argument("--concurrency", type=_positive, default=scale.DEFAULT_CONCURRENCY)
    parser.add_argument("--poll-seconds", type=_positive, default=scale.DEFAULT_POLL_SECONDS)
    parser.add_argument(
        "--no-engine-cache",
        dest="engine_cache",
        action="store_false",
        help="run moto's engine without the local stack's caches and shims (to see what they save)",
    )
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-sizes", type=_batch_sizes, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = {
        "video_size": args.video_size,
        "concurrency": args.concurrency,
        "poll_seconds": args.poll_seconds,
        "engine_cache": args.engine_cache,
    }
    sizes = args.batch_sizes or [rows for rows in (args.small_rows, args.rows) if rows]
    if args.in_process:  # the child process that run_in_subprocess starts
        print(json.dumps([r.to_json() for r in scale.run_batches(sizes, **settings)]))
        return 0
    extra = [
        f"--{name.replace('_', '-')}={value}"
        for name, value in settings.items()
        if name != "engine_cache"
    ] + ([] if args.engine_cache else ["--no-engine-cache"])
    results = scale.run_in_subprocess(sizes, extra)
    print(scale.format_table(results))
    print("(ok: rows exported with the simulator's bytes; end: RSS at the batch's end; stored:")
    print(" what moto's services store then; records: the stack's invocations, events, deliveries")
    print(" and simulator calls; contnrs: containers the functions started; renders: most in")
    print(" flight at once; mints: tokens minted over HTTP, the stack starting with no token)")
    largest = results[-1]
    print(scale.format_parts(largest))
    summary: dict[str, object] = {"batches": [r.to_json() for r in results]}
    if len(results) == 2:
        total, beyond = scale.growth_per_1000_rows(*results)
        summary["rss_growth_mib_per_1000_rows"] = round(total, 1)
        summary["rss_growth_beyond_videos_mib_per_1000_rows"] = round(beyond, 1)
        print(
            f"peak RSS grows {total:.1f} MiB per 1,000 rows ({results[0].rows_run} -> "
            f"{largest.rows_run} rows run), {beyond:.1f} MiB of it beyond the videos stored"
        )
        summary["memory_growth_mib_per_1000_rows"] = scale.memory_growth(*results).to_json()
        print(scale.format_growth(*results))
    goal = largest.exports_per_second >= scale.GOAL_EXPORTS_PER_SECOND
    print(
        f"goal >= {scale.GOAL_EXPORTS_PER_SECOND} exports/s: "
        f"{'met' if goal else 'not met'} ({largest.exports_per_second:.2f})"
    )
    print(json.dumps(summary))
    wrong = [r for r in results if r.status != "SUCCEEDED" or r.verified != r.rows]
    for r in wrong:
        print(f"BATCH OF {r.rows} FAILED: {r.status}, {r.verified} verified; {r.failures}")
    return 1 if wrong else 0


def _batch_sizes(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",")]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError("must be an integer") from e
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


if __name__ == "__main__":
    sys.exit(main())
