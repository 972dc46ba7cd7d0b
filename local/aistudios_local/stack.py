"""The embedded local stack: ``template.yaml`` on moto, handlers in-process, AI Studios on loopback.

What runs is the product itself: the state machine definition and its substitutions, the
functions' handlers and environment variables all come from the template. Local values enter
only as template parameters (the API's base URL and the one trusted download origin).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import boto3
from moto import mock_aws

from aistudios_export.errors import readable_cause
from aistudios_local.lambda_bridge import Invocation, LambdaBridge, LocalFunction
from aistudios_local.moto_shims import MotoShims, RuleDelivery
from aistudios_local.simulator import DEFAULT_APP_ID, DEFAULT_USER_KEY, AiStudiosSimulator
from aistudios_local.template import Resolver, load_template

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

ROOT = Path(__file__).resolve().parents[2]
"""The repository: template.yaml, functions/ and statemachine/ are read from here."""
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_NAME = "aistudios-export-local"
EXPORT_STATE_MACHINE = "ExportStateMachine"
OUTPUT_BUCKET = "OutputBucket"
CREDENTIALS_SECRET = "CredentialsSecret"  # noqa: S105 - logical ids, not secrets
TOKEN_SECRET = "TokenSecret"  # noqa: S105
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@dataclass
class ExportRun:
    """The outcome of one export on the local stack, in the CLI's ``--json`` shape."""

    status: str
    error: str | None
    cause: str | None
    video: dict[str, Any] | None
    objects: list[dict[str, Any]]
    incomplete_uploads: int
    state_transitions: int
    elapsed_seconds: float
    execution_arn: str = ""
    output: dict[str, Any] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the documented JSON object of ``aistudios-export local --json``."""
        return {
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "video": self.video,
            "objects": self.objects,
            "incompleteUploads": self.incomplete_uploads,
            "stateTransitions": self.state_transitions,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
        }


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
    """

    def __init__(
        self,
        *,
        api_url: str | None = None,
        simulator: AiStudiosSimulator | None = None,
        credentials: tuple[str, str] | None = None,
        seed_token: bool = True,
        parameters: Mapping[str, str] | None = None,
        root: Path = ROOT,
    ) -> None:
        self.root = root
        self._own_simulator = simulator is None and api_url is None
        self.simulator = simulator or (AiStudiosSimulator() if api_url is None else None)
        self._api_url = api_url
        self._credentials = credentials
        self._seed_token = seed_token
        self._extra_parameters = dict(parameters or {})
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._saved_env: dict[str, str] = {}
        self.functions: dict[str, LocalFunction] = {}
        self.bridge: LambdaBridge | None = None
        self.resolver: Resolver | None = None
        self.events: list[dict[str, Any]] = []
        self.rule_deliveries: list[RuleDelivery] = []
        """Executions the template's EventBridge rules started (S3 uploads), in order."""
        self._shims = MotoShims(on_delivery=self.rule_deliveries.append)

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start the simulator (if any), moto, and create the template's resources."""
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
        return self

    def stop(self) -> None:
        """Stop everything this stack started and restore the environment."""
        if self.bridge is not None:
            self.bridge.uninstall()
        boto3._get_default_session().events.unregister(
            "before-call.events.PutEvents", self._on_put_events
        )
        self._shims.uninstall()
        self._mock.stop()
        boto3.DEFAULT_SESSION = None
        os.environ.clear()
        os.environ.update(self._saved_env)
        if self._own_simulator and self.simulator is not None:
            self.simulator.stop()

    # --- resources ------------------------------------------------------------------------

    def _create_resources(self) -> None:
        template = load_template(self.root / "template.yaml")
        api = urlsplit(self.api_url)
        loopback = api.scheme == "http" and api.hostname in ("127.0.0.1", "localhost")
        parameters = {
            "ApiBaseUrl": self.api_url,
            # The one relaxation of the download guard: the server this stack talks to.
            "TrustedDownloadOrigin": f"{api.scheme}://{api.netloc}" if loopback else "",
        }
        parameters.update(self._extra_parameters)
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK_NAME,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }
        resolver = Resolver(template, parameters, pseudo=pseudo)
        self.resolver = resolver
        resources: dict[str, Any] = template["Resources"]
        for logical, resource in resources.items():
            self._identify(resolver, logical, resource["Type"])

        s3 = boto3.client("s3")
        secrets = boto3.client("secretsmanager")
        for logical, resource in resources.items():
            if "Condition" in resource and not resolver.condition(resource["Condition"]):
                continue
            kind, props = resource["Type"], resource.get("Properties", {})
            if kind == "AWS::S3::Bucket":
                s3.create_bucket(Bucket=resolver.refs[logical])
                status = resolver.resolve(props.get("VersioningConfiguration", {})).get("Status")
                if status:
                    s3.put_bucket_versioning(
                        Bucket=resolver.refs[logical], VersioningConfiguration={"Status": status}
                    )
                notifications = resolver.resolve(props.get("NotificationConfiguration", {}))
                if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
                    s3.put_bucket_notification_configuration(
                        Bucket=resolver.refs[logical],
                        NotificationConfiguration={"EventBridgeConfiguration": {}},
                    )
            elif kind == "AWS::SecretsManager::Secret":
                secret = secrets.create_secret(
                    Name=f"{STACK_NAME}/{logical}", SecretString=self._secret_value(logical)
                )
                resolver.refs[logical] = secret["ARN"]

        self._create_functions(resolver, template)
        self._create_state_machines(resolver, resources)
        self._create_rules(resolver, resources)

    def _identify(self, resolver: Resolver, logical: str, kind: str) -> None:
        name = f"{STACK_NAME}-{logical}"
        if kind == "AWS::S3::Bucket":
            name = name.lower()
            resolver.refs[logical] = name
            resolver.attributes[(logical, "Arn")] = f"arn:aws:s3:::{name}"
        elif kind == "AWS::Serverless::Function":
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
            resolver.refs[logical], resolver.attributes[(logical, "Arn")] = name, arn
        elif kind == "AWS::Serverless::StateMachine":
            explicit = resolver.template["Resources"][logical].get("Properties", {}).get("Name")
            name = str(resolver.resolve(explicit)) if explicit else name
            arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
            resolver.refs[logical], resolver.attributes[(logical, "Arn")] = arn, arn
            resolver.attributes[(logical, "Name")] = name
        elif kind == "AWS::SecretsManager::Secret":
            resolver.refs[logical] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}"
        else:
            resolver.refs[logical] = name
            resolver.attributes[(logical, "Arn")] = f"arn:aws:local:{REGION}:{ACCOUNT}:{logical}"

    def _secret_value(self, logical: str) -> str:
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
        return "{}"

    def _create_functions(self, resolver: Resolver, template: Mapping[str, Any]) -> None:
        globals_fn = template.get("Globals", {}).get("Function", {})
        base_vars = resolver.resolve(globals_fn.get("Environment", {}).get("Variables", {}))
        for logical, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = resource["Properties"]
            variables = {
                **base_vars,
                **resolver.resolve(props.get("Environment", {}).get("Variables", {})),
            }
            self.functions[logical] = LocalFunction(
                logical_id=logical,
                name=resolver.refs[logical],
                arn=resolver.attributes[(logical, "Arn")],
                code_dir=self.root / str(resolver.resolve(props["CodeUri"])),
                handler=str(resolver.resolve(props.get("Handler", globals_fn.get("Handler")))),
                environment={k: str(v) for k, v in variables.items()},
                timeout=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                memory=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
            )
        self.bridge = LambdaBridge(self.functions, dict(os.environ))
        self.bridge.install()

    def _create_state_machines(self, resolver: Resolver, resources: Mapping[str, Any]) -> None:
        sfn = boto3.client("stepfunctions")
        for logical, resource in resources.items():
            if resource["Type"] != "AWS::Serverless::StateMachine":
                continue
            props = resource["Properties"]
            definition = (self.root / str(props["DefinitionUri"])).read_text(encoding="utf-8")
            for key, value in resolver.resolve(props.get("DefinitionSubstitutions", {})).items():
                definition = definition.replace("${" + key + "}", str(value))
            sfn.create_state_machine(
                name=resolver.attributes[(logical, "Name")],
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{STACK_NAME}-{logical}Role",
                type="EXPRESS" if props.get("Type") == "EXPRESS" else "STANDARD",
            )

    def _create_rules(self, resolver: Resolver, resources: Mapping[str, Any]) -> None:
        """Create the template's EventBridge rules; the moto shims deliver to their targets."""
        events = boto3.client("events")
        for logical, resource in resources.items():
            if resource["Type"] != "AWS::Events::Rule":
                continue
            props = resolver.resolve(resource["Properties"])
            name = resolver.refs[logical]
            events.put_rule(
                Name=name,
                EventPattern=json.dumps(props["EventPattern"]),
                State=props.get("State", "ENABLED"),
            )
            targets = [
                {
                    k: v
                    for k, v in t.items()
                    if k in ("Id", "Arn", "RoleArn", "Input", "InputTransformer")
                }
                for t in props.get("Targets", [])
            ]
            events.put_targets(Rule=name, Targets=targets)  # type: ignore[arg-type]

    def _on_put_events(self, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        for entry in json.loads(body.decode() if isinstance(body, bytes) else body).get(
            "Entries", []
        ):
            self.events.append(entry)

    # --- running exports ------------------------------------------------------------------

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
        started = time.monotonic()
        seen = 0

        def show_progress() -> None:
            nonlocal seen
            if on_progress is not None and self.bridge is not None:
                for record in self.bridge.invocations[seen:]:
                    if isinstance(record.result, dict) and "progress" in record.result:
                        on_progress(record.result)
                seen = len(self.bridge.invocations)

        description = wait_for_execution(
            execution_arn,
            deadline_seconds=deadline_seconds,
            started=started,
            interval=interval,
            on_poll=show_progress,
        )
        return self._report(description, time.monotonic() - started)

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

    def _report(self, description: Mapping[str, Any], elapsed: float) -> ExportRun:
        sfn: SFNClient = boto3.client("stepfunctions")
        s3: S3Client = boto3.client("s3")
        arn = description["executionArn"]
        history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        transitions = sum(1 for e in history if e["type"].endswith("StateEntered"))
        output = json.loads(description["output"]) if description.get("output") else None
        video = None
        if (
            description["status"] == "SUCCEEDED"
            and output
            and isinstance(output.get("video"), dict)
        ):
            video = {
                k: output["video"][k] for k in ("bucket", "key", "size", "sha256", "contentType")
            }
        objects = [
            {"key": o["Key"], "size": o["Size"]}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for o in page.get("Contents", [])
        ]
        uploads = s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return ExportRun(
            status=description["status"],
            error=description.get("error"),
            cause=readable_cause(description.get("cause")),
            video=video,
            objects=objects,
            incomplete_uploads=len(uploads),
            state_transitions=transitions,
            elapsed_seconds=elapsed,
            execution_arn=arn,
            output=output,
        )

    @property
    def s3(self) -> S3Client:
        """An S3 client of this stack."""
        return boto3.client("s3")

    @property
    def invocations(self) -> list[Invocation]:
        """Every function invocation so far."""
        return list(self.bridge.invocations) if self.bridge else []


def wait_for_execution(
    execution_arn: str,
    *,
    deadline_seconds: float,
    started: float | None = None,
    interval: float = 0.1,
    on_poll: Callable[[], None] | None = None,
) -> DescribeExecutionOutputTypeDef:
    """Poll an execution until it ends; stop it (ABORTED) once ``deadline_seconds`` have passed.

    The local runners' one loop: bounded by the deadline, whatever the state machine does.
    """
    sfn: SFNClient = boto3.client("stepfunctions")
    started = time.monotonic() if started is None else started
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        if on_poll is not None:
            on_poll()
        if description["status"] in TERMINAL:
            return description
        if time.monotonic() - started > deadline_seconds:
            sfn.stop_execution(
                executionArn=execution_arn,
                error="LocalDeadline",
                cause=f"no result within {deadline_seconds:g} s",
            )
            return sfn.describe_execution(executionArn=execution_arn)
        time.sleep(interval)
