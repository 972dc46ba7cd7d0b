"""statemachine/batch.asl.json: the rules of the batch machine itself.

A batch prepares the manifest, runs each row once through the export machine in a Distributed
Map, and always ends with a summary that decides its outcome. The rules every state machine
keeps are in test_asl_rules.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit import _template
from tests.unit._asl import all_states, lambda_tasks, of_type, retried, targets

BATCH_MACHINE = "BatchStateMachine"
EXPORT_MACHINE = "ExportStateMachine"
EXPRESS_LIMIT_SECONDS = 300
"""An Express execution's longest run: longer child executions must be Standard."""


@pytest.fixture
def batch() -> dict[str, Any]:
    return _template.definition(BATCH_MACHINE)


def the_map(batch: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((name, state),) = of_type(batch, "Map").items()
    return name, state


def row_task(batch: dict[str, Any]) -> dict[str, Any]:
    """The task that runs a row: the Map processor's first state."""
    processor = the_map(batch)[1]["ItemProcessor"]
    state: dict[str, Any] = processor["States"][processor["StartAt"]]
    return state


def paths_to(states: dict[str, Any], start: str, goal: str) -> list[list[str]]:
    """Every loop-free path of state names from ``start`` to ``goal``."""
    if start == goal:
        return [[goal]]
    found: list[list[str]] = []
    for target in set(targets(states[start])):
        for rest in paths_to({k: v for k, v in states.items() if k != start}, target, goal):
            found.append([start, *rest])
    return found


def test_rows_are_read_from_what_the_manifest_task_prepared(batch: dict[str, Any]) -> None:
    name, state = the_map(batch)
    reader = state["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"]["InputType"] == "JSON"
    prepared = {task["ResultPath"] for task in lambda_tasks(batch).values() if "ResultPath" in task}
    for parameter in ("Bucket.$", "Key.$"):
        assert any(reader["Parameters"][parameter].startswith(f"{p}.") for p in prepared)
    # ... by a task every run passes before the Map.
    paths = paths_to(batch["States"], batch["StartAt"], name)
    assert paths
    tasks = set(lambda_tasks(batch))
    for path in paths:
        assert tasks & set(path), path


def test_a_rejected_manifest_fails_the_batch_before_any_export(batch: dict[str, Any]) -> None:
    name, _ = the_map(batch)
    states = batch["States"]
    before_map = {s for path in paths_to(states, batch["StartAt"], name) for s in path} - {name}
    catches = [c for s in before_map for c in states[s].get("Catch", [])]
    assert catches
    for catch in catches:
        assert states[catch["Next"]]["Type"] == "Fail", catch
        assert "ErrorPath" in states[catch["Next"]], "the Fail names what was wrong"


def test_the_map_is_distributed_bounded_and_its_children_standard(
    batch: dict[str, Any],
) -> None:
    _, state = the_map(batch)
    config = state["ItemProcessor"]["ProcessorConfig"]
    assert config["Mode"] == "DISTRIBUTED"
    # A row waits for a whole export, far longer than an Express execution may run.
    assert row_task(batch)["TimeoutSeconds"] > EXPRESS_LIMIT_SECONDS
    assert config["ExecutionType"] == "STANDARD"
    # Without a limit a Map runs as many rows at once as it may: the limits come from the input.
    assert "MaxConcurrencyPath" in state or state.get("MaxConcurrency", 0) > 0
    assert "ToleratedFailurePercentagePath" in state or "ToleratedFailurePercentage" in state


def test_the_map_writes_its_results_beside_the_batch_files() -> None:
    raw = _template.raw_definition(BATCH_MACHINE)
    (state,) = [s for _, s in all_states(raw) if s["Type"] == "Map"]
    # The batch's own prefix, from PrepareManifest: a failed Map's results are found there.
    path = state["ResultWriter"]["Parameters"]["Prefix.$"]
    assert path == "$.batch.mapRunsPrefix"
    assert "Prefix" not in state["ResultWriter"]["Parameters"]
    assert state["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    # $.batch is the plan of the task given the results prefix; SummarizeBatch gets it whole.
    (prepare,) = [
        task
        for _, task in all_states(raw)
        if task["Type"] == "Task" and "resultsPrefix" in task.get("Parameters", {})
    ]
    assert prepare["ResultPath"] == "$.batch"
    assert raw["States"]["SummarizeBatch"]["Parameters"]["batch.$"] == "$.batch"


def test_every_row_runs_the_export_machine_once_under_the_rows_name(
    batch: dict[str, Any],
) -> None:
    task = row_task(batch)
    assert task["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert task["Parameters"]["StateMachineArn"] == _template.resolver().refs[EXPORT_MACHINE]
    assert "Name.$" in task["Parameters"], "the name makes a second start of the row fail"
    # A row's own failure is its outcome: only the service's errors are worth a retry.
    assert retried(task) and all(e.startswith("StepFunctions.") for e in retried(task))
    export = _template.definition(EXPORT_MACHINE)
    assert task["TimeoutSeconds"] > export["TimeoutSeconds"], "the row outlives its export"


def test_a_row_that_already_ran_is_answered_from_that_export(batch: dict[str, Any]) -> None:
    processor = the_map(batch)[1]["ItemProcessor"]["States"]
    (already,) = row_task(batch)["Catch"]
    assert already["ErrorEquals"] == ["StepFunctions.ExecutionAlreadyExistsException"]
    describe = processor[already["Next"]]
    assert describe["Resource"] == "arn:aws:states:::aws-sdk:sfn:describeExecution"
    export_name = _template.resolver().attributes[(EXPORT_MACHINE, "Name")]
    assert f":execution:{export_name}:" in describe["Parameters"]["ExecutionArn.$"]


def test_whatever_the_map_does_the_batch_is_summarized(batch: dict[str, Any]) -> None:
    _, state = the_map(batch)
    assert [c["ErrorEquals"] for c in state["Catch"]] == [["States.ALL"]]
    assert {c["Next"] for c in state["Catch"]} == {state["Next"]}
    assert state["Next"] in lambda_tasks(batch)


def test_every_decision_fails_closed(batch: dict[str, Any]) -> None:
    """A batch or a row succeeds only on an explicit success; anything else is a failure."""
    choices = of_type(batch, "Choice")
    assert choices
    states = dict(all_states(batch))
    for name, choice in choices.items():
        assert states[choice["Default"]]["Type"] == "Fail", name


def test_a_batch_whose_report_cannot_be_written_fails_saying_so(batch: dict[str, Any]) -> None:
    states = batch["States"]
    (summarize,) = [n for n in lambda_tasks(batch) if n == the_map(batch)[1]["Next"]]
    (catch,) = states[summarize]["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
    record = states[catch["Next"]]
    assert record["Type"] == "Pass" and record["ResultPath"] == "$.error"
    assert record["Parameters"]["Error.$"] == "$.error.Error", "the error keeps its name"
    cause = record["Parameters"]["Cause.$"]
    assert cause.startswith("States.Format('The batch report could not be written")
    assert cause.endswith(", $.error.Cause)"), "the reason follows"
    fail = states[record["Next"]]
    assert fail == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
