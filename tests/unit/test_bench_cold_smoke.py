"""The cold-start benchmark runs every handler and its baseline (nothing timed is asserted)."""

from __future__ import annotations

import pytest

from bench.cold_start import HandlerResult, format_table, measure
from tests.unit._fixtures import ROOT

HANDLERS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))


@pytest.fixture(scope="module")
def results() -> list[HandlerResult]:
    return measure(processes=1)


def test_cold_bench_measures_every_handler_and_its_baseline(results: list[HandlerResult]) -> None:
    assert [r.name for r in results] == HANDLERS
    for r in results:
        assert len(r.runs) == len(r.baseline) == 1
        # The baseline created the very clients the handler's first call did.
        assert sorted(r.baseline[0].clients) == sorted(r.runs[0].clients)
        assert r.summary()["ratio"] > 0


def test_each_handler_creates_each_client_once(results: list[HandlerResult]) -> None:
    for r in results:
        assert r.runs[0].clients, f"{r.name} creates no client at its first call"
        assert len(set(r.runs[0].clients)) == len(r.runs[0].clients), r.name


def test_no_handler_loads_pydantic_at_its_cold_init(results: list[HandlerResult]) -> None:
    # The API validates a well-formed request without it (exports_api.checks).
    assert {r.name for r in results if r.runs[0].pydantic} == set()


def test_cold_table_lists_every_handler(results: list[HandlerResult]) -> None:
    lines = format_table(results).splitlines()
    assert [line.split()[0] for line in lines[1:]] == HANDLERS


def test_the_api_s_first_malformed_request_is_timed_apart(results: list[HandlerResult]) -> None:
    # Its set-up is not the cold init's: only a malformed first request builds it.
    timed = {r.name: r.summary().get("later") for r in results if r.summary().get("later")}
    assert timed == {"api": "first malformed request"}
    assert next(r for r in results if r.name == "api").runs[0].later is not None
