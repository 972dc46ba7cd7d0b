"""S3 multipart uploads that either complete or leave nothing: :class:`MultipartUpload`.

Both ways this library writes an object in parts (streaming a download, and copying an
object onto itself above CopyObject's limit) create an upload, add parts in order, and
complete it, and must abort it on any failure, since an open upload keeps its parts (and
their cost) invisibly. The context manager holds that pattern once; :func:`storage_errors`
turns botocore's errors into the library's.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypedDict

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from aistudios_export.aws_errors import translate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

logger = Logger(service="aistudios-export", child=True)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
"""S3's smallest allowed part (every part but the last)."""
MAX_PARTS = 10_000
"""S3's largest allowed part number."""


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn botocore's errors inside the block into the library's (StorageError if transient).

    Raises
    ------
    StorageError
        The S3 call failed in a way that may pass (throttling, a 5xx, a dropped connection).
    ConfigurationError
        The S3 call was refused for good (a permission, a missing bucket).
    """
    try:
        yield
    except ClientError as e:
        raise translate(e, f"S3 {e.operation_name} failed") from e
    except BotoCoreError as e:
        raise translate(e, "S3 call failed") from e


def b64_digest(digest: bytes) -> str:
    """Return a digest in base64, the form S3 uses for checksums."""
    return base64.b64encode(digest).decode("ascii")


class _PartAddress(TypedDict):
    """The arguments that name the next part of an upload, in S3's spelling."""

    Bucket: str
    Key: str
    UploadId: str
    PartNumber: int


class MultipartUpload:
    """One S3 multipart upload: created on entry, completed on a clean exit, else aborted.

    Parts are numbered 1, 2, ... in the order they are added, and every part carries a
    SHA-256 (its own, or the one S3 computed while copying it) that S3 verifies. If the block
    raises, or completing fails, the upload is aborted and the error goes on; a failure to
    abort is logged, never raised over the original error.

    Parameters
    ----------
    s3_client
        The S3 client that writes the object.
    bucket, key
        Where the object goes.
    content_type
        The object's ``Content-Type``.
    metadata
        The object's user metadata.

    Attributes
    ----------
    bucket, key
        Where the object goes.
    parts
        The parts added so far, in order.
    etag, version_id
        The completed object's ETag and version (``None`` in an unversioned bucket); set
        once the block has exited cleanly.

    Examples
    --------
    >>> upload = MultipartUpload(  # doctest: +SKIP
    ...     s3_client, bucket="videos", key="v.mp4", content_type="video/mp4", metadata={}
    ... )
    >>> with upload:  # doctest: +SKIP
    ...     for chunk in five_mib_chunks:
    ...         upload.upload_part(io.BytesIO(chunk))
    >>> upload.version_id  # doctest: +SKIP
    '3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY'
    """

    def __init__(
        self,
        s3_client: S3Client,
        *,
        bucket: str,
        key: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.key = key
        self._content_type = content_type
        self._metadata = dict(metadata)
        self._upload_id = ""
        self.parts: list[CompletedPartTypeDef] = []
        self.etag = ""
        self.version_id: str | None = None

    def __enter__(self) -> Self:
        with storage_errors():
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                ContentType=self._content_type,
                Metadata=self._metadata,
                ChecksumAlgorithm="SHA256",
            )["UploadId"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._abort()
            return
        try:
            with storage_errors():
                completed = self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self.parts},
                )
        except BaseException:
            self._abort()
            raise
        self.etag = completed["ETag"]
        self.version_id = completed.get("VersionId")

    def upload_part(self, body: io.BytesIO) -> None:
        """Upload ``body`` as the next part, with its SHA-256 for S3 to verify.

        Parameters
        ----------
        body
            The part's bytes (at least :data:`MIN_PART_SIZE` unless it is the last part).

        Raises
        ------
        StorageError, ConfigurationError
            S3 refused the part.
        """
        with body.getbuffer() as view:
            checksum = b64_digest(hashlib.sha256(view).digest())
        body.seek(0)
        where = self._next_part()
        with storage_errors():
            etag = self._s3.upload_part(
                **where, Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum
            )["ETag"]
        self.parts.append(
            {"PartNumber": where["PartNumber"], "ETag": etag, "ChecksumSHA256": checksum}
        )

    def copy_part(self, source: CopySourceTypeDef, *, if_match: str, first: int, last: int) -> None:
        """Copy bytes ``first`` to ``last`` (inclusive) of an existing object as the next part.

        Parameters
        ----------
        source
            The object to copy from (bucket, key and, in a versioned bucket, version).
        if_match
            The ETag the source must still have.
        first, last
            The byte range to copy.

        Raises
        ------
        StorageError, ConfigurationError
            S3 refused the copy (a changed source included).
        """
        where = self._next_part()
        with storage_errors():
            result = self._s3.upload_part_copy(
                **where,
                CopySource=source,
                CopySourceIfMatch=if_match,
                CopySourceRange=f"bytes={first}-{last}",
            ).get("CopyPartResult", {})
        part: CompletedPartTypeDef = {
            "PartNumber": where["PartNumber"],
            "ETag": result.get("ETag", ""),
        }
        if "ChecksumSHA256" in result:
            part["ChecksumSHA256"] = result["ChecksumSHA256"]
        self.parts.append(part)

    def _next_part(self) -> _PartAddress:
        return {
            "Bucket": self.bucket,
            "Key": self.key,
            "UploadId": self._upload_id,
            "PartNumber": len(self.parts) + 1,
        }

    def _abort(self) -> None:
        """Abort the upload; a failure here is logged, never raised over the original."""
        try:
            self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
            )
        except Exception as e:
            logger.warning(
                "could not abort multipart upload",
                extra={"bucket": self.bucket, "key": self.key, "error": type(e).__name__},
            )
