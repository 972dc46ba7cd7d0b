"""How the API answers what went wrong.

- 422 names every bad field: the shape errors Powertools' validation found, the library's
  ``InvalidRequest.problems`` as they are, and never the input itself; a body that cannot be
  read (:class:`~exports_api.body.UnreadableBody`, too deep) is a 422 about the body;
- 404 and 413 when a route refuses a request (:class:`Refused`);
- 409 when the export's status does not allow what was asked (:class:`StateConflict`), saying
  why and the status;
- 503 with ``Retry-After`` when AWS is busy or briefly broken (:func:`aws_errors.is_transient`);
- a plain 500 for any other AWS error and for a misconfigured deployment.

:func:`answer` serves the app's own dispatch (:mod:`exports_api.dispatch`); :func:`register`
gives the same answers to a Powertools resolver, and answers its validation errors.
"""

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from aistudios_export.aws_errors import error_code, is_transient
from aistudios_export.errors import ConfigurationError, InvalidRequest, StateConflict
from aistudios_export.exports import parse_request
from exports_api import bodies, body, checks
from exports_api.bodies import Answer

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

RETRY_AFTER_SECONDS = 2

logger = Logger(child=True)


class Refused(Exception):
    """A route refuses the request: the status and message of its answer.

    Answered as Powertools answers its ``ServiceError``: ``{"statusCode", "message"}``.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def answer(error: Exception, event: Mapping[str, Any]) -> Answer | None:
    """Return the answer to ``error``, raised while answering ``event``; None if it has none.

    As a Powertools resolver looks its exception handlers up: the first of the error's classes
    (its MRO) that has one.
    """
    for kind in type(error).__mro__:
        if kind in _ANSWERS:
            return _ANSWERS[kind](error, event)
    return None


def as_response(answer: Answer) -> "Response[Any]":
    """Return a plain answer as the Powertools ``Response`` a route or error handler returns."""
    from aws_lambda_powertools.event_handler import Response, content_types

    return Response(
        status_code=answer.status,
        content_type=content_types.APPLICATION_JSON,
        body=answer.body,
        headers=answer.headers,
    )


def register(resolver: "APIGatewayRestResolver") -> None:
    """Answer errors raised while ``resolver`` resolves a request as this module says.

    Examples
    --------
    >>> from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    >>> resolver = APIGatewayRestResolver(enable_validation=True)
    >>> register(resolver)
    """
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

    # The 422s read the request that failed: the resolver's, whichever resolver it is.
    def invalid_shape(error: RequestValidationError) -> Response[Any]:
        # Powertools' default hides the messages; these name the rule broken, never the input.
        event = resolver.current_event
        detail = [
            {"loc": list(e.get("loc", ())), "msg": _message(e, event), "type": e.get("type", "")}
            for e in error.errors()
        ]
        flagged = {_field(d["loc"]) for d in detail}
        return as_response(_unprocessable(detail + _rule_problems(event, flagged)))

    def answering(kind: type[Exception]) -> Callable[[Exception], Response[Any]]:
        def handler(error: Exception) -> Response[Any]:
            return as_response(_ANSWERS[kind](error, resolver.current_event.raw_event))

        return handler

    # Registered by calls: Powertools' decorator is untyped.
    resolver.exception_handler(RequestValidationError)(invalid_shape)
    for kind in _ANSWERS:
        resolver.exception_handler(kind)(answering(kind))


def _message(error: dict[str, Any], event: "BaseProxyEvent") -> str:
    """Return what a shape error says, in the request's terms.

    A JSON error also says why and at which character; a parameter sent more than once (which
    Powertools reads as a list) says so.
    """
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
        reason = str((error.get("ctx") or {}).get("error", "not JSON"))
        return f"the body is not JSON: {reason} (at {loc[1]})"
    if len(loc) == 2 and loc[0] in ("query", "header") and _sent(event, loc[0], loc[1]) > 1:
        return "must be given once"
    return str(error.get("msg", ""))


def _sent(event: "BaseProxyEvent", where: str, name: str) -> int:
    """Return how many values of the query parameter or header ``name`` the request has."""
    if where == "query":
        values = event.multi_value_query_string_parameters.get(name)
    else:
        headers = event.raw_event.get("multiValueHeaders") or {}
        values = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return len(values) if isinstance(values, list) else 0


def _problem_details(error: InvalidRequest, where: str) -> list[dict[str, Any]]:
    """Turn the library's ``(field, message)`` problems into per-field errors."""
    detail = []
    for field, message in error.problems:
        if not field:
            loc: list[str] = [where]
        elif field == "Idempotency-Key":
            loc = ["header", field]
        else:
            loc = [where, field]
        detail.append({"loc": loc, "msg": message, "type": "value_error"})
    return detail


