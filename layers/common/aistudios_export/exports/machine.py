"""The export state machine as the exports library sees it: executions named by export id.

:class:`ExportsService` is what the starter, the status reader and the lister share: the
API's settings, the state machine they name and a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from aistudios_export import clients
from aistudios_export.aws_errors import error_code
from aistudios_export.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

    from aistudios_export.settings import HttpApiSettings


class ExportMachine:
    """The export state machine, whose executions are the exports.

    Parameters
    ----------
    arn
        The state machine's ARN.
    sfn
        A Step Functions client; a default one is created when None.

    Raises
    ------
    ConfigurationError
        When ``arn`` is not the ARN of a state machine.

    Examples
    --------
    >>> import boto3
    >>> sfn = boto3.client("stepfunctions", region_name="us-east-1")
    >>> machine = ExportMachine("arn:aws:states:us-east-1:123456789012:stateMachine:m", sfn)
    >>> machine.execution_arn("65fa6b07dca2e367461a2925-720-0123456789abcdefghij")
    'arn:aws:states:us-east-1:123456789012:execution:m:65fa6b07dca2e367461a2925-720-0123456789abcdefghij'
    """

    def __init__(self, arn: str, sfn: SFNClient | None = None) -> None:
        prefix, sep, name = arn.partition(":stateMachine:")
        if not sep or not name:
            raise ConfigurationError(f"{arn!r} is not a state machine ARN")
        self.arn = arn
        self.sfn = clients.stepfunctions(sfn)
        self._execution_prefix = f"{prefix}:execution:{name}:"

    def execution_arn(self, export_id: str) -> str:
        """Return the ARN of the execution whose name is ``export_id``."""
        return self._execution_prefix + export_id

    def describe(self, export_id: str) -> DescribeExecutionOutputTypeDef | None:
        """Return ``DescribeExecution`` of the export, or None when there is no such execution."""
        try:
            return self.sfn.describe_execution(executionArn=self.execution_arn(export_id))
        except ClientError as e:
            if error_code(e) == "ExecutionDoesNotExist":
                return None
            raise


class ExportsService:
    """Base of the exports library's services: one job on the export state machine.

    Parameters
    ----------
    settings
        The API's settings: the export state machine and what the job needs besides.
    sfn
        A Step Functions client; a default one is created when None.
    clock
        Epoch seconds now (tests pass a fake).

    Raises
    ------
    ConfigurationError
        When the state machine ARN is not one.
    """

    def __init__(
        self,
        settings: HttpApiSettings,
        *,
        sfn: SFNClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.machine = ExportMachine(settings.state_machine_arn, sfn)
        self._clock = clock
