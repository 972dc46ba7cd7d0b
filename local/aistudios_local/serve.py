"""``aistudios-export local serve``: the HTTP API on 127.0.0.1, as API Gateway would call it.

Each HTTP request becomes an API Gateway REST proxy event (payload format 1.0) for the route
of ``ApiFunction``'s ``Api`` events in ``template.yaml``, and the real handler answers it
through the local stack's :class:`LambdaBridge`, so it runs with exactly its template
environment. Exports run in the background on moto's Step Functions engine.

Authentication is not enforced: API Gateway does that in AWS (IAM or an API key), and no
gateway stands in front of this server.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from aistudios_local.stack import LocalStack

API_FUNCTION = "ApiFunction"
"""The logical id of the API's function in template.yaml."""
HOST = "127.0.0.1"
DEFAULT_PORT = 3000
STAGE = "local"
MAX_BODY_BYTES = 10 * 1024 * 1024
"""API Gateway's payload limit."""
NOT_ENFORCED = (
    "Authentication is NOT enforced locally: in AWS, API Gateway checks IAM signatures or "
    "API keys; here, anything that can reach this port can start exports."
)


@dataclass(frozen=True)
class Route:
    """One ``Type: Api`` event of the function: a method on a resource path."""

    method: str
    resource: str

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Return the path parameters when ``method path`` is this route, else None."""
        if method != self.method:
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.resource))
        found = re.fullmatch(pattern, path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def routes_of(template: Mapping[str, Any], function: str = API_FUNCTION) -> list[Route]:
    """Return the routes of ``function``'s ``Api`` events in a parsed template."""
    events = template["Resources"][function]["Properties"].get("Events", {})
    return [
        Route(str(event["Properties"]["Method"]).upper(), str(event["Properties"]["Path"]))
        for event in events.values()
        if event.get("Type") == "Api"
    ]


def proxy_event(
    *,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    resource: str,
    path_parameters: Mapping[str, str] | None,
    source_ip: str = HOST,
) -> dict[str, Any]:
    """Build the API Gateway REST proxy event (format 1.0) of one HTTP request.

    Parameters
    ----------
    method, target
        The request line's method and target (path and query string, as sent).
    headers
        Every header as received, in order (repeated names included).
    body
        The request body; text when it is UTF-8, else base64 with ``isBase64Encoded``.
    resource, path_parameters
        The matched route (``/exports/{exportId}``) and its parameters, URL-decoded.
    """
    parts = urlsplit(target)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for name, value in pairs:
        multi_query.setdefault(name, []).append(value)
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    # What API Gateway adds on its way to the function.
    for name, value in (("X-Forwarded-For", source_ip), ("X-Forwarded-Proto", "http")):
        multi_headers.setdefault(name, [value])
    try:
        text, encoded = (body.decode("utf-8") if body else None), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    host = multi_headers.get("Host", multi_headers.get("host", [HOST]))[-1]
    return {
        "resource": resource,
        "path": parts.path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": encoded,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "path": parts.path,
            "stage": STAGE,
            "domainName": host,
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "identity": {
                "sourceIp": source_ip,
                "userAgent": multi_headers.get("User-Agent", [None])[-1],
                "caller": None,
                "user": None,
                "userArn": None,
                "accountId": None,
                "accessKey": None,
                "apiKey": None,
                "apiKeyId": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
            },
        },
    }


class LocalGateway:
    """What API Gateway does for the function: route a request, build its event, answer.

    Parameters
    ----------
    stack
        A started local stack: its bridge runs the function.
    """

    def __init__(self, stack: LocalStack) -> None:
        if stack.bridge is None or stack.resolver is None:
            raise RuntimeError("start the local stack before serving its API")
        self.bridge = stack.bridge
        self.function = stack.functions[API_FUNCTION]
        self.routes = routes_of(stack.resolver.template)

    def handle(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        source_ip: str = HOST,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one request: route it, invoke the function, turn its result into HTTP."""
        path = urlsplit(target).path
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is not None:
                break
        else:
            # API Gateway answers an unknown route itself (403 "Missing Authentication Token").
            return _json(HTTPStatus.NOT_FOUND, {"message": f"no route for {method} {path}"})
        event = proxy_event(
            method=method,
            target=target,
            headers=headers,
            body=body,
            resource=route.resource,
            path_parameters=parameters,
            source_ip=source_ip,
        )
        result, error_type = self.bridge.invoke(self.function.name, event)
        if error_type is not None or not isinstance(result, dict):
            # What API Gateway answers when the integration fails.
            return _json(HTTPStatus.BAD_GATEWAY, {"message": "Internal server error"})
        return _http_response(result)


class ApiServer:
    """Serve the template's API function over HTTP on 127.0.0.1.

    Parameters
    ----------
    stack
        A started local stack.
    port
        The port; 0 picks a free one (see :attr:`url`).
    log
        Where to write one line per request (None: nowhere).
    """

    def __init__(self, stack: LocalStack, *, port: int = DEFAULT_PORT, log: TextIO | None = None):
        self.gateway = LocalGateway(stack)
        self.log = log
        self._server = _Server((HOST, port), _Handler)
        self._server.api = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:3000``."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aistudios-api", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (from another thread) or Ctrl-C."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _json(status: HTTPStatus, payload: object) -> tuple[int, list[tuple[str, str]], bytes]:
    return status.value, [("Content-Type", "application/json")], json.dumps(payload).encode()


def _http_response(result: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn a proxy integration's result into status, headers and body."""
    headers: dict[str, list[str]] = {}
    for name, value in (result.get("headers") or {}).items():
        headers[name] = [str(value)]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = [str(v) for v in values]
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    pairs = [(name, value) for name, values in headers.items() for value in values]
    return int(result.get("statusCode", 502)), pairs, body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of clients connects at once: the listen backlog must hold them all.
    request_queue_size = 128
    api: ApiServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else 0
        if size > MAX_BODY_BYTES:
            self._reply(*_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "too large"}))
            self.close_connection = True
            return
        body = self.rfile.read(size) if size else b""
        status, headers, payload = self.server.api.gateway.handle(
            self.command, self.path, _header_pairs(self.headers), body, self.client_address[0]
        )
        self._reply(status, headers, payload)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        log = self.server.api.log
        if log is not None:
            log.write(f"{self.address_string()} {format % args}\n")
            log.flush()


def _header_pairs(message: Message) -> list[tuple[str, str]]:
    return [(str(name), str(value)) for name, value in message.items()]


def announce(server: ApiServer, stack: LocalStack, out: TextIO) -> None:
    """Say where the API is, that nothing checks who calls it, and how to try it."""
    print(f"API of the local stack on {server.url} (bucket {stack.bucket})", file=out)
    print(f"WARNING: {NOT_ENFORCED}", file=out)
    print(
        f'  curl -X POST {server.url}/exports -d \'{{"projectId": "..."}}\'\n'
        f"  curl {server.url}/exports/EXPORT_ID\n"
        "Ctrl-C stops.",
        file=out,
    )
    out.flush()


def serve(stack: LocalStack, *, port: int = DEFAULT_PORT, out: TextIO = sys.stderr) -> None:
    """Serve the API of a started stack until Ctrl-C, with AI Studios' webhooks landing on it."""
    server = stack.serve_api(port, log=out)
    try:
        announce(server, stack, out)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping", file=out)
    finally:
        server.stop()
