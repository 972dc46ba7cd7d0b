"""The API's routes as the OpenAPI description states them, validated by Powertools with pydantic.

Each route here declares its parameters and body (:mod:`.models`) and documents itself; once
Powertools validated a request, it calls the same function of :mod:`.routes` as the plain route
does, and its answer is validated against the model it declares. :func:`resolver` serves two
purposes: ``openapi.json`` is generated from it, and the app hands it the requests that the
quick checks (:mod:`.checks`) do not vouch for, so a malformed request is answered with the 422
that names each problem, and those its dispatch (:mod:`.dispatch`) does not know (an unknown
route, say). It is built at the first such request: a well-formed one never imports pydantic,
nor Powertools' event handler. ``tests/unit/test_api_agreement.py`` checks that both answer
alike.
"""

from functools import cache
from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import (
    APIGatewayRestResolver,
    CORSConfig,
    Request,
    Response,
)
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query

from aistudios_export.exports import IDEMPOTENCY_KEY, MAX_LIMIT, MAX_TOKEN_LENGTH, STATUSES
from aistudios_export.models import EXPORT_ID, REQUESTED_PROJECT_ID
from aistudios_export.naming import EXECUTION_NAME
from aistudios_export.webhooks import MAX_BODY_BYTES
from exports_api import body as json_body
from exports_api import dispatch, errors, routes
from exports_api.models import (
    ERROR_RESPONSES,
    ExportAccepted,
    ExportControlled,
    ExportListBody,
    ExportRequestBody,
    ExportStatusBody,
    WebhookAccepted,
    whole,
)

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped
Provided = Annotated[routes.Services, Depends(routes.services)]


def new_resolver(cors: CORSConfig | None = None) -> APIGatewayRestResolver:
    """Return a resolver that validates requests and answers with these routes."""
    resolver = APIGatewayRestResolver(
        enable_validation=True, cors=cors, json_body_deserializer=json_body.loads
    )
    resolver.include_router(router)
    errors.register(resolver)
    return resolver


@cache
def resolver(plain: dispatch.Resolver) -> APIGatewayRestResolver:
    """Return the validating resolver that stands behind the app's dispatch (built once).

    It has ``plain``'s CORS settings and the very same ``dependency_overrides``.
    """
    cors = None if plain.cors is None else CORSConfig(**plain.cors._asdict())
    validating = new_resolver(cors)
    validating.dependency_overrides = plain.dependency_overrides
    return validating


_EXPORT_ID_PATH = Path(
    description="The exportId of POST /exports; any other value is no export (404).",
    json_schema_extra={"pattern": whole(EXECUTION_NAME)},
)


@router.post(
    "/exports",
    status_code=HTTPStatus.ACCEPTED,
    summary="Start an export",
    operation_id="startExport",
    description=(
        "Starts exporting a project to an MP4 in S3. The same request sent again within the "
        "dedupe window, or with the same Idempotency-Key, answers with the same exportId "
        "and starts nothing new."
    ),
    responses={
        202: {
            "description": "Started (or already started)",
            "headers": {
                "Location": {
                    "description": "Where to follow the export (GET).",
                    "schema": {"type": "string"},
                }
            },
        },
        **{status: ERROR_RESPONSES[status] for status in (422, 500, 503)},
    },
    tags=["exports"],
)
def start_export(
    body: Annotated[ExportRequestBody, Body()],
    provided: Provided,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Equal requests with equal keys are one export, whenever sent: "
                "1-255 printable ASCII characters."
            ),
            json_schema_extra={"pattern": whole(IDEMPOTENCY_KEY)},
        ),
    ] = None,
) -> Response[ExportAccepted]:
    """Start an export, or answer with the one an equal request started."""
    fields = body.model_dump(by_alias=True, exclude_none=True)
    return errors.as_response(
        routes.start(provided, request.resolved_event.raw_event, fields, idempotency_key)
    )


@router.get(
    "/exports/<exportId>",
    summary="Follow an export",
    operation_id="getExport",
    responses={
        200: {"description": "The export"},
        **{status: ERROR_RESPONSES[status] for status in (404, 422, 500, 503)},
    },
    tags=["exports"],
)
def get_export(
    exportId: Annotated[str, _EXPORT_ID_PATH],  # noqa: N803
    provided: Provided,
) -> ExportStatusBody:
    """Report an export's status, progress and, once it succeeded, its video."""
    return ExportStatusBody.model_validate(routes.read(provided, exportId))


