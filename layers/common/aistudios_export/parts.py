"""Upload a stream's parts while the next ones are read: :class:`PartPipeline`.

Reading the download, hashing it and uploading it take turns if one thread does all three:
the socket idles while a part is uploaded, and the upload idles while the next part is read.
Here the caller's thread only reads into a part buffer while ``uploaders`` threads upload the
parts already full, each first adding its part to the whole-stream digest, in the parts' order
(a hash call releases the GIL, so hashing part *n* overlaps reading part *n + 1* instead of
lengthening the read loop). Buffers come from a fixed pool of ``uploaders + queued``, so
memory is that many parts whatever the stream's length or headers say, and a reader that
gets ahead of the uploads waits for a buffer to come back.

Every wait has a timeout: a worker's failure stops the reader at its next write (and is
raised there), a reader's failure stops the workers before their next part, and a pipeline
in which no part finishes for ``stall_timeout`` seconds fails with StorageError.
"""

from __future__ import annotations

import queue
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from aistudios_export.errors import StorageError

if TYPE_CHECKING:
    from aistudios_export.multipart import MultipartUpload

_POLL_SECONDS = 0.05
"""How often a waiting thread looks whether the other side failed."""
DEFAULT_STALL_SECONDS = 300.0
"""Longer than the SDK's own retries of one part (timeouts and back-off included)."""

_Item = tuple[int, bytearray, int] | None  # (part number, buffer, length), or "stop"


class Digest(Protocol):
    """What the pipeline needs of a hash object (``hashlib``'s)."""

    def update(self, data: memoryview, /) -> None:
        """Add ``data`` to the digest."""


