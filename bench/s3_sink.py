"""A minimal S3 endpoint that checks what it receives and keeps nothing but its checksums.

Enough of S3's REST API for the copy benchmark's clients (botocore, s3transfer): PutObject,
CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload and
PutObjectTagging, path-style. Every body is read into one reusable buffer, its CRC32 is
checked against the one the client sent (in a header, or in the trailer of an aws-chunked
body) as S3 does, and the bytes are dropped. A completed object keeps its size, its CRC32
(combined from its parts') and its tags; ``GET /_stats`` reports them, with a count of any
server-side copy asked for (answered 501), so the benchmark can verify each copy.

Runs as its own process (``python -m bench.s3_sink``), printing its endpoint URL first.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import sys
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bench.sources import serve

_BUFFER_SIZE = 1024 * 1024


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """Return the CRC32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's)."""
    if len2 <= 0:
        return crc1

    def times(matrix: list[int], vector: int) -> int:
        total, i = 0, 0
        while vector:
            if vector & 1:
                total ^= matrix[i]
            vector >>= 1
            i += 1
        return total

    def square(matrix: list[int]) -> list[int]:
        return [times(matrix, matrix[n]) for n in range(32)]

    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = square(odd)  # two zero bits
    odd = square(even)  # four zero bits
    while True:
        even = square(odd)
        if len2 & 1:
            crc1 = times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = square(even)
        if len2 & 1:
            crc1 = times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


@dataclass
class _Upload:
    key: str
    parts: dict[int, tuple[int, int]] = field(default_factory=dict)  # number -> (size, crc)


@dataclass
class _Object:
    size: int
    crc32: int
    tags: dict[str, str] = field(default_factory=dict)
    parts: int = 0
    max_parts_in_flight: int = 0


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.uploads: dict[str, _Upload] = {}
        self.objects: dict[str, _Object] = {}
        self.copies = 0
        self.bytes_received = 0
        self.in_flight = 0
        self.max_in_flight = 0


