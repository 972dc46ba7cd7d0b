"""Replace attributes of the libraries the local stack runs on, and put them back exactly.

The local stack teaches moto what AWS does and it does not (:mod:`~aistudios_local.moto_shims`,
:mod:`~aistudios_local.redrive`, :mod:`~aistudios_local.result_writer`) and caches what moto
recomputes (:mod:`~aistudios_local.engine_cache`, :mod:`~aistudios_local.engine_speed`), all by
replacing attributes of classes and modules for as long as a stack runs. :class:`Patches` keeps
what each replaced so that stopping the stack leaves the libraries as they were.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Patches"]

_INHERITED = object()
"""Saved for an attribute the owner only inherits: restoring deletes the replacement."""


class Patches:
    """Attributes replaced on classes and modules, restored in reverse order.

    What is saved is the owner's own attribute (from its namespace): a ``staticmethod`` is put
    back as the descriptor it was, and an attribute the owner only inherited is deleted again
    rather than copied down into it. Replacing the same attribute twice stacks: restoring undoes
    both. A ``Patches`` is true while it holds replacements.

    Examples
    --------
    >>> import types
    >>> owner = types.SimpleNamespace(f=1)
    >>> patches = Patches()
    >>> patches.replace(owner, "f", 2)
    >>> (owner.f, bool(patches))
    (2, True)
    >>> patches.restore()
    >>> (owner.f, bool(patches))
    (1, False)
    """

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self._saved)

    def replace(self, owner: Any, name: str, replacement: Any) -> None:
        """Set ``owner.name`` to ``replacement``, keeping what it was for :meth:`restore`."""
        self._saved.append((owner, name, vars(owner).get(name, _INHERITED)))
        setattr(owner, name, replacement)

    def restore(self) -> None:
        """Put every replaced attribute back as it was, the last replaced first."""
        while self._saved:
            owner, name, original = self._saved.pop()
            if original is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
