"""Answer moto's Lambda ``Invoke`` calls by running the real handlers in this process.

moto's Lambda needs Docker; the state machine only needs an answer. A botocore
``before-call.lambda.Invoke`` hook on boto3's default session returns what Lambda would:
the handler's JSON, or ``FunctionError: Unhandled`` with ``{errorType, errorMessage, ...}`` so
that Retry/Catch see the exception's class name.

Invocations run concurrently, as Lambda runs them, with no lock around them: each function
has a pool of containers (a fresh instance of its handler module each), and an invocation takes
an idle container or, when every one is busy, starts a new one. Each invocation sees exactly its
function's environment variables: while the bridge is installed, ``os.environ`` is a
:class:`ThreadEnviron`, which answers an invoking thread from that invocation's variables and
every other thread from the process's own.
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
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
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
    _idle: list[Handler] = field(default_factory=list, repr=False)
    _started: int = field(default=0, repr=False)
    _modules: list[str] = field(default_factory=list, repr=False)
    _pool_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def containers(self) -> int:
        """How many containers (handler module instances) this function has started."""
        return self._started

    def take_warm(self) -> Handler | None:
        """Return an idle container's handler, or None when every container is busy."""
        with self._pool_lock:
            return self._idle.pop() if self._idle else None

    def release(self, handler: Handler) -> None:
        """Give a container back once its invocation is over."""
        with self._pool_lock:
            self._idle.append(handler)

    def shut_down(self) -> None:
        """Drop every idle container and forget its module: nothing invokes them any more.

        Each container's module stays in ``sys.modules`` (under a name of its own) while the
        function lives, so that its dataclasses can be pickled and compared; a process that
        runs many stacks (a test session) would otherwise keep every container of every stack,
        with its clients. A later invocation starts a new container.
        """
        with self._pool_lock:
            self._idle.clear()
            names, self._modules = self._modules, []
        for name in names:
            sys.modules.pop(name, None)

    def load(self) -> Handler:
        """Start a container: import the handler's module from its file, under a name of its own."""
        module_name, _, attribute = self.handler.rpartition(".")
        with self._pool_lock:
            self._started += 1
            number = self._started
        path = self.code_dir / (module_name.replace(".", "/") + ".py")
        spec = importlib.util.spec_from_file_location(
            f"_local_{self.logical_id}_{module_name}_{number}", path
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        # As in Lambda: the module is importable by name (dataclasses need that) and its
        # code directory is on the path (for modules next to the handler).
        sys.modules[spec.name] = module
        with self._pool_lock:
            self._modules.append(spec.name)
        if str(self.code_dir) not in sys.path:
            sys.path.append(str(self.code_dir))
        spec.loader.exec_module(module)
        handler: Handler = getattr(module, attribute)
        return handler


@dataclass(frozen=True)
class Invocation:
    """A record of one invocation, for tests and progress display.

    A batch makes a few invocations per row, and every record is kept for the stack's life: the
    payload and the answer are kept as the JSON text Lambda exchanges (a fraction of the size of
    the dicts they decode to) and decoded, afresh, when read.

    Attributes
    ----------
    function
        The function's logical id.
    payload_json, result_json
        The event and the answer (or Lambda's error payload), as JSON text.
    error_type
        The handler's error type, or None when it returned.
    """

    function: str
    payload_json: str
    result_json: str
    error_type: str | None

    @classmethod
    def of(cls, function: str, payload: Any, result: Any, error_type: str | None) -> Invocation:
        """Record an invocation from its decoded payload and answer."""
        return cls(function, _compact_json(payload), _compact_json(result), error_type)

    @property
    def payload(self) -> Any:
        """The event the handler was given."""
        return json.loads(self.payload_json)

    @property
    def result(self) -> Any:
        """The handler's answer, or Lambda's error payload when it failed."""
        return json.loads(self.result_json)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


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
        self._record = threading.Lock()
        self.invocations: list[Invocation] = []
        self.on_invocation: Callable[[Invocation], None] | None = None

    def install(self) -> None:
        """Register the hook on boto3's default session; give invocations their environments."""
        _THREAD_ENVIRON.install()
        boto3._get_default_session().events.register(
            "before-call.lambda.Invoke",
            self._on_invoke,  # type: ignore[arg-type]  # a before-call hook may answer
        )

    def uninstall(self) -> None:
        """Remove the hook; shut the functions' containers down."""
        boto3._get_default_session().events.unregister(
            "before-call.lambda.Invoke",
            self._on_invoke,  # type: ignore[arg-type]
        )
        _THREAD_ENVIRON.uninstall()
        for fn in {id(fn): fn for fn in self._functions.values()}.values():
            fn.shut_down()

    def invoke(self, name: str, payload: Any) -> tuple[Any, str | None]:
        """Run a function's handler; return ``(result or error payload, error type or None)``."""
        fn = self._functions[name]
        variables = {**self._base_env, **fn.environment, "AWS_LAMBDA_FUNCTION_NAME": fn.name}
        result: Any
        error_type: str | None
        with _THREAD_ENVIRON.installed(), _THREAD_ENVIRON.variables(variables):
            try:
                handler = fn.take_warm() or fn.load()
            except Exception as e:  # Lambda reports an import failure like any other
                result, error_type = _failure(e)
            else:
                result, error_type = _run(handler, fn, payload)
                fn.release(handler)
        record = Invocation.of(fn.logical_id, payload, result, error_type)
        with self._record:
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


class ThreadEnviron(MutableMapping[str, str]):
    """``os.environ`` for threads that invoke functions: each sees its invocation's variables.

    A thread inside :meth:`variables` reads and writes a private copy; every other thread, the
    process's real environment. Installed (as ``os.environ``) by the bridges that are
    installed, counted, so that nested local stacks share it.
    """

    def __init__(self) -> None:
        self._real: MutableMapping[str, str] = os.environ
        self._local = threading.local()
        self._installed = 0
        self._lock = threading.Lock()

    def _current(self) -> MutableMapping[str, str]:
        own: MutableMapping[str, str] | None = getattr(self._local, "variables", None)
        return self._real if own is None else own

    def __getitem__(self, name: str) -> str:
        return self._current()[name]

    def __setitem__(self, name: str, value: str) -> None:
        self._current()[name] = value

    def __delitem__(self, name: str) -> None:
        del self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._current()))

    def __len__(self) -> int:
        return len(self._current())

    def copy(self) -> dict[str, str]:
        """Return a plain dict of what this thread sees (as ``os.environ.copy()`` does)."""
        return dict(self._current())

    @contextmanager
    def variables(self, variables: Mapping[str, str]) -> Iterator[None]:
        """Let this thread see exactly ``variables`` for the length of the block."""
        saved = getattr(self._local, "variables", None)
        self._local.variables = dict(variables)
        try:
            yield
        finally:
            self._local.variables = saved

    def install(self) -> None:
        """Become ``os.environ`` (once, however many bridges and invocations need it)."""
        with self._lock:
            if self._installed == 0:
                self._real = os.environ
                # Replacing the mapping (not its contents) is the point: B003 warns of the latter.
                os.environ = self  # type: ignore[assignment]  # noqa: B003
            self._installed += 1

    def uninstall(self) -> None:
        """Give ``os.environ`` back when the last user is done."""
        with self._lock:
            self._installed -= 1
            if self._installed == 0:
                os.environ = self._real  # type: ignore[assignment]  # noqa: B003

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Be ``os.environ`` for the length of the block."""
        self.install()
        try:
            yield
        finally:
            self.uninstall()


_THREAD_ENVIRON = ThreadEnviron()


def _run(handler: Handler, fn: LocalFunction, payload: Any) -> tuple[Any, str | None]:
    """Run one invocation: the handler's JSON answer, or Lambda's error payload."""
    try:
        result = handler(payload, _Context(fn))
        json.dumps(result)  # Lambda must serialise it: fail here as Lambda would.
    except Exception as e:
        return _failure(e)
    return result, None


def _failure(error: Exception) -> tuple[dict[str, Any], str]:
    error_type = type(error).__name__
    return {
        "errorMessage": str(error),
        "errorType": error_type,
        "requestId": "",
        "stackTrace": traceback.format_tb(error.__traceback__),
    }, error_type
