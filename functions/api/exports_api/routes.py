"""The API's routes: start, follow, list, cancel and redrive exports; each calls one library object.

The routes take what they call from :func:`services`, which the app provides through
``dependency_overrides`` (the library objects it builds once per container), and read the
request they answer from the ``Request`` Powertools passes in, through the quick checks of
:mod:`exports_api.checks`. Their answers are plain JSON bodies (:mod:`exports_api.bodies`).
Nothing here imports pydantic: the OpenAPI description of these routes, and the validated
resolver that answers the requests the checks do not vouch for, are :mod:`exports_api.described`'s,
which calls the same functions (:func:`start`, :func:`read`, ...) once it validated a request.
"""

import re
from http import HTTPStatus
from typing import Annotated, Any, NamedTuple

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Depends, Request, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError

from aistudios_export.exports import (
    ExportController,
    ExportLister,
    ExportStarter,
    Started,
    StatusReader,
    Summary,
)
from aistudios_export.models import EXPORT_ID
from aistudios_export.webhooks import MAX_BODY_BYTES, WebhookKey, WebhookWaker, worth_waking
from exports_api import bodies, checks

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


@router.post("/exports")
def start_export(provided: Provided, request: Request) -> Response[Any]:
    """``POST /exports``: the quick checks, then :func:`start`."""
    fields, idempotency_key = checks.export_request(request)
    return start(provided, request, fields, idempotency_key)


@router.get("/exports/<exportId>")
def get_export(exportId: str, provided: Provided) -> dict[str, Any]:  # noqa: N803
    """``GET /exports/{exportId}``: the quick checks, then :func:`read`."""
    return read(provided, checks.path_text(exportId))


@router.post("/exports/<exportId>/cancel")
def cancel_export(exportId: str, provided: Provided, request: Request) -> Response[Any]:  # noqa: N803
    """``POST /exports/{exportId}/cancel``: the quick checks, then :func:`cancel`."""
    return cancel(provided, request, checks.path_text(exportId))


@router.post("/exports/<exportId>/redrive")
def redrive_export(exportId: str, provided: Provided, request: Request) -> Response[Any]:  # noqa: N803
    """``POST /exports/{exportId}/redrive``: the quick checks, then :func:`redrive`."""
    return redrive(provided, request, checks.path_text(exportId))


@router.get("/exports")
def list_exports(provided: Provided, request: Request) -> dict[str, Any]:
    """``GET /exports``: the quick checks, then :func:`page`."""
    return page(provided, request, **checks.listing_query(request))


@router.post("/webhooks/<exportId>/<token>")
def export_webhook(
    exportId: str,  # noqa: N803
    token: str,
    provided: Provided,
    request: Request,
) -> Response[Any]:
    """``POST /webhooks/{exportId}/{token}``: the quick checks, then :func:`webhook`."""
    return webhook(provided, request, checks.path_text(exportId), checks.path_text(token))


def start(
    provided: Services, request: Request, fields: dict[str, Any], idempotency_key: str | None
) -> Response[Any]:
    """Start an export, or answer with the one an equal request started (202)."""
    started = provided.starter.start(fields, idempotency_key=idempotency_key)
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
    accepted = bodies.accepted(_linked(started, request))
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=accepted,
        headers={"Location": accepted["statusUrl"]},
    )


def read(provided: Services, export_id: str) -> dict[str, Any]:
    """Report an export's status, progress and, once it succeeded, its video."""
    status = provided.status.read(export_id)
    if status is None:
        raise NotFoundError("no such export")
    return bodies.status(status)


def cancel(provided: Services, request: Request, export_id: str) -> Response[Any]:
    """Cancel a running export (202)."""
    controlled = provided.controller.cancel(export_id)
    if controlled is None:
        raise NotFoundError("no such export")
    logger.info("export cancelled", extra={"exportId": export_id, "status": controlled.status})
    return _accepted(controlled, request)


def redrive(provided: Services, request: Request, export_id: str) -> Response[Any]:
    """Redrive an export that did not succeed (202)."""
    controlled = provided.controller.redrive(export_id)
    if controlled is None:
        raise NotFoundError("no such export")
    logger.info("export redriven", extra={"exportId": export_id, "status": controlled.status})
    return _accepted(controlled, request)


def page(
    provided: Services,
    request: Request,
    *,
    project_id: str | None,
    status: str | None,
    limit: int,
    next_token: str | None,
) -> dict[str, Any]:
    """List recent exports, most recent first."""
    listed = provided.lister.page(
        project_id=project_id, status=status, limit=limit, next_token=next_token
    )
    return bodies.listing([_linked(s, request) for s in listed.exports], listed.next_token)


def webhook(provided: Services, request: Request, export_id: str, token: str) -> Response[Any]:
    """Wake the export's waiting execution: a hint, confirmed by the execution itself (202)."""
    key = provided.webhook_key
    if key is None or not EXPORT_ID.fullmatch(export_id) or not key.verify(export_id, token):
        raise NotFoundError("no such webhook")
    raw = request.resolved_event.body or ""
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_BODY_BYTES:
        raise ServiceError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is too large")
    woken = worth_waking(raw.encode("utf-8", "surrogateescape")) and provided.waker.wake(export_id)
    logger.info("webhook received", extra={"exportId": export_id, "woken": woken})
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=bodies.WEBHOOK_ACCEPTED,
    )


def _accepted(controlled: Started, request: Request) -> Response[Any]:
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=bodies.accepted(_linked(controlled, request)),
    )


def _linked(record: Started | Summary, request: Request) -> dict[str, Any]:
    """Return the record's fields and the link to follow its export."""
    return {**bodies.fields(record), "status_url": status_url(request, record.export_id)}


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
