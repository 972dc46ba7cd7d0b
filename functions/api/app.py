"""The HTTP API (API Gateway REST, proxy integration): start, follow and list exports.

- ``POST /exports`` starts an export (or finds the one an equal request started) → 202.
- ``GET /exports/{exportId}`` reports its status, progress and, when done, the video.
- ``GET /exports?projectId=...`` lists recent exports, a page at a time.

The routes' pydantic models are the OpenAPI description; regenerate ``openapi.json`` with
``.venv/bin/python -m functions.api.app > openapi.json``.
"""

import json
import os
import re
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, NamedTuple

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import (
    APIGatewayRestResolver,
    CORSConfig,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aistudios_export import clients
from aistudios_export.aws_errors import error_code, is_transient
from aistudios_export.errors import ConfigurationError, InvalidRequest
from aistudios_export.exports import (
    MAX_LIMIT,
    STATUSES,
    ExportLister,
    ExportStarter,
    Status,
    StatusReader,
    Summary,
    parse_request,
)
from aistudios_export.models import DEFAULT_RESOLUTION, RESOLUTIONS
from aistudios_export.settings import CORS_ALLOW_ORIGIN, HttpApiSettings

API_TITLE = "aistudios-export"
API_VERSION = "1.0.0"
RETRY_AFTER_SECONDS = 2
# What may go into the Location header of a 202, which echoes the request's host and path.
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_SAFE_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")

logger = Logger()


def _cors() -> CORSConfig | None:
    # Read once at cold start, like the rest of the function's configuration.
    origin = os.environ.get(CORS_ALLOW_ORIGIN, "").strip()
    if not origin:
        return None
    return CORSConfig(
        allow_origin=origin,
        allow_headers=["Idempotency-Key", "X-Amz-Security-Token", "X-Api-Key"],
        expose_headers=["Location", "Retry-After"],
        max_age=600,
    )


app = APIGatewayRestResolver(enable_validation=True, cors=_cors())


class Services(NamedTuple):
    """What the routes call: one library object per route."""

    starter: ExportStarter
    status: StatusReader
    lister: ExportLister


@cache
def _services() -> Services:
    settings = HttpApiSettings.from_env()
    sfn = clients.stepfunctions()
    return Services(
        starter=ExportStarter(settings, sfn=sfn),
        status=StatusReader(settings, sfn=sfn, s3=clients.s3()),
        lister=ExportLister(settings, sfn=sfn),
    )


# --- models: the OpenAPI description --------------------------------------------------------


class ExportRequestBody(BaseModel):
    """What to export."""

    # The shape only: ExportRequest.parse (in ExportStarter.start) is the one keeper of the rules.

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"projectId": "65fa6b07dca2e367461a2925"}]},
    )

    projectId: str = Field(  # noqa: N815 - the API's JSON names
        description="The AI Studios project: its 24-character hexadecimal ObjectId."
    )
    resolution: str | None = Field(
        default=None,
        description=f"One of {', '.join(RESOLUTIONS)} (default {DEFAULT_RESOLUTION}).",
    )
    workspaceId: str | None = Field(  # noqa: N815
        default=None, description="The AI Studios workspace (letters, digits, _ or -)."
    )
    webhookUrl: str | None = Field(  # noqa: N815
        default=None, description="An https URL AI Studios calls when its export is done."
    )
    outputPrefix: str | None = Field(  # noqa: N815
        default=None,
        description="A key prefix for the video under the deployment's output prefix.",
    )


class ExportAccepted(BaseModel):
    """The export that the request started, or that an equal request started before."""

    exportId: str = Field(description="The export's id (its execution name).")  # noqa: N815
    status: str = Field(description=f"One of {', '.join(STATUSES)}.")
    statusUrl: str = Field(description="Where to follow the export (GET).")  # noqa: N815


