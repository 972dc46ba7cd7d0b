"""Cold start of each handler against bare boto3, and the size of what each function ships.

For every function of ``template.yaml``, fresh ``python -c`` processes (:data:`CHILD`) each time
one cold init in-process with ``time.perf_counter``: the handler module imported as Lambda
imports it (its code folder, then the layer, on the path) and its first call's set-up done,
that is every zero-argument ``functools.cache`` factory of the module called (clients built,
settings read). The baseline process imports boto3 and creates, bare, the clients the handler's
set-up created (``botocore`` is asked which). Handler and baseline runs alternate, so a machine
that slows down slows both. No process reaches the network: the credentials are fake and
``AWS_ENDPOINT_URL`` and the AI Studios URL point at a closed loopback port.

The sizes are those of the packages as ``sam build`` makes them for arm64 and Python 3.13:
the common layer (its wheels unpacked, without bytecode, plus the library) and what the API's
own requirements add to its function. Measuring them needs PyPI; offline they are "not
measured" and the timings still run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aistudios_local.resources import local_functions, resolver_for
from aistudios_local.template import ROOT, load_template

GOAL_RATIO = 1.15
"""A handler's cold init may take at most this many times the baseline's (median, wall)."""
LAYER_LIMIT_BYTES = 10 * 1024 * 1024
"""The common layer, unzipped, for arm64 Python 3.13 wheels."""
DEFAULT_PROCESSES = 7
LAYER = ROOT / "layers" / "common"
API_CODE = ROOT / "functions" / "api"
PYPI_TIMEOUT_SECONDS = 300
BASELINE = "baseline"

CHILD = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import json, os, sys
mode, services = sys.argv[1], sys.argv[2:]
created = []
if mode == "handler":
    import functools, importlib, inspect
    import botocore.session
    create = botocore.session.Session.create_client
    def recording(self, service_name, *args, **kwargs):
        created.append(service_name)
        return create(self, service_name, *args, **kwargs)
    botocore.session.Session.create_client = recording
    app = importlib.import_module("app")
    def factory(obj):
        return (isinstance(obj, functools._lru_cache_wrapper)
                and getattr(obj, "__module__", None) == app.__name__
                and all(p.default is not p.empty
                        for p in inspect.signature(obj).parameters.values()))
    for obj in [o for o in vars(app).values() if factory(o)]:
        obj()
else:
    import boto3
    for service in services:
        boto3.client(service)
        created.append(service)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
loaded = "pydantic" in sys.modules
later = None
if mode == "handler" and os.environ.get("COLD_BENCH_LATER"):
    t1 = time.perf_counter()
    exec(os.environ["COLD_BENCH_LATER"], {"app": app})
    later = time.perf_counter() - t1
print(json.dumps({"wall": wall, "cpu": cpu, "clients": created, "pydantic": loaded,
                  "later": later}))
"""
"""One cold init, timed in-process; prints ``{"wall", "cpu", "clients", "pydantic", "later"}``.

``later`` is the time of the set-up that only some first calls do (:data:`LATER`), after it."""
LATER = {
    "api": (
        "first malformed request",
        "from exports_api import described; described.resolver(app._resolver())",
    ),
}
"""Set-up that only some first calls do, by handler: what it is, and the code that does it.

The API reads well-formed requests with plain checks; the first request they do not vouch for
imports pydantic and builds the validating resolver (``exports_api/described.py``)."""


@dataclass(frozen=True)
class Run:
    """One fresh process's cold init."""

    wall: float
    cpu: float
    clients: tuple[str, ...]
    pydantic: bool
    later: float | None = None


