"""Scale benchmark: one N-row manifest through the whole local stack (issue #8).

A manifest of distinct project ids is uploaded to the local bucket; the template's rule starts
the batch state machine, whose Distributed Map starts one export execution per row, each of
which submits, polls and copies a small video from the AI Studios simulator into S3. What is
measured is the local stack itself (moto's engine, the Lambda bridge, the handlers and the
simulator, all in this process), not AWS:

- wall seconds and exports per second of the batch, from the upload to its end;
- CPU seconds per export (``time.process_time``), split by part with per-thread CPU clocks
  (``time.thread_time``) around the engine's ASL parse, boto3 client creation, the Lambda
  bridge with its handlers, and the simulator's request handling; the rest is moto's engine,
  its API calls and the waits' bookkeeping;
- peak RSS of the process (``ru_maxrss``) and its RSS before the stack started; at the batch's
  end, what moto's services store (S3 objects and versions, executions with their histories,
  items, secret versions: :mod:`bench.footprint`) and what the stack's records keep (invocations,
  events, deliveries, the simulator's call log), so that RSS growth with rows can be split
  between the services' data and the stack's own;
- the most renders in flight at the simulator at once, and how many tokens were minted over HTTP
  (the stack starts with an empty token secret: single-flight refresh should mint one).

Every exported row is checked: its video in S3 has the simulator's bytes (SHA-256).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
import botocore.session
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from aistudios_local.batch import upload_and_wait
from aistudios_local.engine_cache import EngineCache
from aistudios_local.lambda_bridge import LambdaBridge
from aistudios_local.patches import Patches
from aistudios_local.simulator import AiStudiosSimulator, Scenario
from aistudios_local.simulator.server import _Handler as SimulatorHandler
from aistudios_local.stack import LocalStack
from bench.footprint import retained_bytes, service_bytes, tracked_only_bytes

MIB = 1024 * 1024
DEFAULT_ROWS = 1000
DEFAULT_SMALL_ROWS = 250
DEFAULT_VIDEO_SIZE = 16 * 1024 + 123
"""Small videos: the benchmark measures the stack per export, not copy throughput."""
DEFAULT_CONCURRENCY = 50
DEFAULT_POLL_SECONDS = 1
GOAL_EXPORTS_PER_SECOND = 5.0
"""Issue #8's goal for the local stack on 2 cores."""
SCENARIO = Scenario(progress_steps=(50.0, 100.0))
"""Each export: submitted, one progress check at 50 %, one at 100 % with the URL."""
STORED_GROWTH_BOUND = 1.25
"""Claim: peak RSS grows with rows by at most this multiple of the objects stored with them,
the services' data and the stack's records as the allocator holds them (bench/README.md,
"Memory"): the rest is the pages the allocator keeps around them."""

PARSE, CLIENTS, HANDLERS, SIMULATOR, REST = (
    "ASL parsing (moto)",
    "boto3 client creation",
    "Lambda bridge + handlers",
    "simulator",
    "moto engine and the rest",
)
PARTS = (PARSE, CLIENTS, HANDLERS, SIMULATOR, REST)


