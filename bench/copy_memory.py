"""Peak memory and throughput of URL → S3 copies: the naive download against ``copy_url_to_s3``.

Both methods fetch the same simulated video from `AiStudiosSimulator` over loopback and write to
`DiscardingS3`, a fake S3 client that hashes and counts what it receives and then drops it (moto
would keep every byte in memory and spoil the measurement). Each copy runs twice: once under
`tracemalloc` for the peak of Python-allocated bytes during the call, once untraced for the
wall-clock time. Every copy is verified: the SHA-256 the method reports *and* the SHA-256 of
the bytes the fake S3 received must equal the simulator's `video_sha256`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

import requests

from aistudios_export.transfer import MIB, copy_url_to_s3
from aistudios_export.urlguard import UrlPolicy
from aistudios_local.simulator import AiStudiosSimulator, Scenario, video_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BASELINE = "baseline"
PRODUCT = "product"
METHODS = (BASELINE, PRODUCT)
DEFAULT_PART_SIZE = 8 * MIB
BUCKET = "bench-videos"
_TIMEOUT = (5.0, 120.0)
_API = "/api/odin/v3"
_READ_SIZE = 1 * MIB


@dataclass(frozen=True)
class CopyResult:
    """One measured copy.

    Attributes
    ----------
    size
        Video size in bytes.
    method
        ``"baseline"`` or ``"product"``.
    peak_bytes
        Peak of traced allocations during the call, above what was allocated before it.
    seconds
        Wall-clock time of the untraced run.
    sha256
        Hex SHA-256 the method reported (verified against the simulator's).
    """

    size: int
    method: str
    peak_bytes: int
    seconds: float
    sha256: str

    @property
    def peak_mib(self) -> float:
        """Peak traced memory in MiB."""
        return self.peak_bytes / MIB

    @property
    def mib_per_s(self) -> float:
        """Throughput of the untraced run in MiB/s."""
        return self.size / MIB / self.seconds if self.seconds > 0 else float("inf")


# --- a fake S3 that verifies and discards --------------------------------------------


class _Sink(Protocol):
    def update(self, data: bytes, /) -> None: ...


class _Hash(_Sink, Protocol):
    def digest(self) -> bytes: ...


@dataclass
class _Upload:
    key: str
    digest: _Hash = field(default_factory=hashlib.sha256)  # running hash of parts in order
    size: int = 0
    etags: list[bytes] = field(default_factory=list)
    part_checksums: list[bytes] = field(default_factory=list)
    copied_from: _Stored | None = None  # set by upload_part_copy
    copied_bytes: int = 0


@dataclass(frozen=True)
class _Stored:
    size: int
    sha256: bytes
    etag: str


class DiscardingS3:
    """The S3 calls `copy_url_to_s3` and the baseline make, keeping hashes instead of bytes.

    Parts must arrive in order (the product uploads them sequentially), so one running SHA-256
    per upload gives the stored object's full hash, which ``copy_object`` reports as S3 does.
    """

    def __init__(self) -> None:
        self._uploads: dict[str, _Upload] = {}
        self._objects: dict[tuple[str, str], dict[str, _Stored]] = {}
        self._ids = itertools.count(1)
        self.bytes_received = 0

    def stored(self, bucket: str, key: str) -> _Stored:
        """Return the only stored version of ``bucket/key`` (fails if there is not exactly one)."""
        versions = self._objects.get((bucket, key), {})
        if len(versions) != 1:
            raise AssertionError(f"{bucket}/{key} has {len(versions)} versions, not 1")
        return next(iter(versions.values()))

    def _store(self, bucket: str, key: str, obj: _Stored) -> str:
        version = f"v{next(self._ids)}"
        self._objects.setdefault((bucket, key), {})[version] = obj
        return version

    def _consume(self, body: bytes | IO[bytes], digest: _Sink) -> int:
        """Hash and count ``body`` a slice at a time, as an HTTP sender would stream it."""
        if isinstance(body, bytes | bytearray):
            body = io.BytesIO(body)
        n = 0
        while chunk := body.read(_READ_SIZE):
            digest.update(chunk)
            n += len(chunk)
        self.bytes_received += n
        return n

    def put_object(self, **params: Any) -> dict[str, Any]:
        """Store a whole object in one request (the baseline's call)."""
        digest = hashlib.sha256()
        size = self._consume(params["Body"], digest)
        etag = f'"{hashlib.md5(digest.digest(), usedforsecurity=False).hexdigest()}"'
        version = self._store(params["Bucket"], params["Key"], _Stored(size, digest.digest(), etag))
        return {"ETag": etag, "VersionId": version}

    def create_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Start an upload."""
        upload_id = f"upload-{next(self._ids)}"
        self._uploads[upload_id] = _Upload(params["Key"])
        return {"Bucket": params["Bucket"], "Key": params["Key"], "UploadId": upload_id}

    def upload_part(self, **params: Any) -> dict[str, Any]:
        """Accept the next part (the product sends it with a CRC32 for S3 to verify)."""
        upload = self._uploads[params["UploadId"]]
        if params["PartNumber"] != len(upload.etags) + 1:
            raise AssertionError("parts must arrive in order")
        part_digest = hashlib.sha256()
        n = self._consume(params["Body"], _Tee(part_digest, upload.digest))
        upload.size += n
        upload.part_checksums.append(part_digest.digest())
        etag = hashlib.md5(part_digest.digest(), usedforsecurity=False).digest()
        upload.etags.append(etag)
        return {"ETag": f'"{etag.hex()}"'}

    def put_object_tagging(self, **params: Any) -> dict[str, Any]:
        """Tag a stored version (the product's SHA-256); tags are not kept."""
        versions = self._objects.get((params["Bucket"], params["Key"]), {})
        if params.get("VersionId") not in versions:
            raise AssertionError("tagging a version that does not exist")
        return {}

    def upload_part_copy(self, **params: Any) -> dict[str, Any]:
        """Copy a contiguous byte range of an existing object (for objects over 5 GiB)."""
        upload = self._uploads[params["UploadId"]]
        source = params["CopySource"]
        obj = self._objects[(source["Bucket"], source["Key"])][source["VersionId"]]
        if params.get("CopySourceIfMatch") not in (None, obj.etag):
            raise AssertionError("CopySourceIfMatch does not match")
        start, end = (int(x) for x in params["CopySourceRange"].removeprefix("bytes=").split("-"))
        if start != upload.copied_bytes or (upload.copied_from not in (None, obj)):
            raise AssertionError("copied ranges must be contiguous, from one source")
        upload.copied_from, upload.copied_bytes = obj, end + 1
        etag = hashlib.md5(f"{start}-{end}".encode(), usedforsecurity=False).digest()
        upload.etags.append(etag)
        return {"CopyPartResult": {"ETag": f'"{etag.hex()}"'}}

    def complete_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Assemble the parts; answer a composite checksum, as S3 does for SHA-256 uploads."""
        upload = self._uploads.pop(params["UploadId"])
        parts = params["MultipartUpload"]["Parts"]
        if [p["ETag"] for p in parts] != [f'"{e.hex()}"' for e in upload.etags]:
            raise AssertionError("completed parts are not the uploaded parts")
        md5 = hashlib.md5(b"".join(upload.etags), usedforsecurity=False).hexdigest()
        etag = f'"{md5}-{len(parts)}"'
        answer: dict[str, Any] = {"Bucket": params["Bucket"], "Key": params["Key"], "ETag": etag}
        if upload.copied_from is not None:
            if upload.copied_bytes != upload.copied_from.size:
                raise AssertionError("the copied ranges do not cover the source")
            stored = _Stored(upload.copied_from.size, upload.copied_from.sha256, etag)
        else:
            stored = _Stored(upload.size, upload.digest.digest(), etag)
            composite = hashlib.sha256(b"".join(upload.part_checksums)).digest()
            answer["ChecksumSHA256"] = f"{base64.b64encode(composite).decode()}-{len(parts)}"
            answer["ChecksumType"] = "COMPOSITE"
        answer["VersionId"] = self._store(params["Bucket"], params["Key"], stored)
        return answer

    def copy_object(self, **params: Any) -> dict[str, Any]:
        """Copy a version to a new one, answering the full-object SHA-256 of the copy."""
        source = params["CopySource"]
        obj = self._objects[(source["Bucket"], source["Key"])][source["VersionId"]]
        if params.get("CopySourceIfMatch") not in (None, obj.etag):
            raise AssertionError("CopySourceIfMatch does not match")
        version = self._store(params["Bucket"], params["Key"], obj)
        checksum = base64.b64encode(obj.sha256).decode()
        result = {"ETag": obj.etag, "ChecksumSHA256": checksum, "ChecksumType": "FULL_OBJECT"}
        return {"CopyObjectResult": result, "VersionId": version}

    def delete_object(self, **params: Any) -> dict[str, Any]:
        """Delete one version (or, without ``VersionId``, every version)."""
        versions = self._objects.get((params["Bucket"], params["Key"]), {})
        if "VersionId" in params:
            versions.pop(params["VersionId"], None)
        else:
            versions.clear()
        return {}

    def abort_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Forget an upload."""
        self._uploads.pop(params["UploadId"], None)
        return {}


class _Tee:
    """Feed one stream into two hashes."""

    def __init__(self, *digests: _Sink) -> None:
        self._digests = digests

    def update(self, data: bytes) -> None:
        for digest in self._digests:
            digest.update(data)


# --- the two methods -------------------------------------------------------------------


def copy_baseline(url: str, s3: DiscardingS3, key: str) -> str:
    """Copy the way the seed's tutorials do: the whole body in memory, then one PUT.

    Parameters
    ----------
    url
        The download URL.
    s3
        Where to write.
    key
        The object key.

    Returns
    -------
    str
        Hex SHA-256 of the downloaded bytes.
    """
    response = requests.get(url, timeout=_TIMEOUT)
    response.raise_for_status()
    content = response.content
    s3.put_object(Bucket=BUCKET, Key=key, Body=content, ContentType="video/mp4")
    return hashlib.sha256(content).hexdigest()


def copy_product(url: str, s3: DiscardingS3, key: str, *, origin: str, part_size: int) -> str:
    """Copy with `aistudios_export.transfer.copy_url_to_s3`.

    Parameters
    ----------
    url
        The download URL.
    s3
        Where to write.
    key
        The object key.
    origin
        The simulator's base URL, the one origin the URL policy trusts.
    part_size
        Bytes per multipart part.

    Returns
    -------
    str
        Hex SHA-256 that ``copy_url_to_s3`` reports.
    """
    stored = copy_url_to_s3(
        lambda: url,
        s3_client=cast("S3Client", s3),
        bucket=BUCKET,
        key=key,
        metadata={"bench": "1"},
        policy=UrlPolicy.from_trusted_origin(origin),
        part_size=part_size,
        uploaders=1,  # parts in order, so that DiscardingS3 can hash the object as they come
        timeout=_TIMEOUT,
    )
    return stored.sha256


# --- measuring -------------------------------------------------------------------------


def download_url(sim: AiStudiosSimulator, size: int) -> str:
    """Export a project whose video is ``size`` bytes on the simulator; return its download URL.

    Parameters
    ----------
    sim
        A running simulator.
    size
        The video size in bytes.

    Returns
    -------
    str
        A signed download URL (reusable for the simulator's URL lifetime of an hour).
    """
    project_id = f"{size:024x}"
    sim.set_scenario(project_id, Scenario(progress_steps=(100.0,), video_size=size))
    headers = {"Authorization": sim.issue_token()}
    with requests.Session() as session:
        session.post(
            f"{sim.base_url}{_API}/editor/project/export",
            json={"projectId": project_id},
            headers=headers,
            timeout=_TIMEOUT,
        ).raise_for_status()
        progress = session.get(
            f"{sim.base_url}{_API}/editor/progress/{project_id}", headers=headers, timeout=_TIMEOUT
        )
        progress.raise_for_status()
    return str(progress.json()["data"]["downloadUrl"])


def _traced_peak(call: Callable[[], str]) -> tuple[str, int]:
    """Run ``call`` under tracemalloc; return its result and its peak above the start."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak - before


def measure(
    sim: AiStudiosSimulator,
    size: int,
    method: str,
    *,
    part_size: int = DEFAULT_PART_SIZE,
    expected_sha256: str | None = None,
) -> CopyResult:
    """Copy a ``size``-byte video with ``method`` twice (traced, then timed) and verify both.

    Parameters
    ----------
    sim
        A running simulator.
    size
        Video size in bytes.
    method
        ``"baseline"`` or ``"product"``.
    part_size
        The product's part size.
    expected_sha256
        The video's SHA-256, if already known (computing it streams the video once more).

    Returns
    -------
    CopyResult
        The measurement.

    Raises
    ------
    AssertionError
        A copy reported, or the fake S3 received, bytes that are not the video.
    ValueError
        ``method`` is not one of `METHODS`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    url = download_url(sim, size)
    expected = expected_sha256 or video_sha256(f"{size:024x}", "1080", size)
    key = f"bench/{method}/{size}.mp4"

    def copy(s3: DiscardingS3) -> str:
        if method == BASELINE:
            return copy_baseline(url, s3, key)
        return copy_product(url, s3, key, origin=sim.base_url, part_size=part_size)

    traced_s3 = DiscardingS3()
    sha, peak = _traced_peak(lambda: copy(traced_s3))
    _verify(traced_s3, key, size, expected, sha)
    timed_s3 = DiscardingS3()
    start = time.perf_counter()
    sha = copy(timed_s3)
    seconds = time.perf_counter() - start
    _verify(timed_s3, key, size, expected, sha)
    return CopyResult(size=size, method=method, peak_bytes=peak, seconds=seconds, sha256=sha)


def _verify(s3: DiscardingS3, key: str, size: int, expected: str, reported: str) -> None:
    stored = s3.stored(BUCKET, key)
    if reported != expected or stored.sha256.hex() != expected or stored.size != size:
        raise AssertionError(f"{key}: the copied bytes are not the video")


def run(
    sizes_mib: Iterable[int],
    *,
    part_size: int = DEFAULT_PART_SIZE,
    methods: Iterable[str] = METHODS,
) -> list[CopyResult]:
    """Measure every method at every size against one simulator.

    Parameters
    ----------
    sizes_mib
        Video sizes in MiB.
    part_size
        The product's part size.
    methods
        Which methods to measure.

    Returns
    -------
    list[CopyResult]
        One result per (size, method), in that order.
    """
    results = []
    with AiStudiosSimulator() as sim:
        for size_mib in sizes_mib:
            size = size_mib * MIB
            expected = video_sha256(f"{size:024x}", "1080", size)
            for method in methods:
                results.append(
                    measure(sim, size, method, part_size=part_size, expected_sha256=expected)
                )
    return results


def format_table(results: Iterable[CopyResult]) -> str:
    """Render results as a fixed-width table.

    Parameters
    ----------
    results
        The measurements.

    Returns
    -------
    str
        Header and one line per result.
    """
    lines = [f"{'size MiB':>9}  {'method':<9} {'peak MiB':>9} {'MiB/s':>8}"]
    for r in results:
        lines.append(f"{r.size / MIB:>9.0f}  {r.method:<9} {r.peak_mib:>9.1f} {r.mib_per_s:>8.1f}")
    return "\n".join(lines)


def memory_bound(part_size: int) -> int:
    """Return the claimed bound on the product's peak memory: 3 parts plus 16 MiB.

    Parameters
    ----------
    part_size
        The product's part size.

    Returns
    -------
    int
        Bytes.
    """
    return 3 * part_size + 16 * MIB
