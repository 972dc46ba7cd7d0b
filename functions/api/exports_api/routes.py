"""The API's routes: start, follow, list, cancel and redrive exports; each calls one library object.

The routes take what they call from :func:`services`, which the app provides through
``dependency_overrides`` (the library objects it builds once per container), and read the
request they answer from the ``Request`` Powertools passes in.
"""

import re
from dataclasses import asdict
from http import HTTPStatus
from typing import Annotated, Any, NamedTuple

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Depends, Request, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query

from aistudios_export.exports import (
    IDEMPOTENCY_KEY,
    MAX_LIMIT,
    MAX_TOKEN_LENGTH,
    STATUSES,
    ExportController,
    ExportLister,
    ExportStarter,
    Started,
    StatusReader,
    Summary,
)
from aistudios_export.models import EXPORT_ID, REQUESTED_PROJECT_ID
from aistudios_export.naming import EXECUTION_NAME
from aistudios_export.webhooks import MAX_BODY_BYTES, WebhookKey, WebhookWaker, worth_waking
from exports_api.models import (
    ERROR_RESPONSES,
    ExportAccepted,
    ExportControlled,
    ExportListBody,
    ExportRequestBody,
    ExportStatusBody,
    ExportSummaryBody,
    WebhookAccepted,
    whole,
)

# What may go into the Location header of a 202, which echoes the request's host and path.
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_SAFE_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")

logger = Logger(child=True)
router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped


class Services(NamedTuple):
    """What the routes call: one library object per route."""

    starter: ExportStarter
    status: StatusReader
    lister: ExportLister
    controller: ExportController
    waker: WebhookWaker
    webhook_key: WebhookKey | None


def services() -> Services:
    """Return what the routes call; the app provides it (``dependency_overrides[services]``).

    Raises
    ------
    NotImplementedError
        Always: a resolver that includes :data:`router` must override this dependency.
    """
    raise NotImplementedError("the app provides the services: dependency_overrides[services]")


Provided = Annotated[Services, Depends(services)]
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
    started = provided.starter.start(
        body.model_dump(by_alias=True, exclude_none=True), idempotency_key=idempotency_key
    )
    # The request's id correlates this invocation's lines (the export's id was not known before);
    # this one carries the export's. (A child logger cannot set it for the rest: Powertools
    # refuses when its parent has no handler yet.)
    logger.info(
        "export requested",
        extra={
            "exportId": started.export_id,
            "status": started.status,
            "correlation_id": started.export_id,
        },
    )
    accepted = ExportAccepted.model_validate(_linked(started, request))
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=accepted,
        headers={"Location": accepted.status_url},
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
    status = provided.status.read(exportId)
    if status is None:
        raise NotFoundError("no such export")
    return ExportStatusBody.model_validate(status)


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
    controlled = provided.controller.cancel(exportId)
    if controlled is None:
        raise NotFoundError("no such export")
    logger.info("export cancelled", extra={"exportId": exportId, "status": controlled.status})
    return _accepted(controlled, request)


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
    controlled = provided.controller.redrive(exportId)
    if controlled is None:
        raise NotFoundError("no such export")
    logger.info("export redriven", extra={"exportId": exportId, "status": controlled.status})
    return _accepted(controlled, request)


def _accepted(controlled: Started, request: Request) -> Response[ExportControlled]:
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=ExportControlled.model_validate(_linked(controlled, request)),
    )


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
    page = provided.lister.page(
        project_id=project_id, status=status, limit=limit, next_token=next_token
    )
    return ExportListBody(
        exports=[ExportSummaryBody.model_validate(_linked(s, request)) for s in page.exports],
        next_token=page.next_token,
    )


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
    key = provided.webhook_key
    if key is None or not EXPORT_ID.fullmatch(exportId) or not key.verify(exportId, token):
        raise NotFoundError("no such webhook")
    raw = request.resolved_event.body or ""
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_BODY_BYTES:
        raise ServiceError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is too large")
    woken = worth_waking(raw.encode("utf-8", "surrogateescape")) and provided.waker.wake(exportId)
    logger.info("webhook received", extra={"exportId": exportId, "woken": woken})
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=WebhookAccepted(status="accepted"),
    )


def _linked(record: Started | Summary, request: Request) -> dict[str, Any]:
    """Return the record's fields and the link to follow its export."""
    return {**asdict(record), "status_url": status_url(request, record.export_id)}


def status_url(request: Request, export_id: str) -> str:
    """Return the absolute URL of ``GET /exports/{exportId}`` as the client called this API.

    ``requestContext.path`` is the path as called (with the stage, or a custom domain's base
    path); ``path`` is the route's. What the first adds to the second prefixes the link.
    """
    event = request.resolved_event
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