@dataclass
class ScaleResult:
    """What one batch of ``rows`` rows measured; ``to_json`` is the JSON summary's shape."""

    rows: int
    """The batch's rows."""
    status: str
    exported: int
    verified: int
    wall_seconds: float
    cpu_seconds: float
    rss_before_mib: float
    peak_rss_mib: float
    stored_mib: float
    max_renders_in_flight: int
    token_mints: int
    concurrency: int
    services_mib: float = 0.0
    """What moto's services store at the batch's end (:func:`bench.footprint.service_bytes`)."""
    records_mib: float = 0.0
    """What the stack's records keep at the batch's end (invocations, events, deliveries, calls)."""
    tracked_mib: float = 0.0
    """What only moto's ``instances_tracked`` lists keep at the batch's end (model instances no
    backend holds: :func:`bench.footprint.tracked_only_bytes`); part of the stack's own."""
    end_rss_mib: float = 0.0
    """RSS at the batch's end, after a garbage collection (what stays, not what peaked); read,
    like the peak, before the footprint is measured."""
    total_rows: int = 0
    """Rows the stack had run when this batch ended, this batch's included (0: ``rows``): what
    its services store and its records keep are of all of them."""
    containers: int = 0
    """Containers the functions started (one per concurrent invocation at most: a pool that
    grows to the peak concurrency of each function, then stays)."""
    services_by_name: dict[str, float] = field(default_factory=dict)
    cpu_by_part: dict[str, float] = field(default_factory=dict)
    calls_by_part: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    video_sha256: dict[str, str] = field(default_factory=dict, repr=False)
    """Project id → SHA-256 of the bytes its video has in S3 (not in the JSON summary)."""

    @property
    def rows_run(self) -> int:
        """Rows the stack had run when this batch ended (``total_rows``, else ``rows``)."""
        return self.total_rows or self.rows

    @property
    def exports_per_second(self) -> float:
        """Exported rows per wall second."""
        return self.exported / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def cpu_per_export(self) -> float:
        """Process CPU seconds per exported row (the stack's own overhead)."""
        return self.cpu_seconds / self.exported if self.exported else 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the measurements, rounded, with the derived rates."""
        data = asdict(self)
        del data["video_sha256"]
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 3)
        data["cpu_by_part"] = {k: round(v, 3) for k, v in self.cpu_by_part.items()}
        data["services_by_name"] = {k: round(v, 3) for k, v in self.services_by_name.items()}
        data["exports_per_second"] = round(self.exports_per_second, 2)
        data["cpu_per_export"] = round(self.cpu_per_export, 4)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScaleResult:
        """Read what ``to_json`` wrote (the derived rates are recomputed)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


class CpuByPart:
    """Per-thread CPU time spent inside a few functions, each nested call counted once.

    A call's CPU is ``time.thread_time`` around it, less what nested measured calls took, so
    that client creation inside a handler counts as client creation. Thread-safe: each thread
    keeps its own stack, the totals are summed under a lock. (cProfile cannot do this: since
    Python 3.12 one profiler sees every thread and mixes their timings.)
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PARTS[:-1], 0.0)
        self.calls: dict[str, int] = dict.fromkeys(PARTS[:-1], 0)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._patches = Patches()

    def measure(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``fn`` wrapped so that its CPU counts towards ``part``."""

        @functools.wraps(fn)
        def measured(*args: Any, **kwargs: Any) -> Any:
            stack: list[float] = self._local.__dict__.setdefault("stack", [])
            stack.append(0.0)
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                nested = stack.pop()
                if stack:
                    stack[-1] += spent
                with self._lock:
                    self.seconds[part] += spent - nested
                    self.calls[part] += 1

        return measured

    def _patch(self, owner: Any, name: str, part: str, *, static: bool = False) -> None:
        wrapped = self.measure(part, getattr(owner, name))
        self._patches.replace(owner, name, staticmethod(wrapped) if static else wrapped)

    @contextmanager
    def installed(self) -> Iterator[CpuByPart]:
        """Measure for the length of the block (patching what is there now, caches included)."""
        self._patch(AmazonStateLanguageParser, "parse", PARSE, static=True)
        self._patch(botocore.session.Session, "create_client", CLIENTS)
        self._patch(LambdaBridge, "invoke", HANDLERS)
        self._patch(SimulatorHandler, "handle", SIMULATOR)
        try:
            yield self
        finally:
            self._patches.restore()


def project_ids(rows: int, first: int = 1) -> list[str]:
    """``rows`` distinct 24-hex-digit project ids, numbered from ``first``."""
    return [f"{i:024x}" for i in range(first, first + rows)]


def manifest(ids: list[str]) -> bytes:
    """A CSV manifest with one row per project id."""
    return ("projectId\n" + "".join(f"{pid}\n" for pid in ids)).encode()


def current_rss_mib() -> float:
    """The process's resident set now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * resource.getpagesize() / MIB
    except OSError:
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """The process's peak resident set since it started, or since :func:`reset_peak_rss`.

    Linux's ``VmHWM`` (which :func:`reset_peak_rss` can reset), else ``ru_maxrss`` (KiB on
    Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Start the process's peak resident set afresh from its RSS now; return whether it could.

    Linux (since 4.0): writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM``. Elsewhere the
    peak stays the process's own since it started.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def run_scale(
    rows: int = DEFAULT_ROWS,
    *,
    video_size: int = DEFAULT_VIDEO_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    poll_seconds: int = DEFAULT_POLL_SECONDS,
    deadline_seconds: float = 1800,
    engine_cache: bool = True,
) -> ScaleResult:
    """Run one batch of ``rows`` distinct projects on a fresh local stack and measure it.

    :func:`run_batches` with one size; the parameters are its.
    """
    return run_batches(
        [rows],
        video_size=video_size,
        concurrency=concurrency,
        poll_seconds=poll_seconds,
        deadline_seconds=deadline_seconds,
        engine_cache=engine_cache,
    )[0]


