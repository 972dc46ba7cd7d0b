"""Stream a finished video from its download URL into S3, verified, or leave nothing behind.

The body goes through an S3 multipart upload one part at a time (memory is about one part,
whatever the video's size), every part carries its SHA-256 so S3 verifies it, and the SHA-256
of the whole file is computed on the way and stored as the object's ``sha256`` metadata. Any
failure aborts the upload and deletes what was written, so a key holds either the complete
verified video or nothing from this call.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import itertools
import math
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from aistudios_export.aws_errors import translate
from aistudios_export.errors import (
    ConfigurationError,
    DownloadInterrupted,
    DownloadRejected,
    DownloadUrlExpired,
    StorageError,
)
from aistudios_export.urlguard import UrlPolicy, check_url, redact_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

logger = Logger(service="aistudios-export", child=True)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
"""S3's smallest allowed part (every part but the last)."""
MAX_PARTS = 10_000
"""S3's largest allowed part number."""
MAX_COPY_OBJECT_SIZE = 5 * 1024 * MIB
"""The largest object ``CopyObject`` can copy; larger ones are copied with ``UploadPartCopy``."""
COPY_PART_SIZE = 512 * MIB
"""Range size of a multipart (server-side) copy, raised when needed to stay within MAX_PARTS."""
_CHUNK_SIZE = 1 * MIB
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Statuses that say "try again later" rather than "this file will never come".
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
# Everything a cut, reset or timed-out HTTP exchange can raise through requests/urllib3.
_NETWORK_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


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
        response = _open_download(
            ask_download_url, http_session, policy, timeout, max_url_refreshes, max_redirects
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


# --- download -----------------------------------------------------------------------


def _open_download(
    ask_download_url: Callable[[], str],
    session: requests.Session,
    policy: UrlPolicy,
    timeout: tuple[float, float],
    max_url_refreshes: int,
    max_redirects: int,
) -> requests.Response:
    """Return a ``200`` streaming response, asking for fresh URLs after 403s."""
    refreshes = 0
    while True:
        url = ask_download_url()
        response = _get_following_redirects(url, session, policy, timeout, max_redirects)
        status = response.status_code
        if status == 200:
            return response
        response.close()
        where = redact_url(response.url or url)
        if status == 403:
            if refreshes >= max_url_refreshes:
                raise DownloadUrlExpired(
                    f"download URL {where} still answered 403 after {refreshes} fresh URL(s)"
                )
            refreshes += 1
            logger.info("download URL expired (403); asking for a fresh one", extra={"url": where})
            continue
        if status >= 500 or status in _RETRYABLE_CLIENT_STATUSES:
            raise DownloadInterrupted(f"download server answered {status} for {where}")
        raise DownloadRejected(f"download server answered {status} for {where}")


def _get_following_redirects(
    url: str,
    session: requests.Session,
    policy: UrlPolicy,
    timeout: tuple[float, float],
    max_redirects: int,
) -> requests.Response:
    """GET ``url``, following redirects by hand so each hop is checked before connecting."""
    for _ in range(max_redirects + 1):
        check_url(url, policy)
        try:
            # Identity encoding: store the file's own bytes and compare Content-Length with them.
            request = session.prepare_request(
                requests.Request("GET", url, headers={"Accept-Encoding": "identity"})
            )
        except requests.RequestException as e:
            raise DownloadRejected(f"download URL {redact_url(url)} is malformed") from e
        if request.url != url:  # requests normalised it: check what is actually sent
            check_url(request.url or "", policy)
        logger.info("downloading", extra={"url": redact_url(url)})
        try:
            response = session.send(
                request, stream=True, timeout=timeout, allow_redirects=False, verify=True
            )
        except _NETWORK_ERRORS as e:
            raise _interrupted(e, url) from _safe_cause(e, url)
        location = response.headers.get("Location")
        if response.status_code not in _REDIRECT_STATUSES or not location:
            return response
        response.close()
        url = urljoin(url, location)
        logger.info("following redirect", extra={"url": redact_url(url)})
    raise DownloadRejected(f"more than {max_redirects} redirects, last to {redact_url(url)}")


def _expected_length(response: requests.Response) -> int | None:
    """Return the announced body length, when it describes the bytes we will read."""
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None  # iter_content decodes, so the announced length is not ours to compare
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _chunks(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """Yield the body's non-empty chunks, turning a broken stream into DownloadInterrupted."""
    url = response.url
    try:
        for chunk in response.iter_content(chunk_size):
            if chunk:
                yield chunk
    except _NETWORK_ERRORS as e:
        raise _interrupted(e, url) from _safe_cause(e, url)


def _interrupted(error: BaseException, url: str) -> DownloadInterrupted:
    return DownloadInterrupted(
        f"download from {redact_url(url)} was interrupted ({type(error).__name__})"
    )


def _safe_cause(error: BaseException, url: str) -> BaseException | None:
    """Return ``error`` as the cause to chain, or ``None`` if its text shows the URL's secrets.

    requests' connection errors quote the request URL, query string included; a signed URL's
    query must never reach a traceback that a handler may log.
    """
    secret = urlsplit(url).query
    if secret and secret in "".join(traceback.format_exception(error)):
        return None
    return error


# --- upload -------------------------------------------------------------------------


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
    expected = _expected_length(response)
    if expected is not None:
        part_size = max(part_size, math.ceil(expected / MAX_PARTS))
    chunks = _chunks(response, min(_CHUNK_SIZE, part_size))
    # Read the first bytes before creating anything in S3, so an empty answer costs nothing.
    first = next(chunks, None)
    if first is None:
        raise DownloadInterrupted(f"download from {where} delivered no bytes")

    with _storage_errors():
        upload_id = s3_client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ContentType=content_type,
            Metadata=dict(metadata),
            ChecksumAlgorithm="SHA256",
        )["UploadId"]
    digest = hashlib.sha256()
    size = 0
    parts: list[CompletedPartTypeDef] = []
    try:
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
                    parts.append(_upload_part(s3_client, bucket, key, upload_id, parts, part))
                    part = io.BytesIO()
        if part.tell():
            parts.append(_upload_part(s3_client, bucket, key, upload_id, parts, part))
        del part
        if expected is not None and size != expected:
            raise DownloadInterrupted(
                f"download from {where} delivered {size} of the announced {expected} bytes"
            )
        with _storage_errors():
            completed = s3_client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
    except BaseException:
        _abort(s3_client, bucket, key, upload_id)
        raise

    created: list[str | None] = [completed.get("VersionId")]
    try:
        final_version = _store_checksum(
            s3_client,
            bucket=bucket,
            key=key,
            created=created,
            etag=completed["ETag"],
            size=size,
            digest=digest.digest(),
            metadata=metadata,
            content_type=content_type,
        )
    except BaseException:
        _delete_versions(s3_client, bucket, key, created)
        raise
    logger.info(
        "stored video",
        extra={"bucket": bucket, "key": key, "size": size, "parts": len(parts)},
    )
    return StoredObject(
        bucket=bucket,
        key=key,
        size=size,
        sha256=digest.hexdigest(),
        version_id=final_version,
        content_type=content_type,
    )


def _upload_part(
    s3_client: S3Client,
    bucket: str,
    key: str,
    upload_id: str,
    done: list[CompletedPartTypeDef],
    body: io.BytesIO,
) -> CompletedPartTypeDef:
    """Upload the next part with its SHA-256, which S3 verifies before accepting it."""
    number = len(done) + 1
    if number > MAX_PARTS:
        raise DownloadRejected(f"the download needs more than {MAX_PARTS} parts")
    with body.getbuffer() as view:
        checksum = _b64(hashlib.sha256(view).digest())
    body.seek(0)
    with _storage_errors():
        etag = s3_client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )["ETag"]
    return {"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum}


def _store_checksum(
    s3_client: S3Client,
    *,
    bucket: str,
    key: str,
    created: list[str | None],
    etag: str,
    size: int,
    digest: bytes,
    metadata: Mapping[str, str],
    content_type: str,
) -> str | None:
    """Copy the object onto itself with ``sha256`` metadata; return the only version left.

    User metadata can only be set when an object is created, and the whole-file hash is
    known only at the end, so the object is copied (server-side) with the new metadata.
    ``created`` holds the completed upload's version on entry; the copy's is appended, so
    that the caller can delete every version made if anything fails.
    """
    version_id = created[0]
    source: CopySourceTypeDef = {"Bucket": bucket, "Key": key}
    if version_id is not None:
        source["VersionId"] = version_id
    new_metadata = {**metadata, "sha256": digest.hex()}
    copied_checksum: str | None = None
    new_version: str | None
    if size <= MAX_COPY_OBJECT_SIZE:
        with _storage_errors():
            copied = s3_client.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource=source,
                CopySourceIfMatch=etag,
                MetadataDirective="REPLACE",
                Metadata=new_metadata,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
            )
        new_version = copied.get("VersionId")
        result = copied.get("CopyObjectResult", {})
        if result.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            copied_checksum = result.get("ChecksumSHA256")
    else:
        new_version = _multipart_copy(
            s3_client, bucket, key, source, etag, size, new_metadata, content_type
        )
    created.append(new_version)
    # S3 hashed the bytes it holds while copying: they must be the bytes we streamed.
    # (A composite "<hash>-<parts>" checksum is not the file's hash: nothing to compare.)
    if copied_checksum and "-" not in copied_checksum and copied_checksum != _b64(digest):
        raise StorageError(f"s3://{bucket}/{key} holds bytes whose SHA-256 is not the download's")
    if version_id is not None and version_id not in (new_version, "null"):
        # The pre-copy version has no sha256 metadata: remove it so one version remains.
        with _storage_errors():
            s3_client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
    return new_version


