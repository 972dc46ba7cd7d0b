"""Store a finished object's whole-file SHA-256 as its ``sha256`` object tag, or delete it.

The whole-file hash is known only once the last byte has been uploaded, and user metadata
can only be written with the object. A tag can be added afterwards to the very version that
was written, without copying it or making a new version: the object keeps exactly one
version, and nobody pays for a server-side copy of a multi-GiB video. If tagging fails, the
version is deleted, so no untagged (unverified) copy is left.

That tag also marks a finished copy: :func:`previous_copy` returns the object a key already
holds when an earlier attempt stored and tagged it, so a retry need not copy again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from aistudios_export.aws_errors import http_status
from aistudios_export.errors import ConfigurationError, StorageError
from aistudios_export.multipart import storage_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import TaggingTypeDef

logger = Logger(service="aistudios-export", child=True)

SHA256_TAG = "sha256"
"""The object tag that holds the hex SHA-256 of a stored video's bytes."""
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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
        Hex SHA-256 of its bytes (also its ``sha256`` object tag).
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


def previous_copy(
    s3_client: S3Client, *, bucket: str, key: str, metadata: Mapping[str, str]
) -> StoredObject | None:
    """Return an earlier attempt's verified copy at ``key``; delete an unverified one it left.

    Only :func:`store_checksum` writes the ``sha256`` tag, and only once every byte was
    uploaded and verified, so an object that has it and every item of ``metadata`` is a
    finished copy of the same file. One with ``metadata`` but no ``sha256`` tag is what an
    attempt left when it died between completing its upload and tagging it: that version is
    deleted, since a new copy replaces it and one version must remain. Anything else is left
    alone.

    Parameters
    ----------
    s3_client, bucket, key
        The S3 client, and where the copy would be.
    metadata
        The user metadata the copy is stored with (its job's ``projectid``, ...).

    Returns
    -------
    StoredObject or None
        The stored object (its current version), or ``None`` when there is no finished copy.

    Raises
    ------
    StorageError, ConfigurationError
        S3 failed to answer (other than "no such key") or to delete the unverified version.
    """
    try:
        with storage_errors():
            head = s3_client.head_object(Bucket=bucket, Key=key)
    except (StorageError, ConfigurationError) as e:
        # A missing key answers 404, or 403 to a role without s3:ListBucket: nothing stored.
        if http_status(e.__cause__ or e) in (403, 404):
            return None
        raise
    found = head.get("Metadata", {})
    if any(found.get(k) != v for k, v in metadata.items()):
        return None  # another file's: not this call's to reuse or delete
    version_id = head.get("VersionId")
    sha256 = read_checksum(s3_client, bucket=bucket, key=key, version_id=version_id)
    if sha256 is None and version_id is not None:
        with storage_errors():
            s3_client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        logger.info("deleted an unverified copy", extra={"bucket": bucket, "key": key})
        return None
    if sha256 is None or not _SHA256_HEX.fullmatch(sha256):
        return None  # no tag (unversioned: the new copy replaces it) or not ours: left alone
    return StoredObject(
        bucket=bucket,
        key=key,
        size=head["ContentLength"],
        sha256=sha256,
        version_id=version_id,
        content_type=head.get("ContentType", ""),
    )


def read_checksum(
    s3_client: S3Client, *, bucket: str, key: str, version_id: str | None = None
) -> str | None:
    """Return the value of an object's ``sha256`` tag, or ``None`` if it has none.

    Parameters
    ----------
    s3_client, bucket, key
        The S3 client, and the object.
    version_id
        The version to read (``None``: the current one).

    Returns
    -------
    str or None
        The tag's value (a lower-case hex SHA-256 if :func:`store_checksum` wrote it), or
        ``None`` when the object has no such tag.

    Raises
    ------
    StorageError, ConfigurationError
        S3 failed to answer.
    """
    with storage_errors():
        if version_id is None:
            tags = s3_client.get_object_tagging(Bucket=bucket, Key=key)
        else:
            tags = s3_client.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)
    return next((t["Value"] for t in tags.get("TagSet", []) if t["Key"] == SHA256_TAG), None)


def store_checksum(
    s3_client: S3Client, *, bucket: str, key: str, version_id: str | None, digest: bytes
) -> None:
    """Tag a just-written version with its SHA-256; delete the version if that fails.

    Parameters
    ----------
    s3_client, bucket, key
        The S3 client that wrote the object, and where it is.
    version_id
        The version just written, or ``None`` in an unversioned bucket.
    digest
        The SHA-256 of the bytes that were written.

    Raises
    ------
    StorageError, ConfigurationError
        S3 refused the tag (transiently or for good); the version was deleted.
    """
    tagging: TaggingTypeDef = {"TagSet": [{"Key": SHA256_TAG, "Value": digest.hex()}]}
    try:
        with storage_errors():
            if version_id is None:
                s3_client.put_object_tagging(Bucket=bucket, Key=key, Tagging=tagging)
            else:
                s3_client.put_object_tagging(
                    Bucket=bucket, Key=key, VersionId=version_id, Tagging=tagging
                )
    except BaseException:
        _delete_version(s3_client, bucket, key, version_id)
        raise


def _delete_version(s3_client: S3Client, bucket: str, key: str, version: str | None) -> None:
    """Delete the version this call wrote (``None``: the key of an unversioned bucket)."""
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
