"""A moto S3 for the tests of the code that writes videos, and what they check it with.

Shared by the tests of the streaming copy and of the multipart upload: a moto S3 started once
per module, a bucket emptied between tests, a recorder of the S3 operations asked for, a way
to make one client method fail, and the check that nothing at all was left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from aistudios_local.moto_shims import bytes_like_bodies

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "videos"
"""The versioned bucket every test starts with, empty."""


@contextmanager
def moto_s3() -> Iterator[S3Client]:
    """Start moto with fake credentials; yield an S3 client on it.

    Full parts are sent as their ``bytearray`` buffers, which moto takes only with the shim.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            mp.setenv(name, "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws(), bytes_like_bodies():
            yield boto3.client("s3", region_name="us-east-1")


def fresh_buckets(client: S3Client, *others: str) -> S3Client:
    """Delete BUCKET and ``others`` with all they hold; create BUCKET again, versioned."""
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for bucket in (BUCKET, *others):
        if bucket in existing:
            versions = client.list_object_versions(Bucket=bucket)
            for item in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]:
                client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
            for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            client.delete_bucket(Bucket=bucket)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


class S3Calls:
    """What the code under test asked of S3, seen through botocore's event hooks."""

    def __init__(self, client: S3Client) -> None:
        self.operations: list[str] = []
        self.part_sizes: list[int] = []
        self.client = client
        client.meta.events.register("before-parameter-build.s3", self._record)

    def close(self) -> None:
        self.client.meta.events.unregister("before-parameter-build.s3", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.operations.append(model.name)
        if model.name == "UploadPart":
            self.part_sizes.append(len(params["Body"]))


def assert_nothing_stored(s3: S3Client, bucket: str = BUCKET) -> None:
    versions = s3.list_object_versions(Bucket=bucket)
    assert versions.get("Versions", []) == []
    assert versions.get("DeleteMarkers", []) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def failing(operation: str, *, after: int = 0) -> Callable[..., Any]:
    """A client method that succeeds ``after`` times, then raises S3's InternalError."""
    count = 0

    def call(original: Callable[..., Any], **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        if count > after:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, operation)
        return original(**kwargs)

    return call


def patch_client(
    monkeypatch: pytest.MonkeyPatch,
    s3: S3Client,
    name: str,
    wrapper: Callable[..., Any],
) -> None:
    original = getattr(s3, name)
    monkeypatch.setattr(s3, name, lambda **kwargs: wrapper(original, **kwargs))
