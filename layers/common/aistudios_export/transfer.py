"""Stream a finished video from its download URL into S3, verified, or leave nothing behind.

The body goes through an S3 multipart upload whose parts are uploaded by a few threads while
the next part is read (memory is ``uploaders + queued`` parts, whatever the video's size or
its headers say: a length beyond the maximum video size is refused before anything is
written, a body that grows past it is cut off). Every part carries a CRC32 that S3 verifies;
the SHA-256 of the whole file is computed once, part by part in order as the parts are
handed to the uploaders, and stored as the object's ``sha256`` tag without rewriting the
object. Any failure aborts the upload and
deletes what was written, so a key holds either the complete verified video or nothing from
this call.

This module only puts the steps together: :mod:`~aistudios_export.download` opens and reads
the URL, :mod:`~aistudios_export.parts` and :mod:`~aistudios_export.multipart` write the
parts, and :mod:`~aistudios_export.checksums` stores the whole-file checksum.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from aistudios_export.checksums import StoredObject, store_checksum
from aistudios_export.download import (
    OpenDownload,
    announced_length,
    body_chunks,
    open_download,
    too_large,
)
from aistudios_export.errors import ConfigurationError, DownloadInterrupted, DownloadRejected
from aistudios_export.multipart import MAX_PARTS, MIB, MIN_PART_SIZE, MultipartUpload
from aistudios_export.parts import PartPipeline
from aistudios_export.pinning import PinnedPools
from aistudios_export.settings import DEFAULT_MAX_VIDEO_SIZE_GIB, GIB
from aistudios_export.urlguard import UrlPolicy, redact_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["MIB", "MIN_PART_SIZE", "StoredObject", "copy_url_to_s3"]

logger = Logger(service="aistudios-export", child=True)

_CHUNK_SIZE = 1 * MIB
DEFAULT_PART_SIZE = 32 * MIB
DEFAULT_UPLOADERS = 2
DEFAULT_QUEUED_PARTS = 1


def copy_url_to_s3(
    ask_download_url: Callable[[], str],
    *,
    s3_client: S3Client,
    bucket: str,
    key: str,
    metadata: Mapping[str, str],
    policy: UrlPolicy,
    pools: PinnedPools | None = None,
    content_type: str = "video/mp4",
    part_size: int = DEFAULT_PART_SIZE,
    uploaders: int = DEFAULT_UPLOADERS,
    queued_parts: int = DEFAULT_QUEUED_PARTS,
    timeout: tuple[float, float] = (5.0, 60.0),
    max_url_refreshes: int = 2,
    max_redirects: int = 5,
    max_size: int = DEFAULT_MAX_VIDEO_SIZE_GIB * GIB,
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
        User metadata for the object (the SHA-256 goes in its ``sha256`` tag).
    policy
        Which URLs may be fetched (checked for the URL and every redirect hop).
    pools
        The connections to download with; private ones are made (and closed) when ``None``.
    content_type
        The object's ``Content-Type``.
    part_size
        Bytes per uploaded part (at least 5 MiB). It grows only as far as S3's 10,000 parts
        need for the announced length, or for ``max_size`` when no length is announced.
    uploaders, queued_parts
        Parts uploaded at once, and full parts that may wait for an uploader: the part
        buffers are ``uploaders + queued_parts`` parts, the copy's memory.
    timeout
        ``(connect, read)`` timeout in seconds of every HTTP request.
    max_url_refreshes
        How many fresh URLs to ask for after 403s before giving up.
    max_redirects
        How many redirects to follow.
    max_size
        The largest video accepted, in bytes.

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
        The server answered another 4xx or an unexpected status, redirected too often, sent
        a malformed Content-Length, or announced or delivered more than ``max_size`` bytes
        (an announced excess is refused before anything is written).
    StorageError
        S3 refused a step, or stored bytes whose checksum differs from the stream's.
    ConfigurationError
        ``part_size`` is below S3's 5 MiB minimum, or ``uploaders`` below 1.
    """
    if part_size < MIN_PART_SIZE:
        raise ConfigurationError(f"part size must be at least {MIN_PART_SIZE} bytes")
    if uploaders < 1 or queued_parts < 0:
        raise ConfigurationError("at least one uploader is needed, and queued parts >= 0")
    http = pools if pools is not None else PinnedPools()
    try:
        download = open_download(
            ask_download_url,
            http,
            policy,
            timeout=timeout,
            max_url_refreshes=max_url_refreshes,
            max_redirects=max_redirects,
        )
        with download:
            return _upload(
                download,
                s3_client=s3_client,
                bucket=bucket,
                key=key,
                metadata=metadata,
                content_type=content_type,
                part_size=part_size,
                uploaders=uploaders,
                queued_parts=queued_parts,
                max_size=max_size,
            )
    finally:
        if pools is None:
            http.clear()


