"""Read what a Distributed Map's ``ResultWriter`` wrote: one entry per child execution.

Step Functions writes, under ``<prefix>/<map run id>/``, a ``manifest.json``
(``{"DestinationBucket", "MapRunArn", "ResultFiles": {"FAILED", "PENDING", "SUCCEEDED"}}``,
each list of ``{"Key", "Size"}``) and the files it lists: JSON arrays of entries
``{"ExecutionArn", "Input", "Output"?, "Status", "Error"?, "Cause"?, ...}`` whose ``Input``
and ``Output`` are JSON text. :func:`read_map_results` yields those entries with S3 GetObject
only (one call for the manifest and one per file, never one per row), and reads each file as
a stream, so memory holds one entry and one chunk, whatever the file's size.

A Map that fails (its Catch hands over only ``{"Error", "Cause"}``, not the
``ResultWriterDetails``) still has its results written; :func:`find_map_runs` finds their
manifests under the ResultWriter's prefix with a bounded ListObjectsV2.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from aistudios_export.aws_errors import translate
from aistudios_export.errors import ResultsUnreadable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RESULT_KINDS = ("SUCCEEDED", "FAILED", "PENDING")
"""The lists of a manifest's ``ResultFiles``."""
MAX_RESULT_FILES = 1000
"""The most result files a manifest may list (Step Functions starts a new file at 5 GB)."""
MAX_MANIFEST_BYTES = 1 << 20
"""A manifest lists files, not rows: anything larger is not one."""
MAX_ENTRY_CHARS = 2 << 20
"""One entry holds an execution's input and output (256 KiB each at most) and its metadata."""
CHUNK_BYTES = 1 << 16
"""What one read of a result file's stream asks for."""
LIST_PAGE_KEYS = 1000
"""Keys one ListObjectsV2 call returns (S3's most)."""
MAX_LIST_PAGES = 10
"""The most ListObjectsV2 calls looking for map runs (each is a manifest and a few files)."""