class VideoBody(BaseModel):
    """The exported video."""

    s3Uri: str  # noqa: N815
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="SHA-256 of the bytes, in hex.")
    contentType: str | None = None  # noqa: N815
    downloadUrl: str | None = Field(  # noqa: N815
        default=None, description="A presigned S3 GET of the video, valid for a short time."
    )
    downloadUrlExpiresAt: AwareDatetime | None = None  # noqa: N815


class ExportSummaryBody(BaseModel):
    """One export in a listing."""

    exportId: str  # noqa: N815
    projectId: str  # noqa: N815
    resolution: str
    status: str = Field(description=f"One of {', '.join(STATUSES)}.")
    startedAt: AwareDatetime  # noqa: N815
    stoppedAt: AwareDatetime | None = None  # noqa: N815
    statusUrl: str  # noqa: N815


class ExportStatusBody(BaseModel):
    """Everything known about one export."""

    exportId: str  # noqa: N815
    projectId: str  # noqa: N815
    resolution: str
    status: str = Field(description=f"One of {', '.join(STATUSES)}.")
    progress: float = Field(description="Percent done at the latest progress check.")
    state: str | None = Field(description="AI Studios' word for the export's state.")
    startedAt: AwareDatetime  # noqa: N815
    stoppedAt: AwareDatetime | None = None  # noqa: N815
    error: str | None = Field(default=None, description="Why the export failed.")
    cause: str | None = None
    video: VideoBody | None = Field(default=None, description="Once the export SUCCEEDED.")


class ExportListBody(BaseModel):
    """A page of exports, most recent first."""

    exports: list[ExportSummaryBody]
    nextToken: str | None = Field(  # noqa: N815
        default=None, description="Pass it as nextToken for the next page; null at the end."
    )


class ErrorBody(BaseModel):
    """An error that is not about the request's fields."""

    statusCode: int  # noqa: N815
    message: str


_ERRORS: dict[int, Any] = {
    404: {"description": "No such export", "content": {"application/json": {"model": ErrorBody}}},
    503: {
        "description": "Busy: retry after Retry-After seconds",
        "content": {"application/json": {"model": ErrorBody}},
    },
}


# --- routes -------------------------------------------------------------------------------


@app.post(
    "/exports",
    status_code=HTTPStatus.ACCEPTED,
    summary="Start an export",
    operation_id="startExport",
    description=(
        "Starts exporting a project to an MP4 in S3. The same request sent again within the "
        "dedupe window, or with the same Idempotency-Key, answers with the same exportId "
        "and starts nothing new."
    ),
    responses={202: {"description": "Started (or already started)"}, 503: _ERRORS[503]},
    tags=["exports"],
)
def start_export(
    body: Annotated[ExportRequestBody, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Equal requests with equal keys are one export, whenever sent.",
        ),
    ] = None,
) -> Response[ExportAccepted]:
    """Start an export, or answer with the one an equal request started."""
    try:
        started = _services().starter.start(
            body.model_dump(exclude_none=True), idempotency_key=idempotency_key
        )
    except InvalidRequest as e:
        raise _validation_error(e, "body") from None
    logger.info("export requested", extra={"exportId": started.export_id, "status": started.status})
    url = _status_url(started.export_id)
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=ExportAccepted(exportId=started.export_id, status=started.status, statusUrl=url),
        headers={"Location": url},
    )


@app.get(
    "/exports/<exportId>",
    summary="Follow an export",
    operation_id="getExport",
    responses={200: {"description": "The export"}, 404: _ERRORS[404], 503: _ERRORS[503]},
    tags=["exports"],
)
def get_export(
    exportId: Annotated[str, Path(description="The exportId of POST /exports.")],  # noqa: N803
) -> ExportStatusBody:
    """Report an export's status, progress and, once it succeeded, its video."""
    status = _services().status.read(exportId)
    if status is None:
        raise NotFoundError("no such export")
    return _status_body(status)


