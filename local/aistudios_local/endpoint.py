"""``aistudios-export local up``: the local stack's AWS services on one loopback HTTP endpoint.

Any AWS client reaches the local stack by ``AWS_ENDPOINT_URL=http://127.0.0.1:PORT``: each
request goes to the service its SigV4 credential scope names and is answered by moto's own
request dispatcher (the one ``mock_aws`` routes in-process clients through), so the requests
share moto's backends with the stack, its Step Functions engine and its rule deliveries: an
upload under the manifest prefix starts a batch, as in AWS. Two things moto cannot answer here
are answered by the stack itself:

- Lambda ``Invoke`` of one of the template's functions runs its real handler through the
  stack's :class:`~aistudios_local.lambda_bridge.LambdaBridge` (moto would need Docker);
- CloudFormation ``DescribeStacks`` and ``ListStackResources`` of the local stack answer with
  the template's ``Outputs``, ``Parameters`` and resources, resolved as the stack created them,
  so that ``--stack NAME`` finds the local resources (moto's CloudFormation needs packages the
  project does not install).

Only 127.0.0.1 is served; nothing checks signatures (moto does not either).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from botocore.awsrequest import AWSPreparedRequest
from botocore.compat import HTTPHeaders
from moto.core.models import botocore_stubber

from aistudios_local.resources import ACCOUNT, REGION, STACK_NAME

if TYPE_CHECKING:
    from aistudios_local.stack import LocalStack

HOST = "127.0.0.1"
UNKNOWN_OPERATION = "UnknownOperationException"
"""The error of an operation moto does not implement (as AWS names an unknown operation)."""
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_INVOKE = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")
_CFN_NS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
_DEPLOYED_TYPES = {
    "AWS::Serverless::Function": "AWS::Lambda::Function",
    "AWS::Serverless::StateMachine": "AWS::StepFunctions::StateMachine",
    "AWS::Serverless::Api": "AWS::ApiGateway::RestApi",
    "AWS::Serverless::LayerVersion": "AWS::Lambda::LayerVersion",
}
"""What CloudFormation lists for the SAM resource types (after the transform)."""
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


class AwsEndpoint:
    """Serve a started :class:`LocalStack`'s AWS services on ``http://127.0.0.1:PORT``.

    Parameters
    ----------
    stack
        The started local stack (moto is active in this process).
    port
        The port; 0 picks a free one (see :attr:`url`).
    """

    def __init__(self, stack: LocalStack, port: int = 0) -> None:
        self.stack = stack
        self.created = datetime.now(UTC)
        handler = type("_Handler", (_Handler,), {"endpoint": self})
        self._server = ThreadingHTTPServer((HOST, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def stack_name(self) -> str:
        """The name ``DescribeStacks`` knows the local stack by."""
        return STACK_NAME

    def start(self) -> AwsEndpoint:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- CloudFormation ------------------------------------------------------------------------

    def outputs(self) -> list[tuple[str, str, str]]:
        """Return ``(key, value, description)`` of each of the template's outputs."""
        resolver = self.stack.resolver
        assert resolver is not None
        found = []
        for key, output in resolver.template.get("Outputs", {}).items():
            if "Condition" in output and not resolver.condition(output["Condition"]):
                continue
            try:
                value = resolver.resolve(output["Value"])
            except ValueError:
                continue  # names something the local stack does not create
            found.append((key, str(value), str(output.get("Description", ""))))
        return found

    def resources(self) -> list[tuple[str, str, str]]:
        """Return ``(logical id, type, physical id)`` of each resource the template creates."""
        resolver = self.stack.resolver
        assert resolver is not None
        found = []
        for logical, resource in resolver.template["Resources"].items():
            if "Condition" in resource and not resolver.condition(resource["Condition"]):
                continue
            kind = _DEPLOYED_TYPES.get(resource["Type"], resource["Type"])
            found.append((logical, kind, resolver.refs.get(logical, "")))
        return found

    def cloudformation(self, form: dict[str, str]) -> tuple[int, str]:
        """Answer a CloudFormation query request: ``(status, XML body)``."""
        action = form.get("Action", "")
        name = form.get("StackName", STACK_NAME)
        stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK_NAME}/local"
        if action not in ("DescribeStacks", "ListStackResources", "DescribeStackResources"):
            return _cfn_error(400, "InvalidAction", f"{action} is not served by the local stack")
        if name not in (STACK_NAME, stack_id):
            return _cfn_error(400, "ValidationError", f"Stack with id {name} does not exist")
        created = self.created.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if action == "DescribeStacks":
            resolver = self.stack.resolver
            assert resolver is not None
            parameters = "".join(
                f"<member><ParameterKey>{escape(k)}</ParameterKey>"
                f"<ParameterValue>{escape(v)}</ParameterValue></member>"
                for k, v in resolver.parameter_values().items()
            )
            outputs = "".join(
                f"<member><OutputKey>{escape(k)}</OutputKey><OutputValue>{escape(v)}</OutputValue>"
                f"<Description>{escape(d)}</Description></member>"
                for k, v, d in self.outputs()
            )
            body = (
                f"<Stacks><member><StackName>{STACK_NAME}</StackName>"
                f"<StackId>{stack_id}</StackId><CreationTime>{created}</CreationTime>"
                "<StackStatus>CREATE_COMPLETE</StackStatus>"
                f"<Parameters>{parameters}</Parameters><Outputs>{outputs}</Outputs>"
                "</member></Stacks>"
            )
        else:
            element = (
                "StackResourceSummaries" if action == "ListStackResources" else "StackResources"
            )
            stamp = "LastUpdatedTimestamp" if action == "ListStackResources" else "Timestamp"
            members = "".join(
                f"<member><StackName>{STACK_NAME}</StackName>"
                f"<LogicalResourceId>{escape(logical)}</LogicalResourceId>"
                f"<PhysicalResourceId>{escape(physical)}</PhysicalResourceId>"
                f"<ResourceType>{escape(kind)}</ResourceType><{stamp}>{created}</{stamp}>"
                "<ResourceStatus>CREATE_COMPLETE</ResourceStatus></member>"
                for logical, kind, physical in self.resources()
            )
            body = f"<{element}>{members}</{element}>"
        return 200, (
            f'<{action}Response xmlns="{_CFN_NS}"><{action}Result>{body}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{action}Response>"
        )


