"""Hold the process to a few malloc arenas while the local stack runs its many threads.

glibc gives a thread that finds the heap busy an arena of its own, up to eight per core, and
keeps each arena's pages once they are touched. moto's engine starts a thread for every
execution, Map item and wait (thirteen to fifteen per export), so the objects a batch keeps
(histories, S3 objects) end up spread over every arena, each one holding pages around them: at
concurrency 10, peak RSS grew by ~300 MiB per 1,000 rows with glibc's default and by ~135 MiB
(close to what the services store) with two arenas (bench/README.md, "Scale"). Python threads
take the GIL, so few of them ever allocate at the same moment; two arenas cost nothing measurable.

The limit applies to arenas created from then on, process-wide, and is left in place: a
``MALLOC_ARENA_MAX`` already in the environment is the user's choice and is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["ARENAS", "limit_malloc_arenas"]

ARENAS = 2
M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number for the arena limit (malloc.h)."""


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Limit glibc's malloc to ``arenas`` arenas; return whether the limit is in place.

    False on other platforms and C libraries (nothing is changed), and when the environment
    sets ``MALLOC_ARENA_MAX`` (glibc read it at start-up).
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