@app.get(
    "/exports",
    summary="List exports",
    operation_id="listExports",
    responses={200: {"description": "A page of exports"}, 503: _ERRORS[503]},
    tags=["exports"],
)
def list_exports(
    project_id: Annotated[
        str | None, Query(alias="projectId", description="Only this project's exports.")
    ] = None,
    status: Annotated[
        str | None, Query(description=f"Only exports in this status: {', '.join(STATUSES)}.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 20,
    next_token: Annotated[
        str | None,
        Query(alias="nextToken", max_length=4096, description="nextToken of the previous page."),
    ] = None,
) -> ExportListBody:
    """List recent exports, most recent first."""
    try:
        page = _services().lister.page(
            project_id=project_id, status=status, limit=limit, next_token=next_token
        )
    except InvalidRequest as e:
        raise _validation_error(e, "query") from None
    return ExportListBody(
        exports=[_summary_body(s) for s in page.exports], nextToken=page.next_token
    )


# --- errors -------------------------------------------------------------------------------


def _invalid(error: RequestValidationError) -> Response[Any]:
    # Powertools' default hides the messages; these name the rule broken, never echo the input.
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in error.errors()
    ]
    detail += _rule_problems({_field(d["loc"]) for d in detail})
    fields = ", ".join(dict.fromkeys(_field(d["loc"]) for d in detail))
    return Response(
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        content_type=content_types.APPLICATION_JSON,
        body={
            "statusCode": HTTPStatus.UNPROCESSABLE_ENTITY,
            "message": f"invalid request: {fields}",
            "detail": detail,
        },
    )


def _field(loc: list[Any]) -> str:
    return loc[1] if len(loc) > 1 and isinstance(loc[1], str) else str(loc[0] if loc else "body")


def _rule_problems(flagged: set[str]) -> list[dict[str, Any]]:
    """When the body's shape is wrong, also name the fields whose values break the rules.

    So one answer names every bad field: the shape errors pydantic found, plus what
    ``ExportRequest.parse`` says about the other fields.
    """
    event = app.current_event
    if (event.http_method, event.path) != ("POST", "/exports"):
        return []
    try:
        raw = json.loads(event.decoded_body or "")
    except (ValueError, RecursionError):
        return []
    if not isinstance(raw, dict):
        return []
    fields = ExportRequestBody.model_fields
    known = {k: v for k, v in raw.items() if k in fields and k not in flagged}
    try:
        parse_request(known)
    except InvalidRequest as e:
        return [d for d in _validation_error(e, "body").errors() if _field(d["loc"]) not in flagged]
    return []


def _too_deep(_: RecursionError) -> Response[Any]:
    return _invalid(
        RequestValidationError(
            [{"loc": ("body",), "msg": "the JSON is nested too deeply", "type": "json_invalid"}]
        )
    )


def _aws_error(error: ClientError) -> Response[Any]:
    # Busy or briefly broken: the client should retry, it did nothing wrong.
    code = error_code(error)
    if is_transient(error):
        logger.warning("AWS is busy", extra={"code": code})
        return _error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "busy, try again",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    logger.exception("AWS call failed", extra={"code": code})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


def _misconfigured(error: ConfigurationError) -> Response[Any]:
    logger.error("the API is misconfigured", extra={"reason": str(error)})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


# Registered by calls: Powertools' decorator is untyped.
app.exception_handler(RequestValidationError)(_invalid)
app.exception_handler(RecursionError)(_too_deep)
app.exception_handler(ClientError)(_aws_error)
app.exception_handler(ConfigurationError)(_misconfigured)


def _error(
    status: HTTPStatus, message: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"statusCode": status.value, "message": message},
        headers=headers,
    )


def _validation_error(error: InvalidRequest, where: str) -> RequestValidationError:
    """Turn the library's ``(field, message)`` problems into per-field errors."""
    errors = []
    for field, message in error.problems:
        if not field:
            loc: list[str] = [where]
        elif field == "Idempotency-Key":
            loc = ["header", field]
        else:
            loc = [where, field]
        errors.append({"loc": loc, "msg": message, "type": "value_error"})
    return RequestValidationError(errors)


# --- responses ----------------------------------------------------------------------------


