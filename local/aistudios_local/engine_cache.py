"""Caches for moto's Step Functions engine: what it recomputes for every execution and task.

moto's engine (a port of LocalStack's interpreter) spends most of a local batch's CPU on two
things whose results do not change during a run (DESIGN.md, "Costs of the engine itself"):

- it lexes and parses the whole definition with ANTLR for every execution it starts (about
  0.15 s of CPU for ``export.asl.json``): :class:`ParseTreeCache` keeps the parse tree of each
  definition text (each node's text computed once) and only re-runs moto's preprocessor on it,
  which builds the execution's evaluation components afresh, exactly as an uncached parse does
  (the components are not shared: they lazily take ids that an execution's heap is keyed by);
- it creates a new boto3 client for every Task, Map reader and ``states:*`` call (loading the
  service model and building the endpoint resolver each time): :class:`ClientCache` keeps one
  client per integration module, service, region, endpoint and boto3 default session.

Both are exact: a cached parse tree is the one ANTLR would produce again for the same text
(the preprocessor only reads it), and moto's factory builds every client of one key
identically (it ignores the state's credentials). Both are safe under concurrency: lookups and
stores take a lock; a miss computes outside it, and two threads missing at once both compute
an equivalent value, of which the first stored is kept. botocore clients are thread-safe.

:class:`EngineCache` installs both, and :class:`~aistudios_local.engine_speed.EngineSpeed`'s
shims, for the length of a run (:class:`~aistudios_local.moto_shims.
MotoShims` does, after its own patches, so that cached clients carry the shims' hooks) and
drops every cached value when it is uninstalled.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
from moto.core.models import botocore_stubber
from moto.settings import moto_server_port
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
    resource_eval_s3 as item_reader_s3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (  # noqa: E501 - moto's module path
    resource_eval_s3 as result_writer_s3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_dynamodb,
    state_task_service_events,
    state_task_service_sfn,
    state_task_service_sns,
    state_task_service_sqs,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

from aistudios_local.engine_speed import EngineSpeed
from aistudios_local.patches import Patches

__all__ = ["CLIENT_MODULES", "ClientCache", "EngineCache", "ParseTreeCache"]

CLIENT_MODULES: tuple[ModuleType, ...] = (
    lambda_eval_utils,
    state_task_service_sfn,
    state_task_service_aws_sdk,
    state_task_service_events,
    state_task_service_dynamodb,
    state_task_service_sqs,
    state_task_service_sns,
    item_reader_s3,
    result_writer_s3,
)
"""The engine's modules that create a boto3 client per call (``boto_client_for``)."""

MAX_DEFINITIONS = 64
"""Parse trees kept at most (a run has a handful of definitions; tests create many)."""


class ParseTreeCache:
    """Parse each definition text once; build each execution's components from the kept tree.

    Parameters
    ----------
    parse
        moto's ``AmazonStateLanguageParser.parse``: text → ``(program, parse tree)``.
    max_definitions
        Least recently used trees beyond this many are dropped.
    """

    def __init__(
        self,
        parse: Callable[[str], tuple[Any, Any]],
        max_definitions: int = MAX_DEFINITIONS,
    ) -> None:
        self._parse = parse
        self._max = max_definitions
        self._trees: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.parses = 0
        """How many definitions were lexed and parsed (cache misses)."""
        self.reuses = 0
        """How many executions were built from a kept tree (cache hits)."""

    def parse(self, definition: str) -> tuple[Any, Any]:
        """Return ``(program, tree)`` as moto's parser does, parsing the text only once.

        A definition that does not parse raises as it always did, and is not kept.
        """
        with self._lock:
            tree = self._trees.get(definition)
            if tree is not None:
                self._trees.move_to_end(definition)
                self.reuses += 1
        if tree is not None:
            # New components for every execution: they are what an execution may change.
            return Preprocessor().visit(tree), tree
        program, tree = self._parse(definition)
        _freeze_text(tree)
        with self._lock:
            self.parses += 1
            self._trees.setdefault(definition, tree)
            while len(self._trees) > self._max:
                self._trees.popitem(last=False)
        return program, tree

    def clear(self) -> None:
        """Forget every kept tree."""
        with self._lock:
            self._trees.clear()


def _freeze_text(node: Any) -> None:
    """Give each rule node of a kept tree its text, computed once.

    ANTLR's ``RuleContext.getText`` joins its whole subtree's text on every call, and moto's
    preprocessor asks at every level: half of its time. A kept tree never changes, so each
    node's text is fixed; an instance attribute answers in its method's place.
    (Recursive: ASL nests a few dozen levels at most, far below Python's limit.)
    """
    if not hasattr(node, "children"):
        return  # a terminal node: its text is its token's, already at hand
    for child in node.children or ():
        _freeze_text(child)
    text = node.getText()
    node.getText = lambda: text


class ClientCache:
    """One boto3 client per (integration module, service, region, endpoint, default session).

    The default session is part of the key because a client copies its session's event hooks
    when it is created (the Lambda bridge's ``before-call.lambda.Invoke`` among them): a stack
    that sets up a new default session gets new clients.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self.created = 0
        """How many clients moto's factory created (cache misses)."""
        self.reused = 0
        """How many calls got a kept client (cache hits)."""

    def factory(self, module: ModuleType, create: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a module's ``boto_client_for`` (as it is now, shims included) with the cache."""

        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            # moto's factory ignores state_credentials, so they are not part of the key; what
            # it does read is whether requests are intercepted (else moto server's port).
            key = (
                module.__name__,
                service,
                region,
                botocore_stubber.enabled,
                moto_server_port(),
                boto3.DEFAULT_SESSION,
            )
            with self._lock:
                client = self._clients.get(key)
                if client is not None:
                    self.reused += 1
                    return client
            client = create(region=region, service=service, state_credentials=state_credentials)
            with self._lock:
                self.created += 1
                return self._clients.setdefault(key, client)

        return boto_client_for

    def clear(self) -> None:
        """Forget every kept client."""
        with self._lock:
            self._clients.clear()


class EngineCache:
    """Install both caches into moto's engine; undo it. Idempotent, like the shims.

    Examples
    --------
    >>> cache = EngineCache()
    >>> cache.install()
    >>> # ... run executions: each definition is parsed once, each client created once
    >>> cache.uninstall()
    """

    def __init__(self) -> None:
        self.trees = ParseTreeCache(AmazonStateLanguageParser.parse)
        self.clients = ClientCache()
        self.speed = EngineSpeed()
        self._patches = Patches()

    @property
    def installed(self) -> bool:
        """Whether the caches are in place."""
        return bool(self._patches)

    def install(self) -> None:
        """Patch moto's parser and client factories (as they are now) with the caches."""
        if self._patches:
            return
        self.trees = ParseTreeCache(AmazonStateLanguageParser.parse)
        self._patches.replace(AmazonStateLanguageParser, "parse", staticmethod(self.trees.parse))
        for module in CLIENT_MODULES:
            factory = self.clients.factory(module, module.boto_client_for)
            self._patches.replace(module, "boto_client_for", factory)
        self.speed.install()

    def uninstall(self) -> None:
        """Restore moto as it was and drop what was cached."""
        self.speed.uninstall()
        self._patches.restore()
        self.trees.clear()
        self.clients.clear()
