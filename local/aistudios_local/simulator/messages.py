"""What passes between the simulator's HTTP server and its API: requests, answers, call records.

The server turns a socket into a `Request`; the API turns that into an `Answer` and records a
`Call`; the server writes the answer back (streaming a `SignedUrl`'s video, or resetting).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

__all__ = [
    "Answer",
    "Call",
    "Request",
    "SignedUrl",
    "error",
    "json_answer",
    "ok",
    "s3_error",
    "status_answer",
]


@dataclass(frozen=True)
class Call:
    """One request the simulator answered; secrets (token, appId, userKey, URL query) are not kept.

    Parameters
    ----------
    method
        HTTP method.
    path
        Request path without its query string.
    status
        HTTP status answered; 0 when the connection was reset without an answer.
    project_id
        The project the call was about, if any.
    authorized
        Whether the request carried a currently valid AI Studios token.
    body
        The JSON body of an export POST; None for every other call (the token POST included).
    """

    method: str
    path: str
    status: int
    project_id: str | None
    authorized: bool
    body: dict[str, Any] | None


@dataclass(frozen=True)
class Request:
    """One request as the server read it, before the API looks at it.

    Parameters
    ----------
    method
        The request line's method, as sent (GET, HEAD or POST reach the API).
    path, query
        The request target's path and query string.
    authorization
        The ``Authorization`` header, if any.
    raw
        The body.
    base_url
        ``http://HOST:PORT`` as the client named the server; download URLs start with it.
    """

    method: str
    path: str
    query: str
    authorization: str | None
    raw: bytes
    base_url: str


@dataclass(frozen=True)
class SignedUrl:
    """A download URL handed out: whose video it serves and until when."""

    project_id: str
    resolution: str
    size: int
    opaque: str
    expires: int
    expired: bool


@dataclass(frozen=True)
class Answer:
    """What the handler writes back; a video is streamed rather than held in `body`."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    video: SignedUrl | None = None
    cut: bool = False
    reset: bool = False


def json_answer(status: int, payload: object) -> Answer:
    """Answer `payload` as JSON with `status`."""
    return Answer(status, json.dumps(payload).encode())


def ok(data: dict[str, Any]) -> Answer:
    """Answer the API's success envelope around `data`."""
    return json_answer(200, {"success": True, "data": data})


def error(status: int, code: str, msg: str) -> Answer:
    """Answer the API's error envelope."""
    return json_answer(status, {"success": False, "error": {"code": code, "msg": msg}})


def status_answer(status: int) -> Answer:
    """Answer an injected status: an envelope for 4xx, an HTML page (as a proxy sends) for 5xx."""
    phrase = HTTPStatus(status).phrase
    if status >= 500:
        page = f"<html><head><title>{status} {phrase}</title></head><h1>{phrase}</h1></html>"
        return Answer(status, page.encode(), "text/html; charset=utf-8")
    return error(status, phrase.upper().replace(" ", "_"), phrase)


def s3_error(code: str, msg: str) -> Answer:
    """Answer 403 with an S3 error document, as a pre-signed S3 URL does."""
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{msg}</Message></Error>"
    return Answer(403, body.encode(), "application/xml")