def _cfn_error(status: int, code: str, message: str) -> tuple[int, str]:
    return status, (
        f'<ErrorResponse xmlns="{_CFN_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )


class _Handler(BaseHTTPRequestHandler):
    """One request: to the stack's Lambda bridge, its CloudFormation answers, or moto."""

    endpoint: AwsEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the stack's own output is what matters."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _scope(self) -> tuple[str, str]:
        """Return ``(region, service)`` of the request's SigV4 credential scope."""
        found = _SCOPE.search(self.headers.get("Authorization", ""))
        if found is None:
            query = parse_qs(urlsplit(self.path).query)
            credential = unquote((query.get("X-Amz-Credential") or [""])[0])
            found = _SCOPE.search(f"Credential={credential}")
        return (found[1], found[2]) if found else (REGION, "s3")

    def _dispatch(self) -> None:
        try:
            body = self._body()
            region, service = self._scope()
            path = urlsplit(self.path).path
            invoke = _INVOKE.fullmatch(path) if service == "lambda" else None
            if service == "cloudformation":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                status, text = self.endpoint.cloudformation(form)
                self._answer(status, {"Content-Type": "text/xml"}, text.encode())
            elif (
                invoke is not None
                and self.command == "POST"
                and self._invoke(unquote(invoke[1]), body)
            ):
                return
            else:
                self._moto(region, service, body)
        except NotImplementedError as e:  # what AWS answers for an operation it does not know
            message = json.dumps({"__type": UNKNOWN_OPERATION, "message": str(e)}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.0"}
            self._answer(400, {**headers, "x-amzn-ErrorType": UNKNOWN_OPERATION}, message)
        except Exception as e:  # the client gets a 500 rather than a dropped connection
            message = json.dumps({"message": f"{type(e).__name__}: {e}"}).encode()
            self._answer(500, {"Content-Type": "application/json"}, message)

    def _invoke(self, name: str, body: bytes) -> bool:
        """Run the function's handler; False when it is not one of the stack's functions."""
        bridge = self.endpoint.stack.bridge
        known = {key for f in self.endpoint.stack.functions.values() for key in (f.name, f.arn)}
        if bridge is None or name not in known:
            return False
        payload = json.loads(body or b"{}")
        kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind == "DryRun":
            self._answer(204, {}, b"")
            return True
        if kind == "Event":
            threading.Thread(target=bridge.invoke, args=(name, payload), daemon=True).start()
            self._answer(202, {}, b"")
            return True
        result, error_type = bridge.invoke(name, payload)
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if error_type is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        self._answer(200, headers, json.dumps(result).encode())
        return True

    def _moto(self, region: str, service: str, body: bytes) -> None:
        host = f"{service}.{region}.amazonaws.com"
        headers = HTTPHeaders()
        for key, value in self.headers.items():
            headers[key] = value
        del headers["Host"]
        headers["Host"] = host
        request = AWSPreparedRequest(
            method=self.command,
            url=f"https://{host}{self.path}",
            headers=headers,
            body=body,
            stream_output=False,
        )
        answer = botocore_stubber.process_request(request)
        if answer is None:
            message = json.dumps({"message": f"{service} is not served here"}).encode()
            self._answer(404, {"Content-Type": "application/json"}, message)
            return
        status, answer_headers, answer_body = answer
        if isinstance(answer_body, str):
            data = answer_body.encode()
        elif isinstance(answer_body, bytes | bytearray):
            data = bytes(answer_body)
        else:
            data = b"".join(answer_body or [])
        self._answer(int(status), dict(answer_headers or {}), data)

    def _answer(self, status: int, headers: dict[str, Any], body: bytes) -> None:
        self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus else "")
        length = None
        for key, value in headers.items():
            if key.lower() == "content-length":
                length = str(value)
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, str(value))
        if self.command == "HEAD":
            self.send_header("Content-Length", length or "0")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
