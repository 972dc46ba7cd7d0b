"""A loopback download server for the tests of the code that fetches videos, and its routes.

Shared by the tests of the streaming copy, of the pinned transport and of FinalizeExport: a
threaded HTTP server on a loopback address whose paths answer as each test configures, and
that records what it was asked (paths, ``Host`` headers) and how many connections it accepted.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer
from typing import Any
from urllib.parse import urlsplit

SECRET = "X-Amz-Signature=s3cr3t"
"""A signed URL's query: it must never show in a message, a traceback or a log."""

Route = Callable[[BaseHTTPRequestHandler], None]


class ServerThread:
    """Runs an HTTP server's ``serve_forever`` in a daemon thread until :meth:`stop`."""

    def __init__(self, httpd: BaseServer) -> None:
        self.httpd = httpd
        self.thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop serving, close the listening socket and wait for the thread."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


class DownloadServer:
    """A threaded HTTP server on ``host`` whose paths answer as each test configures.

    Call :meth:`start` (and :meth:`stop`); ``port`` 0 picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        self.host_headers: list[str] = []
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                server.hits.append(path)
                server.host_headers.append(self.headers.get("Host", ""))
                server.routes.get(path, status(HTTPStatus.NOT_FOUND))(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                server.connections += 1
                return True

        self.httpd = Server((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://{host}:{self.port}"
        self.serving = ServerThread(self.httpd)

    def url(self, path: str) -> str:
        return f"{self.origin}{path}?{SECRET}"

    def start(self) -> DownloadServer:
        self.serving.start()
        return self

    def stop(self) -> None:
        self.serving.stop()

    def reset(self) -> DownloadServer:
        self.routes.clear()
        self.hits.clear()
        self.host_headers.clear()
        self.connections = 0
        return self


def serve(
    data: bytes,
    *,
    announce: int | str | None = -1,
    send: int | None = None,
    headers: dict[str, str] | None = None,
) -> Route:
    """200 with ``data``; ``announce`` is the Content-Length (-1: the true one, None: none,
    a string: sent as is); ``send`` cuts the body after that many bytes and drops the
    connection; ``headers`` are added."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        if announce is not None:
            h.send_header("Content-Length", str(len(data) if announce == -1 else announce))
        h.end_headers()
        h.wfile.write(data if send is None else data[:send])
        h.wfile.flush()
        h.close_connection = True

    return route


def redirect(location: str, code: int = 302) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def status(code: int) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
