"""HTTP where urllib3 and requests differ: secrets out of logs and errors, redirects read as sent.

- urllib3 reports request URLs through several module loggers: when an answer's headers do not
  parse, ``urllib3.connection`` warns with the whole URL, query string included (a signed
  download URL's, a relayed webhook's); each logger has its queries cut, and a WARNING passes
  the log hygiene's INFO floor.
- A ``Location`` of raw UTF-8 bytes, which http.client reads as Latin-1, is read back as UTF-8
  before it is escaped (as requests did), so a redirect names the path the server meant.
- A token that cannot be a header value (a trailing newline) is refused as ``Unauthorized``
  naming its fingerprint, not a bare ``ValueError`` whose message is the token.
"""

from __future__ import annotations

import logging
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aistudios_export.client import AiStudiosClient, token_fingerprint
from aistudios_export.download import open_download
from aistudios_export.errors import ApiError, Unauthorized
from aistudios_export.observability import install_log_hygiene
from aistudios_export.pinning import PinnedPools
from aistudios_export.relay import WebhookRelay
from aistudios_export.urlguard import UrlPolicy
from tests.unit._downloads import SECRET, DownloadServer, ServerThread, free_port, serve


def malformed_headers(h: BaseHTTPRequestHandler) -> None:
    """200 whose header block holds a line that is not a header (a broken CDN or proxy)."""
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nnot a header line\r\n\r\nabc")
    h.wfile.flush()
    h.close_connection = True


def download_status(server: DownloadServer, path: str, *, max_redirects: int) -> int:
    """Open the server's ``path`` (signed) as FinalizeExport would; return the final status."""
    pools = PinnedPools()
    try:
        with open_download(
            lambda: server.url(path),
            pools,
            UrlPolicy.from_trusted_origin(server.origin),
            timeout=(2, 5),
            max_url_refreshes=0,
            max_redirects=max_redirects,
        ) as download:
            return download.response.status
    finally:
        pools.clear()


def test_a_download_whose_headers_do_not_parse_logs_no_query_string(
    server: DownloadServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/video"] = malformed_headers
    install_log_hygiene()
    caplog.set_level(logging.DEBUG)
    assert download_status(server, "/video", max_redirects=0) == 200

    assert server.hits == ["/video"]
    urllib3_records = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/video" in r.getMessage() for r in urllib3_records)  # urllib3 did log it
    leaking = [r.name for r in urllib3_records if "s3cr3t" in r.getMessage()]
    assert leaking == []
    assert SECRET not in caplog.text


def raw_utf8_redirect(h: BaseHTTPRequestHandler) -> None:
    """302 whose Location holds raw UTF-8 (as some servers send it), not percent-escapes."""
    location = "/vid\u00e9o.mp4".encode()
    h.wfile.write(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")
    h.wfile.flush()
    h.close_connection = True


def test_a_redirect_to_a_raw_utf8_location_requests_its_utf8_escapes(
    server: DownloadServer,
) -> None:
    server.routes["/start"] = raw_utf8_redirect
    server.routes["/vid%C3%A9o.mp4"] = serve(b"video")
    status = download_status(server, "/start", max_redirects=1)

    # requests read a Location's bytes as UTF-8; read as Latin-1 and escaped again they
    # name another path ("/vid%C3%83%C2%A9o.mp4").
    assert server.hits == ["/start", "/vid%C3%A9o.mp4"]
    assert status == 200


TOKEN = "tok-s3cr3t-value\n"
"""A token as an operator may paste it into the secret: with a trailing newline."""


def test_a_token_with_a_newline_fails_as_an_api_error_that_does_not_show_it() -> None:
    client = AiStudiosClient(f"http://127.0.0.1:{free_port()}", token=lambda *, fresh=False: TOKEN)

    with pytest.raises(Exception) as raised:
        client.get_progress("p1")

    shown = "".join(traceback.format_exception(raised.value))
    assert "s3cr3t" not in shown
    assert isinstance(raised.value, ApiError), type(raised.value).__name__
    # Refused, so the state machine mints a token in its place.
    assert isinstance(raised.value, Unauthorized)
    assert raised.value.token_fingerprint == token_fingerprint(TOKEN)


class MalformedHookHandler(BaseHTTPRequestHandler):
    """Answers every POST as :func:`malformed_headers` does (the body is read first)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        malformed_headers(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_relayed_webhook_whose_answer_headers_do_not_parse_logs_no_query_string(
    caplog: pytest.LogCaptureFixture,
) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), MalformedHookHandler)
    httpd.daemon_threads = True
    origin = f"http://127.0.0.1:{httpd.server_address[1]}"
    serving = ServerThread(httpd)
    serving.start()
    install_log_hygiene()
    caplog.set_level(logging.DEBUG)
    try:
        relay = WebhookRelay(UrlPolicy.from_trusted_origin(origin), PinnedPools())
        relayed = relay(f"{origin}/hook?key=s3cr3t", {"progress": 40})
    finally:
        serving.stop()

    assert relayed is True
    assert any("/hook" in r.getMessage() for r in caplog.records if r.name.startswith("urllib3"))
    assert "s3cr3t" not in caplog.text