@dataclass
class HandlerResult:
    """A handler's runs and the baseline runs paired with them."""

    name: str
    runs: list[Run] = field(default_factory=list)
    baseline: list[Run] = field(default_factory=list)

    @property
    def clients(self) -> tuple[str, ...]:
        """The clients the handler's set-up created (sorted)."""
        return tuple(sorted(self.runs[0].clients)) if self.runs else ()

    def median(self, runs: Sequence[Run], what: Callable[[Run], float]) -> float:
        """Return the median of one figure of ``runs``."""
        return statistics.median(what(r) for r in runs)

    @property
    def ratio(self) -> float:
        """Median wall time of the handler's cold init over the baseline's."""
        return self.median(self.runs, _wall) / self.median(self.baseline, _wall)

    @property
    def cpu_ratio(self) -> float:
        """The same for CPU time, which a busy machine disturbs less."""
        return self.median(self.runs, _cpu) / self.median(self.baseline, _cpu)

    def summary(self) -> dict[str, Any]:
        """Return this handler's figures as the JSON summary holds them."""
        return {
            "handler_ms": round(self.median(self.runs, _wall) * 1000, 1),
            "baseline_ms": round(self.median(self.baseline, _wall) * 1000, 1),
            "ratio": round(self.ratio, 3),
            "cpu_ratio": round(self.cpu_ratio, 3),
            "clients": list(self.clients),
            "loads_pydantic": any(r.pydantic for r in self.runs),
            "processes": len(self.runs),
            "meets_goal": self.ratio <= GOAL_RATIO,
            **self.later_summary(),
        }

    def later_summary(self) -> dict[str, Any]:
        """Return the median time of the set-up only some first calls do, if any (:data:`LATER`)."""
        later = [r.later for r in self.runs if r.later is not None]
        if not later:
            return {}
        return {"later": LATER[self.name][0], "later_ms": round(statistics.median(later) * 1000, 1)}


def _wall(run: Run) -> float:
    return run.wall


def _cpu(run: Run) -> float:
    return run.cpu


def closed_port() -> int:
    """Return a loopback port nothing listens on (connections to it are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def handler_environments(endpoint: str) -> dict[str, tuple[Path, dict[str, str]]]:
    """Return each function's code folder and environment, by folder name, from the template.

    The variables are the template's (as the local stack resolves them) and a fake AWS
    account whose every endpoint, and the AI Studios API, is ``endpoint``.
    """
    resolver = resolver_for(load_template(ROOT / "template.yaml"), endpoint, {})
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return {
        fn.code_dir.name: (fn.code_dir, {**fn.environment, **aws})
        for fn in local_functions(ROOT, resolver).values()
    }


def _spawn(code_dir: Path, env: dict[str, str], mode: str, services: Sequence[str] = ()) -> Run:
    # As in Lambda: the function's code first, then the layer; nothing of this repository else.
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))},
        **env,
        "PYTHONPATH": os.pathsep.join([str(code_dir), str(LAYER)]),
        "PYTHONHASHSEED": "0",
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, *services],
        env=child_env,
        cwd=code_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{code_dir.name} ({mode}) failed:\n{out.stderr[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Run(
        data["wall"], data["cpu"], tuple(data["clients"]), bool(data["pydantic"]), data["later"]
    )


def measure(
    processes: int = DEFAULT_PROCESSES,
    handlers: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[HandlerResult]:
    """Time ``processes`` cold inits of each handler, each followed by a baseline's.

    Parameters
    ----------
    processes
        Fresh processes per handler (and as many for its baseline).
    handlers
        Code folder names (default: every function of the template).
    progress
        Told the name of each handler as its runs start.
    """
    environments = handler_environments(f"http://127.0.0.1:{closed_port()}")
    names = sorted(environments) if handlers is None else list(handlers)
    results = {name: HandlerResult(name) for name in names}
    for _ in range(processes):
        for name in names:
            if progress:
                progress(name)
            code_dir, env = environments[name]
            later = {"COLD_BENCH_LATER": LATER[name][1]} if name in LATER else {}
            run = _spawn(code_dir, {**env, **later}, "handler")
            results[name].runs.append(run)
            results[name].baseline.append(_spawn(code_dir, env, BASELINE, sorted(run.clients)))
    return list(results.values())


def installed_size(requirements: Path, target: Path) -> int:
    """Install ``requirements``' arm64 Python 3.13 wheels into ``target`` as SAM unpacks them.

    Returns the bytes of what was installed (no bytecode: SAM does not compile).

    Raises
    ------
    subprocess.CalledProcessError, subprocess.TimeoutExpired
        When pip cannot install them (offline, say).
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--retries=0",
            "--timeout=15",
            "--target",
            str(target),
            "--platform",
            "manylinux2014_aarch64",
            "--only-binary=:all:",
            "--python-version",
            "3.13",
            "-r",
            str(requirements),
        ],
        check=True,
        capture_output=True,
        timeout=PYPI_TIMEOUT_SECONDS,
    )
    return tree_size(target)


