"""The API's routes: start, follow, list, cancel and redrive exports; each calls one library object.

:data:`ROUTES` names each route's method, path and function. A route function takes what it calls
(:class:`Services`), the request (the API Gateway proxy event, as a dict) and the parameters of
its path; it reads the request through the quick checks of :mod:`exports_api.checks` and answers
with a plain :class:`~exports_api.bodies.Answer`. :mod:`exports_api.dispatch` calls them.
Nothing here imports pydantic or Powertools' event handler: the OpenAPI description of these
routes, and the validating resolver that answers the requests the checks do not vouch for, are
:mod:`exports_api.described`'s, which calls the same functions (:func:`start`, :func:`read`, ...)
once it validated a request.
"""

import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, NamedTuple

from aws_lambda_powertools import Logger

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
from exports_api.bodies import Answer
from exports_api.errors import Refused

# What may go into the Location header of a 202, which echoes the request's host and path.
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_SAFE_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")

logger = Logger(child=True)

Event = Mapping[str, Any]
"""An API Gateway REST proxy event (payload format 1.0)."""


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
        Always: whoever calls the routes must override this dependency.
    """
    raise NotImplementedError("the app provides the services: dependency_overrides[services]")


def start_export(provided: Services, event: Event, _: Mapping[str, str]) -> Answer:
    """``POST /exports``: the quick checks, then :func:`start`."""
    fields, idempotency_key = checks.export_request(event)
    return start(provided, event, fields, idempotency_key)


def get_export(provided: Services, _: Event, path: Mapping[str, str]) -> Answer:
    """``GET /exports/{exportId}``: the quick checks, then :func:`read`."""
    return Answer(HTTPStatus.OK, read(provided, checks.path_text(path["exportId"])))


def cancel_export(provided: Services, event: Event, path: Mapping[str, str]) -> Answer:
    """``POST /exports/{exportId}/cancel``: the quick checks, then :func:`cancel`."""
    return cancel(provided, event, checks.path_text(path["exportId"]))


def redrive_export(provided: Services, event: Event, path: Mapping[str, str]) -> Answer:
    """``POST /exports/{exportId}/redrive``: the quick checks, then :func:`redrive`."""
    return redrive(provided, event, checks.path_text(path["exportId"]))


def list_exports(provided: Services, event: Event, _: Mapping[str, str]) -> Answer:
    """``GET /exports``: the quick checks, then :func:`page`."""
    return Answer(HTTPStatus.OK, page(provided, event, **checks.listing_query(event)))


def export_webhook(provided: Services, event: Event, path: Mapping[str, str]) -> Answer:
    """``POST /webhooks/{exportId}/{token}``: the quick checks, then :func:`webhook`."""
    export_id, token = checks.path_text(path["exportId"]), checks.path_text(path["token"])
    return webhook(provided, event, export_id, token)


Route = Callable[[Services, Event, Mapping[str, str]], Answer]
ROUTES: tuple[tuple[str, str, Route], ...] = (
    ("POST", "/exports", start_export),
    ("GET", "/exports/<exportId>", get_export),
    ("POST", "/exports/<exportId>/cancel", cancel_export),
    ("POST", "/exports/<exportId>/redrive", redrive_export),
    ("GET", "/exports", list_exports),
    ("POST", "/webhooks/<exportId>/<token>", export_webhook),
)
"""Each route's method, path (``<name>`` a path parameter, as Powertools writes it) and function."""


def start(
    provided: Services, event: Event, fields: dict[str, Any], idempotency_key: str | None
) -> Answer:
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
    accepted = bodies.accepted(_linked(started, event))
    return Answer(HTTPStatus.ACCEPTED, accepted, {"Location": accepted["statusUrl"]})


def read(provided: Services, export_id: str) -> dict[str, Any]:
    """Report an export's status, progress and, once it succeeded, its video."""
    status = provided.status.read(export_id)
    if status is None:
        raise Refused(HTTPStatus.NOT_FOUND, "no such export")
    return bodies.status(status)


def cancel(provided: Services, event: Event, export_id: str) -> Answer:
    """Cancel a running export (202)."""
    controlled = provided.controller.cancel(export_id)
    if controlled is None:
        raise Refused(HTTPStatus.NOT_FOUND, "no such export")
    logger.info("export cancelled", extra={"exportId": export_id, "status": controlled.status})
    return _accepted(controlled, event)


def redrive(provided: Services, event: Event, export_id: str) -> Answer:
    """Redrive an export that did not succeed (202)."""
    controlled = provided.controller.redrive(export_id)
    if controlled is None:
        raise Refused(HTTPStatus.NOT_FOUND, "no such export")
    logger.info("export redriven", extra={"exportId": export_id, "status": controlled.status})
    return _accepted(controlled, event)


def page(
    provided: Services,
    event: Event,
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
    return bodies.listing([_linked(s, event) for s in listed.exports], listed.next_token)


def webhook(provided: Services, event: Event, export_id: str, token: str) -> Answer:
    """Wake the export's waiting execution: a hint, confirmed by the execution itself (202)."""
    key = provided.webhook_key
    if key is None or not EXPORT_ID.fullmatch(export_id) or not key.verify(export_id, token):
        raise Refused(HTTPStatus.NOT_FOUND, "no such webhook")
    raw = event.get("body") or ""
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_BODY_BYTES:
        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is too large")
    woken = worth_waking(raw.encode("utf-8", "surrogateescape")) and provided.waker.wake(export_id)
    logger.info("webhook received", extra={"exportId": export_id, "woken": woken})
    return Answer(HTTPStatus.ACCEPTED, bodies.WEBHOOK_ACCEPTED)


def _accepted(controlled: Started, event: Event) -> Answer:
    return Answer(HTTPStatus.ACCEPTED, bodies.accepted(_linked(controlled, event)))


def _linked(record: Started | Summary, event: Event) -> dict[str, Any]:
    """Return the record's fields and the link to follow its export."""
    return {**bodies.fields(record), "status_url": status_url(event, record.export_id)}


def status_url(event: Event, export_id: str) -> str:
    """Return the absolute URL of ``GET /exports/{exportId}`` as the client called this API.

    ``requestContext.path`` is the path as called (with the stage, or a custom domain's base
    path); ``path`` is the route's. What the first adds to the second prefixes the link.
    """
    context = event.get("requestContext") or {}
    route_path = event["path"]
    called = str(context.get("path") or "")
    prefix = called[: -len(route_path)] if route_path and called.endswith(route_path) else ""
    if not _SAFE_PREFIX.fullmatch(prefix):
        prefix = ""
    path = f"{prefix}/exports/{export_id}"
    domain = str(context.get("domainName") or "")
    if not _HOST.fullmatch(domain):
        return path
    # API Gateway sets the scheme it was called with; anything odd means https.
    forwarded = checks.last_header(event, "X-Forwarded-Proto") or ""
    scheme = forwarded.split(",")[0].strip().lower()
    return f"{'http' if scheme == 'http' else 'https'}://{domain}{path}"
