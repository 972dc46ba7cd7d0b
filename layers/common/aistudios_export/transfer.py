"""Stream a finished video from its download URL into S3, verified, or leave nothing behind.

The body goes through an S3 multipart upload one part at a time (memory is about one part,
whatever the video's size), every part carries its SHA-256 so S3 verifies it, and the SHA-256
of the whole file is computed on the way and stored as the object's ``sha256`` metadata. Any
failure aborts the upload and deletes what was written, so a key holds either the complete
verified video or nothing from this call.

This module only puts the steps together: :mod:`~aistudios_export.download` opens and reads
the URL, :mod:`~aistudios_export.multipart` writes the parts, and
:mod:`~aistudios_export.checksums` stores the whole-file checksum.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests
from aws_lambda_powertools import Logger

from aistudios_export.checksums import store_checksum
from aistudios_export.download import announced_length, body_chunks, open_download
from aistudios_export.errors import ConfigurationError, DownloadInterrupted, DownloadRejected
from aistudios_export.multipart import MAX_PARTS, MIB, MIN_PART_SIZE, MultipartUpload
from aistudios_export.urlguard import UrlPolicy, redact_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["MIB", "MIN_PART_SIZE", "StoredObject", "copy_url_to_s3"]

logger = Logger(service="aistudios-export", child=True)

_CHUNK_SIZE = 1 * MIB


@dataclass(frozen=True)
class StoredObject:
    """A video stored in S3 and verified.

    Attributes
    ----------
    bucket, key
        Where it is.
    size
        Its length in bytes.
    sha256
        Hex SHA-256 of its bytes (also its ``sha256`` user metadata).
    version_id
        The object's only version, or ``None`` in an unversioned bucket.
    content_type
        Its ``Content-Type``.
    """

    bucket: str
    key: str
    size: int
    sha256: str
    version_id: str | None
    content_type: str


def copy_url_to_s3(
    ask_download_url: Callable[[], str],
    *,
    s3_client: S3Client,
    bucket: str,
    key: str,
    metadata: Mapping[str, str],
    policy: UrlPolicy,
    session: requests.Session | None = None,
    content_type: str = "video/mp4",
    part_size: int = 8 * MIB,
    timeout: tuple[float, float] = (5.0, 60.0),
    max_url_refreshes: int = 2,
    max_redirects: int = 5,
) -> StoredObject:
    """Stream the file behind a download URL into ``s3://bucket/key``, verified.

    Parameters
    ----------
    ask_download_url
        Returns a download URL; called once at the start and again after each 403
        (an expired URL).
    s3_client
        The S3 client that writes the object.
    bucket, key
        Where to store the file.
    metadata
        User metadata for the object; ``sha256`` is added.
    policy
        Which URLs may be fetched (checked for the URL and every redirect hop).
    session
        HTTP session to use; a private one is created (and closed) when ``None``.
    content_type
        The object's ``Content-Type``.
    part_size
        Bytes per uploaded part (at least 5 MiB); memory use is about one part.
    timeout
        ``(connect, read)`` timeout in seconds of every HTTP request.
    max_url_refreshes
        How many fresh URLs to ask for after 403s before giving up.
    max_redirects
        How many redirects to follow.

    Returns
    -------
    StoredObject
        The stored object, with its size, SHA-256 and only version.

    Raises
    ------
    ForbiddenDownloadUrl
        The URL or a redirect points somewhere the policy forbids (nothing was fetched there).
    DownloadUrlExpired
        The server kept answering 403 after ``max_url_refreshes`` fresh URLs.
    DownloadInterrupted
        The download was cut, timed out, answered 5xx/408/429, delivered no bytes, or
        delivered a byte count other than its Content-Length.
    DownloadRejected
        The server answered another 4xx or an unexpected status, or redirected too often.
    StorageError
        S3 refused a step, or stored bytes whose checksum differs from the stream's.
    ConfigurationError
        ``part_size`` is below S3's 5 MiB minimum.
    """
    if part_size < MIN_PART_SIZE:
        raise ConfigurationError(f"part size must be at least {MIN_PART_SIZE} bytes")
    http_session = session if session is not None else requests.Session()
    try:
        response = open_download(
            ask_download_url,
            http_session,
            policy,
            timeout=timeout,
            max_url_refreshes=max_url_refreshes,
            max_redirects=max_redirects,
        )
        with response:
            return _upload(
                response,
                s3_client=s3_client,
                bucket=bucket,
                key=key,
                metadata=metadata,
                content_type=content_type,
                part_size=part_size,
            )
    finally:
        if session is None:
            http_session.close()


def _upload(
    response: requests.Response,
    *,
    s3_client: S3Client,
    bucket: str,
    key: str,
    metadata: Mapping[str, str],
    content_type: str,
    part_size: int,
) -> StoredObject:
    """Stream ``response`` into a multipart upload, then store the whole-file checksum."""
    where = redact_url(response.url)
    expected = announced_length(response)
    if expected is not None:
        part_size = max(part_size, math.ceil(expected / MAX_PARTS))
    chunks = body_chunks(response, min(_CHUNK_SIZE, part_size))
    # Read the first bytes before creating anything in S3, so an empty answer costs nothing.
    first = next(chunks, None)
    if first is None:
        raise DownloadInterrupted(f"download from {where} delivered no bytes")

    digest = hashlib.sha256()
    size = 0
    with MultipartUpload(
        s3_client, bucket=bucket, key=key, content_type=content_type, metadata=metadata
    ) as upload:
        part = io.BytesIO()  # the only part in memory; a new one replaces it once uploaded
        for chunk in itertools.chain((first,), chunks):
            digest.update(chunk)
            size += len(chunk)
            if expected is not None and size > expected:
                raise DownloadInterrupted(
                    f"download from {where} delivered more than the announced {expected} bytes"
                )
            view = memoryview(chunk)
            while view:
                room = part_size - part.tell()
                part.write(view[:room])
                view = view[room:]
                if part.tell() == part_size:
                    _upload_part(upload, part)
                    part = io.BytesIO()
        if part.tell():
            _upload_part(upload, part)
        del part
        if expected is not None and size != expected:
            raise DownloadInterrupted(
                f"download from {where} delivered {size} of the announced {expected} bytes"
            )

    version_id = store_checksum(
        s3_client,
        bucket=bucket,
        key=key,
        version_id=upload.version_id,
        etag=upload.etag,
        size=size,
        digest=digest.digest(),
        metadata=metadata,
        content_type=content_type,
    )
    logger.info(
        "stored video",
        extra={"bucket": bucket, "key": key, "size": size, "parts": len(upload.parts)},
    )
    return StoredObject(
        bucket=bucket,
        key=key,
        size=size,
        sha256=digest.hexdigest(),
        version_id=version_id,
        content_type=content_type,
    )


def _upload_part(upload: MultipartUpload, body: io.BytesIO) -> None:
    """Upload the next part, unless the download needs more parts than S3 allows."""
    if len(upload.parts) >= MAX_PARTS:
        raise DownloadRejected(f"the download needs more than {MAX_PARTS} parts")
    upload.upload_part(body)
