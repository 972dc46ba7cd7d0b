"""A loopback HTTP server whose answers each test scripts, and that records what it was asked.

The API client's tests talk real HTTP to it: a threaded server on ``127.0.0.1`` (a free port)
answers ``method`` + ``path`` with what the test queued for that route, in order, the last
answer repeating, and records every request (method, path, headers, body bytes). An answer can
also be held until the test ends (for read timeouts), be cut short, or not come at all (the
connection dropped). A request no script covers is answered 500 and recorded apart, so that
the fixture can fail the test that made it.
"""

from __future__ import annotations

import json as jsonlib
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOLD_LIMIT_SECONDS = 10.0
"""A held answer waits at most this long for the test's end (a guard, never reached)."""

_NO_JSON = object()


@dataclass(frozen=True)
class Answer:
    """One scripted answer.

    Parameters
    ----------
    status
        The HTTP status.
    body
        The body bytes, sent as they are.
    headers
        Headers sent with it (``Content-Length`` is added unless ``headers`` has one).
    hold
        Answer only once the test has ended: the client's read timeout expires first.
    cut_after
        Send only this many bytes of ``body`` (announcing all of them), then close.
    drop
        Read the request, then close the connection without answering.
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: bool = False
    cut_after: int | None = None
    drop: bool = False


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    """The request target as sent (path and query)."""
    headers: Message[str, str]
    """Its headers; ``get`` and ``in`` ignore the case of names."""
    body: bytes

    def json(self) -> Any:
        """The body read as JSON."""
        return jsonlib.loads(self.body)


class ScriptedApi:
    """A threaded loopback HTTP/1.1 server answering what each test scripts.

    Use :meth:`start` and :meth:`stop` (or the ``scripted_api`` fixture of the tests).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.seen: list[Seen] = []
        self.unscripted: list[str] = []
        self._answers: dict[tuple[str, str], list[Answer]] = {}
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._connections: list[socket.socket] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client's pool reuses connections

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except OSError:  # the client gave up first (a timeout): nothing to answer
                    self.close_connection = True

            def do_GET(self) -> None:
                api._answer(self)

            def do_POST(self) -> None:
                api._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                with api._lock:
                    api._connections.append(request)
                return True

        self._httpd = Server((host, 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self.origin = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    # --- scripting ----------------------------------------------------------------------

    def answer(
        self,
        method: str,
        path: str,
        status: int = 200,
        *,
        json: object = _NO_JSON,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        hold: bool = False,
        cut_after: int | None = None,
        drop: bool = False,
    ) -> None:
        """Queue an answer to ``method path``: ``json`` (serialized) or ``body`` as is.

        The ``Content-Type`` is ``content_type``, else ``application/json`` for ``json`` and
        ``text/plain`` for ``body``, unless ``headers`` names one.
        """
        if json is not _NO_JSON:
            data = jsonlib.dumps(json).encode()
            kind = content_type or "application/json"
        else:
            data = body.encode() if isinstance(body, str) else body
            kind = content_type or "text/plain"
        sent = {"Content-Type": kind, **(headers or {})}
        queued = Answer(status, data, sent, hold=hold, cut_after=cut_after, drop=drop)
        with self._lock:
            self._answers.setdefault((method.upper(), path), []).append(queued)

    # --- running ------------------------------------------------------------------------

    def start(self) -> ScriptedApi:
        """Start serving in a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held answers, stop serving, and close every connection still open."""
        self._ended.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        with self._lock:
            for connection in self._connections:
                with suppress(OSError):  # already closed by either side
                    connection.shutdown(socket.SHUT_RDWR)

    # --- answering ----------------------------------------------------------------------

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = urlsplit(h.path).path
        with self._lock:
            self.seen.append(Seen(h.command, h.path, h.headers, body))
            queue = self._answers.get((h.command, path))
            if queue:
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
            else:
                self.unscripted.append(f"{h.command} {h.path}")
                answer = Answer(500, f"nothing scripted for {h.command} {path}".encode())
        if answer.drop:
            h.close_connection = True
            # SO_LINGER 0: the close is a reset, as a crashed or overloaded server's is.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if answer.hold:
            self._ended.wait(HOLD_LIMIT_SECONDS)
        h.send_response(answer.status)
        for name, value in answer.headers.items():
            h.send_header(name, value)
        if not any(name.lower() == "content-length" for name in answer.headers):
            h.send_header("Content-Length", str(len(answer.body)))
        h.end_headers()
        if answer.cut_after is None:
            h.wfile.write(answer.body)
        else:
            h.wfile.write(answer.body[: answer.cut_after])
            h.close_connection = True
        h.wfile.flush()


@contextmanager
def unanswered_port() -> Iterator[int]:
    """Yield a loopback port whose listener accepts no more connections.

    Its backlog is full, so the kernel ignores a new connection's SYN: a connect there lasts
    until the caller's connect timeout.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        queued: list[socket.socket] = []
        try:
            while True:
                probe = socket.socket()
                probe.settimeout(0.05)
                try:
                    probe.connect(("127.0.0.1", port))
                except TimeoutError:
                    probe.close()
                    break
                queued.append(probe)
            yield port
        finally:
            for probe in queued:
                probe.close()


@contextmanager
def scripted_api() -> Iterator[ScriptedApi]:
    """Run a :class:`ScriptedApi` for the body; then fail if it was asked an unscripted route."""
    api = ScriptedApi().start()
    try:
        yield api
    finally:
        api.stop()
    assert not api.unscripted, f"requests no answer was scripted for: {api.unscripted}"