def built_layer_size(target: Path) -> int:
    """Build the common layer into ``target`` as ``sam build`` does; return its unzipped bytes.

    It runs the layer's own Makefile (its SAM build method), bytecode included.

    Raises
    ------
    subprocess.CalledProcessError, subprocess.TimeoutExpired
        When the build fails (offline, say).
    """
    make = ["make", "-s", "-C", str(LAYER), "build-CommonLayer", f"ARTIFACTS_DIR={target}"]
    subprocess.run(
        [*make, f"PYTHON={sys.executable}"],
        check=True,
        capture_output=True,
        timeout=PYPI_TIMEOUT_SECONDS,
    )
    return tree_size(target, bytecode=True)


def tree_size(root: Path, *, bytecode: bool = False) -> int:
    """Return the bytes of the files under ``root``, bytecode caches left out unless asked."""
    return sum(
        p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and (bytecode or ("__pycache__" not in p.parts and p.suffix != ".pyc"))
    )


def package_sizes() -> dict[str, int | None]:
    """Return the common layer's unzipped bytes and what the API's requirements add.

    ``None`` for a size that could not be measured (no PyPI).
    """
    with tempfile.TemporaryDirectory(prefix="cold-bench-") as tmp:
        try:
            layer = built_layer_size(Path(tmp, "layer"))
            api = installed_size(API_CODE / "requirements.txt", Path(tmp, "api"))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            return {"layer_bytes": None, "api_extra_bytes": None}
    return {"layer_bytes": layer, "api_extra_bytes": api + tree_size(API_CODE)}


def format_table(results: Sequence[HandlerResult]) -> str:
    """Return one line per handler: medians, ratios, the clients of its first call."""
    lines = [
        f"{'handler':<18}{'cold ms':>9}{'baseline ms':>13}{'ratio':>7}{'cpu ratio':>11}  clients"
    ]
    for r in results:
        s = r.summary()
        lines.append(
            f"{r.name:<18}{s['handler_ms']:>9.0f}{s['baseline_ms']:>13.0f}{s['ratio']:>7.2f}"
            f"{s['cpu_ratio']:>11.2f}  {','.join(s['clients']) or '-'}"
        )
    return "\n".join(lines)


def _mib(size: int | None) -> str:
    return "not measured" if size is None else f"{size / 1024 / 1024:.1f} MiB"


def main(argv: Sequence[str]) -> int:
    """Run the cold-start benchmark; print the table and a JSON summary.

    Parameters
    ----------
    argv
        ``[--processes N] [--no-sizes] [HANDLER ...]``.

    Returns
    -------
    int
        0 when every handler meets :data:`GOAL_RATIO` and the layer (when measured) is within
        :data:`LAYER_LIMIT_BYTES`; 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench cold",
        description="Each handler's cold init against import boto3 + the same clients, and "
        "the packages' sizes.",
    )
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES)
    parser.add_argument("--no-sizes", action="store_true", help="skip the size measurement")
    parser.add_argument("handlers", nargs="*", help="code folder names (default: all)")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")

    started = time.monotonic()
    results = measure(
        args.processes,
        args.handlers or None,
        progress=lambda name: print(name, end=" ", file=sys.stderr, flush=True),
    )
    print(file=sys.stderr)
    sizes: dict[str, int | None] = (
        {"layer_bytes": None, "api_extra_bytes": None} if args.no_sizes else package_sizes()
    )
    print(format_table(results))
    print(
        f"(median of {args.processes} fresh processes each; baseline: import boto3 + the same "
        f"clients created bare; goal: ratio <= {GOAL_RATIO})"
    )
    for r in results:
        if later := r.later_summary():
            print(f"{r.name}: {later['later']} adds {later['later_ms']:.0f} ms (median, wall)")
    print(f"common layer, unzipped (arm64, py3.13): {_mib(sizes['layer_bytes'])}")
    print(f"API function's own requirements and code: {_mib(sizes['api_extra_bytes'])}")
    layer_ok = sizes["layer_bytes"] is None or sizes["layer_bytes"] <= LAYER_LIMIT_BYTES
    summary = {
        "goal_ratio": GOAL_RATIO,
        "processes": args.processes,
        "handlers": {r.name: r.summary() for r in results},
        **sizes,
        "layer_limit_bytes": LAYER_LIMIT_BYTES,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    missed = [r.name for r in results if r.ratio > GOAL_RATIO]
    if missed or not layer_ok:
        print(
            "GOAL MISSED: "
            + "; ".join(
                ([f"cold init over {GOAL_RATIO}x: {', '.join(missed)}"] if missed else [])
                + ([] if layer_ok else ["the common layer is over 10 MiB"])
            )
        )
        return 1
    print("goal met: every handler within the ratio, the layer within its size")
    return 0
