"""SummarizeBatch: write the batch report from the Map's result files and decide the outcome."""

from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import batches, clients, observability

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger()


class Dependencies(NamedTuple):
    """What a warm container reuses: its S3 client."""

    s3: "S3Client"


@cache
def _dependencies() -> Dependencies:
    observability.install_log_hygiene()
    return Dependencies(s3=clients.s3())


@logger.inject_lambda_context(clear_state=True, correlation_id_path="batch.batchId")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"batch", "mapRun", "toleratedFailurePercentage"}``.

    Returns ``{"status", "reportKey", "counts", "error"?, "cause"?}``.
    """
    deps = _dependencies()
    summary = batches.summarize_batch(
        event.get("batch") or {},
        event.get("mapRun"),
        tolerated_failure_percentage=float(event.get("toleratedFailurePercentage", 0)),
        s3_client=deps.s3,
    )
    logger.info(
        "batch summarized", extra={"status": summary["status"], "counts": summary["counts"]}
    )
    return summary
