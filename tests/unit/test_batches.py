"""aistudios_export.batches, PrepareManifest's step: the manifest read from S3, the plan, the files.

Runs against moto's S3. SummarizeBatch's step is tests/unit/test_batch_summary.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from aistudios_export.batches import BatchSettings, batch_location, prepare_batch
from aistudios_export.errors import ManifestInvalid
from aistudios_export.manifests import MAX_MANIFEST_BYTES, parse_manifest
from tests.unit._fixtures import fake_aws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

P1 = "65fa6b07dca2e367461a2925"
P2 = "65fa6b07dca2e367461a2926"
P3 = "65fa6b07dca2e367461a2927"
DEFAULTS = {"pollSeconds": "15", "timeoutSeconds": "1800", "stallSeconds": "600"}
BUCKET = "aistudios-export-output"
SETTINGS = BatchSettings(bucket=BUCKET, manifest_prefix="manifests/", results_prefix="results/")


@contextmanager
def stack_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    """Moto's S3 with the stack's bucket in it."""
    with fake_aws(monkeypatch):
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    with stack_bucket(monkeypatch) as client:
        yield client


def stored(s3: S3Client, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def prepare(s3: S3Client, key: str, **request: Any) -> dict[str, Any]:
    return prepare_batch(
        {"bucket": BUCKET, "key": key, **request},
        settings=SETTINGS,
        defaults=DEFAULTS,
        s3_client=s3,
    )


def test_prepare_writes_the_rows_and_returns_a_small_plan(s3: S3Client) -> None:
    data = f"projectId,resolution\n{P1},720\nbad,720\n{P1},720\n".encode()
    s3.put_object(Bucket=BUCKET, Key="manifests/jan/a.csv", Body=data)
    plan = prepare(s3, "manifests/jan/a.csv")
    manifest = parse_manifest(data, "manifests/jan/a.csv", defaults=DEFAULTS)
    batch_id, prefix = batch_location(SETTINGS, "manifests/jan/a.csv", manifest.sha256)
    assert prefix == f"results/jan/a.csv/{batch_id}/"
    assert plan["batchId"] == batch_id == manifest.sha256[:16]
    assert plan["manifest"]["sha256"] == manifest.sha256
    assert plan["manifest"]["key"] == "manifests/jan/a.csv"
    assert plan["itemsKey"] == prefix + "items.json"
    assert plan["reportKey"] == prefix + "report.json"
    assert plan["counts"] == {"rows": 3, "accepted": 1, "rejected": 1, "duplicates": 1}
    assert plan["rejected"] == [r.to_dict() for r in manifest.rejected]
    assert stored(s3, plan["itemsKey"]) == list(manifest.items)
    assert stored(s3, plan["rejectedKey"]) == plan["rejected"]
    assert len(json.dumps(plan)) < 2048


def test_prepare_with_a_scope_uses_its_own_place_and_names(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=f"projectId\n{P1}\n".encode())
    first = prepare(s3, "manifests/a.csv", scope="2026-01-01T03:00:00Z")
    second = prepare(s3, "manifests/a.csv", scope="2026-01-02T03:00:00Z")
    plain = prepare(s3, "manifests/a.csv")
    assert len({first["itemsKey"], second["itemsKey"], plain["itemsKey"]}) == 3
    names = {stored(s3, p["itemsKey"])[0]["name"] for p in (first, second, plain)}
    assert len(names) == 3
    assert first["manifest"]["scope"] == "2026-01-01T03:00:00Z"


def test_prepare_reports_an_invalid_manifest_then_fails(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=b"projectId,colour\n")
    with pytest.raises(ManifestInvalid, match="unknown column"):
        prepare(s3, "manifests/a.csv")
    [report_key] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        if o["Key"].startswith("results/")
    ]
    report = stored(s3, report_key)
    assert report["status"] == "FAILED" and report["error"] == "ManifestInvalid"
    assert "unknown column(s) 'colour'" in report["cause"]
    assert report["rows"] == []


def test_prepare_finds_a_url_encoded_key(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/team a/b+c.csv", Body=f"projectId\n{P1}\n".encode())
    plan = prepare(s3, "manifests/team+a/b%2Bc.csv")
    assert plan["manifest"]["key"] == "manifests/team a/b+c.csv"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ("manifests/a.csv", 'the batch input must be a JSON object {"bucket", "key"}'),
        ({"bucket": BUCKET}, 'the batch input must name the manifest: {"bucket", "key"}'),
        (
            {"bucket": "other", "key": "manifests/a.csv"},
            "manifest bucket other is not this stack's",
        ),
        (
            {"bucket": BUCKET, "key": "uploads/a.csv"},
            "manifest uploads/a.csv is not under manifests/",
        ),
        (
            {"bucket": BUCKET, "key": "manifests/a.csv", "scope": "x" * 129},
            "scope: must be a string",
        ),
        ({"bucket": BUCKET, "key": "manifests/a.txt"}, "manifest manifests/a.txt: the file name"),
        (
            {"bucket": BUCKET, "key": "manifests/gone.csv"},
            "manifest s3://aistudios-export-output/manifests/gone.csv does not exist",
        ),
    ],
)
def test_prepare_refuses_what_is_not_a_manifest_of_this_stack(
    s3: S3Client, request_: Any, message: str
) -> None:
    with pytest.raises(ManifestInvalid) as raised:
        prepare_batch(request_, settings=SETTINGS, defaults=DEFAULTS, s3_client=s3)
    assert str(raised.value).startswith(message)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)  # no report, no work file


def test_prepare_never_reads_its_own_files_even_when_prefixes_nest(s3: S3Client) -> None:
    nested = BatchSettings(bucket=BUCKET, manifest_prefix="data/", results_prefix="data/results/")
    s3.put_object(Bucket=BUCKET, Key="data/results/x/report.json", Body=b"[]")
    with pytest.raises(ManifestInvalid, match="is a batch file under data/results/"):
        prepare_batch(
            {"bucket": BUCKET, "key": "data/results/x/report.json"},
            settings=nested,
            defaults=DEFAULTS,
            s3_client=s3,
        )
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [
        "data/results/x/report.json"
    ]


def test_prepare_refuses_a_too_big_object_without_reading_it(s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/big.csv", Body=b"x" * (MAX_MANIFEST_BYTES + 1))
    with pytest.raises(ManifestInvalid, match=f"is {MAX_MANIFEST_BYTES + 1} bytes"):
        prepare(s3, "manifests/big.csv")
