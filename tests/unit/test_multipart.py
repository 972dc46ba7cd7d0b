"""MultipartUpload on moto S3: complete with the parts in order, or leave nothing behind."""

from __future__ import annotations

import base64
import io
import logging
import random
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import MockRawResponse

from aistudios_export import clients
from aistudios_export.errors import StorageError
from aistudios_export.multipart import (
    MIN_PART_SIZE,
    MultipartUpload,
    PartBody,
    abort_open_uploads,
)
from tests.unit._s3 import (
    BUCKET,
    S3Calls,
    assert_nothing_stored,
    failing,
    patch_client,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KEY = "exports/p1/video.mp4"
METADATA = {"projectid": "p1"}


class Boom(Exception):
    """The error a test raises inside the block."""


@pytest.fixture
def calls(s3: S3Client) -> Iterator[S3Calls]:
    recorder = S3Calls(s3)
    yield recorder
    recorder.close()


def upload(s3: S3Client) -> MultipartUpload:
    return MultipartUpload(s3, bucket=BUCKET, key=KEY, content_type="video/mp4", metadata=METADATA)


def parts_of(*sizes: int) -> list[bytes]:
    rng = random.Random(11)
    return [rng.randbytes(size) for size in sizes]


def test_completes_with_the_parts_in_order(s3: S3Client) -> None:
    parts = parts_of(MIN_PART_SIZE, MIN_PART_SIZE, 1234)

    with upload(s3) as up:
        for number, part in enumerate(parts, start=1):
            up.upload_part(number, memoryview(part))

    stored = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert stored["Body"].read() == b"".join(parts)
    assert (stored["ContentType"], stored["Metadata"]) == ("video/mp4", METADATA)
    assert stored["ETag"] == up.etag
    assert stored["VersionId"] == up.version_id
    assert [p["PartNumber"] for p in up.parts] == [1, 2, 3]
    assert [p["ChecksumCRC32"] for p in up.parts] == [
        base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode() for part in parts
    ]
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_parts_uploaded_out_of_order_are_completed_in_order(s3: S3Client) -> None:
    first, second, last = parts_of(MIN_PART_SIZE, MIN_PART_SIZE, 10)

    with upload(s3) as up:  # as concurrent uploaders may finish them
        up.upload_part(3, memoryview(last))
        up.upload_part(1, memoryview(first))
        up.upload_part(2, memoryview(second))

    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == first + second + last
    assert [p["PartNumber"] for p in up.parts] == [1, 2, 3]


def test_a_missing_part_is_never_completed(s3: S3Client, calls: S3Calls) -> None:
    first, _, last = parts_of(MIN_PART_SIZE, MIN_PART_SIZE, 10)

    with pytest.raises(StorageError, match="a part is missing"), upload(s3) as up:
        up.upload_part(1, memoryview(first))
        up.upload_part(3, memoryview(last))

    assert "CompleteMultipartUpload" not in calls.operations
    assert_nothing_stored(s3)


def test_a_part_body_reads_seeks_and_reads_again_without_copying_the_part() -> None:
    data = bytearray(b"0123456789")
    body = PartBody(memoryview(data)[2:8])

    assert (len(body), body.read(4), body.read(), body.read()) == (6, b"2345", b"67", b"")
    body.seek(0)
    target = bytearray(3)
    assert (body.readinto(target), target, body.tell()) == (3, bytearray(b"234"), 3)
    data[2] = ord("x")  # a view, not a copy: what is read is the buffer as it is now
    body.seek(-6, io.SEEK_END)
    assert body.read(1) == b"x"


def sent_upload_parts(client: S3Client) -> list[Any]:
    """Record each UploadPart request as it leaves botocore (signed, before moto answers)."""
    sent: list[Any] = []
    client.meta.events.register_first(
        "before-send.s3.UploadPart", lambda request, **_: sent.append(request)
    )
    return sent


@pytest.mark.parametrize("make_client", ["moto fixture", "clients.s3"])
def test_a_part_carries_its_crc32_in_a_header_and_its_payload_is_not_hashed_again(
    s3: S3Client, make_client: str
) -> None:
    client = s3 if make_client == "moto fixture" else clients.s3()  # the functions' client
    sent = sent_upload_parts(client)
    part = parts_of(MIN_PART_SIZE)[0]

    with MultipartUpload(
        client, bucket=BUCKET, key=KEY, content_type="video/mp4", metadata={}
    ) as up:
        up.upload_part(1, memoryview(part))

    [request] = sent
    crc32 = base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode()
    assert request.headers["x-amz-checksum-crc32"] == crc32.encode()  # ours, in a header
    assert b"aws-chunked" not in request.headers.get("Content-Encoding", b"")  # no trailer
    assert isinstance(request.body, PartBody)  # the part itself, not a copy or a wrapper
    if make_client == "clients.s3":  # over HTTPS: no SHA-256 of the body for the signature
        assert request.headers["X-Amz-Content-SHA256"] == b"UNSIGNED-PAYLOAD"
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == part


def test_a_full_buffer_is_sent_as_it_is_and_a_view_as_a_part_body(s3: S3Client) -> None:
    """A bytearray goes in one write with no 100-continue wait; a view is read as a file."""
    client = clients.s3()
    sent = sent_upload_parts(client)
    first, last = parts_of(MIN_PART_SIZE, 1234)
    buffer = bytearray(first)
    tail = bytearray(last + b"left over from an earlier part")

    with MultipartUpload(
        client, bucket=BUCKET, key=KEY, content_type="video/mp4", metadata={}
    ) as up:
        up.upload_part(1, buffer)
        up.upload_part(2, memoryview(tail)[: len(last)])

    full, short = sent
    assert full.body is buffer  # not a copy, not a wrapper
    assert "Expect" not in full.headers
    assert full.headers["Content-Length"] == str(MIN_PART_SIZE)
    assert isinstance(short.body, PartBody)
    assert short.headers["Expect"] == b"100-continue"  # botocore's, for any file-like body
    assert [p["ChecksumCRC32"] for p in up.parts] == [
        base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode() for part in (first, last)
    ]
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == first + last


def test_a_retried_part_is_sent_again_from_the_same_buffer(s3: S3Client) -> None:
    client = clients.s3()
    sent = sent_upload_parts(client)
    refused: list[int] = []

    def refuse_first(request: Any, **_: Any) -> Any:  # a response stops the send
        if refused:
            return None  # on to moto
        refused.append(len(sent))
        error = b"<Error><Code>InternalError</Code><Message>try again</Message></Error>"
        return AWSResponse(request.url, 500, {}, MockRawResponse(error))  # type: ignore[arg-type]

    client.meta.events.register_first("before-send.s3.UploadPart", refuse_first)  # after `sent`
    buffer = bytearray(parts_of(MIN_PART_SIZE)[0])

    with MultipartUpload(
        client, bucket=BUCKET, key=KEY, content_type="video/mp4", metadata={}
    ) as up:
        up.upload_part(1, buffer)

    assert refused == [1]
    assert [request.body for request in sent] == [buffer, buffer]
    assert all(request.body is buffer for request in sent)
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == buffer


@pytest.mark.parametrize("error", [Boom("in the block"), KeyboardInterrupt()])
def test_an_exception_in_the_block_aborts_and_leaves_nothing(
    s3: S3Client, calls: S3Calls, error: BaseException
) -> None:
    with pytest.raises(type(error)) as info, upload(s3) as up:
        up.upload_part(1, memoryview(parts_of(MIN_PART_SIZE)[0]))
        raise error

    assert info.value is error
    assert calls.operations == [
        "CreateMultipartUpload",
        "UploadPart",
        "AbortMultipartUpload",
    ]
    assert_nothing_stored(s3)


@pytest.mark.parametrize(
    ("method", "operation", "asked"),
    [
        ("upload_part", "UploadPart", ["CreateMultipartUpload", "AbortMultipartUpload"]),
        (
            "complete_multipart_upload",
            "CompleteMultipartUpload",
            ["CreateMultipartUpload", "UploadPart", "AbortMultipartUpload"],
        ),
    ],
)
def test_a_refused_step_is_the_error_raised_and_the_upload_is_aborted(
    s3: S3Client,
    calls: S3Calls,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    operation: str,
    asked: list[str],
) -> None:
    patch_client(monkeypatch, s3, method, failing(operation))

    with (
        pytest.raises(StorageError, match=f"{operation} failed: InternalError") as info,
        upload(s3) as up,
    ):
        up.upload_part(1, memoryview(b"the only part"))

    assert isinstance(info.value.__cause__, ClientError)
    assert calls.operations == asked  # the refused call never reached botocore's hooks
    assert (up.etag, up.version_id) == ("", None)
    assert_nothing_stored(s3)


def test_an_abort_failure_does_not_hide_the_original_error(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    aborts: list[dict[str, Any]] = []
    refuse = failing("AbortMultipartUpload")

    def recorded(original: Callable[..., Any], **kwargs: Any) -> Any:
        aborts.append(kwargs)
        return refuse(original, **kwargs)

    patch_client(monkeypatch, s3, "abort_multipart_upload", recorded)
    caplog.set_level(logging.WARNING, logger="aistudios-export")

    with pytest.raises(Boom, match="the original") as info, upload(s3):
        raise Boom("the original")

    assert info.value.__context__ is None
    assert [a["Key"] for a in aborts] == [KEY]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["could not abort multipart upload"]
    assert getattr(warnings[0], "error", None) == "ClientError"
    assert s3.list_object_versions(Bucket=BUCKET).get("Versions", []) == []


# --- uploads left open by a writer that died ----------------------------------------


def open_upload(s3: S3Client, key: str) -> str:
    return s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]


def test_abort_open_uploads_aborts_every_upload_of_exactly_the_key(s3: S3Client) -> None:
    open_upload(s3, KEY)
    open_upload(s3, KEY)
    longer = open_upload(s3, KEY + ".part2")  # shares the prefix: another object's upload
    other = open_upload(s3, "exports/p2/video.mp4")

    assert abort_open_uploads(s3, bucket=BUCKET, key=KEY) == 2

    left = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert sorted(u["UploadId"] for u in left) == sorted([longer, other])


def test_abort_open_uploads_without_uploads_does_nothing(s3: S3Client, calls: S3Calls) -> None:
    assert abort_open_uploads(s3, bucket=BUCKET, key=KEY) == 0
    assert calls.operations == ["ListMultipartUploads"]


def test_abort_open_uploads_counts_an_upload_that_is_already_gone(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_upload(s3, KEY)

    def gone(original: Callable[..., Any], **kwargs: Any) -> Any:
        original(**kwargs)  # another attempt aborted it first
        return original(**kwargs)

    patch_client(monkeypatch, s3, "abort_multipart_upload", gone)

    assert abort_open_uploads(s3, bucket=BUCKET, key=KEY) == 1
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
