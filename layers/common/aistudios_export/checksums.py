"""Store a finished object's whole-file SHA-256 as its ``sha256`` metadata, or delete it.

User metadata can only be set when an object is created, and the whole-file hash is known
only once the last byte has been uploaded, so the object is copied (server-side) onto itself
with the new metadata: with CopyObject, or part by part with UploadPartCopy above
CopyObject's 5 GiB limit. S3 hashes the bytes while copying, which checks them once more
against the stream's hash. The pre-copy version (without the metadata) is then deleted, so
one version remains; if anything fails, every version made is deleted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from aistudios_export.errors import StorageError
from aistudios_export.multipart import (
    MAX_PARTS,
    MIB,
    MultipartUpload,
    b64_digest,
    storage_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

logger = Logger(service="aistudios-export", child=True)

MAX_COPY_OBJECT_SIZE = 5 * 1024 * MIB
"""The largest object ``CopyObject`` can copy; larger ones are copied with ``UploadPartCopy``."""
COPY_PART_SIZE = 512 * MIB
"""Range size of a multipart (server-side) copy, raised when needed to stay within MAX_PARTS."""


def store_checksum(
    s3_client: S3Client,
    *,
    bucket: str,
    key: str,
    version_id: str | None,
    etag: str,
    size: int,
    digest: bytes,
    metadata: Mapping[str, str],
    content_type: str,
) -> str | None:
    """Copy a just-written object onto itself with ``sha256`` metadata; keep only the copy.

    Parameters
    ----------
    s3_client, bucket, key
        The S3 client that wrote the object, and where it is.
    version_id
        The version just written, or ``None`` in an unversioned bucket.
    etag
        The written object's ETag: the copy fails if the object changed since.
    size
        The object's length in bytes (it chooses CopyObject or UploadPartCopy).
    digest
        The SHA-256 of the bytes that were written.
    metadata
        The object's user metadata; ``sha256`` is added.
    content_type
        The object's ``Content-Type``.

    Returns
    -------
    str or None
        The only version left (the copy's), or ``None`` in an unversioned bucket.

    Raises
    ------
    StorageError
        S3 failed a step transiently, or holds bytes whose SHA-256 is not ``digest``; the
        written version and the copy's are deleted.
    ConfigurationError
        S3 refused a step for good; the versions are deleted as well.
    """
    source: CopySourceTypeDef = {"Bucket": bucket, "Key": key}
    if version_id is not None:
        source["VersionId"] = version_id
    new_metadata = {**metadata, "sha256": digest.hex()}
    created = [version_id]  # every version this call made, deleted if anything fails
    try:
        copied_checksum: str | None = None
        if size <= MAX_COPY_OBJECT_SIZE:
            new_version, copied_checksum = _copy_object(
                s3_client, source, etag, new_metadata, content_type
            )
        else:
            new_version = _copy_in_parts(s3_client, source, etag, size, new_metadata, content_type)
        created.append(new_version)
        # S3 hashed the bytes it holds while copying: they must be the bytes we streamed.
        # (A composite "<hash>-<parts>" checksum is not the file's hash: nothing to compare.)
        if copied_checksum and "-" not in copied_checksum and copied_checksum != b64_digest(digest):
            raise StorageError(
                f"s3://{bucket}/{key} holds bytes whose SHA-256 is not the download's"
            )
        if version_id is not None and version_id not in (new_version, "null"):
            # The pre-copy version has no sha256 metadata: remove it so one version remains.
            with storage_errors():
                s3_client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
    except BaseException:
        _delete_versions(s3_client, bucket, key, created)
        raise
    return new_version


def _copy_object(
    s3_client: S3Client,
    source: CopySourceTypeDef,
    etag: str,
    metadata: Mapping[str, str],
    content_type: str,
) -> tuple[str | None, str | None]:
    """Copy ``source`` onto itself with CopyObject; return the new version and S3's SHA-256.

    The SHA-256 is ``None`` when S3 reports none, or only a composite one (not the file's).
    """
    with storage_errors():
        copied = s3_client.copy_object(
            Bucket=source["Bucket"],
            Key=source["Key"],
            CopySource=source,
            CopySourceIfMatch=etag,
            MetadataDirective="REPLACE",
            Metadata=dict(metadata),
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
        )
    result = copied.get("CopyObjectResult", {})
    full_object = result.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    return copied.get("VersionId"), result.get("ChecksumSHA256") if full_object else None


def _copy_in_parts(
    s3_client: S3Client,
    source: CopySourceTypeDef,
    etag: str,
    size: int,
    metadata: Mapping[str, str],
    content_type: str,
) -> str | None:
    """Copy ``source`` onto itself with UploadPartCopy (above CopyObject's limit)."""
    range_size = max(COPY_PART_SIZE, math.ceil(size / MAX_PARTS))
    with MultipartUpload(
        s3_client,
        bucket=source["Bucket"],
        key=source["Key"],
        content_type=content_type,
        metadata=metadata,
    ) as upload:
        for start in range(0, size, range_size):
            end = min(start + range_size, size) - 1
            upload.copy_part(source, if_match=etag, first=start, last=end)
    return upload.version_id


def _delete_versions(
    s3_client: S3Client, bucket: str, key: str, versions: list[str | None]
) -> None:
    """Delete the versions this call created (``None``: the key of an unversioned bucket)."""
    for version in dict.fromkeys(versions):  # unique, in order
        try:
            if version is None:
                s3_client.delete_object(Bucket=bucket, Key=key)
            else:
                s3_client.delete_object(Bucket=bucket, Key=key, VersionId=version)
        except Exception as e:
            logger.warning(
                "could not delete a stored version",
                extra={"bucket": bucket, "key": key, "error": type(e).__name__},
            )
