"""Answer moto's Lambda ``Invoke`` calls by running the real handlers in this process.

moto's Lambda needs Docker; the state machine only needs an answer. A botocore
``before-call.lambda.Invoke`` hook on boto3's default session returns what Lambda would:
the handler's JSON, or ``FunctionError: Unhandled`` with ``{errorType, errorMessage, ...}`` so
that Retry/Catch see the exception's class name. Each invocation runs with exactly its
function's environment variables, one at a time (the environment is process-wide).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders

Handler = Callable[[Any, Any], Any]


@dataclass
class LocalFunction:
    """One function of the template, ready to run in-process."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int = 3
    memory: int = 128
    _module: ModuleType | None = field(default=None, repr=False)

    def load(self) -> Handler:
        """Import the handler's module from its file, under a name of its own."""
        module_name, _, attribute = self.handler.rpartition(".")
        if self._module is None:
            path = self.code_dir / (module_name.replace(".", "/") + ".py")
            spec = importlib.util.spec_from_file_location(
                f"_local_{self.logical_id}_{module_name}", path
            )
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            # As in Lambda: the module is importable by name (dataclasses need that) and its
            # code directory is on the path (for modules next to the handler).
            sys.modules[spec.name] = module
            if str(self.code_dir) not in sys.path:
                sys.path.append(str(self.code_dir))
            spec.loader.exec_module(module)
            self._module = module
        handler: Handler = getattr(self._module, attribute)
        return handler


@dataclass(frozen=True)
class Invocation:
    """A record of one invocation, for tests and progress display."""

    function: str
    payload: Any
    result: Any
    error_type: str | None


class _Context:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, fn: LocalFunction) -> None:
        self.function_name = fn.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = fn.arn
        self.memory_limit_in_mb = fn.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{fn.name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + fn.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaBridge:
    """Routes Lambda ``Invoke`` calls made through boto3's default session to local handlers."""

    def __init__(self, functions: Mapping[str, LocalFunction], base_env: Mapping[str, str]) -> None:
        self._functions = {key: fn for fn in functions.values() for key in (fn.name, fn.arn)}
        self._base_env = dict(base_env)
        self._lock = threading.Lock()
        self.invocations: list[Invocation] = []
        self.on_invocation: Callable[[Invocation], None] | None = None

    def install(self) -> None:
        """Register the hook on boto3's default session."""
        boto3._get_default_session().events.register(
            "before-call.lambda.Invoke",
            self._on_invoke,  # type: ignore[arg-type]  # a before-call hook may answer
        )

    def uninstall(self) -> None:
        """Remove the hook."""
        boto3._get_default_session().events.unregister(
            "before-call.lambda.Invoke",
            self._on_invoke,  # type: ignore[arg-type]
        )

    def invoke(self, name: str, payload: Any) -> tuple[Any, str | None]:
        """Run a function's handler; return ``(result or error payload, error type or None)``."""
        fn = self._functions[name]
        with self._lock, self._environment(fn):
            try:
                result = fn.load()(payload, _Context(fn))
                error_type = None
                json.dumps(result)  # Lambda must serialise it: fail here as Lambda would.
            except Exception as e:
                error_type = type(e).__name__
                result = {
                    "errorMessage": str(e),
                    "errorType": error_type,
                    "requestId": "",
                    "stackTrace": traceback.format_tb(e.__traceback__),
                }
        record = Invocation(fn.logical_id, payload, result, error_type)
        self.invocations.append(record)
        if self.on_invocation is not None:
            self.on_invocation(record)
        return result, error_type

    def _on_invoke(
        self, params: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        # url_path is /2015-03-31/functions/{name or ARN, url-encoded}/invocations
        name = unquote(params["url_path"].split("/functions/", 1)[1].rsplit("/invocations", 1)[0])
        if name not in self._functions:
            return None  # not ours: let moto answer
        body = params.get("body") or b"{}"
        payload = json.loads(body.decode() if isinstance(body, bytes) else body)
        result, error_type = self.invoke(name, payload)
        response: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": io.BytesIO(json.dumps(result).encode()),
        }
        if error_type is not None:
            response["FunctionError"] = "Unhandled"
        return AWSResponse(params.get("url", ""), 200, HTTPHeaders(), None), response

    @contextmanager
    def _environment(self, fn: LocalFunction) -> Iterator[None]:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self._base_env)
        os.environ.update(fn.environment)
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = fn.name
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