def _status_url(export_id: str) -> str:
    """Return the absolute URL of ``GET /exports/{exportId}`` as the client called this API.

    ``requestContext.path`` is the path as called (with the stage, or a custom domain's base
    path); ``path`` is the route's. What the first adds to the second prefixes the link.
    """
    event = app.current_event
    context = event.raw_event.get("requestContext") or {}
    called = str(context.get("path") or "")
    prefix = called[: -len(event.path)] if event.path and called.endswith(event.path) else ""
    if not _SAFE_PREFIX.fullmatch(prefix):
        prefix = ""
    path = f"{prefix}/exports/{export_id}"
    domain = str(context.get("domainName") or "")
    if not _HOST.fullmatch(domain):
        return path
    # API Gateway sets the scheme it was called with; anything odd means https.
    scheme = event.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return f"{'http' if scheme == 'http' else 'https'}://{domain}{path}"


def _summary_body(summary: Summary) -> ExportSummaryBody:
    return ExportSummaryBody(
        exportId=summary.export_id,
        projectId=summary.project_id,
        resolution=summary.resolution,
        status=summary.status,
        startedAt=summary.started_at,
        stoppedAt=summary.stopped_at,
        statusUrl=_status_url(summary.export_id),
    )


def _status_body(status: Status) -> ExportStatusBody:
    video = status.video
    return ExportStatusBody(
        exportId=status.export_id,
        projectId=status.project_id,
        resolution=status.resolution,
        status=status.status,
        progress=status.progress,
        state=status.state,
        startedAt=status.started_at,
        stoppedAt=status.stopped_at,
        error=status.error,
        cause=status.cause,
        video=None
        if video is None
        else VideoBody(
            s3Uri=video.s3_uri,
            size=video.size,
            sha256=video.sha256,
            contentType=video.content_type,
            downloadUrl=video.download_url,
            downloadUrlExpiresAt=video.download_url_expires_at,
        ),
    )


# --- entry points -------------------------------------------------------------------------


def _json_bodies(event: dict[str, Any]) -> dict[str, Any]:
    """Read every body as JSON, whatever its Content-Type says.

    The API speaks JSON only, and ``curl -d`` labels its body form-encoded.
    """
    fixed = dict(event)
    headers = fixed.get("headers")
    if not isinstance(headers, dict):
        headers = {}
    fixed["headers"] = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    fixed["headers"]["Content-Type"] = "application/json"
    # Powertools reads multiValueHeaders when there are any: fix them too, never add them.
    multi = fixed.get("multiValueHeaders")
    if isinstance(multi, dict) and multi:
        fixed["multiValueHeaders"] = {k: v for k, v in multi.items() if k.lower() != "content-type"}
        fixed["multiValueHeaders"]["Content-Type"] = ["application/json"]
    return fixed


@logger.inject_lambda_context(
    clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_REST
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer an API Gateway REST proxy event (payload format 1.0)."""
    return app.resolve(_json_bodies(event), context)


def openapi_json() -> str:
    """Return the OpenAPI description of this API: what ``openapi.json`` holds."""
    schema = app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description=(
            "Export DeepBrain AI Studios projects to verified MP4s in S3. Requests are signed "
            "with AWS Signature Version 4 (the default), or carry an API key in x-api-key when "
            "the stack is deployed with ApiAuth=API_KEY."
        ),
        security_schemes={
            "sigv4": APIKey.model_validate(
                {
                    "name": "Authorization",
                    "in": APIKeyIn.header,
                    "description": "AWS Signature Version 4 (IAM).",
                    "openapi_extensions": {"x-amazon-apigateway-authtype": "awsSigv4"},
                }
            ),
            "apiKey": APIKey.model_validate(
                {
                    "name": "x-api-key",
                    "in": APIKeyIn.header,
                    "description": "An API Gateway API key.",
                }
            ),
        },
        security=[{"sigv4": []}, {"apiKey": []}],
    )
    return json.dumps(json.loads(schema), indent=2) + "\n"


if __name__ == "__main__":
    print(openapi_json(), end="")
