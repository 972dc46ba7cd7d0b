"""PrepareManifest: read and check a batch manifest, write its rows for the Distributed Map."""

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import batches, clients, observability

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger()


@cache
def _s3() -> "S3Client":
    observability.install_log_hygiene()
    return clients.s3()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"request", "bucket", "manifestPrefix", "resultsPrefix", "rowIdentity", ...}``.

    ``request`` is the batch input (``{"bucket", "key"}``); the rest comes from the template
    through the state machine. Returns the batch plan.
    """
    settings = batches.BatchSettings(
        bucket=str(event.get("bucket", "")),
        manifest_prefix=str(event.get("manifestPrefix", "")),
        results_prefix=str(event.get("resultsPrefix", "")),
        row_identity=str(event.get("rowIdentity") or "manifest"),
    )
    plan = batches.prepare_batch(
        event.get("request"), settings=settings, defaults=event.get("defaults"), s3_client=_s3()
    )
    logger.set_correlation_id(plan["batchId"])  # the batch's id, known once its manifest is read
    logger.info("manifest prepared", extra={"manifest": plan["manifest"], "counts": plan["counts"]})
    return plan
