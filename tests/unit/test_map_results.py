"""aistudios_export.map_results: a map run's result files, read a file at a time.

10,000 synthetic entries on moto's S3: the reader makes one GetObject per file (not per row)
and reads each file in chunks no larger than CHUNK_BYTES.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from aistudios_export import map_results
from aistudios_export.errors import ResultsUnreadable
from aistudios_export.map_results import CHUNK_BYTES, iter_json_array, read_map_results
from tests.unit.test_batches import BUCKET, stack_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROWS, PER_FILE = 10_000, 2_500
PREFIX = "results/map-runs/run-1/"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    with stack_bucket(monkeypatch) as client:
        yield client


def entry(n: int) -> dict[str, Any]:
    status = "FAILED" if n % 10 == 0 else "SUCCEEDED"
    result = {"Output": json.dumps({"export": {"n": n}})} if status == "SUCCEEDED" else {}
    return {"Input": json.dumps({"name": f"row-{n}"}), "Status": status, **result}


def write(s3: S3Client) -> dict[str, str]:
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    by_kind: dict[str, list[dict[str, Any]]] = {"FAILED": [], "SUCCEEDED": []}
    for n in range(ROWS):
        by_kind[entry(n)["Status"]].append(entry(n))
    for kind, entries in by_kind.items():
        for number, start in enumerate(range(0, len(entries), PER_FILE)):
            body = json.dumps(entries[start : start + PER_FILE], indent=1).encode()
            key = f"{PREFIX}{kind}_{number}.json"
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            files[kind].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": BUCKET, "MapRunArn": "arn:x", "ResultFiles": files}
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "manifest.json", Body=json.dumps(manifest).encode())
    return {"Bucket": BUCKET, "Key": PREFIX + "manifest.json"}


def test_ten_thousand_rows_take_one_call_per_file(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    details = write(s3)
    calls: list[str] = []
    reads: list[int] = []
    original = s3.get_object

    def get_object(**kwargs: Any) -> Any:
        calls.append(kwargs["Key"])
        answer = original(**kwargs)
        body = answer["Body"]
        read = body.read

        def counted(amount: int | None = None) -> bytes:
            assert amount is not None, "a whole file is never read at once"
            reads.append(amount)
            return read(amount)

        monkeypatch.setattr(body, "read", counted)
        return answer

    monkeypatch.setattr(s3, "get_object", get_object)
    found = list(read_map_results(s3, details))
    assert len(found) == ROWS
    assert sorted(json.loads(e["Input"])["name"] for _, e in found) == sorted(
        f"row-{n}" for n in range(ROWS)
    )
    assert {kind for kind, _ in found} == {"SUCCEEDED", "FAILED"}
    assert all(e["Status"] == kind for kind, e in found)
    # The manifest and 5 files (4 of succeeded rows, 1 of failed ones): 6 calls for 10,000 rows.
    assert len(calls) == 6 and calls[0] == details["Key"]
    assert max(reads[1:]) == CHUNK_BYTES


@pytest.mark.parametrize("size", [1, 2, 7, 4096])
def test_an_array_split_anywhere_reads_the_same(size: int) -> None:
    entries = [{"a": n, "s": "é , ] } [ {" * n} for n in range(20)]
    data = json.dumps(entries, indent=2).encode()
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert list(iter_json_array(chunks, name="x")) == entries


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "not a whole JSON array"),
        (b'{"a": 1}', "not a JSON array"),
        (b"[1, 2]", "something other than objects"),
        (b'[{"a": 1} {"b": 2}]', "not a JSON array of objects"),
        (b'[{"a": 1},]', "not a whole JSON array"),
        (b'[{"a": 1}', "not a whole JSON array"),
        (b'[{"a": 1}] []', "goes on after its array"),
        (b'[{"a": "\xff"}]', "not UTF-8"),
    ],
)
def test_what_is_not_an_array_of_objects_is_refused(text: bytes, message: str) -> None:
    with pytest.raises(ResultsUnreadable, match=message):
        list(iter_json_array([text], name="x"))


def test_an_endless_entry_is_refused_before_it_fills_memory() -> None:
    chunks = [b'[{"a": "'] + [b"x" * 1000] * 100
    with pytest.raises(ResultsUnreadable, match="longer than 5000"):
        list(iter_json_array(chunks, name="x", max_entry_chars=5000))


def test_a_manifest_listing_too_many_files_is_refused(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    details = write(s3)
    monkeypatch.setattr(map_results, "MAX_RESULT_FILES", 3)
    with pytest.raises(ResultsUnreadable, match="more than 3 files"):
        list(read_map_results(s3, details))


# --- finding the map runs of a failed Map ---------------------------------------------------

RUNS = "results/a.csv/0123456789abcdef/map-runs"


def listing(keys: dict[str, int], *, token: str | None = None) -> dict[str, Any]:
    """A ListObjectsV2 page of ``keys`` (key → minute of its LastModified), more if ``token``."""
    contents = [
        {"Key": key, "LastModified": datetime.datetime(2026, 1, 1, 0, m, tzinfo=datetime.UTC)}
        for key, m in keys.items()
    ]
    page: dict[str, Any] = {"Contents": contents, "IsTruncated": token is not None}
    if token is not None:
        page["NextContinuationToken"] = token
    return page


def stubbed_s3() -> S3Client:
    """A client with fake credentials and no moto: a Stubber answers."""
    return boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_map_runs_are_found_by_their_manifests_oldest_first() -> None:
    s3 = stubbed_s3()
    asked = {"Bucket": BUCKET, "Prefix": RUNS + "/", "MaxKeys": map_results.LIST_PAGE_KEYS}
    with Stubber(s3) as stub:
        first = {
            f"{RUNS}/b/manifest.json": 1,
            f"{RUNS}/b/SUCCEEDED_0.json": 1,
            f"{RUNS}/b/deeper/manifest.json": 9,  # not a run's own manifest
        }
        stub.add_response("list_objects_v2", listing(first, token="t"), asked)
        second = {f"{RUNS}/a/manifest.json": 5, f"{RUNS}/c/manifest.json": 0}
        stub.add_response("list_objects_v2", listing(second), {**asked, "ContinuationToken": "t"})
        found = map_results.find_map_runs(s3, BUCKET, RUNS)
        stub.assert_no_pending_responses()
    # By when the manifest was written (the run's end), not by key.
    assert found == [
        {"Bucket": BUCKET, "Key": f"{RUNS}/{run}/manifest.json"} for run in ("c", "b", "a")
    ]


def test_the_search_for_map_runs_is_bounded() -> None:
    s3 = stubbed_s3()
    with Stubber(s3) as stub:
        for page in range(map_results.MAX_LIST_PAGES):
            stub.add_response("list_objects_v2", listing({}, token=str(page)))
        with pytest.raises(ResultsUnreadable, match="not a batch's map runs"):
            map_results.find_map_runs(s3, BUCKET, RUNS)
        stub.assert_no_pending_responses()  # and no call past the bound (Stubber would raise)
