"""copy_url_to_s3: a real loopback HTTP server streaming into moto S3.

Only 127.0.0.1 can be reached (pytest-socket), so a redirect that the guard failed to stop
would fail the test with a blocked connection.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import math
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import certifi
import pytest
import urllib3
from botocore.exceptions import ClientError

from aistudios_export.download import OpenDownload, body_chunks
from aistudios_export.errors import (
    ConfigurationError,
    DownloadInterrupted,
    DownloadRejected,
    DownloadUrlExpired,
    ForbiddenDownloadUrl,
    StorageError,
)
from aistudios_export.observability import install_url_redaction
from aistudios_export.pinning import PinnedPools
from aistudios_export.settings import GIB
from aistudios_export.transfer import MIB, StoredObject, copy_url_to_s3, fitted_part_size
from aistudios_export.transport import CA_BUNDLE_VARIABLES, ca_bundle
from aistudios_export.urlguard import CheckedUrl, UrlPolicy, check_url
from tests.unit._downloads import (
    SECRET,
    DownloadServer,
    free_port,
    payload,
    redirect,
    serve,
    status,
)
from tests.unit._s3 import (
    BUCKET,
    S3Calls,
    assert_nothing_stored,
    failing,
    patch_client,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PART = 5 * 1024 * 1024  # S3's (and moto's) smallest non-last part
KEY = "exports/p1/1080p/video.mp4"
METADATA = {"projectid": "p1", "resolution": "1080p"}


# --- S3 -----------------------------------------------------------------------------


@pytest.fixture
def calls(s3: S3Client) -> Iterator[S3Calls]:
    recorder = S3Calls(s3)
    yield recorder
    recorder.close()


def urls(*values: str) -> tuple[Callable[[], str], list[str]]:
    """An ask_download_url handing out ``values`` in turn (the last one forever), logging calls."""
    handed: list[str] = []

    def ask_download_url() -> str:
        handed.append(values[min(len(handed), len(values) - 1)])
        return handed[-1]

    return ask_download_url, handed


def copy(
    ask_download_url: Callable[[], str], s3: S3Client, server: DownloadServer, **kwargs: Any
) -> StoredObject:
    kwargs.setdefault("part_size", PART)
    return copy_url_to_s3(
        ask_download_url,
        s3_client=s3,
        bucket=kwargs.pop("bucket", BUCKET),
        key=KEY,
        metadata=METADATA,
        policy=UrlPolicy.from_trusted_origin(server.origin),
        **kwargs,
    )


def tags(s3: S3Client, bucket: str, version_id: str | None) -> dict[str, str]:
    where: dict[str, Any] = {"Bucket": bucket, "Key": KEY}
    if version_id is not None:
        where["VersionId"] = version_id
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(**where)["TagSet"]}


def assert_stored(s3: S3Client, stored: StoredObject, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    assert (stored.bucket, stored.key, stored.size, stored.sha256) == (
        BUCKET,
        KEY,
        len(data),
        digest,
    )
    assert stored.content_type == "video/mp4"
    got = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert got["Body"].read() == data
    assert got["ContentType"] == "video/mp4"
    assert got["Metadata"] == METADATA
    assert tags(s3, BUCKET, stored.version_id) == {"sha256": digest}
    versions = s3.list_object_versions(Bucket=BUCKET)
    assert [v["VersionId"] for v in versions.get("Versions", [])] == [stored.version_id]
    assert versions.get("DeleteMarkers", []) == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


# --- success ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [2 * PART + 12_345, 2 * PART, 1000])
def test_streams_the_video_into_one_verified_version(
    server: DownloadServer, s3: S3Client, calls: S3Calls, size: int
) -> None:
    data = payload(size)
    server.routes["/video"] = serve(data)
    ask_download_url, handed = urls(server.url("/video"))

    stored = copy(ask_download_url, s3, server)

    assert_stored(s3, stored, data)
    assert stored.version_id is not None
    assert len(handed) == 1
    # No part larger than part_size (memory is a few parts), and as few parts as possible.
    assert max(calls.part_sizes) <= PART
    assert len(calls.part_sizes) == math.ceil(size / PART)
    assert sum(calls.part_sizes) == size


def test_a_body_without_content_length_is_stored(server: DownloadServer, s3: S3Client) -> None:
    data = payload(PART + 17)
    server.routes["/video"] = serve(data, announce=None)
    stored = copy(urls(server.url("/video"))[0], s3, server)
    assert_stored(s3, stored, data)


def test_an_unversioned_bucket_keeps_the_object(server: DownloadServer, s3: S3Client) -> None:
    s3.create_bucket(Bucket="plain")
    data = payload(3000)
    server.routes["/video"] = serve(data)

    stored = copy(urls(server.url("/video"))[0], s3, server, bucket="plain")

    assert stored.version_id is None
    got = s3.get_object(Bucket="plain", Key=KEY)
    assert got["Body"].read() == data
    assert tags(s3, "plain", None) == {"sha256": hashlib.sha256(data).hexdigest()}


def test_logs_show_only_redacted_urls(
    server: DownloadServer, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/start"] = redirect(f"/video?{SECRET}")
    server.routes["/video"] = serve(payload(100))
    caplog.set_level(logging.DEBUG, logger="aistudios-export")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    install_url_redaction()

    copy(urls(server.url("/start"))[0], s3, server)

    ours = [r for r in caplog.records if r.name.startswith("aistudios-export")]
    theirs = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/video" in repr(r.__dict__) for r in ours)
    assert any("/start" in r.getMessage() for r in theirs)  # urllib3 logged, query cut
    assert "s3cr3t" not in caplog.text
    assert all("s3cr3t" not in repr(r.__dict__) for r in caplog.records)


# --- redirects ----------------------------------------------------------------------


def test_relative_and_absolute_redirects_are_followed(server: DownloadServer, s3: S3Client) -> None:
    data = payload(2000)
    server.routes["/start"] = redirect(f"{server.origin}/next?{SECRET}", 301)
    server.routes["/next"] = redirect("video?part=2", 307)
    server.routes["/video"] = serve(data)

    stored = copy(urls(server.url("/start"))[0], s3, server)

    assert_stored(s3, stored, data)
    assert server.hits == ["/start", "/next", "/video"]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/video",
        "http://localhost:{port}/video",
        "https://169.254.169.254/latest/meta-data/",
        "http://2130706433:{port}/video",
        "file:///etc/passwd",
    ],
)
def test_a_redirect_to_a_forbidden_host_is_refused_before_connecting(
    server: DownloadServer, s3: S3Client, calls: S3Calls, target: str
) -> None:
    server.routes["/start"] = redirect(target.format(port=server.httpd.server_address[1]))

    with pytest.raises(ForbiddenDownloadUrl):
        copy(urls(server.url("/start"))[0], s3, server)

    assert server.hits == ["/start"]
    assert calls.operations == []
    assert_nothing_stored(s3)


def test_a_forbidden_first_url_is_never_fetched(server: DownloadServer, s3: S3Client) -> None:
    ask_download_url, handed = urls("https://10.0.0.1/video.mp4")
    with pytest.raises(ForbiddenDownloadUrl, match="private address"):
        copy(ask_download_url, s3, server)
    assert handed == ["https://10.0.0.1/video.mp4"]


def test_a_redirect_loop_is_bounded(server: DownloadServer, s3: S3Client) -> None:
    server.routes["/loop"] = redirect("/loop")

    with pytest.raises(DownloadRejected, match="more than 3 redirects"):
        copy(urls(server.url("/loop"))[0], s3, server, max_redirects=3)

    assert server.hits == ["/loop"] * 4
    assert_nothing_stored(s3)


# --- expired URLs and refusals ------------------------------------------------------


def test_a_403_asks_for_a_fresh_url(server: DownloadServer, s3: S3Client) -> None:
    data = payload(4000)
    server.routes["/expired"] = status(403)
    server.routes["/video"] = serve(data)
    ask_download_url, handed = urls(server.url("/expired"), server.url("/video"))

    stored = copy(ask_download_url, s3, server)

    assert_stored(s3, stored, data)
    assert len(handed) == 2
    assert server.hits == ["/expired", "/video"]


def test_403_forever_is_download_url_expired(
    server: DownloadServer, s3: S3Client, calls: S3Calls
) -> None:
    server.routes["/expired"] = status(403)
    ask_download_url, handed = urls(server.url("/expired"))

    with pytest.raises(DownloadUrlExpired) as info:
        copy(ask_download_url, s3, server, max_url_refreshes=2)

    assert len(handed) == 3
    assert "s3cr3t" not in str(info.value)
    assert calls.operations == []


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (404, DownloadRejected),
        (410, DownloadRejected),
        (500, DownloadInterrupted),
        (503, DownloadInterrupted),
        (429, DownloadInterrupted),
    ],
)
def test_error_statuses_are_translated(
    server: DownloadServer, s3: S3Client, calls: S3Calls, code: int, error: type[Exception]
) -> None:
    server.routes["/video"] = status(code)
    ask_download_url, handed = urls(server.url("/video"))

    with pytest.raises(error, match=str(code)):
        copy(ask_download_url, s3, server)

    assert len(handed) == 1
    assert calls.operations == []


def test_an_empty_body_is_an_error_and_creates_nothing(
    server: DownloadServer, s3: S3Client, calls: S3Calls
) -> None:
    server.routes["/video"] = serve(b"")

    with pytest.raises(DownloadInterrupted, match="no bytes"):
        copy(urls(server.url("/video"))[0], s3, server)

    assert calls.operations == []
    assert_nothing_stored(s3)


# --- interrupted downloads ----------------------------------------------------------


def test_a_cut_connection_leaves_nothing(
    server: DownloadServer, s3: S3Client, calls: S3Calls
) -> None:
    data = payload(3 * PART)
    server.routes["/video"] = serve(data, send=PART + 100)  # announces 3 parts, sends 1+

    with pytest.raises(DownloadInterrupted, match="interrupted") as info:
        copy(urls(server.url("/video"))[0], s3, server)

    # The first part may or may not have been uploaded when the cut is read (an uploader
    # thread sends it meanwhile); either way the upload is aborted and nothing is stored.
    assert calls.part_sizes in ([], [PART])
    assert "AbortMultipartUpload" in calls.operations
    assert_nothing_stored(s3)
    assert "s3cr3t" not in "".join(traceback.format_exception(info.value))


class CannedPools(PinnedPools):
    """Answers every request with ``body`` under ``headers``, as no loopback server can.

    http.client stops reading a body at its Content-Length, so a server cannot deliver more
    than it announced; the copy still checks, should a response ever read past it.
    """

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        super().__init__()
        self.body, self.headers = body, headers
        self.asked: list[str] = []

    def request(self, checked: CheckedUrl, method: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        self.asked.append(f"{method} {checked.url}")
        return urllib3.HTTPResponse(
            body=io.BytesIO(self.body),
            headers=self.headers,
            status=200,
            preload_content=False,
            decode_content=False,
            enforce_content_length=False,
        )


def test_a_body_longer_than_announced_is_interrupted(s3: S3Client, calls: S3Calls) -> None:
    pools = CannedPools(b"x" * 20, {"Content-Length": "10"})

    with pytest.raises(DownloadInterrupted, match="more than the announced 10 bytes"):
        copy_url_to_s3(
            lambda: "http://127.0.0.1:9/video",
            s3_client=s3,
            bucket=BUCKET,
            key=KEY,
            metadata=METADATA,
            policy=UrlPolicy.from_trusted_origin("http://127.0.0.1:9"),
            pools=pools,
            part_size=PART,
        )

    assert pools.asked == ["GET http://127.0.0.1:9/video"]
    assert "AbortMultipartUpload" in calls.operations
    assert_nothing_stored(s3)


def test_bytes_sent_past_the_announced_length_are_not_the_body(
    server: DownloadServer, s3: S3Client
) -> None:
    data = payload(1000)
    server.routes["/video"] = serve(data + b"trailing garbage", announce=len(data))

    stored = copy(urls(server.url("/video"))[0], s3, server)

    assert_stored(s3, stored, data)


def test_a_refused_connection_is_interrupted_without_leaking_the_url(s3: S3Client) -> None:
    origin = f"http://127.0.0.1:{free_port()}"  # a loopback port with nobody listening

    with pytest.raises(DownloadInterrupted, match="ConnectionError") as info:
        copy_url_to_s3(
            lambda: f"{origin}/video?{SECRET}",
            s3_client=s3,
            bucket=BUCKET,
            key=KEY,
            metadata=METADATA,
            policy=UrlPolicy.from_trusted_origin(origin),
            part_size=PART,
        )

    assert "s3cr3t" not in "".join(traceback.format_exception(info.value))
    assert_nothing_stored(s3)


# --- S3 failures --------------------------------------------------------------------


def test_an_upload_part_failure_aborts_and_leaves_nothing(
    server: DownloadServer, s3: S3Client, calls: S3Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/video"] = serve(payload(3 * PART))
    patch_client(monkeypatch, s3, "upload_part", failing("UploadPart", after=1))

    with pytest.raises(StorageError, match="UploadPart failed: InternalError") as info:
        copy(urls(server.url("/video"))[0], s3, server)

    assert isinstance(info.value.__cause__, ClientError)
    assert "AbortMultipartUpload" in calls.operations
    assert_nothing_stored(s3)


def test_a_failed_tagging_deletes_the_completed_object(
    server: DownloadServer, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/video"] = serve(payload(PART + 1))
    patch_client(monkeypatch, s3, "put_object_tagging", failing("PutObjectTagging"))

    with pytest.raises(StorageError, match="PutObjectTagging failed"):
        copy(urls(server.url("/video"))[0], s3, server)

    assert_nothing_stored(s3)


def test_a_part_size_below_the_s3_minimum_is_refused(server: DownloadServer, s3: S3Client) -> None:
    with pytest.raises(ConfigurationError, match="part size"):
        copy(urls(server.url("/video"))[0], s3, server, part_size=PART - 1)
    assert server.hits == []


# --- lying headers ------------------------------------------------------------------


def test_an_absurd_content_length_is_refused_before_the_upload(
    server: DownloadServer, s3: S3Client, calls: S3Calls
) -> None:
    server.routes["/video"] = serve(payload(1000), announce=10**15)

    with pytest.raises(DownloadRejected, match=r"Content-Length .* maximum video size") as info:
        copy(urls(server.url("/video"))[0], s3, server, max_size=50 * GIB)

    assert f"({50 * GIB} bytes)" in str(info.value)
    assert calls.operations == []
    assert_nothing_stored(s3)


@pytest.mark.parametrize("value", ["abc", "1e3", "-1", "12, 12", "1\u00b2", "9" * 5000])
def test_a_malformed_content_length_is_rejected_naming_the_header(
    server: DownloadServer, s3: S3Client, calls: S3Calls, value: str
) -> None:
    server.routes["/video"] = serve(b"x" * 12, announce=value)

    with pytest.raises(DownloadRejected, match="Content-Length") as info:
        copy(urls(server.url("/video"))[0], s3, server)

    assert len(str(info.value)) < 300  # the header is named, not echoed
    assert calls.operations == []


def test_a_body_beyond_the_maximum_without_content_length_is_cut_off(
    server: DownloadServer, s3: S3Client, calls: S3Calls
) -> None:
    server.routes["/video"] = serve(payload(3 * PART), announce=None)

    with pytest.raises(DownloadRejected, match=rf"maximum video size \({PART + 10} bytes\)"):
        copy(urls(server.url("/video"))[0], s3, server, max_size=PART + 10)

    assert sum(calls.part_sizes) <= PART  # at most the first part, then the cut
    assert "AbortMultipartUpload" in calls.operations
    assert_nothing_stored(s3)


@pytest.mark.parametrize(
    ("expected", "max_size", "part_size"),
    [
        (None, 50 * GIB, 8 * MIB),  # 10,000 parts of 8 MiB hold 50 GiB: no growth
        (2 * PART, 50 * GIB, PART),
        (50 * GIB, 50 * GIB, math.ceil(50 * GIB / 10_000)),
        (None, 100 * GIB, math.ceil(100 * GIB / 10_000)),
        (10**15, 50 * GIB, math.ceil(50 * GIB / 10_000)),  # never past the maximum's need
    ],
)
def test_the_part_size_grows_only_to_fit_the_maximum_in_s3_parts(
    expected: int | None, max_size: int, part_size: int
) -> None:
    configured = 8 * MIB if expected is None and max_size == 50 * GIB else PART
    assert fitted_part_size(configured, expected, max_size) == part_size


# --- encoded answers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """About 64 KB on the wire, 64 MiB once decompressed."""
    return gzip.compress(bytes(64 * MIB), compresslevel=9)


def test_a_gzip_bomb_is_refused_before_the_upload_and_never_decompressed(
    server: DownloadServer, s3: S3Client, calls: S3Calls, gzip_bomb: bytes
) -> None:
    server.routes["/video"] = serve(gzip_bomb, headers={"Content-Encoding": "gzip"})

    with pytest.raises(DownloadRejected, match="Content-Encoding 'gzip'"):
        copy(urls(server.url("/video"))[0], s3, server)

    assert calls.operations == []
    assert_nothing_stored(s3)


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd", "identity, gzip", "x-custom"])
def test_every_encoding_but_identity_is_refused(
    server: DownloadServer, s3: S3Client, calls: S3Calls, encoding: str
) -> None:
    server.routes["/video"] = serve(b"not really encoded", headers={"Content-Encoding": encoding})

    with pytest.raises(DownloadRejected, match=f"Content-Encoding '{encoding}'"):
        copy(urls(server.url("/video"))[0], s3, server)

    assert calls.operations == []


def test_an_identity_encoded_answer_is_stored(server: DownloadServer, s3: S3Client) -> None:
    data = payload(5000)
    server.routes["/video"] = serve(data, headers={"Content-Encoding": "Identity"})
    stored = copy(urls(server.url("/video"))[0], s3, server)
    assert_stored(s3, stored, data)


def test_the_body_is_read_as_served_never_decoded(server: DownloadServer) -> None:
    encoded = gzip.compress(b"video " * 1000)
    server.routes["/video"] = serve(encoded, headers={"Content-Encoding": "gzip"})
    url = server.url("/video")
    checked = check_url(url, UrlPolicy.from_trusted_origin(server.origin))
    pools = PinnedPools()

    response = pools.request(checked, "GET", timeout=(5, 5), preload_content=False)
    with OpenDownload(url, response) as download:
        assert b"".join(body_chunks(download, 1000)) == encoded
    pools.clear()


def test_tls_is_verified_with_the_configured_ca_bundle_and_never_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert ca_bundle() == certifi.where()
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/curl-ca.pem")
    assert ca_bundle() == "/etc/curl-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/bench-ca.pem")
    assert ca_bundle() == "/etc/bench-ca.pem"  # the first variable wins
    # An empty variable (once a way to switch requests' verification off) names no bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    assert ca_bundle() == certifi.where()
    assert ca_bundle({"REQUESTS_CA_BUNDLE": "/etc/given.pem"}) == "/etc/given.pem"