def run_batches(
    sizes: Sequence[int],
    *,
    video_size: int = DEFAULT_VIDEO_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    poll_seconds: int = DEFAULT_POLL_SECONDS,
    deadline_seconds: float = 1800,
    engine_cache: bool = True,
) -> list[ScaleResult]:
    """Run batches of ``sizes`` rows, one after the other, on one fresh local stack; measure each.

    Every row of every batch is a project of its own. Later batches find the functions' container
    pools and the engine's caches as the earlier ones left them, so the growth of memory between
    two batches is the rows', not the stack's start-up. Each batch's peak RSS is its own: the peak
    is reset when the batch starts (Linux; elsewhere it is the process's), after the previous
    batch's measurements.

    Parameters
    ----------
    sizes
        Each batch's manifest rows.
    video_size
        Bytes of each simulated video.
    concurrency
        The template's ``BatchMaxConcurrency``, and its ``MaxRendersInFlight`` too: the account's
        render limit lets every row the Map runs have its render (the column "renders" shows that
        the limit held).
    poll_seconds
        The template's ``DefaultPollSeconds`` (``MinPollSeconds`` is 0).
    deadline_seconds
        Each batch is stopped after this long (it then reports ABORTED).
    engine_cache
        False: run moto's engine without :mod:`aistudios_local.engine_cache` (to see its effect).

    Returns
    -------
    list[ScaleResult]
        The measurements of each batch, in order; ``verified`` counts rows whose video in S3 has
        the simulator's bytes.
    """
    rss_before = current_rss_mib()
    simulator = AiStudiosSimulator(video_size=video_size, default_scenario=SCENARIO)
    parameters = {
        "BatchMaxConcurrency": str(concurrency),
        "MaxRendersInFlight": str(concurrency),
        "DefaultPollSeconds": str(poll_seconds),
        "MinPollSeconds": "0",
        "LogLevel": "ERROR",  # a thousand rows of INFO lines would measure the terminal
    }
    results: list[ScaleResult] = []
    with (
        contextlib.nullcontext() if engine_cache else _without_engine_cache(),
        simulator,
        LocalStack(simulator=simulator, seed_token=False, parameters=parameters) as stack,
    ):
        for rows in sizes:
            done = sum(r.rows for r in results)
            data = manifest(project_ids(rows, first=done + 1))
            reset_peak_rss()
            with CpuByPart().installed() as parts:
                cpu_started, started = time.process_time(), time.monotonic()
                run = upload_and_wait(
                    stack,
                    data,
                    f"scale-{done + 1}-{done + rows}.csv",
                    deadline_seconds=deadline_seconds,
                    interval=0.5,
                )
                wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
            # Read RSS before anything is measured: the footprint's walk over every object the
            # services hold (and its set of their ids) grows with rows, and is not the stack's.
            peak_rss = peak_rss_mib()
            gc.collect()
            end_rss = current_rss_mib()
            exported = [r for r in run.rows if r.get("status") == "SUCCEEDED"]
            videos_stored = sum(r.exported for r in results) + len(exported)
            stored = {str(r["projectId"]): _stored_sha256(r) for r in exported}
            verified = sum(
                1
                for r in exported
                if r["video"]["sha256"]
                == stored[r["projectId"]]
                == simulator.expected_sha256(r["projectId"])
            )
            seen: set[int] = set()
            services = service_bytes(seen=seen)
            tracked = tracked_only_bytes(seen)
            del seen
            records = retained_bytes(
                [
                    stack.invocations,
                    stack.events,
                    stack.lambda_deliveries,
                    stack.rule_deliveries,
                    simulator.calls,
                ]
            )
            by_part = dict(parts.seconds)
            by_part[REST] = max(0.0, cpu - sum(by_part.values()))
            results.append(
                ScaleResult(
                    rows=rows,
                    status=run.status,
                    exported=len(exported),
                    verified=verified,
                    wall_seconds=wall,
                    cpu_seconds=cpu,
                    rss_before_mib=rss_before,
                    peak_rss_mib=peak_rss,
                    stored_mib=videos_stored * video_size / MIB,
                    max_renders_in_flight=simulator.max_renders_in_flight,
                    token_mints=simulator.tokens_minted,
                    concurrency=concurrency,
                    services_mib=sum(services.values()) / MIB,
                    records_mib=records / MIB,
                    tracked_mib=tracked / MIB,
                    end_rss_mib=end_rss,
                    total_rows=done + rows,
                    containers=sum(fn.containers for fn in stack.functions.values()),
                    services_by_name={name: size / MIB for name, size in services.items()},
                    cpu_by_part=by_part,
                    calls_by_part=dict(parts.calls),
                    failures=[r for r in run.rows if r.get("status") != "SUCCEEDED"][:5],
                    video_sha256=stored,
                )
            )
            gc.collect()
    return results


