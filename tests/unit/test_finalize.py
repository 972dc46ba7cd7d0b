"""workflow.finalize_export retried: a dead attempt's open upload, a finished attempt's object.

A Lambda that times out or runs out of memory mid-copy leaves an open multipart upload and
cannot abort it; a retried finalize of an export that was already stored must not store a
second version. Moto S3, a loopback download server and a fake AI Studios API.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from aistudios_export import workflow
from aistudios_export.checksums import previous_copy
from aistudios_export.client import Progress
from aistudios_export.errors import StorageError
from aistudios_export.models import ExportRequest, Job
from aistudios_export.settings import OutputSettings
from tests.unit._downloads import DownloadServer, payload, serve
from tests.unit._fixtures import PROJECT_ID, T0, FakeApi
from tests.unit._s3 import BUCKET

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DATA = payload(6 * 1024 * 1024 + 321)
METADATA = {"projectid": PROJECT_ID, "resolution": "1080"}


@pytest.fixture
def server(running_server: DownloadServer) -> DownloadServer:
    running_server.reset().routes["/video"] = serve(DATA)
    return running_server


def new_job(resolution: str = "1080") -> dict[str, Any]:
    request = ExportRequest.parse({"projectId": PROJECT_ID, "resolution": resolution}, {})
    return Job.start(request, T0).to_dict()


def finalize(job: dict[str, Any], s3: S3Client, server: DownloadServer) -> tuple[Any, FakeApi]:
    api = FakeApi([Progress(state="completed", progress=100, download_url=server.url("/video"))])
    output = OutputSettings(
        bucket=BUCKET,
        prefix="exports/",
        trusted_download_origin=server.origin,
        part_size=5 * 1024 * 1024,
    )
    return workflow.finalize_export(job, api=api, s3_client=s3, output=output), api


def key_of(job: dict[str, Any]) -> str:
    return workflow.object_key("exports/", Job.from_dict(job))


def versions_of(s3: S3Client, key: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]


def uploads_of(s3: S3Client, key: str) -> list[str]:
    listed = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return [u["UploadId"] for u in listed if u["Key"] == key]


def test_a_dead_attempts_open_upload_is_aborted_and_one_version_stored(
    s3: S3Client, server: DownloadServer
) -> None:
    job = new_job()
    key = key_of(job)
    dead = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key=key, UploadId=dead, PartNumber=1, Body=b"x" * 5_242_880)
    neighbour = s3.create_multipart_upload(Bucket=BUCKET, Key=key + ".tmp")["UploadId"]

    video, _ = finalize(job, s3, server)

    assert uploads_of(s3, key) == []
    assert uploads_of(s3, key + ".tmp") == [neighbour]  # exact key only
    assert versions_of(s3, key) == [video["versionId"]]
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == DATA


def test_a_retried_finalize_returns_the_stored_video_without_downloading_again(
    s3: S3Client, server: DownloadServer
) -> None:
    job = new_job()

    first, _ = finalize(job, s3, server)
    again, api = finalize(job, s3, server)

    assert again == first
    assert first["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert first["size"] == len(DATA)
    assert server.hits == ["/video"]  # one download
    assert api.progress_calls == []  # no download URL was asked for either
    assert versions_of(s3, key_of(job)) == [first["versionId"]]
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=key_of(job), VersionId=first["versionId"])
    assert tags["TagSet"] == [{"Key": "sha256", "Value": first["sha256"]}]


def test_an_unverified_copy_left_by_a_dead_attempt_is_replaced_by_one_version(
    s3: S3Client, server: DownloadServer
) -> None:
    job = new_job()
    key = key_of(job)
    # Completed, then the attempt died before storing the checksum: no sha256 tag.
    s3.put_object(Bucket=BUCKET, Key=key, Body=DATA[:100], Metadata=METADATA)

    video, _ = finalize(job, s3, server)

    assert server.hits == ["/video"]
    assert versions_of(s3, key) == [video["versionId"]]
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == DATA


@pytest.mark.parametrize(
    ("metadata", "tagging"),
    [
        ({"projectid": "another", "resolution": "1080"}, "sha256=" + "0" * 64),
        ({"projectid": PROJECT_ID, "resolution": "720"}, "sha256=" + "0" * 64),
        ({"projectid": PROJECT_ID, "resolution": "720"}, ""),
        ({"projectid": PROJECT_ID, "resolution": "1080"}, "sha256=not-a-digest"),
    ],
)
def test_an_object_that_is_not_this_jobs_copy_is_neither_reused_nor_deleted(
    s3: S3Client, server: DownloadServer, metadata: dict[str, str], tagging: str
) -> None:
    job = new_job()
    key = key_of(job)
    foreign = s3.put_object(
        Bucket=BUCKET, Key=key, Body=b"something else", Metadata=metadata, Tagging=tagging
    )

    video, _ = finalize(job, s3, server)

    assert server.hits == ["/video"]
    assert video["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == DATA
    assert sorted(versions_of(s3, key)) == sorted([foreign["VersionId"], video["versionId"]])


def test_previous_copy_reads_the_stored_copy_and_nothing_else(
    s3: S3Client, server: DownloadServer
) -> None:
    job = new_job()
    key = key_of(job)
    assert previous_copy(s3, bucket=BUCKET, key=key, metadata=METADATA) is None

    video, _ = finalize(job, s3, server)
    found = previous_copy(s3, bucket=BUCKET, key=key, metadata=METADATA)

    assert found is not None
    assert (found.size, found.sha256, found.version_id, found.content_type) == (
        len(DATA),
        video["sha256"],
        video["versionId"],
        "video/mp4",
    )


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("404", 404, None), ("403", 403, None), ("InternalError", 500, StorageError)],
)
def test_previous_copy_reads_a_missing_key_as_nothing_stored(
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    status: int,
    error: type[Exception] | None,
) -> None:
    # Without s3:ListBucket, S3 answers 403 (not 404) for a key that does not exist.
    def head_object(**_: Any) -> Any:
        answer = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        raise ClientError(answer, "HeadObject")  # type: ignore[arg-type]

    monkeypatch.setattr(s3, "head_object", head_object)
    if error is None:
        assert previous_copy(s3, bucket=BUCKET, key="k", metadata={}) is None
    else:
        with pytest.raises(error, match="HeadObject failed: InternalError"):
            previous_copy(s3, bucket=BUCKET, key="k", metadata={})
