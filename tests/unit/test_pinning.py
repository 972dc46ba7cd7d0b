"""The pinned transport: a download connects to the address the guard checked, nothing else.

A rebinding DNS answers a public address to the guard and ``127.0.0.2`` to anyone who asks
again; a loopback server listens on ``127.0.0.2`` to catch a connection that resolved again.
Only loopback can be reached, and a blocked connection is recorded and refused, so a guard bug
fails the test instead of sending traffic. ``PinnedPools`` itself connects to the first checked
address whatever the host resolves to, answers a redirect instead of following it, tries once
and ignores proxy variables; over TLS it keeps the host name for SNI and the certificate.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import urllib3
from pytest_socket import SocketConnectBlockedError

from aistudios_export.errors import DownloadInterrupted
from aistudios_export.pinning import PinnedPools
from aistudios_export.transfer import copy_url_to_s3
from aistudios_export.urlguard import CheckedUrl, UrlPolicy
from tests.unit._downloads import (
    SECRET,
    DownloadServer,
    free_port,
    payload,
    redirect,
    serve,
    status,
)
from tests.unit._s3 import BUCKET, assert_nothing_stored
from tests.unit._tls import TlsServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "cdn.example.test"
PUBLIC = "93.184.216.34"
REBOUND = "127.0.0.2"
KEY = "exports/p1/1080p/video.mp4"
METADATA = {"projectid": "p1", "resolution": "1080p"}
LOOPBACKS = pytest.mark.allow_hosts(["127.0.0.1", REBOUND])
BLOCKED_IS_EXPECTED = pytest.mark.filterwarnings("ignore:A test tried to use socket")


class RebindingDns:
    """Answers ``public`` at a name's first lookup and ``rebound`` at every later one."""

    def __init__(self, names: set[str], public: str, rebound: str = REBOUND) -> None:
        self.names, self.public, self.rebound = names, public, rebound
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        """The guard's resolver (``UrlPolicy.resolver``)."""
        first = host not in self.lookups
        self.lookups.append(host)
        return [self.public if first else self.rebound]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Answer the HTTP client's own lookups (``socket.getaddrinfo``) of ``names`` too."""
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host in self.names:
                return real(self.resolve(host, port)[0], port, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a socket connects to; a blocked one is refused like a closed port."""
    attempts: list[str] = []
    guarded = socket.socket.connect  # pytest-socket's, which blocks all but the loopbacks

    def connect(sock: socket.socket, address: Any) -> None:
        attempts.append(address[0])
        try:
            guarded(sock, address)
        except SocketConnectBlockedError as e:
            raise ConnectionRefusedError(f"blocked: {address[0]}") from e

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def servers() -> Iterator[tuple[DownloadServer, DownloadServer]]:
    """The real origin on 127.0.0.1 and the rebinding target on 127.0.0.2, on one port."""
    origin = DownloadServer().start()
    rebound = DownloadServer(REBOUND, origin.port).start()
    yield origin, rebound
    origin.stop()
    rebound.stop()


def copy(url: str, s3: S3Client, policy: UrlPolicy) -> Any:
    return copy_url_to_s3(
        lambda: url,
        s3_client=s3,
        bucket=BUCKET,
        key=KEY,
        metadata=METADATA,
        policy=policy,
        part_size=5 * 1024 * 1024,
    )


@LOOPBACKS
@BLOCKED_IS_EXPECTED
def test_a_rebinding_host_is_connected_only_at_the_checked_address(
    servers: tuple[DownloadServer, DownloadServer],
    s3: S3Client,
    connects: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, rebound = servers
    rebound.routes["/video"] = serve(b"internal answer")
    dns = RebindingDns({HOST}, PUBLIC)
    dns.install(monkeypatch)

    with pytest.raises(DownloadInterrupted, match="ConnectionError"):
        copy(f"https://{HOST}:{rebound.port}/video?{SECRET}", s3, UrlPolicy(resolver=dns.resolve))

    assert connects == [PUBLIC]  # the checked address, and it alone
    assert dns.lookups == [HOST]  # nobody resolved the host again
    assert rebound.connections == 0
    assert_nothing_stored(s3)


@LOOPBACKS
@BLOCKED_IS_EXPECTED
def test_every_redirect_hop_is_connected_at_its_checked_address(
    servers: tuple[DownloadServer, DownloadServer],
    s3: S3Client,
    connects: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin, rebound = servers
    origin.routes["/start"] = redirect(f"https://{HOST}:{origin.port}/video")
    dns = RebindingDns({HOST}, PUBLIC)
    dns.install(monkeypatch)
    policy = UrlPolicy(trusted_origin=origin.origin, resolver=dns.resolve)

    with pytest.raises(DownloadInterrupted):
        copy(origin.url("/start"), s3, policy)

    assert connects == ["127.0.0.1", PUBLIC]
    assert rebound.connections == 0


@LOOPBACKS
def test_the_trusted_localhost_origin_downloads_through_the_pinned_address(
    servers: tuple[DownloadServer, DownloadServer],
    s3: S3Client,
    connects: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin, rebound = servers
    data = payload(70_000)
    origin.routes["/video"] = serve(data)
    rebound.routes["/video"] = serve(b"internal answer")
    RebindingDns({"localhost"}, REBOUND).install(monkeypatch)  # the OS would say 127.0.0.2
    trusted = f"http://localhost:{origin.port}"

    stored = copy(f"{trusted}/video?{SECRET}", s3, UrlPolicy.from_trusted_origin(trusted))

    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    assert stored.size == len(data)
    assert connects == ["127.0.0.1"]
    assert origin.host_headers == [f"localhost:{origin.port}"]
    assert rebound.connections == 0


def pinned(url: str, *addresses: str) -> CheckedUrl:
    """What the guard would return for ``url`` had it checked ``addresses`` for its host."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return CheckedUrl(url, parts.scheme, parts.hostname, parts.port, addresses)


@LOOPBACKS
def test_a_request_connects_only_to_the_first_checked_address(
    servers: tuple[DownloadServer, DownloadServer],
    connects: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin, rebound = servers
    origin.routes["/video"] = serve(b"checked answer")
    rebound.routes["/video"] = serve(b"internal answer")
    dns = RebindingDns({HOST}, REBOUND, REBOUND)  # any lookup of the host says 127.0.0.2
    dns.install(monkeypatch)
    url = f"http://{HOST}:{origin.port}/video?{SECRET}"

    response = PinnedPools().request(pinned(url, "127.0.0.1", REBOUND), "GET", timeout=(5, 5))

    assert (response.status, response.data) == (200, b"checked answer")
    assert connects == ["127.0.0.1"]
    assert dns.lookups == []  # the host name was never resolved to connect
    assert origin.hits == ["/video"]
    assert origin.host_headers == [f"{HOST}:{origin.port}"]
    assert rebound.connections == 0


def test_a_redirect_is_answered_not_followed(server: DownloadServer, connects: list[str]) -> None:
    server.routes["/start"] = redirect(server.url("/video"))
    server.routes["/video"] = serve(b"not fetched")

    response = PinnedPools().request(
        pinned(server.url("/start"), "127.0.0.1"), "GET", timeout=(5, 5)
    )

    assert (response.status, response.headers["Location"]) == (302, server.url("/video"))
    assert server.hits == ["/start"]
    assert connects == ["127.0.0.1"]


def test_a_failed_request_is_not_retried(server: DownloadServer, connects: list[str]) -> None:
    server.routes["/busy"] = status(503)
    pools = PinnedPools()

    answer = pools.request(pinned(server.url("/busy"), "127.0.0.1"), "GET", timeout=(5, 5))
    closed = f"http://{HOST}:{free_port()}/video"
    with pytest.raises(urllib3.exceptions.NewConnectionError, match="refused"):
        pools.request(pinned(closed, "127.0.0.1"), "GET", timeout=(5, 5))

    assert answer.status == 503
    assert server.hits == ["/busy"]
    assert connects == ["127.0.0.1", "127.0.0.1"]  # one connection each, no second try


def test_no_proxy_is_used_whatever_the_environment_says(
    server: DownloadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = DownloadServer().start()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.origin)
        server.routes["/video"] = serve(b"direct")

        response = PinnedPools().request(
            pinned(server.url("/video"), "127.0.0.1"), "GET", timeout=(5, 5)
        )
    finally:
        proxy.stop()

    assert (response.status, response.data) == (200, b"direct")
    assert server.hits == ["/video"]
    assert proxy.connections == 0


# --- TLS: the host name is kept for SNI and the certificate check --------------------


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsServer]:
    """The HTTPS server, its certificate the CA bundle that new pools verify with."""
    server = TlsServer(tmp_path, HOST)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert_file))
    yield server
    server.stop()