@router.post(
    "/exports/<exportId>/cancel",
    status_code=HTTPStatus.ACCEPTED,
    summary="Cancel an export",
    operation_id="cancelExport",
    description=(
        "Stops a RUNNING export: it ends ABORTED, no video is written, and its render slot is "
        "freed. The answer's status is the export's right after the stop: ABORTED, or RUNNING "
        "while it is stopping. Cancelling an export that is already ABORTED answers 202 again "
        "and does nothing; one that ended otherwise (SUCCEEDED, FAILED, TIMED_OUT) answers 409."
    ),
    responses={
        202: {"description": "Cancelled (or already cancelled)"},
        **{status: ERROR_RESPONSES[status] for status in (404, 409, 422, 500, 503)},
    },
    tags=["exports"],
)
def cancel_export(
    exportId: Annotated[str, _EXPORT_ID_PATH],  # noqa: N803
    provided: Provided,
    request: Request,
) -> Response[ExportControlled]:
    """Cancel a running export."""
    return errors.as_response(routes.cancel(provided, request.resolved_event.raw_event, exportId))


@router.post(
    "/exports/<exportId>/redrive",
    status_code=HTTPStatus.ACCEPTED,
    summary="Redrive an export",
    operation_id="redriveExport",
    description=(
        "Resumes a FAILED export where it stood (Step Functions redrive: within 14 days of its "
        "end): a video ready is copied again, an export not yet submitted is submitted, a "
        "render still running is polled again under a render slot, never submitted twice. "
        "Redriving an export that is running again after a redrive answers 202 with its "
        "status and redrives nothing. A SUCCEEDED, ABORTED or TIMED_OUT export (a redrive "
        "would resume it without its render slot: start a new export), one still running "
        "that was never redriven, or one Step Functions cannot redrive answers 409."
    ),
    responses={
        202: {"description": "Redriven (or already running again after a redrive)"},
        **{status: ERROR_RESPONSES[status] for status in (404, 409, 422, 500, 503)},
    },
    tags=["exports"],
)
def redrive_export(
    exportId: Annotated[str, _EXPORT_ID_PATH],  # noqa: N803
    provided: Provided,
    request: Request,
) -> Response[ExportControlled]:
    """Redrive an export that did not succeed."""
    return errors.as_response(routes.redrive(provided, request.resolved_event.raw_event, exportId))


@router.get(
    "/exports",
    summary="List exports",
    operation_id="listExports",
    responses={
        200: {"description": "A page of exports"},
        **{status: ERROR_RESPONSES[status] for status in (422, 500, 503)},
    },
    tags=["exports"],
)
def list_exports(
    provided: Provided,
    request: Request,
    project_id: Annotated[
        str | None,
        Query(
            alias="projectId",
            description="Only this project's exports.",
            json_schema_extra={"pattern": whole(REQUESTED_PROJECT_ID)},
        ),
    ] = None,
    status: Annotated[
        str | None,
        Query(
            description=f"Only exports in this status: {', '.join(STATUSES)}.",
            json_schema_extra={"enum": STATUSES},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 20,
    next_token: Annotated[
        str | None,
        Query(
            alias="nextToken",
            max_length=MAX_TOKEN_LENGTH,
            description="nextToken of the previous page.",
        ),
    ] = None,
) -> ExportListBody:
    """List recent exports, most recent first."""
    listed = routes.page(
        provided,
        request.resolved_event.raw_event,
        project_id=project_id,
        status=status,
        limit=limit,
        next_token=next_token,
    )
    return ExportListBody.model_validate(listed)


@router.post(
    "/webhooks/<exportId>/<token>",
    status_code=HTTPStatus.ACCEPTED,
    summary="Wake an export (AI Studios calls this)",
    operation_id="exportWebhook",
    description=(
        "The webhookUrl handed to AI Studios for one export; no AWS credentials needed. The "
        "token is the export's own: any other answers 404. A call only wakes the export, "
        "which asks AI Studios itself; the answer is 202 whatever it did. Bodies larger than "
        f"{MAX_BODY_BYTES} bytes answer 413."
    ),
    responses={
        202: {"description": "Taken as a hint"},
        **{status: ERROR_RESPONSES[status] for status in (404, 413, 500, 503)},
    },
    tags=["webhooks"],
)
def export_webhook(
    exportId: Annotated[  # noqa: N803
        str,
        Path(
            description="The export the webhook is of (its execution name).",
            json_schema_extra={"pattern": whole(EXPORT_ID)},
        ),
    ],
    token: Annotated[
        str,
        Path(
            description="The export's webhook token.",
            json_schema_extra={"pattern": "^[0-9a-f]{64}$"},
        ),
    ],
    provided: Provided,
    request: Request,
) -> Response[WebhookAccepted]:
    """Wake the export's waiting execution: a hint, confirmed by the execution itself."""
    answer = routes.webhook(provided, request.resolved_event.raw_event, exportId, token)
    return errors.as_response(answer)
