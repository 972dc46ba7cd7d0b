"""What the local stack holds at the end of a batch: the services' data, or the stack's own.

The scale benchmark splits the growth of RSS with rows between two owners:

- **stored by the services**: what moto keeps because AWS keeps it too, the objects and versions
  of S3 (the videos, the manifest, the Map's result files), Step Functions' executions with their
  event histories, DynamoDB's items and Secrets Manager's versions;
- **the stack's own**: everything else, from the local stack's records (invocations, events,
  deliveries, the simulator's call log) to what moto's engine leaves behind that no service keeps.

A service's share is measured as the bytes of the Python objects reachable from its moto backend,
each counted once, as the allocator holds them (:func:`allocated_size`): ``sys.getsizeof``, plus
the attribute values CPython 3.13 keeps inline in an instance (which ``sys.getsizeof`` leaves
out: an instance with six attributes is 48 bytes to it and a 128-byte block to the allocator),
rounded up to the allocator's size classes. Pages that the allocator keeps around the objects are
not counted. Clients, classes, modules and functions reachable from a backend are not its data
and are not followed.

moto also lists every model instance it creates in a class-level ``instances_tracked``;
:func:`tracked_only_bytes` measures what only those lists keep (instances no backend holds any
more, such as the versions of a DynamoDB item that ``UpdateItem`` replaced): the stack's own, as
AWS keeps none of it (``aistudios_local.model_tracking`` lets moto forget them).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import tracemalloc
from collections.abc import Iterable
from types import BuiltinFunctionType, CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from moto.core.model_instances import model_data
from moto.dynamodb.models import dynamodb_backends
from moto.s3.models import s3_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.stepfunctions.responses import get_backend as stepfunctions_backend

from aistudios_local.resources import ACCOUNT, REGION

__all__ = [
    "SERVICES",
    "allocated_size",
    "retained_bytes",
    "service_bytes",
    "tracked_only_bytes",
]

SERVICES = ("S3", "Step Functions", "DynamoDB", "Secrets Manager")
"""The services whose data the stack's batches store."""

_NOT_DATA = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType, CodeType)
_CLIENT_PACKAGES = ("boto3", "botocore")
_INLINE_VALUES = 1 << 2
"""``Py_TPFLAGS_INLINE_VALUES`` (CPython 3.13): instances keep their attribute values inline."""
_SMALL_OBJECT_LIMIT = 512
"""pymalloc serves requests up to this size from 16-byte size classes; malloc the rest."""
_ALIGNMENT = 16
_MALLOC_HEADER = 8
_PROBES = 1024


def allocated_size(obj: Any) -> int:
    """Return about the bytes the allocator holds for ``obj`` itself (not what it refers to).

    ``sys.getsizeof`` of the object, plus its inline attribute values where the type keeps them
    inline (CPython 3.13: ``sys.getsizeof`` leaves them out), rounded up to pymalloc's 16-byte
    size classes, or with malloc's chunk header above 512 bytes.

    Examples
    --------
    >>> allocated_size(b"")  # sys.getsizeof(b"") is 33
    48
    """
    size = sys.getsizeof(obj) + _inline_values_size(type(obj))  # type: ignore[arg-type]
    if size > _SMALL_OBJECT_LIMIT:
        size += _MALLOC_HEADER
    return -(-size // _ALIGNMENT) * _ALIGNMENT


class _Probe:
    """What an instance made only to be measured becomes before it is freed."""


@functools.cache
def _inline_values_size(cls: type) -> int:
    """Bytes of an instance of ``cls`` that ``sys.getsizeof`` does not see (its inline values).

    Measured once per class: the traced growth of making 1,024 instances, per instance, less
    ``sys.getsizeof`` of one.
    """
    if not cls.__flags__ & _INLINE_VALUES:
        return 0
    probes: list[Any] = [None] * _PROBES
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(_PROBES):
            probes[i] = object.__new__(cls)
        grown = tracemalloc.get_traced_memory()[0] - before
    except TypeError:  # a class that object.__new__ cannot make (abstract, say)
        return 0
    finally:
        if started:
            tracemalloc.stop()
        for probe in probes:  # never initialised: their class's __del__ must not see them
            with contextlib.suppress(TypeError):  # past a frozen class's own __setattr__
                object.__setattr__(probe, "__class__", _Probe)
    # Inline values are whole pointers: rounding down drops what the loop itself allocated.
    return max(0, (grown // _PROBES - sys.getsizeof(probes[0])) // 8 * 8)


def retained_bytes(roots: Iterable[Any], seen: set[int] | None = None) -> int:
    """Return the bytes of the objects reachable from ``roots``, each counted once.

    Parameters
    ----------
    roots
        Where to start.
    seen
        Ids of objects already counted (and not to be counted again); updated.

    Returns
    -------
    int
        The sum of :func:`allocated_size` over the objects reached, classes, modules, functions
        and boto3 clients (and what only they reach) left out.
    """
    seen = set() if seen is None else seen
    pending = list(roots)
    total = 0
    while pending:
        obj = pending.pop()
        if id(obj) in seen or isinstance(obj, _NOT_DATA):
            continue
        if type(obj).__module__.split(".")[0] in _CLIENT_PACKAGES:
            continue
        seen.add(id(obj))
        total += allocated_size(obj)
        pending.extend(gc.get_referents(obj))
    return total


def service_bytes(
    account: str = ACCOUNT, region: str = REGION, seen: set[int] | None = None
) -> dict[str, int]:
    """Return the bytes each of :data:`SERVICES` keeps in moto now (call it inside the mock).

    Step Functions is the backend the local stack runs (moto's ASL engine), whose executions
    keep their event histories. ``seen``, when given, is filled with the ids of the objects
    counted (for :func:`tracked_only_bytes`).
    """
    backends = {
        "S3": s3_backends[account]["aws"],
        "Step Functions": stepfunctions_backend(account, region),
        "DynamoDB": dynamodb_backends[account][region],
        "Secrets Manager": secretsmanager_backends[account][region],
    }
    gc.collect()
    seen = set() if seen is None else seen
    return {name: retained_bytes([backend], seen) for name, backend in backends.items()}


def tracked_only_bytes(seen: set[int]) -> int:
    """Return the bytes of moto's tracked model instances not already in ``seen``.

    Parameters
    ----------
    seen
        Ids of the objects the services hold (from :func:`service_bytes`); updated.

    Returns
    -------
    int
        What moto's ``instances_tracked`` lists alone keep alive, of every service.
    """
    roots = [
        instance
        for models in model_data.values()
        for model in models.values()
        for instance in getattr(model, "instances_tracked", ())
    ]
    return retained_bytes(roots, seen)
