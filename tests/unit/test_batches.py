"""aistudios_export.batches, PrepareManifest's step: the manifest read from S3, the plan, the files.

Runs against moto's S3; an AWS failure is a client method patched to raise the ``ClientError``
botocore raises for that answer. SummarizeBatch's step is tests/unit/test_batch_summary.py's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from aistudios_export import errors
from aistudios_export.batches import (
    REPORTED_REJECTIONS,
    BatchSettings,
    batch_location,
    prepare_batch,
)
from aistudios_export.errors import (
    ConfigurationError,
    ExportError,
    ManifestInvalid,
    StorageError,
    TransientError,
)
from aistudios_export.manifests import MAX_MANIFEST_BYTES, parse_manifest
from tests.unit import _template
from tests.unit._asl import all_states
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
    # The Map's ResultWriter prefix: the batch's own, so a failed Map's results are found.
    assert plan["mapRunsPrefix"].startswith(prefix)
    assert plan["mapRunsPrefix"].rstrip("/") != prefix.rstrip("/")
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


class CountingBody:
    """A streaming body of ``size`` bytes that counts the bytes read from it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.bytes_read = 0
        self.closed = False

    def read(self, amt: int | None = None) -> bytes:
        left = self.size - self.bytes_read
        count = left if amt is None or amt < 0 else min(amt, left)
        self.bytes_read += count
        return b"x" * count

    def close(self) -> None:
        self.closed = True


def with_body(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch, body: CountingBody, **fields: Any
) -> None:
    """Make S3 answer GetObject with ``body`` (and ``fields``) in place of the object's own."""
    get_object = s3.get_object

    def answer(**kwargs: Any) -> Any:
        return {**get_object(**kwargs), "Body": body, **fields}

    monkeypatch.setattr(s3, "get_object", answer)


def only_the_manifest_is_stored(s3: S3Client, key: str) -> bool:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key]


def test_prepare_refuses_a_too_big_object_without_reading_it(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/big.csv", Body=b"x" * (MAX_MANIFEST_BYTES + 1))
    body = CountingBody(MAX_MANIFEST_BYTES + 1)
    with_body(s3, monkeypatch, body)
    with pytest.raises(ManifestInvalid, match=f"is {MAX_MANIFEST_BYTES + 1} bytes"):
        prepare(s3, "manifests/big.csv")
    assert body.bytes_read == 0 and body.closed
    assert only_the_manifest_is_stored(s3, "manifests/big.csv")


def test_prepare_reads_no_more_than_the_limit_of_an_object_of_unknown_size(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An answer without ContentLength (or a wrong one) must not make a 50 MB read.
    s3.put_object(Bucket=BUCKET, Key="manifests/big.csv", Body=f"projectId\n{P1}\n".encode())
    body = CountingBody(50 * 1024 * 1024)
    with_body(s3, monkeypatch, body, ContentLength=20)
    with pytest.raises(ManifestInvalid) as raised:
        prepare(s3, "manifests/big.csv")
    assert str(raised.value) == (
        f"manifest manifests/big.csv is more than {MAX_MANIFEST_BYTES} bytes; at most "
        f"{MAX_MANIFEST_BYTES} are allowed (split it into several files)"
    )
    assert body.bytes_read == MAX_MANIFEST_BYTES + 1 and body.closed
    assert only_the_manifest_is_stored(s3, "manifests/big.csv")


def test_the_plan_carries_the_first_rejections_and_the_file_all_of_them(s3: S3Client) -> None:
    bad = [f"bad-{i}" for i in range(REPORTED_REJECTIONS + 3)]
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body="\n".join(["projectId", P1, *bad]))
    plan = prepare(s3, "manifests/a.csv")
    every = stored(s3, plan["rejectedKey"])
    assert [(r["row"], r["projectId"]) for r in every] == [(i + 2, b) for i, b in enumerate(bad)]
    assert plan["rejected"] == every[:REPORTED_REJECTIONS]
    assert plan["counts"]["rejected"] == len(bad)


def test_the_rows_for_the_map_end_their_output_prefix_in_one_slash(s3: S3Client) -> None:
    rows = [{"projectId": P1, "outputPrefix": "team-a"}, {"projectId": P2, "outputPrefix": "b/c/"}]
    s3.put_object(Bucket=BUCKET, Key="manifests/a.json", Body=json.dumps(rows))
    plan = prepare(s3, "manifests/a.json")
    items = stored(s3, plan["itemsKey"])
    assert [i["input"]["outputPrefix"] for i in items] == ["team-a/", "b/c/"]


# --- AWS failures: retried when transient, final otherwise --------------------------------


def raising(error: Exception) -> Callable[..., Any]:
    """A client method that raises ``error`` whatever it is asked."""

    def call(**kwargs: Any) -> Any:
        raise error

    return call


def client_error(code: str, status: int, operation: str) -> ClientError:
    """The error botocore raises for an answer with this code and HTTP status."""
    answer = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(answer, operation)  # type: ignore[arg-type]


def batch_prefix(s3: S3Client, key: str) -> str:
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return batch_location(SETTINGS, key, hashlib.sha256(data).hexdigest())[1]


def batch_machine() -> dict[str, Any]:
    return _template.definition("BatchStateMachine")


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        # A 5xx whose code names nothing: botocore's code for a body it cannot parse.
        (client_error("502", 502, "GetObject"), StorageError, "manifests/a.csv: 502"),
        (client_error("SlowDown", 503, "GetObject"), StorageError, "manifests/a.csv: SlowDown"),
        # A code that names throttling, whatever its status.
        (client_error("Throttled", 400, "GetObject"), StorageError, "manifests/a.csv: Throttled"),
        (
            EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"),
            StorageError,
            "manifests/a.csv: EndpointConnectionError",
        ),
        (
            client_error("KMS.DisabledException", 400, "GetObject"),
            ConfigurationError,
            "manifests/a.csv: KMS.DisabledException",
        ),
    ],
)
def test_a_failed_read_of_the_manifest(
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    expected: type[ExportError],
    message: str,
) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=f"projectId\n{P1}\n".encode())
    monkeypatch.setattr(s3, "get_object", raising(error))
    with pytest.raises(ExportError) as raised:
        prepare(s3, "manifests/a.csv")
    assert type(raised.value) is expected
    assert str(raised.value) == f"could not read manifest {message}"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["manifests/a.csv"]


