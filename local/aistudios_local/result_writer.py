"""What a Distributed Map's items write, and when the Map fails, on moto 5.2.x as on AWS.

moto's engine runs a Distributed Map's items, keeps the outputs of the items that succeeded,
and then drops them (``ResourceEvalS3._handle_put_object``: ``# TODO: results``). Its
``ResultWriter`` writes only a stub ``<prefix>/<map run id>/manifest.json`` whose
``ResultFiles`` lists are empty, so a reader of the Map's results finds no row at all. An item
that failed keeps nothing (its input, error and cause are only counted). (What the items'
``.sync`` tasks answer is :func:`aistudios_local.moto_shims.pascal_case_answer`'s fix.)

AWS writes, for the default ``Transformation: NONE``, under ``<prefix>/<map run id>/``:

- ``manifest.json``: ``{"DestinationBucket", "MapRunArn", "ResultFiles": {"FAILED",
  "PENDING", "SUCCEEDED"}}``, each list of ``{"Key", "Size"}`` of the files below;
- ``SUCCEEDED_<n>.json``, ``FAILED_<n>.json``, ``PENDING_<n>.json``: JSON arrays of one entry
  per child execution, ``{"ExecutionArn", "Input", "InputDetails", "Name", "Output"?,
  "OutputDetails"?, "Error"?, "Cause"?, "StartDate", "StopDate"?, "StateMachineArn", "Status",
  "RedriveCount", "RedriveStatus", ...}``, where ``Input`` and ``Output`` are JSON *text*.
  ``FAILED`` holds every child that ended other than SUCCEEDED (failed, timed out, aborted);
  ``PENDING`` the items that never ran.

This module records each item as moto's worker runs it (:func:`install`) and replaces the stub
writer by one that writes those files. AWS starts a new file at 5 GB; here a file holds at
most :data:`ENTRIES_PER_FILE` entries, so that tests see results spread over several files.

The failure gap: moto counts the items that fail but never fails a Distributed Map on its
``ToleratedFailurePercentage``/``ToleratedFailureCount``, and a Map that fails for any reason
writes no results (moto runs the ResultWriter only after a Map succeeded). AWS fails the map
run with ``States.ExceedToleratedFailureThreshold`` once the failed (or timed out, aborted)
items exceed the tolerated share of all items, or the tolerated count; it starts no further
item, and still writes the results: the items that never ran are ``PENDING``. Here, as each
item ends, its run is checked against the tolerance and, once past it, the item's job fails the
pool with that error (moto's workers then take no new item); the Map's failure then writes the
results before the state's Catch sees ``{Error, Cause}``. Items still running when the run fails
are waited for (at most :data:`RUNNING_ITEMS_WAIT_SECONDS`) and written as they ended.

One more ResultWriter gap: moto evaluates the paths of its ``Parameters`` (``"Prefix.$"``)
against the items' outputs, the top of its stack then, where AWS reads them from the Map state's
input; :func:`_parameters_from_state_input` gives them that input.

Not modelled: an explicit ``ToleratedFailureCount: 0`` next to a percentage (moto's default
count is 0 as well, so a count counts here only when above 0), and what AWS does with the
children still running when a map run fails (here they run to their end).
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map import state_map as _state
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    distributed_iteration_component as _iteration,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
    distributed_item_processor_worker as _worker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer import (
    result_writer_decl as _declared,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (  # noqa: E501 - moto's module path
    resource_eval_s3 as _writer,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.program_state import (
    ProgramEnded,
    ProgramError,
    ProgramStopped,
    ProgramTimedOut,
)
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

from aistudios_local.patches import Patches

ENTRIES_PER_FILE = 1000
"""The most entries one ``<STATUS>_<n>.json`` holds (AWS splits by size, at 5 GB)."""
FILE_KINDS = ("FAILED", "PENDING", "SUCCEEDED")
"""The lists of a manifest's ``ResultFiles``."""
RUNNING_ITEMS_WAIT_SECONDS = 300.0
"""How long a failed map run's writer waits for the items still running to end."""
THRESHOLD_ERROR = StatesErrorNameType.StatesExceedToleratedFailureThreshold
"""What a map run fails with when more items failed than it tolerates."""

Patch = tuple[Any, str, Any]
"""``(owner, attribute, replacement)``: what :func:`patches` asks to be set."""


@dataclass
class _MapRun:
    """What one map run's items did.

    Their inputs, each ended item's entry by index, the items running now, and ``failed``
    once more items failed than the run tolerates.
    """

    state_machine_arn: str
    inputs: list[Any] = field(default_factory=list)
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)
    failed: bool = False