@contextmanager
def _without_engine_cache() -> Iterator[None]:
    install = EngineCache.install
    EngineCache.install = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        EngineCache.install = install  # type: ignore[method-assign]


def _stored_sha256(row: dict[str, Any]) -> str:
    """SHA-256 of the bytes a row's video has in the local bucket."""
    video = row["video"]
    body = boto3.client("s3").get_object(Bucket=video["bucket"], Key=video["key"])["Body"].read()
    return hashlib.sha256(body).hexdigest()


def growth_per_1000_rows(small: ScaleResult, large: ScaleResult) -> tuple[float, float]:
    """Peak RSS growth per 1,000 rows between two sizes: ``(total, beyond the videos stored)``."""
    extra_rows = large.rows_run - small.rows_run
    if extra_rows <= 0:
        return 0.0, 0.0
    total = (large.peak_rss_mib - small.peak_rss_mib) * 1000 / extra_rows
    stored = (large.stored_mib - small.stored_mib) * 1000 / extra_rows
    return total, total - stored


@dataclass(frozen=True)
class MemoryGrowth:
    """How memory grows per 1,000 rows between two batches, by owner (MiB).

    Attributes
    ----------
    peak
        Peak RSS.
    videos
        The videos' bytes stored in S3 (part of ``services``).
    services
        What moto's services store: S3 objects and versions, executions and their histories,
        DynamoDB items, secret versions (AWS keeps all of them too).
    own
        The stack's own: ``peak - services``.
    records
        The part of ``own`` that the stack's records keep (its invocations, events, deliveries and
        the simulator's calls: what AWS's logs would hold), as Python objects. With ``services``,
        the objects stored with the rows (:attr:`stored`).
    tracked
        The part of ``own`` that only moto's instance tracking keeps (replaced item versions).
    end
        RSS at the batch's end (after a garbage collection), less ``services``: the stack's own
        memory that stays, which a transient peak does not blur.
    """

    peak: float
    videos: float
    services: float
    own: float
    records: float
    end: float
    tracked: float = 0.0

    @property
    def stored(self) -> float:
        """The objects stored with the rows: the services' data and the stack's records."""
        return self.services + self.records

    @property
    def ratio(self) -> float:
        """Peak RSS growth over :attr:`stored` (0 when nothing was stored)."""
        return self.peak / self.stored if self.stored > 0 else 0.0

    @property
    def claim_met(self) -> bool:
        """Whether peak RSS grew by at most :data:`STORED_GROWTH_BOUND` times :attr:`stored`."""
        return self.peak <= STORED_GROWTH_BOUND * self.stored

    def to_json(self) -> dict[str, float | bool]:
        """Return the growths, rounded, and whether the claim holds."""
        data: dict[str, float | bool] = {k: round(v, 1) for k, v in asdict(self).items()}
        data["stored"] = round(self.stored, 1)
        data["ratio"] = round(self.ratio, 3)
        data["ratio_bound"] = STORED_GROWTH_BOUND
        data["claim_met"] = self.claim_met
        return data