def _multipart_copy(
    s3_client: S3Client,
    bucket: str,
    key: str,
    source: CopySourceTypeDef,
    etag: str,
    size: int,
    metadata: Mapping[str, str],
    content_type: str,
) -> str | None:
    """Copy an object larger than CopyObject allows onto itself with UploadPartCopy."""
    with _storage_errors():
        upload_id = s3_client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ContentType=content_type,
            Metadata=dict(metadata),
            ChecksumAlgorithm="SHA256",
        )["UploadId"]
    range_size = max(COPY_PART_SIZE, math.ceil(size / MAX_PARTS))
    parts: list[CompletedPartTypeDef] = []
    try:
        for number, start in enumerate(range(0, size, range_size), start=1):
            end = min(start + range_size, size) - 1
            with _storage_errors():
                result = s3_client.upload_part_copy(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceIfMatch=etag,
                    CopySourceRange=f"bytes={start}-{end}",
                ).get("CopyPartResult", {})
            part: CompletedPartTypeDef = {"PartNumber": number, "ETag": result.get("ETag", "")}
            if "ChecksumSHA256" in result:
                part["ChecksumSHA256"] = result["ChecksumSHA256"]
            parts.append(part)
        with _storage_errors():
            completed = s3_client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
    except BaseException:
        _abort(s3_client, bucket, key, upload_id)
        raise
    return completed.get("VersionId")


# --- S3 helpers ---------------------------------------------------------------------


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Turn botocore's errors inside the block into the library's (StorageError if transient)."""
    try:
        yield
    except ClientError as e:
        raise translate(e, f"S3 {e.operation_name} failed") from e
    except BotoCoreError as e:
        raise translate(e, "S3 call failed") from e


def _abort(s3_client: S3Client, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; a failure here is logged, never raised over the original."""
    try:
        s3_client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as e:
        logger.warning(
            "could not abort multipart upload",
            extra={"bucket": bucket, "key": key, "error": type(e).__name__},
        )


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


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
