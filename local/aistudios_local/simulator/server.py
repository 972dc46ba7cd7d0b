"""The simulator's HTTP side: a loopback server that reads requests and writes answers.

It knows nothing of the API: each request becomes a `Request` for the dispatch function, and
the `Answer` comes back as bytes, a streamed (possibly cut) video, or a TCP reset. It tracks
open connections so that stopping never waits on an idle keep-alive client.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from aistudios_local.simulator.messages import Answer, Request, SignedUrl, error
from aistudios_local.simulator.video import iter_video

__all__ = ["Dispatch", "SimulatorServer"]

Dispatch = Callable[[Request], Answer]
"""Turns a request into the answer to write back."""

_LOOPBACK_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\]):([0-9]{1,5})")
_MAX_BODY = 1024 * 1024


class SimulatorServer:
    """Serve `dispatch` over HTTP/1.1 in a daemon thread.

    Parameters
    ----------
    dispatch
        Answers each request.
    host, port
        Where to listen; port 0 picks a free port. Keep it on loopback.
    lock
        Guards the set of open connections (the simulator's one lock).
    """

    def __init__(self, dispatch: Dispatch, *, host: str, port: int, lock: threading.Lock) -> None:
        self.dispatch = dispatch
        self._host = host
        self._port = port
        self._lock = lock
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving in a daemon thread (once; later calls do nothing)."""
        if self._server is not None:
            return
        server = _Server((self._host, self._port), _Handler)
        server.frontend = self
        self._server = server
        # A short poll interval keeps stop() quick (shutdown waits for the loop to notice).
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="aistudios-simulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every open connection; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # unblock handler threads waiting on idle keep-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("simulator is not running; call start() first")
        return _url_of(self._server)

    def track(self, conn: socket.socket, *, opened: bool) -> None:
        """Remember an open connection, or forget a closed one."""
        with self._lock:
            if opened:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def _url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of clients connects at once: the listen backlog must hold them all.
    request_queue_size = 128
    frontend: SimulatorServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect; every answer has a length
    server_version = "AiStudiosSimulator/1.0"

    def setup(self) -> None:
        super().setup()
        self.server.frontend.track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.frontend.track(self.connection, opened=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: request lines can carry signed URL query strings."""

    def do_GET(self) -> None:
        """Answer a GET."""
        self._handle("GET")

    def do_HEAD(self) -> None:
        """Answer a HEAD (downloads only)."""
        self._handle("HEAD")

    def do_POST(self) -> None:
        """Answer a POST."""
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            self._write(error(413, "PAYLOAD_TOO_LARGE", "body too large"), head=False)
            return
        raw = self.rfile.read(length) if length > 0 else b""
        target = urlsplit(self.path)
        request = Request(
            method=method,
            path=target.path,
            query=target.query,
            authorization=self.headers.get("Authorization"),
            raw=raw,
            base_url=self._base_url(),
        )
        self._write(self.server.frontend.dispatch(request), head=method == "HEAD")

    def _base_url(self) -> str:
        """Return the server's URL as the client named it when that is this loopback port."""
        named = self.headers.get("Host")
        match = _LOOPBACK_HOST.fullmatch(named or "")
        if match is None or int(match[2]) != self.server.server_port:
            return _url_of(self.server)
        return f"http://{named}"

    def _write(self, answer: Answer, *, head: bool) -> None:
        if answer.reset:
            # Linger 0 turns the close into a TCP RST: the client sees a reset, not an answer.
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        video = answer.video
        length = video.size if video is not None else len(answer.body)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        if video is None:
            self.wfile.write(answer.body)
            return
        self._stream(video, stop_after=length // 2 if answer.cut else length)

    def _stream(self, video: SignedUrl, *, stop_after: int) -> None:
        sent = 0
        try:
            for chunk in iter_video(video.project_id, video.resolution, video.size):
                piece = chunk[: stop_after - sent]
                self.wfile.write(piece)
                sent += len(piece)
                if sent >= stop_after:
                    break
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing left to do
            return
        if sent < video.size:
            # A cut download: fewer bytes than Content-Length promised, then end of stream.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
