"""The copy overlaps reading and uploading, hashes once, never copies server-side, stays bounded.

A loopback download server and moto S3, as in test_transfer; here the S3 client is watched
(or made slow) to see how the parts travel, not only what is stored.
"""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from aistudios_export.errors import DownloadInterrupted, StorageError
from aistudios_export.parts import PartPipeline
from aistudios_export.transfer import MIB, StoredObject, copy_url_to_s3
from aistudios_export.urlguard import UrlPolicy
from tests.unit._downloads import DownloadServer, payload, serve
from tests.unit._s3 import BUCKET, S3Calls, assert_nothing_stored, patch_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PART = 5 * MIB
KEY = "exports/p1/1080/video.mp4"
WAIT = 10.0  # seconds a test waits for what must happen far sooner


@pytest.fixture
def calls(s3: S3Client) -> Iterator[S3Calls]:
    recorder = S3Calls(s3)
    yield recorder
    recorder.close()


def copy(s3: S3Client, server: DownloadServer, **kwargs: Any) -> StoredObject:
    kwargs.setdefault("part_size", PART)
    return copy_url_to_s3(
        lambda: server.url("/video"),
        s3_client=s3,
        bucket=BUCKET,
        key=KEY,
        metadata={"projectid": "p1"},
        policy=UrlPolicy.from_trusted_origin(server.origin),
        **kwargs,
    )


def test_a_second_part_is_uploaded_while_the_first_is_still_in_flight(
    server: DownloadServer, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(3 * PART)
    server.routes["/video"] = serve(data)
    second_started = threading.Event()

    def upload_part(original: Callable[..., Any], **kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 1:  # held back until another part is in flight
            if not second_started.wait(WAIT):
                raise AssertionError("part 2 never started while part 1 was in flight")
        else:
            second_started.set()
        return original(**kwargs)

    patch_client(monkeypatch, s3, "upload_part", upload_part)

    stored = copy(s3, server, uploaders=2, queued_parts=1)

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data


def test_each_byte_is_hashed_once(
    server: DownloadServer, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(2 * PART + 777)
    server.routes["/video"] = serve(data)
    hashed = 0
    real_sha256 = hashlib.sha256

    class Counting:
        def __init__(self, data: bytes = b"") -> None:
            self._hash = real_sha256()
            self.update(data)

        def update(self, data: Any) -> None:
            nonlocal hashed
            hashed += memoryview(data).nbytes
            self._hash.update(data)

        def digest(self) -> bytes:
            return self._hash.digest()

        def hexdigest(self) -> str:
            return self._hash.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Counting)

    stored = copy(s3, server)

    assert stored.sha256 == real_sha256(data).hexdigest()
    assert hashed == len(data)


def test_the_checksum_is_tagged_without_copying_the_object(
    server: DownloadServer, s3: S3Client, calls: S3Calls
) -> None:
    data = payload(2 * PART + 5)
    server.routes["/video"] = serve(data)

    stored = copy(s3, server)

    assert calls.operations == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
        "PutObjectTagging",
    ]
    versions = s3.list_object_versions(Bucket=BUCKET)["Versions"]
    assert [v["VersionId"] for v in versions] == [stored.version_id]
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=KEY, VersionId=stored.version_id or "")
    assert tags["TagSet"] == [{"Key": "sha256", "Value": hashlib.sha256(data).hexdigest()}]


