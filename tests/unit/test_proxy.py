"""The AI Studios client goes through the proxy the environment names, as curl and requests do.

``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (either case, the lower-case one winning) name the
proxy, ``NO_PROXY`` exempts hosts; the proxy's credentials go in ``Proxy-Authorization`` and
never in a message. The proxy here is a scripted loopback server answering in the proxy's
place (a forward proxy receives the absolute URL), so the tests see exactly what it was sent.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3

from aistudios_export.client import PROGRESS_PATH, AiStudiosClient
from aistudios_export.errors import NetworkError
from aistudios_export.transport import exempt_from_proxy, pool_manager, proxy_for
from tests.unit._downloads import ServerThread, free_port
from tests.unit._scripted_api import ScriptedApi, scripted_api
from tests.unit._tls import TlsServer

PROJECT_ID = "65fa6b07dca2e367461a2925"
PROGRESS = PROGRESS_PATH.format(project_id=PROJECT_ID)
ANSWER = {"success": True, "data": {"state": "exporting", "progress": 40}}
NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture
def proxy() -> Iterator[ScriptedApi]:
    with scripted_api() as server:
        yield server


@pytest.fixture
def api() -> Iterator[ScriptedApi]:
    with scripted_api() as server:
        yield server


def progress_of(base_url: str) -> float:
    return (
        AiStudiosClient(base_url, lambda fresh=False: "tok-5ecret")
        .get_progress(PROJECT_ID)
        .progress
    )


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://app.aistudios.com", {}, None),
        ("https://app.aistudios.com", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://app.aistudios.com", {"https_proxy": "http://low:1"}, "http://low:1"),
        (
            "https://app.aistudios.com",
            {"HTTPS_PROXY": "http://up:1", "https_proxy": "http://low:1"},
            "http://low:1",
        ),
        ("https://app.aistudios.com", {"HTTP_PROXY": "http://p:3128"}, None),
        ("http://127.0.0.1:8080", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://app.aistudios.com", {"ALL_PROXY": "http://all:1"}, "http://all:1"),
        ("https://app.aistudios.com", {"HTTPS_PROXY": ""}, None),
        (
            "https://app.aistudios.com",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "localhost,.aistudios.com"},
            None,
        ),
        ("https://app.aistudios.com", {"HTTPS_PROXY": "http://p:1", "no_proxy": "*"}, None),
        (
            "https://app.aistudios.com",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "studios.com"},
            "http://p:1",
        ),
    ],
)
def test_the_proxy_for_a_url_is_read_as_curl_reads_it(
    url: str, env: dict[str, str], expected: str | None
) -> None:
    assert proxy_for(url, env) == expected


@pytest.mark.parametrize(
    ("host", "no_proxy", "exempt"),
    [
        ("app.aistudios.com", "aistudios.com", True),
        ("app.aistudios.com", ".aistudios.com", True),
        ("aistudios.com", ".aistudios.com", True),
        ("app.aistudios.com", "other.com, app.aistudios.com:443", True),
        ("badaistudios.com", "aistudios.com", False),
        ("127.0.0.1", "127.0.0.0/8", True),
        ("10.1.2.3", "127.0.0.0/8", False),
        ("::1", "[::1]:8080", True),
        ("::1", "::1", True),
        ("app.aistudios.com", "", False),
        ("app.aistudios.com", " , ,", False),
    ],
)
def test_no_proxy_exempts_names_their_subdomains_addresses_and_networks(
    host: str, no_proxy: str, exempt: bool
) -> None:
    assert exempt_from_proxy(host, no_proxy) is exempt


def test_the_client_asks_through_the_proxy_with_its_credentials(
    clean_env: pytest.MonkeyPatch, proxy: ScriptedApi
) -> None:
    # Nothing listens at the API's own address: only the proxy can have answered.
    api_origin = f"http://127.0.0.1:{free_port()}"
    proxy.answer("GET", PROGRESS, json=ANSWER)
    clean_env.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.port}")

    assert progress_of(api_origin) == 40.0

    [seen] = proxy.seen
    assert seen.path == api_origin + PROGRESS  # a forward proxy is sent the absolute URL
    assert seen.headers["Authorization"] == "tok-5ecret"
    expected = base64.b64encode(b"user:p@ss").decode()
    assert seen.headers["Proxy-Authorization"] == f"Basic {expected}"


def test_no_proxy_sends_the_client_straight_to_the_api(
    clean_env: pytest.MonkeyPatch, proxy: ScriptedApi, api: ScriptedApi
) -> None:
    api.answer("GET", PROGRESS, json=ANSWER)
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    clean_env.setenv("NO_PROXY", "localhost,127.0.0.1")

    assert progress_of(api.origin) == 40.0

    assert proxy.seen == []
    assert [seen.path for seen in api.seen] == [PROGRESS]


def test_an_unreachable_proxy_is_a_network_error_without_its_credentials(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("HTTP_PROXY", f"http://user:pr0xy-5ecret@127.0.0.1:{free_port()}")

    with pytest.raises(NetworkError) as info:
        progress_of(f"http://127.0.0.1:{free_port()}")

    assert "pr0xy-5ecret" not in "".join(traceback.format_exception(info.value))


def test_a_proxied_pool_keeps_tls_verified_and_retries_nothing() -> None:
    manager = pool_manager(proxy="http://user:pw@127.0.0.1:3128")
    assert isinstance(manager, urllib3.ProxyManager)
    assert manager.proxy is not None and manager.proxy.auth is None  # the URL carries none
    assert manager.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
    retries = manager.connection_pool_kw["retries"]  # False, or urllib3's Retry(total=False)
    assert retries is False or retries.total is False


class ConnectProxy:
    """A CONNECT proxy on loopback: tunnels every request to 127.0.0.1, whatever host it names.

    Records each CONNECT target and its ``Proxy-Authorization``; the proxy, not the client,
    resolves the host (here: to loopback), so the client never asks DNS.
    """

    def __init__(self) -> None:
        self.connects: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_CONNECT(self) -> None:
                proxy.connects.append((self.path, self.headers.get("Proxy-Authorization", "")))
                port = int(self.path.rpartition(":")[2])
                with socket.create_connection(("127.0.0.1", port), timeout=5) as upstream:
                    self.send_response(200, "Connection established")
                    self.end_headers()
                    self._tunnel(upstream)
                self.close_connection = True

            def _tunnel(self, upstream: socket.socket) -> None:
                ends = [self.connection, upstream]
                while True:
                    readable, _, _ = select.select(ends, [], [], 5)
                    if not readable:
                        return
                    for end in readable:
                        data = end.recv(65536)
                        if not data:
                            return
                        (upstream if end is self.connection else self.connection).sendall(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.serving = ServerThread(self.httpd)
        self.serving.start()


def test_an_https_api_is_reached_through_a_connect_tunnel_with_tls_to_the_api(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = "api.aistudios.test"  # resolved by the proxy only
    # A client that resolved it would fail here, not ask a DNS server.
    resolve = socket.getaddrinfo

    def loopback_only(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is not resolved in this test")
        return resolve(name, *args, **kwargs)

    clean_env.setattr(socket, "getaddrinfo", loopback_only)
    api = TlsServer(tmp_path, host, body=json.dumps(ANSWER).encode())
    proxy = ConnectProxy()
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(api.cert_file))
    clean_env.setenv("HTTPS_PROXY", f"http://user:pw@127.0.0.1:{proxy.port}")
    try:
        assert progress_of(f"https://{host}:{api.port}") == 40.0
    finally:
        proxy.serving.stop()
        api.stop()

    expected = base64.b64encode(b"user:pw").decode()
    assert proxy.connects == [(f"{host}:{api.port}", f"Basic {expected}")]
    # TLS went end to end: the API saw the host name in SNI and in Host.
    assert api.sni == [host]
    assert api.host_headers == [f"{host}:{api.port}"]
