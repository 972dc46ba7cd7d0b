"""An HTTPS server on loopback with a self-signed certificate for a chosen name.

Shared by the tests of the pinned transport, of the API client behind a CONNECT proxy and of
the relay to a caller's webhook (:func:`self_signed`): the certificate is its own CA, so a
test trusts it by pointing ``REQUESTS_CA_BUNDLE`` at it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.unit._downloads import ServerThread


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a certificate for ``name`` (a host name, or an address named as one) and its key."""
    try:
        alternative: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alternative = x509.DNSName(name)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class TlsServer:
    """An HTTPS server on 127.0.0.1 with a certificate for ``name``; records SNI and Host."""

    def __init__(self, directory: Path, name: str, body: bytes = b"ok") -> None:
        self.cert_file, key_file = self_signed(directory, name)
        self.sni: list[str | None] = []
        self.host_headers: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.host_headers.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, key_file)
        context.sni_callback = lambda sock, sni, ctx: self.sni.append(sni)
        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.serving = ServerThread(self.httpd)
        self.serving.start()

    def stop(self) -> None:
        self.serving.stop()
