"""The API's own dispatch of the requests its routes know: a cold start without Powertools'.

Importing ``aws_lambda_powertools.event_handler`` costs the API's cold start about as much as
everything else it imports (the package imports every resolver and every event class), and
building a resolver adds to it. So :class:`Resolver` answers the requests of
:data:`~exports_api.routes.ROUTES` itself, as Powertools' ``APIGatewayRestResolver`` would:
the method and path matched as its routes match them, the route's errors answered as
:mod:`exports_api.errors` says, the same CORS headers and preflight answers, the proxy result
written as Powertools writes it. Whatever it does not know (another method or path, an
``Origin`` header it cannot read) or the quick checks do not vouch for, it leaves to the
validating Powertools resolver of :mod:`exports_api.described` (:meth:`Resolver.resolve`
returns None), so that 404s, edge answers and 422s stay Powertools' own.
``tests/unit/test_api_agreement.py`` checks that both answer alike.
"""

import json
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, NamedTuple

from exports_api import checks, errors, routes
from exports_api.body import JSON

# What Powertools lets a path parameter hold (its _SAFE_URI, _UNSAFE_URI and word characters).
_PARAMETER = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_RULES = [
    (method, re.compile(re.sub(r"<(\w+)>", lambda m: f"(?P<{m[1]}>{_PARAMETER})", path)), route)
    for method, path, route in routes.ROUTES
]
# Powertools' CORSConfig allows these request headers whatever it is told.
_REQUIRED_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-Amz-Date",
    "X-Api-Key",
    "X-Amz-Security-Token",
)
_ALLOW_METHODS = ",".join(sorted({"OPTIONS", *(method for method, _, _ in routes.ROUTES)}))


class Cors(NamedTuple):
    """The CORS settings: the arguments of Powertools' ``CORSConfig`` that the API uses."""

    allow_origin: str
    allow_headers: list[str]
    expose_headers: list[str]
    max_age: int

    def headers(self, origin: str | None) -> dict[str, str]:
        """Return the CORS headers of an answer to a request from ``origin`` (as Powertools).

        Examples
        --------
        >>> Cors("https://a.example", [], ["Location"], 600).headers("https://b.example")
        {}
        """
        if origin is None or self.allow_origin not in (origin, "*"):
            return {}
        allowed = origin if origin == self.allow_origin else "*"
        if not allowed:  # an empty Origin, allowed as it is: Powertools sends none
            return {}
        headers = {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Headers": ",".join(
                sorted({*_REQUIRED_HEADERS, *self.allow_headers})
            ),
        }
        if self.expose_headers:
            headers["Access-Control-Expose-Headers"] = ",".join(self.expose_headers)
        headers["Access-Control-Max-Age"] = str(self.max_age)
        return headers


class Resolver:
    """Answer the API Gateway REST proxy events of the API's routes, or leave them.

    Parameters
    ----------
    cors
        The CORS settings, or None (no CORS headers, no preflight answers).

    Attributes
    ----------
    dependency_overrides
        What provides :func:`routes.services <exports_api.routes.services>`, as a Powertools
        resolver's ``dependency_overrides`` (the validating resolver shares this very dict).

    Examples
    --------
    >>> Resolver().resolve({"httpMethod": "DELETE", "path": "/exports"}) is None
    True
    """

    def __init__(self, cors: Cors | None = None) -> None:
        self.cors = cors
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}

    def resolve(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return the proxy result that answers ``event``; None to leave it to the validating one.

        Raises
        ------
        Exception
            What a route raised that :mod:`exports_api.errors` does not answer (a bug).
        """
        method, path = event.get("httpMethod"), event.get("path")
        cors = self._cors_headers(event)
        if not isinstance(method, str) or not isinstance(path, str) or cors is None:
            return None
        if method == "OPTIONS" and self.cors is not None:  # a browser's preflight
            headers = {"Access-Control-Allow-Methods": _ALLOW_METHODS, **cors}
            return _result(HTTPStatus.NO_CONTENT, "", headers)
        found = _route(method, path)
        if found is None:
            return None
        route, parameters = found
        try:
            provided = self.dependency_overrides.get(routes.services, routes.services)()
            answer = route(provided, event, parameters)
        except checks.Unchecked:
            return None
        except Exception as error:
            answered = errors.answer(error, event)
            if answered is None:
                raise
            answer = answered
        headers = dict(answer.headers or {})
        headers.setdefault("Content-Type", JSON)
        headers.update(cors)
        return _result(answer.status, json.dumps(answer.body, separators=(",", ":")), headers)

    def _cors_headers(self, event: Mapping[str, Any]) -> dict[str, str] | None:
        """Return the CORS headers of the answer to ``event``; None if its Origin is odd."""
        if self.cors is None:
            return {}
        # Powertools reads multiValueHeaders when there are some, else headers; any case.
        multi = event.get("multiValueHeaders")
        headers = multi if multi else event.get("headers")
        if headers is None:
            return self.cors.headers(None)
        if not isinstance(headers, Mapping) or not all(isinstance(k, str) for k in headers):
            return None
        origins = [v for k, v in headers.items() if k.lower() == "origin"]
        origin = origins[-1] if origins else None
        if isinstance(origin, list):  # a multi-value header: its first value
            origin = origin[0] if origin else ()
        if origin is not None and not isinstance(origin, str):
            return None
        return self.cors.headers(origin)


def _route(method: str, path: str) -> tuple[routes.Route, dict[str, str]] | None:
    """Return the route of ``method`` and ``path`` and its path parameters, or None."""
    for route_method, rule, route in _RULES:
        match = rule.fullmatch(path) if route_method == method else None
        if match:
            return route, match.groupdict()
    return None


def _result(status: int, body: str, headers: dict[str, str]) -> dict[str, Any]:
    """Return the proxy result as Powertools writes it for a REST API (``multiValueHeaders``)."""
    return {
        "statusCode": int(status),
        "body": body,
        "isBase64Encoded": False,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
    }
