"""``python -m bench wait``: how soon a finished export is noticed, and at how many transitions.

Exports whose progress grows linearly over about ``T`` seconds of wall time (each its own
``T``, drawn from ±20 %, so that the moment a video is ready falls anywhere between two polls)
run on the local stack three ways:

- ``fixed``: the original sample's fixed interval, scaled as ``T`` is (60 s of a 10-minute
  export: ``T / 10``): the shortest and the longest wait are both that interval;
- ``adaptive``: waits predicted from the pace (1 s to 60 s), no webhook;
- ``webhooks``: AI Studios calls the webhook once the video is ready, and every wait is the
  template's ``WebhookPollSeconds`` scaled as ``T`` is (300 s of a 10-minute export: ``T / 2``),
  the fall-back for a lost webhook: no waits are predicted.

The delay is from "video ready" (the simulator's submit time plus the export's ``T``) to
"FinalizeExport entered" in the execution's history; transitions are the execution's state
transitions. The goals: with webhooks, every delay ≤ 2 s and ≤ ½ the fixed transitions;
adaptive alone, ≤ ½ the transitions and ≤ ⅓ the mean delay.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import boto3

from aistudios_local.simulator import Scenario
from aistudios_local.stack import LocalStack

MODES = ("fixed", "adaptive", "webhooks")
LONGEST_WAIT = 60
WEBHOOK_WAIT_INTERVALS = 5
"""The webhooks mode's wait in fixed intervals: 300 s against the sample's 60 s."""
SPREAD = 0.2


@dataclass(frozen=True)
class ExportResult:
    """One export of one mode."""

    mode: str
    total_seconds: float
    status: str
    delay_seconds: float
    transitions: int


def project_id(mode: int, number: int) -> str:
    return f"{0xBE0C0000 + mode:08x}{number:016x}"


def finalize_entered(arn: str) -> float:
    """When the execution entered FinalizeExport (epoch seconds; 0: never)."""
    events = boto3.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)[
        "events"
    ]
    for event in events:
        details = event.get("stateEnteredEventDetails")
        if details and details.get("name") == "FinalizeExport":
            return event["timestamp"].timestamp()
    return 0.0


def run_mode(
    mode: str, *, total: float, exports: int, interval: int, seed: int
) -> list[ExportResult]:
    """Run ``exports`` exports at once in one mode; return their results."""
    rng = random.Random(f"{seed}-{mode}")
    fixed = mode == "fixed"
    parameters = {"MinPollSeconds": str(interval if fixed else 1)}
    if mode == "webhooks":
        parameters["WebhookPollSeconds"] = str(interval * WEBHOOK_WAIT_INTERVALS)
    longest = interval if fixed else LONGEST_WAIT
    with LocalStack(parameters=parameters, webhooks=mode == "webhooks") as stack:
        assert stack.simulator is not None
        if mode == "webhooks":
            # The API's first call starts its function: warm it, as a deployed API is.
            stack.simulator.send_webhook(stack.webhook_url("warm-up", token="0" * 64), {})
        started: list[tuple[str, str, float]] = []
        for number in range(exports):
            project = project_id(MODES.index(mode), number)
            seconds = total * (1 + SPREAD * (2 * rng.random() - 1))
            stack.simulator.set_scenario(
                project,
                Scenario(
                    linear_seconds=seconds, webhook="finish" if mode == "webhooks" else "never"
                ),
            )
            arn = stack.start_export({"projectId": project, "pollSeconds": longest})
            started.append((arn, project, seconds))
        results = []
        for arn, project, seconds in started:
            run = stack.wait(arn, deadline_seconds=total * 3 + 120)
            ready = stack.simulator.submitted_at(project) + seconds
            entered = finalize_entered(arn)
            results.append(
                ExportResult(
                    mode=mode,
                    total_seconds=round(seconds, 3),
                    status=run.status,
                    delay_seconds=round(entered - ready, 3) if entered else -1.0,
                    transitions=run.state_transitions,
                )
            )
    return results


def summarize(results: list[ExportResult]) -> dict[str, Any]:
    """Per mode: mean and max delay, mean transitions; against fixed: ratios and goals."""
    modes: dict[str, dict[str, float]] = {}
    for mode in MODES:
        rows = [r for r in results if r.mode == mode]
        if not rows:
            continue
        modes[mode] = {
            "exports": len(rows),
            "succeeded": sum(r.status == "SUCCEEDED" for r in rows),
            "meanDelaySeconds": round(statistics.fmean(r.delay_seconds for r in rows), 3),
            "maxDelaySeconds": round(max(r.delay_seconds for r in rows), 3),
            "meanTransitions": round(statistics.fmean(r.transitions for r in rows), 2),
        }
    summary: dict[str, Any] = {"modes": modes}
    base = modes.get("fixed")
    if base:
        ratios = {
            mode: {
                "transitions": round(m["meanTransitions"] / base["meanTransitions"], 3),
                "meanDelay": round(m["meanDelaySeconds"] / max(base["meanDelaySeconds"], 1e-9), 3),
            }
            for mode, m in modes.items()
            if mode != "fixed"
        }
        summary["ratios"] = ratios
        goals = {}
        if "webhooks" in modes:
            goals["webhooks"] = (
                modes["webhooks"]["maxDelaySeconds"] <= 2.0
                and ratios["webhooks"]["transitions"] <= 0.5
            )
        if "adaptive" in modes:
            goals["adaptive"] = (
                ratios["adaptive"]["transitions"] <= 0.5
                and ratios["adaptive"]["meanDelay"] <= 1 / 3
            )
        summary["goalsMet"] = goals
    return summary


def format_table(summary: dict[str, Any]) -> str:
    lines = [
        f"{'mode':<10} {'exports':>7} {'ok':>3} {'mean delay s':>12} {'max delay s':>11} "
        f"{'transitions':>11} {'x transitions':>13} {'x delay':>8}"
    ]
    for mode, m in summary["modes"].items():
        ratio = summary.get("ratios", {}).get(mode, {"transitions": 1.0, "meanDelay": 1.0})
        lines.append(
            f"{mode:<10} {m['exports']:>7} {m['succeeded']:>3} {m['meanDelaySeconds']:>12.2f} "
            f"{m['maxDelaySeconds']:>11.2f} {m['meanTransitions']:>11.1f} "
            f"{ratio['transitions']:>13.2f} {ratio['meanDelay']:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and the JSON; return 1 when a goal is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench wait", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="T, an export's length")
    parser.add_argument("--exports", type=int, default=6, help="exports per mode, run at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    interval = max(1, round(args.seconds / 10))
    results = [
        result
        for mode in args.modes.split(",")
        for result in run_mode(
            mode, total=args.seconds, exports=args.exports, interval=interval, seed=args.seed
        )
    ]
    summary = summarize(results)
    print(format_table(summary))
    print(json.dumps({**summary, "exports": [asdict(r) for r in results]}, indent=2))
    return 0 if all(summary.get("goalsMet", {}).values()) else 1