def read_map_results(
    s3_client: S3Client, details: Mapping[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(kind, entry)`` for every child execution a map run's results list.

    Parameters
    ----------
    s3_client
        Reads the manifest and its files (``s3:GetObject``).
    details
        The Map's ``ResultWriterDetails``: ``{"Bucket", "Key"}`` of its ``manifest.json``.

    Yields
    ------
    tuple
        ``(kind, entry)``: ``kind`` is the file's list (``SUCCEEDED``, ``FAILED``, ``PENDING``),
        ``entry`` one child execution as Step Functions wrote it.

    Raises
    ------
    ResultsUnreadable
        When the manifest or a file is not what Step Functions writes.
    StorageError, ConfigurationError
        When S3 fails (the first is worth retrying).
    """
    bucket, key = str(details.get("Bucket", "")), str(details.get("Key", ""))
    if not bucket or not key.endswith("manifest.json"):
        raise ResultsUnreadable(f"the map run's results are not a manifest: {dict(details)}")
    body = _open(s3_client, bucket, key)
    try:
        data = body.read(MAX_MANIFEST_BYTES + 1)
    except BotoCoreError as e:
        raise translate(e, f"could not read {key}") from None
    finally:
        body.close()
    if len(data) > MAX_MANIFEST_BYTES:
        raise ResultsUnreadable(f"{key} is larger than {MAX_MANIFEST_BYTES} bytes")
    for kind, file_key in _result_files(key, data):
        for entry in _entries(s3_client, bucket, file_key):
            yield kind, entry


def find_map_runs(s3_client: S3Client, bucket: str, prefix: str) -> list[dict[str, str]]:
    """Return the location of every map run's ``manifest.json`` under a ResultWriter prefix.

    Parameters
    ----------
    s3_client
        Lists the prefix (``s3:ListBucket``, for that prefix only).
    bucket, prefix
        The ResultWriter's ``Bucket`` and ``Prefix``: each map run writes its files under
        ``<prefix>/<map run id>/``.

    Returns
    -------
    list of dict
        ``{"Bucket", "Key"}``, as a Map's ``ResultWriterDetails``, oldest first: by the time the
        manifest (written after its files, when the run ended) was stored, then by key.

    Raises
    ------
    ResultsUnreadable
        When the prefix holds more keys than :data:`MAX_LIST_PAGES` pages: not a batch's runs.
    StorageError, ConfigurationError
        When S3 fails (the first is worth retrying).
    """
    folder = prefix if prefix.endswith("/") else prefix + "/"
    found: list[tuple[Any, str]] = []
    token = ""
    for _ in range(MAX_LIST_PAGES):
        try:
            if token:
                page = s3_client.list_objects_v2(
                    Bucket=bucket, Prefix=folder, MaxKeys=LIST_PAGE_KEYS, ContinuationToken=token
                )
            else:
                page = s3_client.list_objects_v2(
                    Bucket=bucket, Prefix=folder, MaxKeys=LIST_PAGE_KEYS
                )
        except (BotoCoreError, ClientError) as e:
            raise translate(e, f"could not list {folder}") from None
        for listed in page.get("Contents", []):
            run_id, _, name = listed["Key"][len(folder) :].partition("/")
            if run_id and name == "manifest.json":
                found.append((listed["LastModified"], listed["Key"]))
        if not page.get("IsTruncated"):
            return [{"Bucket": bucket, "Key": key} for _, key in sorted(found)]
        token = page["NextContinuationToken"]
    raise ResultsUnreadable(
        f"{folder} holds more than {MAX_LIST_PAGES * LIST_PAGE_KEYS} keys: not a batch's map runs"
    )


def _result_files(manifest_key: str, data: bytes) -> list[tuple[str, str]]:
    try:
        manifest = json.loads(data)
        files = [
            (kind, str(f["Key"]))
            for kind in RESULT_KINDS
            for f in manifest["ResultFiles"].get(kind) or []
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ResultsUnreadable(f"{manifest_key} is not a map run's manifest: {e}") from None
    if len(files) > MAX_RESULT_FILES:
        raise ResultsUnreadable(f"{manifest_key} lists more than {MAX_RESULT_FILES} files")
    # The files sit beside their manifest: nothing else of the bucket is read.
    folder = manifest_key.rsplit("/", 1)[0] + "/" if "/" in manifest_key else ""
    for _, file_key in files:
        if not file_key.startswith(folder) or "/" in file_key[len(folder) :]:
            raise ResultsUnreadable(f"{manifest_key} lists {file_key}, outside its folder")
    return files


def _open(s3_client: S3Client, bucket: str, key: str) -> Any:
    try:
        return s3_client.get_object(Bucket=bucket, Key=key)["Body"]
    except (BotoCoreError, ClientError) as e:
        raise translate(e, f"could not read {key}") from None


def _entries(s3_client: S3Client, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    body = _open(s3_client, bucket, key)
    try:
        yield from iter_json_array(_chunks(body, key), name=key)
    finally:
        body.close()


def _chunks(body: Any, key: str) -> Iterator[bytes]:
    while True:
        try:
            chunk = body.read(CHUNK_BYTES)
        except BotoCoreError as e:
            raise translate(e, f"could not read {key}") from None
        if not chunk:
            return
        yield chunk


def iter_json_array(
    chunks: Iterable[bytes], *, name: str, max_entry_chars: int = MAX_ENTRY_CHARS
) -> Iterator[dict[str, Any]]:
    """Yield the objects of a JSON array of objects, read chunk by chunk.

    Parameters
    ----------
    chunks
        The array's UTF-8 bytes, in pieces of any size.
    name
        What the array is, for errors.
    max_entry_chars
        The longest object accepted: memory holds at most one object and one chunk.

    Raises
    ------
    ResultsUnreadable
        When the text is not a JSON array of objects, or an object is too long.

    Examples
    --------
    >>> list(iter_json_array([b'[{"a": 1}, {', b'"b": 2}]'], name="x"))
    [{'a': 1}, {'b': 2}]
    """
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    # What comes next: "[" opens, then a value or "]", then "," or "]", until the end.
    buffer, expected = "", "["
    pieces = iter(chunks)
    while True:
        chunk = next(pieces, None)
        try:
            buffer += text.decode(chunk or b"", final=chunk is None)
        except UnicodeDecodeError as e:
            raise ResultsUnreadable(f"{name} is not UTF-8: {e}") from None
        at = 0
        while True:
            at = _skip_space(buffer, at)
            if at < len(buffer) and expected == "end":
                raise ResultsUnreadable(f"{name} goes on after its array")
            if at == len(buffer):
                break
            char = buffer[at]
            if expected == "[":
                if char != "[":
                    raise ResultsUnreadable(f"{name} is not a JSON array")
                at, expected = at + 1, "first"
            elif expected in ("first", "value") and not (expected == "first" and char == "]"):
                try:
                    value, at_end = decoder.raw_decode(buffer, at)
                except ValueError:
                    if len(buffer) - at > max_entry_chars:
                        raise ResultsUnreadable(
                            f"{name} has an entry longer than {max_entry_chars} characters"
                        ) from None
                    break  # the entry goes on in the next chunk
                if not isinstance(value, dict):
                    raise ResultsUnreadable(f"{name} holds something other than objects")
                at, expected = at_end, "separator"
                yield value
            elif char == "]":
                at, expected = at + 1, "end"
            elif char == "," and expected == "separator":
                at, expected = at + 1, "value"
            else:
                raise ResultsUnreadable(f"{name} is not a JSON array of objects")
        buffer = buffer[at:]
        if chunk is None:
            break
    if expected != "end" or buffer.strip():
        raise ResultsUnreadable(f"{name} is not a whole JSON array")


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at
