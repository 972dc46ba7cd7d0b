"""local/aistudios_local/engine_cache.py: each cache is used, and executions stay correct.

The engine runs with the shims (which install the caches), as on the local stack: a definition
is parsed once however many executions start, each integration gets one client however many
tasks call it, and every execution still computes its own answer, concurrently too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.parse.asl_parser import (
    AmazonStateLanguageParser,
    ASLParserException,
)

from aistudios_local.engine_cache import CLIENT_MODULES, ClientCache, EngineCache, ParseTreeCache
from aistudios_local.moto_shims import MotoShims
from tests.unit._fixtures import fresh_boto3_session
from tests.unit.test_moto_shims import ROLE, engine, finished, run_parent

__all__ = ["engine"]  # the fixture, imported so that pytest finds it here

# A Choice, a Map and a Pass whose answers depend on the input: shared components would mix them.
DEFINITION = {
    "StartAt": "Double",
    "States": {
        "Double": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Twice",
                "States": {
                    "Twice": {
                        "Type": "Pass",
                        "Parameters": {"v.$": "States.MathAdd($, $)"},
                        "End": True,
                    }
                },
            },
            "ResultPath": "$.doubled",
            "Next": "Big?",
        },
        "Big?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThan": 4, "Next": "Big"}],
            "Default": "Small",
        },
        "Big": {"Type": "Pass", "Parameters": {"n.$": "$.n", "size": "big"}, "End": True},
        "Small": {"Type": "Pass", "Parameters": {"n.$": "$.n", "size": "small"}, "End": True},
    },
}


@pytest.fixture
def shims(engine: None) -> Iterator[MotoShims]:
    installed = MotoShims()
    installed.install()
    try:
        yield installed
    finally:
        installed.uninstall()


def start(arn: str, n: int) -> str:
    sfn = boto3.client("stepfunctions")
    payload = {"n": n, "items": list(range(n))}
    return sfn.start_execution(stateMachineArn=arn, name=f"run-{n}", input=json.dumps(payload))[
        "executionArn"
    ]


def test_a_definition_is_parsed_once_for_every_execution(shims: MotoShims) -> None:
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="m", definition=json.dumps(DEFINITION), roleArn=ROLE)[
        "stateMachineArn"
    ]
    # Started together: the engine runs them on threads of their own, at the same time.
    runs = {n: start(arn, n) for n in range(1, 9)}
    for n, execution in runs.items():
        result = finished(execution)
        assert result["status"] == "SUCCEEDED", result.get("cause")
        assert json.loads(result["output"]) == {"n": n, "size": "big" if n > 4 else "small"}
    assert shims.cache.trees.parses == 1  # when the state machine was created
    assert shims.cache.trees.reuses >= len(runs)


def test_the_integrations_clients_are_created_once_and_keep_the_shims_hooks(
    shims: MotoShims,
) -> None:
    parent = run_parent()  # the sync:2 task asks twice (to start, to wait); aws-sdk once
    assert parent["status"] == "SUCCEEDED", parent.get("cause")
    assert json.loads(parent["output"])["described"] == {"status": "SUCCEEDED"}  # hooks ran
    assert shims.cache.clients.created == 2  # one stepfunctions client per integration module
    assert shims.cache.clients.reused >= 1


def test_a_kept_tree_gives_every_parse_new_components() -> None:
    cache = ParseTreeCache(AmazonStateLanguageParser.parse)
    text = json.dumps(DEFINITION)
    (first, tree), (second, same_tree) = cache.parse(text), cache.parse(text)
    assert same_tree is tree
    assert second is not first
    assert second.states is not first.states
    assert (cache.parses, cache.reuses) == (1, 1)
    fresh = AmazonStateLanguageParser.parse(text)[1]
    assert tree.getText() == fresh.getText()  # the kept tree's text, computed once, is the same


def test_a_definition_that_does_not_parse_raises_every_time_and_is_not_kept() -> None:
    cache = ParseTreeCache(AmazonStateLanguageParser.parse)
    for _ in range(2):
        with pytest.raises(ASLParserException):
            cache.parse('{"StartAt": ')
    assert (cache.parses, cache.reuses) == (0, 0)


def test_the_least_recently_used_trees_are_dropped() -> None:
    cache = ParseTreeCache(AmazonStateLanguageParser.parse, max_definitions=2)
    a, b, c = (
        json.dumps({"StartAt": s, "States": {s: {"Type": "Succeed"}}}) for s in ("A", "B", "C")
    )
    for text in (a, b, a, c, a, b):
        cache.parse(text)
    # b was dropped when c came (a had been used since), then c when b came back.
    assert (cache.parses, cache.reuses) == (4, 2)


def test_one_client_per_key_even_when_threads_ask_at_once(engine: None) -> None:
    created: list[tuple[str, str]] = []

    def create(region: str, service: str, state_credentials: Any = None) -> object:
        created.append((region, service))
        return object()

    cache = ClientCache()
    boto_client_for = cache.factory(lambda_eval_utils, create)
    barrier = threading.Barrier(8)
    got: list[object] = []

    def ask() -> None:
        barrier.wait()
        got.append(boto_client_for(region="us-east-1", service="lambda", state_credentials=None))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in got}) == 1  # racing misses keep the first stored
    other = boto_client_for(region="eu-west-1", service="lambda")
    assert other is not got[0]
    boto3.DEFAULT_SESSION = fresh_boto3_session()  # a new session's hooks: a new client
    assert boto_client_for(region="us-east-1", service="lambda") is not got[0]
    assert cache.created == len(created)
    assert cache.reused + cache.created == len(got) + 2


def test_uninstall_restores_moto_and_forgets_what_was_kept(engine: None) -> None:
    before = [vars(m)["boto_client_for"] for m in CLIENT_MODULES]
    parse = vars(AmazonStateLanguageParser)["parse"]
    cache = EngineCache()
    cache.install()
    cache.install()  # idempotent
    assert cache.installed
    assert vars(AmazonStateLanguageParser)["parse"] is not parse
    AmazonStateLanguageParser.parse(json.dumps(DEFINITION))
    cache.uninstall()
    assert not cache.installed
    assert vars(AmazonStateLanguageParser)["parse"] is parse
    assert [vars(m)["boto_client_for"] for m in CLIENT_MODULES] == before
    assert cache.trees.parse(json.dumps(DEFINITION)) is not None
    assert cache.trees.parses == 2  # the kept tree was forgotten
