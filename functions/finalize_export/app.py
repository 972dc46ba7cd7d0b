"""FinalizeExport: stream the finished video into S3, verified, and say where it is."""

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import runtime, workflow
from aistudios_export.client import AiStudiosClient
from aistudios_export.settings import OutputSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger()


@cache
def _dependencies() -> tuple[AiStudiosClient, "S3Client", OutputSettings]:
    return runtime.api_client(), boto3.client("s3"), OutputSettings.from_env()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"job": {...}}`` from the state machine; return the stored video."""
    api, s3, output = _dependencies()
    return workflow.finalize_export(event.get("job"), api=api, s3_client=s3, output=output)