def pinned_get(
    server: TlsServer, name: str, pools: PinnedPools | None = None
) -> urllib3.BaseHTTPResponse:
    """GET ``https://<name>:<port>/video`` pinned to 127.0.0.1, where ``server`` listens."""
    url = f"https://{name}:{server.port}/video"
    return (pools or PinnedPools()).request(pinned(url, "127.0.0.1"), "GET", timeout=(5, 5))


def test_tls_to_a_pinned_address_keeps_the_host_name_for_sni_and_the_certificate(
    tls_server: TlsServer,
) -> None:
    response = pinned_get(tls_server, HOST)

    assert (response.status, response.data) == (200, b"ok")
    assert tls_server.sni == [HOST]
    assert tls_server.host_headers == [f"{HOST}:{tls_server.port}"]


def test_tls_refuses_a_certificate_for_another_name_at_the_pinned_address(
    tls_server: TlsServer,
) -> None:
    with pytest.raises(urllib3.exceptions.SSLError, match=r"match|mismatch"):
        pinned_get(tls_server, "other.example.test")

    assert tls_server.sni == ["other.example.test"]
    assert tls_server.host_headers == []


def test_a_connection_verified_for_one_name_is_not_reused_for_another_at_that_address(
    tls_server: TlsServer,
) -> None:
    pools = PinnedPools()
    assert pinned_get(tls_server, HOST, pools).status == 200

    with pytest.raises(urllib3.exceptions.SSLError, match=r"match|mismatch"):
        pinned_get(tls_server, "other.example.test", pools)

    assert tls_server.sni == [HOST, "other.example.test"]
    assert tls_server.host_headers == [f"{HOST}:{tls_server.port}"]


def test_tls_refuses_a_certificate_that_the_ca_bundle_does_not_hold(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)  # certifi's bundle, then

    with pytest.raises(urllib3.exceptions.SSLError, match="certificate verify failed"):
        pinned_get(tls_server, HOST)

    assert tls_server.host_headers == []
