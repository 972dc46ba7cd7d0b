"""The quick checks of a request, in plain Python: what the API's first request costs, no pydantic.

Each route reads what it needs from the request here. A check returns the values only when the
request is plainly well-formed (the same values the OpenAPI-validated resolver of
:mod:`exports_api.described` would pass); for anything else (a missing or extra field, a value of
the wrong type or out of range, a parameter sent twice, a body that is no JSON object) it
raises :class:`Unchecked`, and the validated resolver answers the request with the 422 that
names every problem. So a well-formed request never imports pydantic, and a malformed one is
answered exactly as the description says. The library's rules (``ExportRequest.parse``, the
listing's) still apply after these checks, as they did after pydantic's.
"""

import re
from collections.abc import Mapping
from typing import Any

from aistudios_export.exports import MAX_LIMIT, MAX_TOKEN_LENGTH
from exports_api import body

BODY_FIELDS = ("projectId", "resolution", "workspaceId", "webhookUrl", "outputPrefix")
"""The fields of ``POST /exports``' body, in their order (``models.ExportRequestBody``)."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_LIMIT = 20
"""A listing's page size when the request gives none."""
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")


class Unchecked(Exception):
    """The quick checks do not vouch for this request: the validated resolver must answer it."""


def export_request(event: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Return a ``POST /exports`` request's body (its non-null fields) and Idempotency-Key.

    Raises
    ------
    Unchecked
        Unless the body is a JSON object of known fields whose values are strings (or null,
        but for ``projectId``), and the header is absent or sent once.
    """
    text = event.get("body") or ""
    if not isinstance(text, str):
        raise Unchecked
    try:
        raw = body.loads(text)
    except (ValueError, RecursionError):  # no JSON, or JSON that cannot be read
        raise Unchecked from None
    if (
        not isinstance(raw, dict)
        or not raw.keys() <= set(BODY_FIELDS)
        or not isinstance(raw.get("projectId"), str)
        or not all(v is None or _text(v) for v in raw.values())
    ):
        raise Unchecked
    fields = {name: raw[name] for name in BODY_FIELDS if raw.get(name) is not None}
    return fields, _header(event, IDEMPOTENCY_HEADER)


def listing_query(event: Mapping[str, Any]) -> dict[str, Any]:
    """Return a ``GET /exports`` request's ``project_id``, ``status``, ``limit`` and ``next_token``.

    Raises
    ------
    Unchecked
        Unless each is absent or given once, the limit a whole number from 1 to ``MAX_LIMIT``
        and the token at most ``MAX_TOKEN_LENGTH`` characters.
    """
    single = event.get("queryStringParameters") or {}
    multi = event.get("multiValueQueryStringParameters") or {}
    values = {name: _once(single, multi, name) for name in ("projectId", "status", "nextToken")}
    limit = _once(single, multi, "limit")
    if limit is not None and not (_LIMIT.fullmatch(limit) and int(limit) <= MAX_LIMIT):
        raise Unchecked
    token = values["nextToken"]
    if token is not None and len(token) > MAX_TOKEN_LENGTH:
        raise Unchecked
    return {
        "project_id": values["projectId"],
        "status": values["status"],
        "limit": DEFAULT_LIMIT if limit is None else int(limit),
        "next_token": token,
    }


def path_text(value: str) -> str:
    """Return a path parameter as it is, when it is text pydantic takes as such.

    Raises
    ------
    Unchecked
        When it holds a lone surrogate (no UTF-8 text).
    """
    if not _text(value):
        raise Unchecked
    return value


def _text(value: Any) -> bool:
    """Whether ``value`` is a string that encodes as UTF-8 (pydantic refuses lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _once(single: Mapping[str, Any], multi: Mapping[str, Any], name: str) -> str | None:
    """Return the query parameter ``name`` when it is absent (None) or plainly given once.

    A value with a comma is left to the validated resolver: Powertools splits and joins those.
    """
    value, values = single.get(name), multi.get(name)
    if value is None and values is None:
        return None
    if not (isinstance(value, str) and _text(value) and values in (None, [value])):
        raise Unchecked
    if "," in value:
        raise Unchecked
    return value


def last_header(event: Mapping[str, Any], name: str) -> Any:
    """Return the value of the header ``name`` as Powertools reads it: of ``headers``, any case.

    Of headers that differ only in case, the last one's (None when there is none).
    """
    values = _named(event.get("headers"), name)
    return values[-1] if values else None


def _header(event: Mapping[str, Any], name: str) -> str | None:
    """Return the header ``name`` when it is absent or plainly sent once (any case)."""
    single = _named(event.get("headers"), name)
    multi = _named(event.get("multiValueHeaders"), name)
    if not single and not multi:
        return None
    value = single[0] if len(single) == 1 else None
    if not (isinstance(value, str) and _text(value) and multi in ([], [[value]])):
        raise Unchecked
    if not multi and event.get("multiValueHeaders"):
        raise Unchecked  # Powertools reads multiValueHeaders alone when there are some
    return value


def _named(headers: Any, name: str) -> list[Any]:
    """Return the values of the headers called ``name`` in any case."""
    if not isinstance(headers, Mapping):
        return []
    return [v for k, v in headers.items() if str(k).lower() == name.lower()]