def memory_growth(small: ScaleResult, large: ScaleResult) -> MemoryGrowth:
    """Split the growth of memory per 1,000 rows between two sizes by owner."""
    extra_rows = large.rows_run - small.rows_run
    if extra_rows <= 0:
        return MemoryGrowth(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def per_1000(name: str) -> float:
        return float(getattr(large, name) - getattr(small, name)) * 1000 / extra_rows

    peak, services = per_1000("peak_rss_mib"), per_1000("services_mib")
    return MemoryGrowth(
        peak=peak,
        videos=per_1000("stored_mib"),
        services=services,
        own=peak - services,
        records=per_1000("records_mib"),
        end=per_1000("end_rss_mib") - services,
        tracked=per_1000("tracked_mib"),
    )


def format_growth(small: ScaleResult, large: ScaleResult) -> str:
    """The growth per 1,000 rows by owner, and whether the stack's own is within its bound."""
    growth = memory_growth(small, large)
    extra_rows = max(large.rows_run - small.rows_run, 1)
    by_service = ", ".join(
        f"{name} {(large.services_by_name.get(name, 0.0) - size) * 1000 / extra_rows:.1f}"
        for name, size in small.services_by_name.items()
    )
    return "\n".join(
        [
            f"memory growth per 1,000 rows ({small.rows_run} -> {large.rows_run} rows), MiB:",
            f"  peak RSS                          {growth.peak:8.1f}",
            f"  stored by the services (moto)     {growth.services:8.1f}  ({by_service};"
            f" videos {growth.videos:.1f})",
            f"  the stack's own (peak - services) {growth.own:8.1f}"
            f"  (its records {growth.records:.1f}; kept only by moto's instance tracking"
            f" {growth.tracked:.1f}; at the end, after gc {growth.end:.1f})",
            f"  the objects stored (services + records) {growth.stored:8.1f}"
            f"  (peak RSS grew {growth.ratio:.2f} times that; the rest,"
            f" {growth.peak - growth.stored:.1f}, is the allocator's pages around them)",
            f"claim: peak RSS grows at most {STORED_GROWTH_BOUND:.2f} times the objects stored: "
            + ("met" if growth.claim_met else "not met"),
        ]
        + (
            [
                f"  (the functions had {small.containers} containers after {small.rows_run} "
                f"rows and {large.containers} after {large.rows_run}: the pools grew during the "
                "later rows, so the growth includes containers starting, which do not grow "
                "with rows)"
            ]
            if large.containers > small.containers
            else []
        )
    )


def format_table(results: list[ScaleResult]) -> str:
    """One line per batch size."""
    header = (
        f"{'rows':>6} {'status':>9} {'ok':>6} {'wall s':>8} {'exp/s':>7} {'CPU s/exp':>10} "
        f"{'RSS0 MiB':>9} {'peak MiB':>9} {'end MiB':>8} {'videos MiB':>10} {'stored MiB':>10} "
        f"{'records MiB':>11} {'contnrs':>7} {'renders':>8} {'mints':>6}"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"{r.rows:>6} {r.status:>9} {r.verified:>6} {r.wall_seconds:>8.1f} "
            f"{r.exports_per_second:>7.2f} {r.cpu_per_export:>10.4f} {r.rss_before_mib:>9.0f} "
            f"{r.peak_rss_mib:>9.0f} {r.end_rss_mib:>8.0f} {r.stored_mib:>10.1f} "
            f"{r.services_mib:>10.1f} {r.records_mib:>11.1f} {r.containers:>7} "
            f"{r.max_renders_in_flight:>8} "
            f"{r.token_mints:>6}"
        )
    return "\n".join(lines)


def format_parts(result: ScaleResult) -> str:
    """Where the CPU of one batch went, per export and as a share."""
    total = sum(result.cpu_by_part.values()) or 1.0
    lines = [f"CPU per export at {result.rows} rows, by part (ms; share; measured calls):"]
    for part in PARTS:
        seconds = result.cpu_by_part.get(part, 0.0)
        calls = result.calls_by_part.get(part)
        lines.append(
            f"  {part:<26} {1000 * seconds / max(result.exported, 1):8.1f}  "
            f"{100 * seconds / total:5.1f} %" + (f"  {calls} calls" if calls is not None else "")
        )
    return "\n".join(lines)


def run_in_subprocess(sizes: Sequence[int], extra: list[str]) -> list[ScaleResult]:
    """Run :func:`run_batches` in a fresh interpreter, so that its RSS is its own."""
    import subprocess

    command = [sys.executable, "-m", "bench", "scale", "--in-process"]
    command += ["--batch-sizes", ",".join(str(rows) for rows in sizes), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return [ScaleResult.from_json(r) for r in json.loads(done.stdout.strip().splitlines()[-1])]