_RUNS: dict[str, _MapRun] = {}
"""Map run ARN → what its items did, until its results are written."""
_CHANGED = threading.Condition()
"""The Map's workers are threads: each records into :data:`_RUNS` under it and notifies."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _record_inputs(original: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``DistributedIterationComponent._map_run``: keep the items the map run reads."""

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        record = eval_input.map_run_record
        with _CHANGED:
            _RUNS[record.map_run_arn] = _MapRun(
                state_machine_arn=record.map_state_machine_arn,
                inputs=list(env.stack[-1]),  # the items, which the original pops
            )
        original(self, env, eval_input)

    return _map_run


def _record_items(original: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``DistributedItemProcessorWorker._eval_job``: keep each item's outcome.

    The first item that takes its run's failures past the tolerance fails the job pool with
    :data:`THRESHOLD_ERROR` (moto's pool then hands out no further item, and the Map fails).
    """

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        record = self._map_run_record
        started = _now()
        with _CHANGED:
            run = _RUNS.get(record.map_run_arn)
            if run is not None:
                run.running.add(job.job_index)
        failure: str | None = None
        try:
            original(self, env, job)
        finally:
            entry = _entry(record, job, env.program_state(), started)
            with _CHANGED:
                run = _RUNS.get(record.map_run_arn)
                if run is not None:
                    run.entries[job.job_index] = entry
                    run.running.discard(job.job_index)
                    if not run.failed:
                        failure = _beyond_tolerance(run, record)
                        run.failed = failure is not None
                    _CHANGED.notify_all()
        if failure is not None:
            job.job_output = _threshold_failure(env, failure)

    return _eval_job


def _beyond_tolerance(run: _MapRun, record: Any) -> str | None:
    """Return why the run failed, if more of its items failed than it tolerates."""
    failed = sum(1 for e in run.entries.values() if e["Status"] != "SUCCEEDED")
    total = len(run.inputs)
    percentage = float(record.tolerated_failure_percentage)
    count = int(record.tolerated_failure_count)
    if failed * 100 > percentage * total:
        return f"{failed} of {total} items failed, more than the tolerated {percentage:g}%"
    if 0 < count < failed:
        return f"{failed} of {total} items failed, more than the tolerated {count}"
    return None


def _threshold_failure(env: Any, cause: str) -> FailureEventException:
    return FailureEventException(
        FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=THRESHOLD_ERROR),
            event_type=HistoryEventType.MapRunFailed,
            # moto's TypedDict names every kind of detail, where an event has one (as moto's own).
            event_details=EventDetails(  # type: ignore[typeddict-item]
                mapRunFailedEventDetails=MapRunFailedEventDetails(
                    error=THRESHOLD_ERROR.to_name(), cause=cause
                )
            ),
        )
    )


def _parameters_from_state_input(self: Any, env: Any) -> None:
    """Replace ``ResultWriter._eval_body``: its paths read the Map state's input, as AWS's do.

    moto evaluates the ``Parameters`` on top of the items' outputs, which the writer then finds
    under them; here they are evaluated on the state's input, and the stack is left as moto's
    writer expects it (outputs, then parameters).
    """
    outputs = env.stack.pop()
    env.stack.append(env.states.get_input())
    self.parargs.eval(env=env)
    parameters = env.stack.pop()
    env.stack.pop()
    env.stack.extend([outputs, parameters])
    self.resource_eval.eval_resource(env=env)


def _write_when_failed(original: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``StateMap._eval_execution``: a Distributed Map that fails still writes its results.

    The writer's answer (``{"MapRunArn", "ResultWriterDetails"}``) is dropped: AWS hands a
    failed Map's Catch only ``{"Error", "Cause"}``.
    """

    def _eval_execution(self: Any, env: Any) -> None:
        try:
            original(self, env)
        except FailureEventException:
            records = env.map_run_record_pool_manager.get_all()
            with _CHANGED:
                started = bool(records) and records[-1].map_run_arn in _RUNS
            if self.result_writer is not None and started:
                env.stack.append([])  # the succeeded items' outputs, which the writer drops
                self.result_writer.eval(env)
                env.stack.pop()
            raise

    return _eval_execution


def _entry(record: Any, job: Any, state: Any, started: str) -> dict[str, Any]:
    name = str(uuid.uuid4())
    entry: dict[str, Any] = {
        "ExecutionArn": (
            record.map_state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name
        ),
        "Input": json.dumps(job.job_input),
        "InputDetails": {"Included": True},
        "Name": name,
        "RedriveCount": 0,
        "StartDate": started,
        "StateMachineArn": record.map_state_machine_arn,
        "StopDate": _now(),
    }
    if isinstance(state, ProgramEnded) and job.job_output is not None:
        status = "SUCCEEDED"
        entry |= {"Output": json.dumps(job.job_output), "OutputDetails": {"Included": True}}
    elif isinstance(state, ProgramError):
        status = "FAILED"
        details = state.error or {}
        entry |= {"Error": details.get("error") or "", "Cause": details.get("cause") or ""}
    elif isinstance(state, ProgramStopped):
        status = "ABORTED"
        entry |= {"Error": state.error or "", "Cause": state.cause or ""}
    elif isinstance(state, ProgramTimedOut):
        status = "TIMED_OUT"
        entry |= {"Error": "States.Timeout", "Cause": ""}
    else:
        status = "FAILED"
        entry |= {"Error": "States.Runtime", "Cause": "the item ended without an outcome"}
    return {**entry, "Status": status, "RedriveStatus": "NOT_REDRIVABLE"}


def _pending(run: _MapRun, index: int) -> dict[str, Any]:
    """Return the entry of an item the map run never started: its input and status only."""
    return {
        "Input": json.dumps(run.inputs[index]),
        "InputDetails": {"Included": True},
        "StateMachineArn": run.state_machine_arn,
        "Status": "PENDING",
    }


def _unfinished(run: _MapRun, index: int) -> dict[str, Any]:
    """Return the entry of an item still running after the writer stopped waiting for it."""
    return {
        **_pending(run, index),
        "Status": "ABORTED",
        "Error": "States.Runtime",
        "Cause": "still running when the local engine wrote the failed map run's results",
    }


def _chunks(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(entries), ENTRIES_PER_FILE):
        yield entries[start : start + ENTRIES_PER_FILE]


def _handle_put_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
    """Replace ``ResourceEvalS3._handle_put_object``: write the manifest and its result files."""
    parameters = env.stack.pop()
    env.stack.pop()  # the succeeded items' outputs, which the entries carry already
    s3: Any = boto_client_for(
        service="s3", region=resource_runtime_part.region, state_credentials=state_credentials
    )
    record = env.map_run_record_pool_manager.get_all().pop()
    with _CHANGED:
        # A failed run's items that were running when it failed: written once they end.
        _CHANGED.wait_for(
            lambda: not _RUNS.get(record.map_run_arn, _MapRun("")).running,
            timeout=RUNNING_ITEMS_WAIT_SECONDS,
        )
        run = _RUNS.pop(record.map_run_arn, None) or _MapRun(record.map_state_machine_arn)
    bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    prefix += record.map_run_arn.split(":")[-1] + "/"
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in FILE_KINDS}
    for index in range(len(run.inputs)):
        entry = run.entries.get(index) or (
            _unfinished(run, index) if index in run.running else _pending(run, index)
        )
        kind = entry["Status"] if entry["Status"] in FILE_KINDS else "FAILED"
        by_kind[kind].append(entry)
    files: dict[str, list[dict[str, Any]]] = {kind: [] for kind in FILE_KINDS}
    for kind, entries in by_kind.items():
        for number, chunk in enumerate(_chunks(entries)):
            body = json.dumps(chunk).encode()
            key = f"{prefix}{kind}_{number}.json"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            files[kind].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": bucket, "MapRunArn": record.map_run_arn, "ResultFiles": files}
    key = prefix + "manifest.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    env.stack.append(
        {"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}}
    )


def patches() -> list[Patch]:
    """Return the attributes to set on moto for AWS's result files (restore them to undo)."""
    iteration = _iteration.DistributedIterationComponent
    worker = _worker.DistributedItemProcessorWorker
    return [
        (iteration, "_map_run", _record_inputs(iteration._map_run)),
        (worker, "_eval_job", _record_items(worker._eval_job)),
        (_writer.ResourceEvalS3, "_handle_put_object", staticmethod(_handle_put_object)),
        (_declared.ResultWriter, "_eval_body", _parameters_from_state_input),
        (_state.StateMap, "_eval_execution", _write_when_failed(_state.StateMap._eval_execution)),
    ]


_PATCHES = Patches()


def install() -> None:
    """Patch moto so that a Map's items write, and its tolerance fails it, as AWS's; idempotent."""
    if _PATCHES:
        return
    for owner, name, replacement in patches():
        _PATCHES.replace(owner, name, replacement)


def uninstall() -> None:
    """Restore moto as it was."""
    _PATCHES.restore()
    with _CHANGED:
        _RUNS.clear()
