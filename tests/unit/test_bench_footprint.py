"""What the scale benchmark counts as an object graph's size."""

from __future__ import annotations

import sys

from bench.footprint import retained_bytes


def test_each_object_is_counted_once_across_roots() -> None:
    shared = b"x" * 10_000
    first, second = [shared], [shared]
    seen: set[int] = set()
    assert retained_bytes([first], seen) == sys.getsizeof(first) + sys.getsizeof(shared)
    assert retained_bytes([second], seen) == sys.getsizeof(second)


def test_code_and_classes_are_not_data() -> None:
    data = ["y" * 1000]
    plain = retained_bytes([data])
    with_code = retained_bytes([[*data, retained_bytes, type(data), sys]])
    # A function, a class and a module reachable from the data add nothing of theirs.
    assert with_code - plain == sys.getsizeof([*data, None, None, None]) - sys.getsizeof(data)
