"""What the scale benchmark counts as an object graph's size."""

from __future__ import annotations

import dataclasses
import gc
import sys
import tracemalloc
import warnings

import boto3
import pytest

from aistudios_local.model_tracking import WeakTracking
from bench.footprint import allocated_size, retained_bytes, service_bytes, tracked_only_bytes
from tests.unit._fixtures import ACCOUNT, REGION, fake_aws


def test_each_object_is_counted_once_across_roots() -> None:
    shared = b"x" * 10_000
    first, second = [shared], [shared]
    seen: set[int] = set()
    assert retained_bytes([first], seen) == allocated_size(first) + allocated_size(shared)
    assert retained_bytes([second], seen) == allocated_size(second)


def test_code_and_classes_are_not_data() -> None:
    data = ["y" * 1000]
    plain = retained_bytes([data])
    with_code = retained_bytes([[*data, retained_bytes, type(data), sys]])
    # A function, a class and a module reachable from the data add nothing of theirs.
    assert with_code - plain == allocated_size([*data, None, None, None]) - allocated_size(data)


def test_what_only_motos_tracking_keeps_is_the_stacks_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replaced versions of an item: not DynamoDB's data, counted apart, gone once swapped."""
    with fake_aws(monkeypatch):
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="slots",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

        def write_versions() -> None:
            for _ in range(100):
                client.put_item(
                    TableName="slots", Item={"pk": {"S": "renders"}, "n": {"S": "x" * 1000}}
                )

        def kept() -> tuple[int, int]:
            seen: set[int] = set()
            services = service_bytes(ACCOUNT, REGION, seen)
            return services["DynamoDB"], tracked_only_bytes(seen)

        dynamodb_before, tracked_before = kept()
        write_versions()
        dynamodb_after, tracked_after = kept()
        assert dynamodb_after - dynamodb_before < 5_000  # one item, whatever its versions
        assert tracked_after - tracked_before > 99 * 1000  # every replaced version's text

        tracking = WeakTracking()
        tracking.install()
        try:
            write_versions()
            assert kept()[1] < tracked_before + 10_000  # the replaced versions are released
        finally:
            tracking.uninstall()


class _SixAttributes:
    def __init__(self) -> None:
        self.a = self.b = self.c = self.d = self.e = self.f = None


def test_an_instance_counts_as_the_block_the_allocator_gives_it() -> None:
    """CPython 3.13 keeps attribute values inline, where ``sys.getsizeof`` does not look."""
    made: list[object] = [None] * 1000
    tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(len(made)):
            made[i] = _SixAttributes()
        traced = (tracemalloc.get_traced_memory()[0] - before) / len(made)
    finally:
        tracemalloc.stop()
    assert traced > sys.getsizeof(made[0])  # what getsizeof alone under-counts
    assert traced <= allocated_size(made[0]) < traced + 16  # within one size class
    assert retained_bytes([made[0]]) == allocated_size(made[0]) + allocated_size(None)


def test_sizes_are_the_allocators_size_classes() -> None:
    assert allocated_size(b"") == 48  # 33 bytes asked for: pymalloc's 48-byte class
    assert allocated_size(b"x" * 1000) == 1056  # 1,033 asked for from malloc: header, 16-aligned


@dataclasses.dataclass(frozen=True)
class _Frozen:
    name: str

    def __del__(self) -> None:
        self.name.upper()  # an instance made without __init__ has no name


def test_measuring_a_class_neither_initialises_nor_finalises_an_instance_of_it() -> None:
    frozen = _Frozen("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert allocated_size(frozen) >= sys.getsizeof(frozen)
        gc.collect()
