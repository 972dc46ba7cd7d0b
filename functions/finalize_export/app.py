"""FinalizeExport: stream the finished video into S3, verified, and say where it is."""

from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import clients, observability, runtime, workflow
from aistudios_export.client import AiStudiosClient
from aistudios_export.settings import OutputSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger()


class Dependencies(NamedTuple):
    """What a warm container reuses: the API client, the S3 client and where videos go."""

    api: AiStudiosClient
    s3: "S3Client"
    output: OutputSettings


@cache
def _dependencies() -> Dependencies:
    # Once per container: the SDK logs bodies at DEBUG, urllib3 signed URLs' queries.
    observability.install_log_hygiene()
    return Dependencies(api=runtime.api_client(), s3=clients.s3(), output=OutputSettings.from_env())


@logger.inject_lambda_context(clear_state=True, correlation_id_path="job.exportId")
@observability.collect_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle ``{"job": {...}, "result": "export"}`` from the state machine; return the result.

    ``{"projectId", "resolution", "video"}``: the execution's output, as it is. Without
    ``result`` (the machine's earlier definition, whose executions run on after a deployment and
    in a redrive), the stored video alone.
    """
    deps = _dependencies()
    job = event.get("job")
    video = workflow.finalize_export(job, api=deps.api, s3_client=deps.s3, output=deps.output)
    return workflow.export_result(job, video) if event.get("result") == "export" else video
