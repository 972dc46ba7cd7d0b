"""How the API reads a request's body: UTF-8 JSON text, whatever the event's encoding or label.

API Gateway passes a body that is not UTF-8 as base64 with ``isBase64Encoded``; Powertools
would decode it as UTF-8 and parse it with :func:`json.loads`, and either may raise something
other than a JSON error (a byte that is not UTF-8, a number too long for Python's ``int``), which
would answer 500. Here both become an :class:`UnreadableBody` that names what is wrong.
"""

import base64
import binascii
import json
import sys
from typing import Any

JSON = "application/json"
"""The media type of JSON (Powertools' ``content_types.APPLICATION_JSON``)."""
MAX_DIGITS = sys.get_int_max_str_digits()
"""The longest whole number a body may hold (Python's limit on int-string conversion)."""


class UnreadableBody(ValueError):
    """The body is no JSON text the API can read; the message says why, quoting none of it."""


def as_json_request(event: dict[str, Any]) -> dict[str, Any]:
    """Return ``event`` with its body as text and labelled JSON, whatever its Content-Type says.

    The API speaks JSON only, and ``curl -d`` labels its body form-encoded. Powertools reads a
    body's Content-Type from ``headers`` alone (never from ``multiValueHeaders``). A base64 body
    becomes text; a byte that is not UTF-8 stays in it as a lone surrogate, for :func:`loads`
    to refuse.

    Examples
    --------
    >>> event = {"body": "e30=", "isBase64Encoded": True, "headers": None}
    >>> fixed = as_json_request(event)
    >>> fixed["body"], fixed["isBase64Encoded"], fixed["headers"]
    ('{}', False, {'Content-Type': 'application/json'})
    """
    fixed = dict(event)
    headers = fixed.get("headers")
    if not isinstance(headers, dict):
        headers = {}
    fixed["headers"] = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    fixed["headers"]["Content-Type"] = JSON
    body = fixed.get("body")
    if fixed.get("isBase64Encoded") and isinstance(body, str):
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error:
            # API Gateway never sends such a body: read it as the text it is.
            raw = body.encode("utf-8", "surrogatepass")
        fixed["body"] = raw.decode("utf-8", "surrogateescape")
        fixed["isBase64Encoded"] = False
    return fixed


def loads(text: str) -> Any:
    """Read a request body as JSON: the resolver's ``json_body_deserializer``.

    Raises
    ------
    UnreadableBody
        When the body is not UTF-8 text, or holds a number of more than :data:`MAX_DIGITS` digits.
    json.JSONDecodeError
        When it is no JSON (Powertools names the position).
    RecursionError
        When its arrays and objects nest too deeply.

    Examples
    --------
    >>> loads('{"limit": 20}')
    {'limit': 20}
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: a byte that was not UTF-8 (as_json_request kept it so).
        raise UnreadableBody("the body is not UTF-8 text") from None
    return json.loads(text, parse_int=_whole_number)


def _whole_number(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise UnreadableBody(
            f"the body is not JSON that can be read: a number has more than {MAX_DIGITS} digits"
        )
    return int(digits)
