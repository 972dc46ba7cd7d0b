"""transport: the one pool manager shape, and failures in words, from real loopback failures.

Each failure is produced on 127.0.0.1 by a server that misbehaves on purpose (a closed port,
a listener that never answers, plain TCP where TLS is expected, a reset in the middle of an
answer), so the words are checked against what urllib3 really raises, not a hand-made error.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3
import urllib3.exceptions

from aistudios_export.transport import (
    NETWORK_ERRORS,
    ca_bundle,
    network_failure,
    pool_manager,
    timeout,
)
from tests.unit._downloads import DownloadServer, free_port, redirect, serve, status

Reply = Callable[[socket.socket], None]


class RawServer:
    """A TCP server on 127.0.0.1 that answers each connection with ``reply`` (no HTTP stack).

    ``reply`` gets the accepted socket; the server closes it afterwards. :meth:`stop` sets
    ``released``, which a reply that holds its connection waits for.
    """

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.released = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # the listener was closed: stop
                return
            self.accepted += 1
            with connection:
                self.reply(connection)

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/video"

    def stop(self) -> None:
        self.released.set()
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way (close would not)
        self.listener.close()
        self.thread.join()


@pytest.fixture
def raw_servers() -> Iterator[Callable[[Reply], RawServer]]:
    """Start raw servers for a test; stop them all (releasing held connections) at teardown."""
    started: list[RawServer] = []

    def start(reply: Reply) -> RawServer:
        started.append(RawServer(reply))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def read_request(connection: socket.socket) -> bytes:
    """Read up to the end of a request's headers (the tests send no body)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def reset(connection: socket.socket) -> None:
    """Close with a TCP reset instead of an orderly end (SO_LINGER with a zero timeout)."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def failure_of(url: str) -> BaseException:
    """The error a GET of ``url`` through the pool manager raises (it must raise one)."""
    with pytest.raises(NETWORK_ERRORS) as info:
        pool_manager().request("GET", url, timeout=timeout((2.0, 2.0)))
    return info.value


# --- the pool manager ---------------------------------------------------------------


def test_the_pool_manager_verifies_tls_with_the_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/private-ca.pem")

    settings = pool_manager().connection_pool_kw

    assert settings["cert_reqs"] == "CERT_REQUIRED"
    assert settings["ca_certs"] == ca_bundle() == "/etc/private-ca.pem"


def test_the_pool_manager_retries_nothing_and_follows_no_redirect(
    server: DownloadServer,
) -> None:
    server.routes["/busy"] = status(503)
    server.routes["/start"] = redirect("/video")
    server.routes["/video"] = serve(b"not fetched")
    http = pool_manager()

    busy = http.request("GET", server.url("/busy"))
    moved = http.request("GET", server.url("/start"))
    with pytest.raises(urllib3.exceptions.NewConnectionError):  # not MaxRetryError
        http.request("GET", f"http://127.0.0.1:{free_port()}/video")

    assert (busy.status, moved.status, moved.headers["Location"]) == (503, 302, "/video")
    assert server.hits == ["/busy", "/start"]


def test_the_pool_manager_uses_no_proxy(
    server: DownloadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = DownloadServer().start()
    try:
        for name in ("HTTP_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.origin)
        server.routes["/video"] = serve(b"direct")
        response = pool_manager().request("GET", server.url("/video"))
    finally:
        proxy.stop()

    assert (response.status, response.data) == (200, b"direct")
    assert proxy.connections == 0


# --- failures in words --------------------------------------------------------------


def test_a_closed_port_is_refused() -> None:
    error = failure_of(f"http://127.0.0.1:{free_port()}/video")

    assert network_failure(error) == "the connection was refused (nothing listens on that port)"


def test_a_server_that_does_not_answer_times_out(
    raw_servers: Callable[[Reply], RawServer],
) -> None:
    def hold(connection: socket.socket) -> None:
        read_request(connection)
        server.released.wait()  # until teardown, long after the client gave up

    server = raw_servers(hold)
    with pytest.raises(NETWORK_ERRORS) as info:
        pool_manager().request("GET", server.url(), timeout=timeout((2.0, 0.2)))

    assert isinstance(info.value, urllib3.exceptions.ReadTimeoutError)
    assert network_failure(info.value) == "the answer timed out"


def test_plain_tcp_behind_an_https_url_fails_the_tls_handshake(
    raw_servers: Callable[[Reply], RawServer],
) -> None:
    def garbage(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 4)

    server = raw_servers(garbage)
    error = failure_of(server.url("https"))

    assert isinstance(error, urllib3.exceptions.SSLError)
    assert network_failure(error) == "the TLS handshake failed"
    assert server.accepted == 1


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # the request is read, then the connection is reset
        b"HTTP/1.1 200 OK\r\nContent-Len",  # in the middle of the headers
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40,  # of the body
    ],
    ids=["before-the-answer", "mid-headers", "mid-body"],
)
def test_a_connection_reset_mid_answer_is_a_reset(
    raw_servers: Callable[[Reply], RawServer], sent: bytes
) -> None:
    def cut(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(sent)
        reset(connection)

    server = raw_servers(cut)
    error = failure_of(server.url())

    assert isinstance(error, urllib3.exceptions.ProtocolError)
    assert network_failure(error) == "the connection was reset before an answer arrived"
    assert server.accepted == 1  # not retried


def test_a_name_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    error = failure_of("http://nowhere.example.test/video")

    assert isinstance(error, urllib3.exceptions.NameResolutionError)
    assert network_failure(error) == "the host name does not resolve"


def test_a_ca_bundle_that_is_a_directory_is_read_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))
    manager = pool_manager()
    assert manager.connection_pool_kw["ca_cert_dir"] == str(tmp_path)
    assert "ca_certs" not in manager.connection_pool_kw
    assert manager.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
