"""``python -m bench copy-speed``: throughput and peak RSS of the copy against its limits.

Prints the table of every measurement, then a JSON summary with the ratios and claims of
issue #9. Exits 1 when a copy was wrong (an exception), or when the product's memory claims
fail; throughput below the goals is reported in the summary, not turned into a failure (it
depends on what else the machine runs).
"""

from __future__ import annotations

import argparse
import json

from bench.copy_speed import (
    DEFAULT_PART_SIZE_MIB,
    DEFAULT_QUEUED,
    DEFAULT_SIZES_MIB,
    DEFAULT_UPLOADERS,
    METHODS,
    MIB,
    SCHEMES,
    format_table,
    medians,
    run,
    summarize,
)


def _names(allowed: tuple[str, ...]) -> object:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names or set(names) - set(allowed):
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return names

    return parse


def main(argv: list[str]) -> int:
    """Run the copy-speed benchmark; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench copy-speed", description=__doc__)
    parser.add_argument(
        "--sizes-mib",
        default=",".join(map(str, DEFAULT_SIZES_MIB)),
        help="comma-separated sizes (default: 512,2048)",
    )
    parser.add_argument("--schemes", type=_names(SCHEMES), default=list(SCHEMES))  # type: ignore[arg-type]
    parser.add_argument("--methods", type=_names(METHODS), default=list(METHODS))  # type: ignore[arg-type]
    parser.add_argument("--part-size-mib", type=int, default=DEFAULT_PART_SIZE_MIB)
    parser.add_argument("--uploaders", type=int, default=DEFAULT_UPLOADERS)
    parser.add_argument("--queued", type=int, default=DEFAULT_QUEUED)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every measurement (medians are compared)"
    )
    args = parser.parse_args(argv)
    sizes = sorted({int(s) * MIB for s in args.sizes_mib.split(",") if s.strip()})
    results = run(
        sizes,
        schemes=args.schemes,
        methods=args.methods,
        part_size=args.part_size_mib * MIB,
        uploaders=args.uploaders,
        queued=args.queued,
        repeat=max(1, args.repeat),
    )
    print(format_table(medians(results) if args.repeat > 1 else results))
    summary = summarize(results)
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=2))
    claims = summary["claims"]
    memory_ok = all(v for k, v in claims.items() if "RSS" in k)
    return 0 if memory_ok else 1
