"""The simulated videos: deterministic MP4 bytes, produced in chunks and never held whole."""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator

__all__ = ["DEFAULT_VIDEO_SIZE", "iter_video", "video_bytes", "video_sha256"]

#: Default video size: a little over 3 MiB and not a multiple of any multipart part size.
DEFAULT_VIDEO_SIZE = 3 * 1024 * 1024 + 12345
_CHUNK = 64 * 1024


def _video_header(size: int) -> bytes:
    """Return an ``ftyp`` box and an ``mdat`` box header spanning the rest of `size` bytes."""
    ftyp = struct.pack(">I4s4sI16s", 32, b"ftyp", b"isom", 0x200, b"isomiso2avc1mp41")
    rest = size - len(ftyp)
    if rest < 2**32:
        mdat = struct.pack(">I4s", max(rest, 0), b"mdat")
    else:  # 64-bit "largesize" form for videos of 4 GiB and more
        mdat = struct.pack(">I4sQ", 1, b"mdat", rest)
    return (ftyp + mdat)[:size]


def iter_video(
    project_id: str, resolution: str = "1080", size: int = DEFAULT_VIDEO_SIZE
) -> Iterator[bytes]:
    """Yield the simulated video of a project in chunks of at most 64 KiB.

    Parameters
    ----------
    project_id, resolution, size
        The bytes are a deterministic function of these three.

    Yields
    ------
    bytes
        An MP4 ``ftyp`` box and ``mdat`` header, then pseudo-random bytes; `size` bytes in all.
    """
    header = _video_header(size)
    if header:
        yield header
    # Not for security: a seeded generator makes the bytes reproducible without storing them.
    rng = random.Random(f"aistudios-sim:{project_id}:{resolution}:{size}")  # noqa: S311
    remaining = size - len(header)
    while remaining > 0:
        n = min(_CHUNK, remaining)
        yield rng.randbytes(n)
        remaining -= n


def video_bytes(project_id: str, resolution: str = "1080", size: int = DEFAULT_VIDEO_SIZE) -> bytes:
    """Return the whole simulated video of a project (for tests; see `iter_video`).

    Parameters
    ----------
    project_id, resolution, size
        As in `iter_video`.

    Returns
    -------
    bytes
        Exactly the bytes the download endpoint serves.
    """
    return b"".join(iter_video(project_id, resolution, size))


def video_sha256(project_id: str, resolution: str = "1080", size: int = DEFAULT_VIDEO_SIZE) -> str:
    """Return the hex SHA-256 of the simulated video, hashed while streaming.

    The arguments are those of `iter_video`; the whole video is never held in memory, so this
    also serves sizes far above what `video_bytes` should build.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    digest = hashlib.sha256()
    for chunk in iter_video(project_id, resolution, size):
        digest.update(chunk)
    return digest.hexdigest()
