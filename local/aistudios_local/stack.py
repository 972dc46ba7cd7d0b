"""The embedded local stack: ``template.yaml`` on moto, handlers in-process, AI Studios on loopback.

What runs is the product itself: the state machine definition and its substitutions, the
functions' handlers and environment variables all come from the template. Local values enter
only as template parameters (the API's base URL and the one trusted download origin).

This module runs the stack's lifecycle and is what tests and the CLI use; the resources are
created by :mod:`aistudios_local.resources` and executions are watched and reported by
:mod:`aistudios_local.runs`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TextIO

import boto3
from moto import mock_aws

from aistudios_export import observability
from aistudios_export.webhooks import BASE_URL_FIELD, KEY_FIELD, WebhookKey, webhook_url
from aistudios_local.lambda_bridge import Invocation, LambdaBridge, LocalFunction
from aistudios_local.lambda_targets import DeliveriesNotSettled, LambdaDelivery
from aistudios_local.malloc_arenas import limit_malloc_arenas
from aistudios_local.model_tracking import WeakTracking
from aistudios_local.moto_shims import MotoShims, RuleDelivery
from aistudios_local.resources import ACCOUNT, REGION, create_resources, resolver_for
from aistudios_local.runs import ExportRun, wait_for_execution, watch_export
from aistudios_local.serve import ApiServer
from aistudios_local.simulator import DEFAULT_APP_ID, DEFAULT_USER_KEY, AiStudiosSimulator
from aistudios_local.template import ROOT, Resolver, load_template

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

__all__ = [
    "ROOT",
    "DeliveriesNotSettled",
    "ExportRun",
    "LambdaDelivery",
    "LocalStack",
    "wait_for_execution",
]

logger = logging.getLogger(__name__)

EXPORT_STATE_MACHINE = "ExportStateMachine"
OUTPUT_BUCKET = "OutputBucket"
CREDENTIALS_SECRET = "CredentialsSecret"  # noqa: S105 - logical ids, not secrets
TOKEN_SECRET = "TokenSecret"  # noqa: S105
DEFAULT_BUS_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
WEBHOOK_SECRET = "WebhookSecret"  # noqa: S105
STOP_SETTLE_SECONDS = 30.0
"""How long `LocalStack.stop` waits for rule deliveries to functions still running."""


class LocalStack:
    """Run the template's export pipeline in this process.

    Parameters
    ----------
    api_url
        An AI Studios-compatible server; when None a built-in simulator is started.
    simulator
        A simulator to use (and not stop) instead of starting one.
    credentials
        ``(appId, userKey)`` for ``api_url``; the simulator's by default.
    seed_token
        Put a valid token into the token secret first (as a deployed stack's rotation would);
        otherwise the first call is refused and the state machine's refresh path mints one.
    parameters
        Further template parameter overrides.
    environment
        Variables every function sees besides its template's (e.g. Powertools switches).
    webhooks
        Serve the HTTP API on loopback and name it in the webhook secret, so that exports hand
        AI Studios a webhook URL that wakes them (``webhook_url``); otherwise exports poll only.
    root
        The repository whose template.yaml, functions/ and statemachine/ are run.
    """

    def __init__(
        self,
        *,
        api_url: str | None = None,
        simulator: AiStudiosSimulator | None = None,
        credentials: tuple[str, str] | None = None,
        seed_token: bool = True,
        parameters: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        webhooks: bool = False,
        root: Path = ROOT,
    ) -> None:
        self.root = root
        self._own_simulator = simulator is None and api_url is None
        self.simulator = simulator or (AiStudiosSimulator() if api_url is None else None)
        self._api_url = api_url
        self._credentials = credentials
        self._seed_token = seed_token
        self._extra_parameters = dict(parameters or {})
        self._environment = dict(environment or {})
        self._webhooks = webhooks
        self.api_server: ApiServer | None = None
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._saved_env: dict[str, str] = {}
        self._moto_log_level = logging.NOTSET
        self.functions: dict[str, LocalFunction] = {}
        self.bridge: LambdaBridge | None = None
        self.resolver: Resolver | None = None
        self.events: list[dict[str, Any]] = []
        self.rule_deliveries: list[RuleDelivery] = []
        """Executions the template's EventBridge rules started (S3 uploads), in order."""
        self._shims = MotoShims(on_delivery=self.rule_deliveries.append)
        self._tracking = WeakTracking()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start the simulator (if any), moto, and create the template's resources."""
        # The functions hold the SDK's loggers above DEBUG at their cold start; the stack
        # writes the credentials secret before any of them runs.
        observability.install_log_hygiene()
        # Before any of moto's engine threads: else each gets an arena and RSS grows with rows.
        limit_malloc_arenas()
        if self._own_simulator and self.simulator is not None:
            self.simulator.start()
        self.api_url = self._api_url or (self.simulator.base_url if self.simulator else "")
        self._saved_env = dict(os.environ)
        os.environ.update(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        # moto logs each failed state with a dump of its parse tree; the result says it better.
        self._moto_log_level = logging.getLogger("moto").level
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        self._mock.start()
        self._shims.install()
        boto3.setup_default_session(region_name=REGION)
        boto3._get_default_session().events.register(
            "before-call.events.PutEvents", self._on_put_events
        )
        try:
            self._create_resources()
        except Exception:
            self.stop()
            raise
        # After the resources: moto defines a service's models when the service is first called.
        self._tracking.install()
        return self

    def stop(self) -> None:
        """Stop everything this stack started and restore the environment.

        Rule deliveries to functions still running are waited for (a bounded time) first:
        their handlers call moto, which is about to stop.
        """
        try:
            self._shims.lambda_deliveries.settle(timeout=STOP_SETTLE_SECONDS)
        except DeliveriesNotSettled as e:
            logger.warning("stopping with deliveries still running: %s", e)
        if self.api_server is not None:
            self.api_server.stop()
            self.api_server = None
        if self.bridge is not None:
            self.bridge.uninstall()
        boto3._get_default_session().events.unregister(
            "before-call.events.PutEvents", self._on_put_events
        )
        self._shims.uninstall()
        self._tracking.uninstall()
        self._mock.stop()
        boto3.DEFAULT_SESSION = None
        os.environ.clear()
        os.environ.update(self._saved_env)
        logging.getLogger("moto").setLevel(self._moto_log_level)
        if self._own_simulator and self.simulator is not None:
            self.simulator.stop()

    def _create_resources(self) -> None:
        template = load_template(self.root / "template.yaml")
        self.resolver = resolver_for(template, self.api_url, self._extra_parameters)
        self.functions.update(create_resources(self.root, self.resolver, self._secret_value))
        self.bridge = LambdaBridge(self.functions, {**os.environ, **self._environment})
        self.bridge.install()
        if self._webhooks:
            self.serve_api().start()
        else:
            self._set_webhook_base_url(None)

    def serve_api(self, port: int = 0, log: TextIO | None = None) -> ApiServer:
        """Bind the HTTP API on 127.0.0.1 and hand AI Studios its webhooks there.

        The served API is where AI Studios' webhooks land, so from now on exports give AI Studios
        a webhook URL on it (``webhook_url``). Serving starts with the server's ``start`` (in a
        thread) or ``serve_forever`` (in this one); the stack stops it.

        Parameters
        ----------
        port
            The port; 0 picks a free one.
        log
            Where the server writes one line per request (None: nowhere).

        Returns
        -------
        ApiServer
            The stack's API server (the one already bound, if any).

        Raises
        ------
        OSError
            If the port cannot be bound.
        """
        if self.api_server is None:
            self.api_server = ApiServer(self, port=port, log=log)
            self._set_webhook_base_url(self.api_server.url)
        return self.api_server

    def _set_webhook_base_url(self, base_url: str | None) -> None:
        """Point the webhook secret at the local API (None: no webhooks, as no API is served)."""
        assert self.resolver is not None
        if WEBHOOK_SECRET not in self.resolver.refs:
            if base_url:
                raise RuntimeError(f"the template has no {WEBHOOK_SECRET}: no webhooks to serve")
            return  # a template without webhooks
        secrets = boto3.client("secretsmanager")
        secret_id = self.ref(WEBHOOK_SECRET)
        value = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
        value.pop(BASE_URL_FIELD, None)
        if base_url:
            value[BASE_URL_FIELD] = base_url
        secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))

    def webhook_url(self, export_id: str, *, token: str | None = None) -> str:
        """Return the export's webhook URL on the local API (``token``: another, forged one)."""
        if self.api_server is None:
            raise RuntimeError("start the stack with webhooks=True to serve its webhooks")
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=self.ref(WEBHOOK_SECRET))
        key = json.loads(secret["SecretString"])[KEY_FIELD]
        real = webhook_url(self.api_server.url, export_id, WebhookKey.of_bytes(key.encode()))
        return real if token is None else real.rsplit("/", 1)[0] + "/" + token

    def _secret_value(self, logical: str) -> str | None:
        if logical == CREDENTIALS_SECRET:
            app_id, user_key = self._credentials or (
                self.simulator.credentials
                if self.simulator
                else (
                    # A standalone simulator's credentials unless the user names real ones.
                    os.environ.get("AISTUDIOS_APP_ID", DEFAULT_APP_ID),
                    os.environ.get("AISTUDIOS_USER_KEY", DEFAULT_USER_KEY),
                )
            )
            return json.dumps({"appId": app_id, "userKey": user_key})
        if logical == TOKEN_SECRET:
            token = self.simulator.issue_token() if self._seed_token and self.simulator else ""
            issued = int(time.time()) - 3600 if token else 0
            return json.dumps({"token": token, "issuedAt": issued, "expiresAt": issued + 86400})
        return None

    def _on_put_events(self, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        for entry in json.loads(body.decode() if isinstance(body, bytes) else body).get(
            "Entries", []
        ):
            # The default bus only: the export machine's callback waits write to their own.
            if entry.get("EventBusName", "default") in ("default", DEFAULT_BUS_ARN):
                self.events.append(entry)

    @property
    def bucket(self) -> str:
        """The output bucket's name."""
        assert self.resolver is not None
        return self.resolver.refs[OUTPUT_BUCKET]

    def ref(self, logical: str) -> str:
        """Return what ``Ref`` of a template resource is on this stack."""
        assert self.resolver is not None
        return self.resolver.refs[logical]

    def parameter(self, name: str) -> str:
        """Return a template parameter's value on this stack (override or default)."""
        assert self.resolver is not None
        return self.resolver.parameter_values()[name]

    def schedule_target(
        self, logical: str, *, scheduled_time: str = "2026-01-01T03:00:00Z"
    ) -> tuple[str, dict[str, Any]]:
        """Return ``(target ARN, input)`` of a template schedule firing at ``scheduled_time``.

        The input is the schedule's ``Target.Input`` with EventBridge Scheduler's context
        attributes filled in, as the scheduler would send it.
        """
        assert self.resolver is not None
        resource = self.resolver.template["Resources"][logical]
        if resource["Type"] != "AWS::Scheduler::Schedule":
            raise ValueError(f"{logical} is not an AWS::Scheduler::Schedule")
        target = self.resolver.resolve(resource["Properties"]["Target"])
        schedule_arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{logical}"
        context = {
            "aws.scheduler.schedule-arn": schedule_arn,
            "aws.scheduler.scheduled-time": scheduled_time,
            "aws.scheduler.execution-id": str(uuid.uuid4()),
            "aws.scheduler.attempt-number": "1",
        }
        text = str(target.get("Input", "{}"))
        for attribute, value in context.items():
            text = text.replace(f"<{attribute}>", value)
        return str(target["Arn"]), json.loads(text)

    def fire_schedule(self, logical: str, *, scheduled_time: str = "2026-01-01T03:00:00Z") -> str:
        """Start a template schedule's target once, as the scheduler would; return the ARN."""
        arn, payload = self.schedule_target(logical, scheduled_time=scheduled_time)
        sfn: SFNClient = boto3.client("stepfunctions")
        return sfn.start_execution(
            stateMachineArn=arn, name=f"schedule-{uuid.uuid4().hex[:12]}", input=json.dumps(payload)
        )["executionArn"]

    def start_export(self, request: Mapping[str, Any], name: str | None = None) -> str:
        """Start the export state machine on ``request``; return the execution ARN."""
        sfn: SFNClient = boto3.client("stepfunctions")
        return sfn.start_execution(
            stateMachineArn=self.ref(EXPORT_STATE_MACHINE),
            name=name or f"local-{uuid.uuid4().hex[:12]}",
            input=json.dumps(request),
        )["executionArn"]

    def wait(
        self,
        execution_arn: str,
        *,
        deadline_seconds: float,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.1,
    ) -> ExportRun:
        """Wait until the execution ends (stopping it after ``deadline_seconds``) and report."""
        return watch_export(
            execution_arn,
            bucket=self.bucket,
            bridge=self.bridge,
            deadline_seconds=deadline_seconds,
            on_progress=on_progress,
            interval=interval,
        )

    def run_export(
        self,
        request: Mapping[str, Any],
        *,
        deadline_seconds: float = 600,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> ExportRun:
        """Start an export and wait for it."""
        arn = self.start_export(request)
        return self.wait(arn, deadline_seconds=deadline_seconds, on_progress=on_progress)

    @property
    def s3(self) -> S3Client:
        """An S3 client of this stack."""
        return boto3.client("s3")

    @property
    def lambda_deliveries(self) -> list[LambdaDelivery]:
        """Every event the template's rules delivered to a function, once it ran, in order."""
        return list(self._shims.lambda_deliveries.finished)

    def settle(self, timeout: float = 30.0) -> list[LambdaDelivery]:
        """Wait until every rule delivery to a function so far has run; return them all.

        EventBridge invokes a function target asynchronously: the execution (or upload) that
        caused the event does not wait for it, and neither does `wait`. Call this before
        looking at what the function did.

        Parameters
        ----------
        timeout
            Seconds to wait at most.

        Returns
        -------
        list[LambdaDelivery]
            Every delivery so far with its outcome (``result``, ``error``), in the order they
            ended.

        Raises
        ------
        DeliveriesNotSettled
            When some are still running after ``timeout`` seconds.

        Examples
        --------
        >>> with LocalStack() as stack:  # doctest: +SKIP
        ...     run = stack.run_export(request)
        ...     [release] = stack.settle(timeout=10)
        ...     assert release.succeeded, release.result
        """
        return self._shims.lambda_deliveries.settle(timeout)

    @property
    def invocations(self) -> list[Invocation]:
        """Every function invocation so far."""
        return list(self.bridge.invocations) if self.bridge else []