def _unprocessable(detail: list[dict[str, Any]]) -> Answer:
    fields = ", ".join(dict.fromkeys(_field(d["loc"]) for d in detail))
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    return Answer(
        status, {"statusCode": status, "message": f"invalid request: {fields}", "detail": detail}
    )


def _field(loc: list[Any]) -> str:
    return loc[1] if len(loc) > 1 and isinstance(loc[1], str) else str(loc[0] if loc else "body")


def _rule_problems(event: "BaseProxyEvent", flagged: set[str]) -> list[dict[str, Any]]:
    """When the body's shape is wrong, also name the fields whose values break the rules.

    So one answer names every bad field: the shape errors pydantic found, plus what
    ``ExportRequest.parse`` says about the other fields.
    """
    if (event.http_method, event.path) != ("POST", "/exports"):
        return []
    try:
        raw = body.loads(event.decoded_body or "")
    except (ValueError, RecursionError):  # UnreadableBody and JSONDecodeError are ValueErrors
        return []
    if not isinstance(raw, dict):
        return []
    known = {k: v for k, v in raw.items() if k in checks.BODY_FIELDS and k not in flagged}
    try:
        parse_request(known)
    except InvalidRequest as e:
        return [d for d in _problem_details(e, "body") if _field(d["loc"]) not in flagged]
    return []


def _invalid_request(error: InvalidRequest, event: Mapping[str, Any]) -> Answer:
    # A POST's problems are its body's; a GET's are its query's.
    where = "body" if event.get("httpMethod") == "POST" else "query"
    return _unprocessable(_problem_details(error, where))


def _too_deep(_: RecursionError, event: Mapping[str, Any]) -> Answer:
    return _unreadable(body.UnreadableBody("the JSON is nested too deeply"), event)


def _unreadable(error: body.UnreadableBody, _: Mapping[str, Any]) -> Answer:
    return _unprocessable([{"loc": ["body"], "msg": str(error), "type": "json_invalid"}])


def _refused(error: Refused, _: Mapping[str, Any]) -> Answer:
    return _error(error.status, error.message)


def _conflict(error: StateConflict, _: Mapping[str, Any]) -> Answer:
    # The reason names statuses (and Step Functions' reason to refuse a redrive), nothing else.
    logger.info("refused: the export's status", extra={"status": error.status})
    return _error(HTTPStatus.CONFLICT, f"{error.reason} (status {error.status})")


def _aws_error(error: ClientError, _: Mapping[str, Any]) -> Answer:
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


def _misconfigured(error: ConfigurationError, _: Mapping[str, Any]) -> Answer:
    logger.error("the API is misconfigured", extra={"reason": str(error)})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, bodies.error(int(status), message), headers)


_ANSWERS: dict[type[Exception], Callable[[Any, Mapping[str, Any]], Answer]] = {
    InvalidRequest: _invalid_request,
    RecursionError: _too_deep,
    body.UnreadableBody: _unreadable,
    Refused: _refused,
    StateConflict: _conflict,
    ClientError: _aws_error,
    ConfigurationError: _misconfigured,
}
"""The answer to each error a route may raise."""
