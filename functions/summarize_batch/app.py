"""SummarizeBatch: write the batch report from every row's export and decide the outcome."""

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from aistudios_export import manifests

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

logger = Logger()


@cache
def _clients() -> tuple["S3Client", "SFNClient"]:
    # One DescribeExecution per row: let botocore pace itself against the API's rate limit.
    sfn = boto3.client(
        "stepfunctions", config=Config(retries={"mode": "adaptive", "max_attempts": 10})
    )
    return boto3.client("s3"), sfn


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"batch", "mapRun", "toleratedFailurePercentage", "executionArnPrefix"}``.

    Returns ``{"status", "reportKey", "counts", "error"?, "cause"?}``.
    """
    s3, sfn = _clients()
    summary = manifests.summarize_batch(
        event.get("batch") or {},
        event.get("mapRun"),
        tolerated_failure_percentage=float(event.get("toleratedFailurePercentage", 0)),
        execution_arn_prefix=str(event.get("executionArnPrefix", "")),
        s3_client=s3,
        sfn_client=sfn,
    )
    logger.info(
        "batch summarized", extra={"status": summary["status"], "counts": summary["counts"]}
    )
    return summary