class PartPipeline:
    """Fill part buffers in the caller's thread; upload the full ones from worker threads.

    Use it inside the :class:`~aistudios_export.multipart.MultipartUpload` block, so that the
    workers have stopped before the upload is completed or aborted.

    Parameters
    ----------
    upload
        The open multipart upload the parts go to.
    part_size
        Bytes per part (every part but the last is exactly this long).
    uploaders
        Worker threads, i.e. parts in flight at once.
    queued
        Full parts that may wait for a worker while the next one is filled.
    digest
        Updated with every part's bytes, once each and in order, on the uploader threads
        before the part is uploaded; complete once :meth:`finish` has returned.
    stall_timeout
        Seconds without a finished part after which the pipeline gives up.

    Examples
    --------
    >>> upload = MultipartUpload(s3, bucket=b, key=k, content_type=t, metadata={})  # doctest: +SKIP
    >>> with upload, PartPipeline(upload, part_size=16 * MIB) as parts:  # doctest: +SKIP
    ...     for chunk in chunks:
    ...         parts.write(chunk)
    ...     parts.finish()
    """

    def __init__(
        self,
        upload: MultipartUpload,
        *,
        part_size: int,
        uploaders: int = 2,
        queued: int = 1,
        digest: Digest | None = None,
        stall_timeout: float = DEFAULT_STALL_SECONDS,
    ) -> None:
        if part_size < 1 or uploaders < 1 or queued < 0:
            raise ValueError("part_size and uploaders must be positive, queued not negative")
        self._upload = upload
        self._part_size = part_size
        self._pool_size = uploaders + queued
        self._stall_timeout = stall_timeout
        self._digest = digest
        self._hashed = 0  # the parts added to the digest so far: 1..hashed
        self._turn = threading.Condition()
        # Every buffer is in exactly one place: the reader's hand, this queue, the work queue or
        # a worker's hand. Both queues can hold them all, so a put never waits.
        self._free: queue.Queue[bytearray] = queue.Queue(maxsize=self._pool_size)
        self._work: queue.Queue[_Item] = queue.Queue(maxsize=self._pool_size + uploaders)
        self._allocated = 0
        self._current: bytearray | None = None
        self._filled = 0
        self._number = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._progress = time.monotonic()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"part-uploader-{i}", daemon=True)
            for i in range(uploaders)
        ]

    @property
    def parts_started(self) -> int:
        """How many parts have been handed to the uploaders."""
        return self._number

    @property
    def buffers_allocated(self) -> int:
        """How many part buffers exist (at most ``uploaders + queued``)."""
        return self._allocated

    def __enter__(self) -> Self:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Normally finish() has stopped the workers; on an error, stop them before their next
        # part and wait (bounded) for the parts in flight, so the abort comes after them.
        self._stop.set()
        self._join()

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` to the stream; hand every part that fills up to the uploaders.

        Raises
        ------
        StorageError, ConfigurationError
            A part upload failed (the worker's error), or no part finished for
            ``stall_timeout`` seconds.
        """
        self._raise_failure()
        view = memoryview(data).cast("B")
        while view:
            if self._current is None:
                self._current = self._take_buffer()
            room = self._part_size - self._filled
            piece = view[:room]
            self._current[self._filled : self._filled + len(piece)] = piece
            self._filled += len(piece)
            view = view[len(piece) :]
            if self._filled == self._part_size:
                self._submit()

    def finish(self) -> None:
        """Upload what is left as the last part and wait until every part is uploaded.

        Raises
        ------
        StorageError, ConfigurationError
            A part upload failed, or no part finished for ``stall_timeout`` seconds.
        """
        if self._filled or self._number == 0:
            self._submit()
        for _ in self._workers:
            self._put_work(None)
        self._join()
        self._raise_failure()
        if any(worker.is_alive() for worker in self._workers):
            raise StorageError(f"no part upload finished within {self._stall_timeout:.0f} s")

    # --- the reader's side ---

    def _take_buffer(self) -> bytearray:
        if self._allocated < self._pool_size:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                self._allocated += 1
                return bytearray(self._part_size)
        waiting_since = time.monotonic()
        while True:
            self._raise_failure()
            try:
                return self._free.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                self._check_stall(waiting_since)

    def _submit(self) -> None:
        if self._current is None:
            self._current = self._take_buffer()
        self._number += 1
        self._put_work((self._number, self._current, self._filled))
        self._current, self._filled = None, 0

    def _put_work(self, item: _Item) -> None:
        waiting_since = time.monotonic()
        while True:
            self._raise_failure()
            try:
                self._work.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:  # cannot happen while the pool bound holds; never wait blind
                self._check_stall(waiting_since)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _stalled(self, waiting_since: float) -> bool:
        """Whether no part finished in the last ``stall_timeout`` s of this wait."""
        return time.monotonic() - max(waiting_since, self._progress) > self._stall_timeout

    def _check_stall(self, waiting_since: float) -> None:
        if self._stalled(waiting_since):
            self._stop.set()
            raise StorageError(f"no part upload finished within {self._stall_timeout:.0f} s")

    def _join(self) -> None:
        waiting_since = time.monotonic()
        for worker in self._workers:
            while worker.is_alive() and not self._stalled(waiting_since):
                worker.join(timeout=_POLL_SECONDS)

    # --- the workers' side ---

    def _work_loop(self) -> None:
        while True:
            try:
                item = self._work.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is None:
                return
            number, buffer, length = item
            try:
                part = memoryview(buffer)[:length]
                if not self._stop.is_set() and self._hash_in_turn(number, part):
                    # A full buffer goes as it is (sent in one write); the short last part
                    # as a view. Either way it goes back to the pool only once S3 has it.
                    self._upload.upload_part(number, buffer if length == len(buffer) else part)
                    self._progress = time.monotonic()
            except BaseException as e:  # raised again in the reader's thread
                self._fail(e)
                return
            finally:
                self._free.put_nowait(buffer)

    def _hash_in_turn(self, number: int, part: memoryview) -> bool:
        """Add part ``number`` to the digest after part ``number - 1``; False if stopped.

        Parts are taken from the work queue in order, so the part whose turn it is is always
        in some worker's hands, never behind the waiting ones.
        """
        if self._digest is None:
            return True
        with self._turn:
            while self._hashed != number - 1:
                if self._stop.is_set():
                    return False
                self._turn.wait(_POLL_SECONDS)
        self._digest.update(part)  # outside the lock: the other workers wait for the turn
        with self._turn:
            self._hashed = number
            self._turn.notify_all()
        return True

    def _fail(self, error: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = error
        self._stop.set()