def _upload(
    download: OpenDownload,
    *,
    s3_client: S3Client,
    bucket: str,
    key: str,
    metadata: Mapping[str, str],
    content_type: str,
    part_size: int,
    uploaders: int,
    queued_parts: int,
    max_size: int,
) -> StoredObject:
    """Stream ``download`` into a multipart upload, then store the whole-file checksum."""
    where = redact_url(download.url)
    expected = announced_length(download, max_size)
    part_size = fitted_part_size(part_size, expected, max_size)
    chunks = body_chunks(download, min(_CHUNK_SIZE, part_size))
    # Read the first bytes before creating anything in S3, so an empty answer costs nothing.
    first = next(chunks, None)
    if first is None:
        raise DownloadInterrupted(f"download from {where} delivered no bytes")

    digest = hashlib.sha256()
    size = 0
    if expected is not None and expected < part_size:
        # One part, and nothing to overlap: a buffer of the announced length, one uploader
        # (not a zeroed part-size buffer per pooled slot and a thread per uploader).
        buffer_size, uploaders, queued_parts = max(expected, 1), 1, 0
    else:
        buffer_size = part_size
    with (
        MultipartUpload(
            s3_client, bucket=bucket, key=key, content_type=content_type, metadata=metadata
        ) as upload,
        PartPipeline(
            upload, part_size=buffer_size, uploaders=uploaders, queued=queued_parts, digest=digest
        ) as parts,
    ):
        for chunk in itertools.chain((first,), chunks):
            size += len(chunk)
            if expected is not None and size > expected:
                raise DownloadInterrupted(
                    f"download from {where} delivered more than the announced {expected} bytes"
                )
            if size > max_size:
                raise too_large(where, max_size)
            if size > part_size * MAX_PARTS:
                raise DownloadRejected(f"the download needs more than {MAX_PARTS} parts")
            parts.write(chunk)  # hashed by the uploaders, in order: one pass over each byte
        if expected is not None and size != expected:
            raise DownloadInterrupted(
                f"download from {where} delivered {size} of the announced {expected} bytes"
            )
        parts.finish()

    store_checksum(
        s3_client, bucket=bucket, key=key, version_id=upload.version_id, digest=digest.digest()
    )
    logger.info(
        "stored video",
        extra={"bucket": bucket, "key": key, "size": size, "parts": parts.parts_started},
    )
    return StoredObject(
        bucket=bucket,
        key=key,
        size=size,
        sha256=digest.hexdigest(),
        version_id=upload.version_id,
        content_type=content_type,
    )


def fitted_part_size(part_size: int, expected: int | None, max_size: int) -> int:
    """Return ``part_size``, grown only as far as needed to fit the video in S3's parts.

    Parameters
    ----------
    part_size
        The configured part size in bytes.
    expected
        The announced length (at most ``max_size``), or ``None``.
    max_size
        The largest video accepted: what an unannounced body must fit.

    Returns
    -------
    int
        At least ``part_size``; above it only when ``MAX_PARTS`` parts of ``part_size``
        cannot hold ``expected`` (or ``max_size``). Headers cannot raise it past that.
    """
    length = max_size if expected is None else min(expected, max_size)
    return max(part_size, math.ceil(length / MAX_PARTS))
