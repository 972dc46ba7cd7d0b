"""SummarizeBatch: write the batch report from every row's export and decide the outcome."""

from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from aistudios_export import batches, clients

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

logger = Logger()


class Dependencies(NamedTuple):
    """What a warm container reuses: its S3 and Step Functions clients."""

    s3: "S3Client"
    sfn: "SFNClient"


@cache
def _dependencies() -> Dependencies:
    # One DescribeExecution per row: let botocore pace itself against the API's rate limit.
    return Dependencies(
        s3=clients.s3(),
        sfn=clients.stepfunctions(config=Config(retries={"mode": "adaptive", "max_attempts": 10})),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"batch", "mapRun", "toleratedFailurePercentage", "executionArnPrefix"}``.

    Returns ``{"status", "reportKey", "counts", "error"?, "cause"?}``.
    """
    deps = _dependencies()
    summary = batches.summarize_batch(
        event.get("batch") or {},
        event.get("mapRun"),
        tolerated_failure_percentage=float(event.get("toleratedFailurePercentage", 0)),
        execution_arn_prefix=str(event.get("executionArnPrefix", "")),
        s3_client=deps.s3,
        sfn_client=deps.sfn,
    )
    logger.info(
        "batch summarized", extra={"status": summary["status"], "counts": summary["counts"]}
    )
    return summary