def test_a_manifest_that_may_not_be_read_is_reported_as_missing(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without s3:ListBucket, S3 answers a missing key with AccessDenied.
    monkeypatch.setattr(s3, "get_object", raising(client_error("AccessDenied", 403, "GetObject")))
    with pytest.raises(ManifestInvalid, match=r"manifests/a\.csv does not exist \(or may not be"):
        prepare(s3, "manifests/a.csv")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [("AccessDenied", 403, ConfigurationError), ("503", 503, StorageError)],
)
def test_a_failed_write_of_the_rows(
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    status: int,
    expected: type[ExportError],
) -> None:
    s3.put_object(Bucket=BUCKET, Key="manifests/a.csv", Body=f"projectId\n{P1}\n".encode())
    monkeypatch.setattr(s3, "put_object", raising(client_error(code, status, "PutObject")))
    with pytest.raises(ExportError) as raised:
        prepare(s3, "manifests/a.csv")
    assert type(raised.value) is expected
    prefix = batch_prefix(s3, "manifests/a.csv")
    assert str(raised.value) == f"could not write {prefix}items.json: {code}"


def test_the_batch_machine_retries_only_the_transient_errors_of_its_steps() -> None:
    states = batch_machine()["States"]
    for state in ("PrepareManifest", "SummarizeBatch"):
        # Names with a dot are the services' own (States.*, Lambda.*, Sfn.*); ours have none.
        ours = {e for r in states[state]["Retry"] for e in r["ErrorEquals"] if "." not in e}
        assert StorageError.__name__ in ours, state
        assert all(issubclass(getattr(errors, name), TransientError) for name in ours), state


def test_every_error_name_of_the_batch_machine_is_an_error_class() -> None:
    machine = batch_machine()
    names = {s["Error"] for _, s in all_states(machine) if "Error" in s}
    names |= {
        e
        for _, s in all_states(machine)
        for rule in s.get("Retry", []) + s.get("Catch", [])
        for e in rule["ErrorEquals"]
    }
    for name in sorted(n for n in names if "." not in n):
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, ExportError), name
    assert errors.ExportNotSucceeded.__name__ in names