def test_memory_stays_within_the_part_buffers_under_a_lying_content_length(
    server: DownloadServer, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Announced: 1 GiB (allowed); delivered: 48 MiB. Parts are discarded (moto would keep
    # them), so what is measured is the copy's own memory.
    server.routes["/video"] = serve(payload(48 * MIB), announce=1024 * MIB)
    parts: list[int] = []

    def discard(original: Callable[..., Any], **kwargs: Any) -> Any:
        parts.append(len(kwargs["Body"]))  # its length, without a copy of the part
        return {"ETag": f'"{kwargs["PartNumber"]}"'}

    patch_client(monkeypatch, s3, "upload_part", discard)
    tracemalloc.start()
    try:
        with pytest.raises(DownloadInterrupted):
            copy(s3, server, uploaders=2, queued_parts=1, max_size=2048 * MIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert sum(parts) >= 40 * MIB  # most of the body went through
    assert max(parts) <= PART  # the announced length did not grow the parts
    assert peak < 3 * PART + 4 * MIB  # three part buffers, a chunk or two, and change
    assert_nothing_stored(s3)


def test_a_failing_part_stops_the_reader_and_aborts(
    server: DownloadServer, s3: S3Client, calls: S3Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/video"] = serve(payload(40 * PART))
    started: list[int] = []

    def refuse(original: Callable[..., Any], **kwargs: Any) -> Any:
        started.append(kwargs["PartNumber"])
        raise StorageError("S3 UploadPart failed: InternalError")

    patch_client(monkeypatch, s3, "upload_part", refuse)

    with pytest.raises(StorageError, match="UploadPart failed"):
        copy(s3, server, uploaders=2, queued_parts=1)

    assert len(started) <= 4  # the workers stopped; the reader did not read 40 parts on
    assert calls.operations[-1] == "AbortMultipartUpload"
    assert_nothing_stored(s3)


class _StuckUpload:
    """An upload whose part uploads hang until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def upload_part(self, number: int, body: memoryview) -> None:
        self.release.wait(WAIT)


def test_a_stalled_upload_fails_the_write_after_the_stall_timeout() -> None:
    stuck = _StuckUpload()
    start = time.monotonic()
    try:
        with (
            pytest.raises(StorageError, match="no part upload finished"),
            PartPipeline(
                stuck,  # type: ignore[arg-type]
                part_size=4,
                uploaders=1,
                queued=1,
                stall_timeout=0.3,
            ) as pipeline,
        ):
            for _ in range(10):
                pipeline.write(b"abcd")
    finally:
        stuck.release.set()
    assert time.monotonic() - start < WAIT
    assert pipeline.buffers_allocated == 2


def test_the_pipeline_never_holds_more_buffers_than_uploaders_and_queue() -> None:
    seen: list[bytes] = []

    class Recording:
        def upload_part(self, number: int, body: memoryview) -> None:
            time.sleep(0.001)
            seen.append(bytes(body))

    with PartPipeline(
        Recording(),  # type: ignore[arg-type]
        part_size=3,
        uploaders=2,
        queued=2,
    ) as pipeline:
        for i in range(50):
            pipeline.write(bytes([i]) * 2)
        pipeline.finish()

    assert pipeline.buffers_allocated <= 4
    assert pipeline.parts_started == 34
    assert sorted(seen) == sorted(
        bytes(b"".join(bytes([i]) * 2 for i in range(50)))[n : n + 3] for n in range(0, 100, 3)
    )


def test_full_parts_go_as_their_buffers_and_the_short_last_one_as_a_view() -> None:
    """A full buffer is sent as it is (one write); slicing it for the last part would copy it."""
    seen: list[tuple[int, type, bytes]] = []
    lock = threading.Lock()

    class Recording:
        def upload_part(self, number: int, body: bytearray | memoryview) -> None:
            with lock:
                seen.append((number, type(body), bytes(body)))

    stream = bytes(range(256)) * 3
    with PartPipeline(
        Recording(),  # type: ignore[arg-type]
        part_size=100,
        uploaders=2,
        queued=1,
    ) as pipeline:
        pipeline.write(stream)
        pipeline.finish()

    seen.sort(key=lambda part: part[0])
    assert [kind for _, kind, _ in seen] == [bytearray] * 7 + [memoryview]
    assert b"".join(data for _, _, data in seen) == stream
    assert pipeline.buffers_allocated <= 3


def test_the_uploaders_hash_the_parts_once_each_in_order_whatever_order_they_finish() -> None:
    hashed: list[tuple[bytes, str]] = []
    stream = bytes(range(256)) * 4

    class Recording:
        def update(self, data: memoryview) -> None:
            hashed.append((bytes(data), threading.current_thread().name))

    class Jittery:
        def upload_part(self, number: int, body: memoryview) -> None:
            time.sleep(0.002 * (number % 3))  # later parts often finish first

    with PartPipeline(
        Jittery(),  # type: ignore[arg-type]
        part_size=10,
        uploaders=3,
        queued=2,
        digest=Recording(),
    ) as pipeline:
        for start in range(0, len(stream), 7):
            pipeline.write(stream[start : start + 7])
        pipeline.finish()

    assert b"".join(part for part, _ in hashed) == stream
    assert all(name.startswith("part-uploader") for _, name in hashed)  # not the reader


def test_a_video_shorter_than_a_part_gets_one_buffer_of_its_length_and_one_uploader(
    server: DownloadServer, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(16 * 1024 + 123)
    server.routes["/video"] = serve(data)
    pipelines: list[tuple[dict[str, Any], PartPipeline]] = []

    class Recorded(PartPipeline):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            pipelines.append((kwargs, self))

    monkeypatch.setattr("aistudios_export.transfer.PartPipeline", Recorded)

    stored = copy(s3, server, uploaders=2, queued_parts=1)

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    [(kwargs, pipeline)] = pipelines
    assert {k: kwargs[k] for k in ("part_size", "uploaders", "queued")} == {
        "part_size": len(data),
        "uploaders": 1,
        "queued": 0,
    }
    assert pipeline.buffers_allocated == 1
    assert pipeline.parts_started == 1


def test_an_unannounced_short_video_keeps_the_configured_pipeline(
    server: DownloadServer, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(16 * 1024)
    server.routes["/video"] = serve(data, announce=None)
    seen: list[dict[str, Any]] = []

    class Recorded(PartPipeline):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.append(kwargs)

    monkeypatch.setattr("aistudios_export.transfer.PartPipeline", Recorded)

    stored = copy(s3, server, uploaders=2, queued_parts=1)

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    [kwargs] = seen  # the length is not known: parts as configured (fitted to the largest video)
    assert kwargs["part_size"] >= PART
    assert (kwargs["uploaders"], kwargs["queued"]) == (2, 1)
