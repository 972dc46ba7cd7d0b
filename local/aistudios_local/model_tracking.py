"""Let moto forget the model instances that no backend holds any more.

moto appends every instance of every model it ever creates to a class-level list,
``instances_tracked`` (for its dashboard's ``/moto-api/data.json`` and for S3's reset), and empties
those lists only when its mock stops. Most instances are the services' data and stay referenced by
their backend anyway, but some are superseded: DynamoDB's ``UpdateItem`` replaces an item with a
deep copy of it, so the list keeps every version of the render-slot semaphore item the local
stack ever wrote, four or so per export, each with the ``holders`` map of that moment (as many
entries as exports in flight). AWS keeps one item; moto kept every version: at
``BatchMaxConcurrency`` 50, about 4,000 items and 60,000 attribute values per 1,000 exported rows,
7 MiB of peak RSS (``bench/README.md``, "Memory").

:class:`WeakTracking` swaps each model's list for a :class:`WeakInstances`, which holds weak
references: what a backend still holds is listed as before, what nothing holds any more is
released. The swap is undone (plain lists of the live instances) on :meth:`WeakTracking.uninstall`;
models first imported after :meth:`WeakTracking.install` keep moto's plain list.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from moto.core.model_instances import model_data

__all__ = ["WeakInstances", "WeakTracking"]


class WeakInstances:
    """The part of ``list`` moto uses (``append``, iteration, ``len``), holding weak references.

    An instance that cannot be weakly referenced is held strongly, as moto's list would.
    References to collected instances are dropped, at the next ``append``, once they outnumber
    the live ones, so the list's own size stays proportional to what is alive.
    """

    def __init__(self, instances: Iterable[Any] = ()) -> None:
        self._lock = threading.Lock()
        self._refs: list[Any] = []
        self._dead = 0
        for instance in instances:
            self.append(instance)

    def append(self, instance: Any) -> None:
        """Track ``instance`` for as long as something else holds it."""
        try:
            ref: Any = weakref.ref(instance, self._forgotten)
        except TypeError:  # no __weakref__ slot: keep it, as moto would
            ref = _Strong(instance)
        with self._lock:
            if self._dead * 2 > len(self._refs):
                self._dead = 0
                self._refs = [r for r in self._refs if r() is not None]
            self._refs.append(ref)

    def _forgotten(self, _ref: Any) -> None:
        # A weakref callback: it runs wherever the instance is freed, a garbage collection
        # inside ``append`` included, so it only counts (no lock; a lost count only delays
        # the next compaction).
        self._dead += 1

    def __iter__(self) -> Iterator[Any]:
        with self._lock:
            refs = list(self._refs)
        for ref in refs:
            instance = ref()
            if instance is not None:
                yield instance

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def slots(self) -> int:
        """References held now, live or not yet dropped (at most about twice the live ones)."""
        with self._lock:
            return len(self._refs)


class _Strong:
    """A strong reference that answers like a weak one."""

    __slots__ = ("_instance",)

    def __init__(self, instance: Any) -> None:
        self._instance = instance

    def __call__(self) -> Any:
        return self._instance


class WeakTracking:
    """Swap moto's ``instances_tracked`` lists for :class:`WeakInstances`; undo it. Idempotent."""

    def __init__(self) -> None:
        self._models: list[type] = []

    @property
    def installed(self) -> bool:
        """Whether the lists are swapped."""
        return bool(self._models)

    def install(self) -> None:
        """Swap the list of every model moto has defined so far (its instances kept)."""
        if self._models:
            return
        for models in model_data.values():
            for model in models.values():
                tracked = getattr(model, "instances_tracked", None)
                if isinstance(tracked, list):
                    model.instances_tracked = WeakInstances(tracked)  # type: ignore[attr-defined]
                    self._models.append(model)  # type: ignore[arg-type]

    def uninstall(self) -> None:
        """Give each swapped model a plain list of its live instances again."""
        while self._models:
            model = self._models.pop()
            tracked = getattr(model, "instances_tracked", None)
            if isinstance(tracked, WeakInstances):
                model.instances_tracked = list(tracked)  # type: ignore[attr-defined]
