"""A loopback HTTP(S) file server for the copy benchmark, and the bytes it serves.

``GET /video/<size>?sig=...`` answers ``size`` bytes with a Content-Length: a fixed 8 MiB block
of seeded random bytes, repeated, written from one preallocated buffer through memoryview
slices (nothing is generated or copied per request), so the server is not what limits a
download. It runs as its own process (``python -m bench.sources``) so that it does not share
the measured process's GIL; it prints its base URL on the first line of standard output.

`expected_digests` computes the SHA-256 and CRC32 of the same bytes, to verify a copy.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import ssl
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BLOCK_SIZE = 8 * 1024 * 1024
_WRITE_SIZE = 1024 * 1024
_SEED = 9


def block() -> bytes:
    """Return the block of bytes that every served file repeats."""
    return random.Random(_SEED).randbytes(BLOCK_SIZE)


def expected_digests(size: int) -> tuple[str, int]:
    """Return the hex SHA-256 and the CRC32 of the ``size`` bytes the server serves.

    Parameters
    ----------
    size
        The file's length in bytes.

    Returns
    -------
    tuple[str, int]
        ``(sha256 hex, crc32)``.
    """
    view = memoryview(block())
    digest, crc = hashlib.sha256(), 0
    for start in range(0, size, BLOCK_SIZE):
        piece = view[: min(BLOCK_SIZE, size - start)]
        digest.update(piece)
        crc = zlib.crc32(piece, crc)
    return digest.hexdigest(), crc


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    data = memoryview(block())

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            size = int(path.removeprefix("/video/"))
        except ValueError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        sent = 0
        while sent < size:
            offset = sent % BLOCK_SIZE
            n = min(_WRITE_SIZE, size - sent, BLOCK_SIZE - offset)
            self.wfile.write(self.data[offset : offset + n])
            sent += n

    def log_message(self, format: str, *args: object) -> None:
        """Keep the benchmark's output to its table."""


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; print the base URL first."""
    serve(_Handler, "python -m bench.sources", argv)


def serve(handler: type[BaseHTTPRequestHandler], prog: str, argv: list[str] | None) -> None:
    """Serve ``handler`` on a free loopback port (HTTPS with ``--cert``/``--key``) until killed.

    The first line printed is the server's URL, which the benchmark reads.
    """
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--cert", help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    scheme = "http"
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(f"{scheme}://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