STATE = _State()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _target(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        return unquote(parts.path), parse_qs(parts.query, keep_blank_values=True)

    def _answer(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
        self._answer(status, body, {"Content-Type": "application/xml"})

    def _read_exactly(self, body: _Body, n: int, view: memoryview, crc: int) -> int:
        while n:
            got = body.readinto(view[: min(n, len(view))])
            if not got:
                raise ConnectionError("the body ended early")
            crc = zlib.crc32(view[:got], crc)
            n -= got
        return crc

    def _read_body(self) -> tuple[int, int, str | None]:
        """Read the body; return its decoded size, its CRC32 and the CRC32 the client sent."""
        view = memoryview(bytearray(_BUFFER_SIZE))
        body = _Body(self.rfile, self.headers)
        sent = self.headers.get("x-amz-checksum-crc32")
        if "aws-chunked" not in self.headers.get("Content-Encoding", ""):
            size, crc = 0, 0
            while got := body.readinto(view):
                size += got
                crc = zlib.crc32(view[:got], crc)
            return size, crc, sent
        size, crc = 0, 0
        while True:  # aws-chunked: "<hex size>\r\n<bytes>\r\n" ... "0\r\n<trailers>\r\n"
            chunk = int(body.readline().split(b";")[0], 16)
            if chunk == 0:
                break
            crc = self._read_exactly(body, chunk, view, crc)
            size += chunk
            body.readline()  # the chunk's CRLF
        while trailer := body.readline().strip():
            name, _, value = trailer.decode().partition(":")
            if name.lower() == "x-amz-checksum-crc32":
                sent = value.strip()
        while body.readinto(view):  # whatever framing is left
            pass
        return size, crc, sent

    def _receive(self) -> tuple[int, int] | None:
        """Read and check a body; answer the error and return None if its CRC32 is wrong."""
        with STATE.lock:
            STATE.in_flight += 1
            STATE.max_in_flight = max(STATE.max_in_flight, STATE.in_flight)
        try:
            size, crc, sent = self._read_body()
        finally:
            with STATE.lock:
                STATE.in_flight -= 1
        with STATE.lock:
            STATE.bytes_received += size
        if sent is not None and sent != _b64_crc(crc):
            self._error(400, "BadDigest")
            return None
        return size, crc

    def do_PUT(self) -> None:
        path, query = self._target()
        if "x-amz-copy-source" in self.headers:
            with STATE.lock:
                STATE.copies += 1
            self._error(501, "NotImplemented")
            return
        if "tagging" in query:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            tags = dict(
                zip(
                    re.findall(r"<Key>(.*?)</Key>", body),
                    re.findall(r"<Value>(.*?)</Value>", body),
                    strict=True,
                )
            )
            with STATE.lock:
                found = STATE.objects.get(path)
                if found is not None:
                    found.tags = tags
            if found is None:
                self._error(404, "NoSuchKey")
            else:
                self._answer(200)
            return
        received = self._receive()
        if received is None:
            return
        size, crc = received
        if "partNumber" in query:
            upload_id = query["uploadId"][0]
            with STATE.lock:
                upload = STATE.uploads.get(upload_id)
                if upload is not None:
                    upload.parts[int(query["partNumber"][0])] = (size, crc)
            if upload is None:
                self._error(404, "NoSuchUpload")
                return
            self._answer(
                200, headers={"ETag": f'"{crc:08x}"', "x-amz-checksum-crc32": _b64_crc(crc)}
            )
            return
        version = self._store(path, _Object(size, crc))
        self._answer(200, headers={"ETag": f'"{crc:08x}"', "x-amz-version-id": version})

    def do_POST(self) -> None:
        path, query = self._target()
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        bucket, _, key = path.lstrip("/").partition("/")
        if "uploads" in query:
            upload_id = f"upload-{next(STATE.ids)}"
            with STATE.lock:
                STATE.uploads[upload_id] = _Upload(path)
            xml = (
                f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
            )
            self._answer(200, xml.encode(), {"Content-Type": "application/xml"})
            return
        upload_id = query.get("uploadId", [""])[0]
        with STATE.lock:
            upload = STATE.uploads.pop(upload_id, None)
        numbers = [int(n) for n in re.findall(r"<PartNumber>(\d+)</PartNumber>", body)]
        if (
            upload is None
            or numbers != sorted(upload.parts)
            or numbers != list(range(1, len(numbers) + 1))
        ):
            self._error(400, "InvalidPart")
            return
        size, crc = 0, 0
        for number in numbers:
            part_size, part_crc = upload.parts[number]
            crc = crc32_combine(crc, part_crc, part_size)
            size += part_size
        version = self._store(path, _Object(size, crc, parts=len(numbers)))
        xml = (
            f"<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
            f'<ETag>"{crc:08x}-{len(numbers)}"</ETag></CompleteMultipartUploadResult>'
        )
        self._answer(
            200, xml.encode(), {"Content-Type": "application/xml", "x-amz-version-id": version}
        )

    def do_DELETE(self) -> None:
        path, query = self._target()
        with STATE.lock:
            if "uploadId" in query:
                STATE.uploads.pop(query["uploadId"][0], None)
            else:
                STATE.objects.pop(path, None)
        self._answer(204)

    def do_GET(self) -> None:
        path, query = self._target()
        if path != "/_stats":
            self._error(404, "NoSuchKey")
            return
        with STATE.lock:
            stats: dict[str, Any] = {
                "copies": STATE.copies,
                "bytes_received": STATE.bytes_received,
                "open_uploads": len(STATE.uploads),
                "max_in_flight": STATE.max_in_flight,
                "objects": {
                    k: {"size": o.size, "crc32": o.crc32, "tags": o.tags, "parts": o.parts}
                    for k, o in STATE.objects.items()
                },
            }
            if "reset" in query:
                STATE.copies = STATE.bytes_received = STATE.max_in_flight = 0
                STATE.objects.clear()
                STATE.uploads.clear()
        self._answer(200, json.dumps(stats).encode(), {"Content-Type": "application/json"})

    def _store(self, path: str, obj: _Object) -> str:
        with STATE.lock:
            STATE.objects[path] = obj
            return f"v{next(STATE.ids)}"

    def log_message(self, format: str, *args: object) -> None:
        """Keep the benchmark's output to its table."""


class _Body:
    """A request's body as a plain stream, HTTP ``Transfer-Encoding: chunked`` or not."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._left = 0 if self._chunked else int(headers.get("Content-Length", "0"))
        self._done = False
        self._one = memoryview(bytearray(1))

    def readinto(self, view: memoryview) -> int:
        """Read up to ``len(view)`` body bytes into ``view``; 0 at the end."""
        if self._left == 0:
            if not self._chunked or self._done:
                return 0
            size = int(self._rfile.readline(1024).split(b";")[0], 16)
            if size == 0:
                while self._rfile.readline(1024).strip():  # HTTP trailers
                    pass
                self._done = True
                return 0
            self._left = size
        got = self._rfile.readinto(view[: min(len(view), self._left)])
        if not got:
            raise ConnectionError("the body ended early")
        self._left -= got
        if self._chunked and self._left == 0:
            self._rfile.readline(8)  # the HTTP chunk's CRLF
        return int(got)

    def readline(self) -> bytes:
        """Read one short line of the body (aws-chunked framing)."""
        line = bytearray()
        while len(line) < 1024 and self.readinto(self._one):
            line += self._one
            if line.endswith(b"\n"):
                break
        return bytes(line)


def _b64_crc(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; print the endpoint URL first."""
    serve(_Handler, "python -m bench.s3_sink", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
