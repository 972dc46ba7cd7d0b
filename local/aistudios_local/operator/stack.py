"""A deployed stack as the operator commands see it: its outputs, parameters and resources."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from aistudios_export.aws_errors import error_code
from aistudios_local.operator.exits import AWS_ERROR, NOT_FOUND, CommandError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}|arn:aws[a-z-]*:cloudformation:[^\s]{1,1000}")
"""A CloudFormation stack name (or a stack ARN)."""

_RESOURCE_PAGES = 20
"""Bound on ListStackResources pages (100 resources each)."""


def session(profile: str | None, region: str | None) -> boto3.Session:
    """Return the boto3 session the AWS CLI would use with ``--profile`` and ``--region``.

    ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) is honoured by botocore itself.

    Raises
    ------
    CommandError
        When the profile does not exist.
    """
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as e:
        raise CommandError(str(e), AWS_ERROR) from None


@dataclass
class DeployedStack:
    """A stack of this application, read once with ``DescribeStacks``.

    Attributes
    ----------
    name
        The stack's name.
    status
        Its ``StackStatus`` (``CREATE_COMPLETE``, ...).
    outputs, parameters
        Its outputs and parameter values by key.
    session
        The session its clients are made from.
    """

    name: str
    status: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    session: boto3.Session
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, session: boto3.Session, name: str) -> DeployedStack:
        """Find the stack ``name``.

        Raises
        ------
        CommandError
            ``NOT_FOUND`` when there is no such stack, ``AWS_ERROR`` when AWS cannot be asked.
        """
        cloudformation: CloudFormationClient = client(session, "cloudformation")
        try:
            stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except ClientError as e:
            if error_code(e) == "ValidationError":
                region = session.region_name or "the default region"
                raise CommandError(f"no stack {name!r} in {region}", NOT_FOUND) from None
            raise aws_error(e) from None
        except BotoCoreError as e:
            raise aws_error(e) from None
        if not stacks:
            raise CommandError(f"no stack {name!r}", NOT_FOUND)
        stack = stacks[0]
        return cls(
            name=stack["StackName"],
            status=stack["StackStatus"],
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
            parameters={
                p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])
            },
            session=session,
        )

    def output(self, key: str) -> str:
        """Return the output ``key``.

        Raises
        ------
        CommandError
            ``NOT_FOUND`` when the stack has no such output (not a stack of this application,
            or an older version of it).
        """
        value = self.outputs.get(key)
        if not value:
            raise CommandError(
                f"stack {self.name} has no output {key}: is it an aistudios-export stack "
                "deployed from this version?",
                NOT_FOUND,
            )
        return value

    def client(self, service: str) -> Any:
        """Return a client of this stack's session (one per service)."""
        if service not in self._clients:
            self._clients[service] = client(self.session, service)
        return self._clients[service]

    def resources(self) -> list[tuple[str, str, str]]:
        """Return ``(logical id, type, physical id)`` of each of the stack's resources."""
        cloudformation: CloudFormationClient = self.client("cloudformation")
        found: list[tuple[str, str, str]] = []
        token: str | None = None
        for _ in range(_RESOURCE_PAGES):
            kwargs: dict[str, Any] = {"NextToken": token} if token else {}
            page = cloudformation.list_stack_resources(StackName=self.name, **kwargs)
            found.extend(
                (r["LogicalResourceId"], r["ResourceType"], r.get("PhysicalResourceId", ""))
                for r in page["StackResourceSummaries"]
            )
            token = page.get("NextToken")
            if not token:
                break
        return found


def client(session: boto3.Session, service: str) -> Any:
    """Return a client of ``session``; ``AWS_ERROR`` when the session has no region."""
    try:
        return session.client(service)  # type: ignore[call-overload]
    except BotoCoreError as e:
        raise aws_error(e) from None


def aws_error(error: Exception) -> CommandError:
    """Return the :class:`CommandError` of an AWS call that failed, in plain words."""
    if isinstance(error, NoCredentialsError):
        return CommandError(
            "no AWS credentials: configure them (aws configure, --profile, AWS_PROFILE)",
            AWS_ERROR,
        )
    if isinstance(error, ClientError):
        code = error_code(error)
        message = error.response.get("Error", {}).get("Message", "")
        operation = error.operation_name
        return CommandError(f"AWS refused {operation}: {code}: {message}".rstrip(": "), AWS_ERROR)
    return CommandError(f"cannot reach AWS: {error}", AWS_ERROR)
