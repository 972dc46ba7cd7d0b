"""What the local stack holds at the end of a batch: the services' data, or the stack's own.

The scale benchmark splits the growth of RSS with rows between two owners:

- **stored by the services**: what moto keeps because AWS keeps it too, the objects and versions
  of S3 (the videos, the manifest, the Map's result files), Step Functions' executions with their
  event histories, DynamoDB's items and Secrets Manager's versions;
- **the stack's own**: everything else, from the local stack's records (invocations, events,
  deliveries, the simulator's call log) to what moto's engine leaves behind that no service keeps.

A service's share is measured as the bytes of the Python objects reachable from its moto backend
(``sys.getsizeof`` of each, each counted once): the data as Python holds it, without what the
allocator keeps around it. Clients, classes, modules and functions reachable from a backend are
not its data and are not followed.

moto also lists every model instance it creates in a class-level ``instances_tracked``;
:func:`tracked_only_bytes` measures what only those lists keep (instances no backend holds any
more, such as the versions of a DynamoDB item that ``UpdateItem`` replaced): the stack's own, as
AWS keeps none of it (``aistudios_local.model_tracking`` lets moto forget them).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable
from types import BuiltinFunctionType, CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from moto.core.model_instances import model_data
from moto.dynamodb.models import dynamodb_backends
from moto.s3.models import s3_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.stepfunctions.responses import get_backend as stepfunctions_backend

from aistudios_local.resources import ACCOUNT, REGION

__all__ = ["SERVICES", "retained_bytes", "service_bytes", "tracked_only_bytes"]

SERVICES = ("S3", "Step Functions", "DynamoDB", "Secrets Manager")
"""The services whose data the stack's batches store."""

_NOT_DATA = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType, CodeType)
_CLIENT_PACKAGES = ("boto3", "botocore")


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
        The sum of ``sys.getsizeof`` over the objects reached, classes, modules, functions and
        boto3 clients (and what only they reach) left out.
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
        total += sys.getsizeof(obj)
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
