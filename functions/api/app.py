"""The HTTP API (API Gateway REST, proxy integration): start, follow and list exports.

- ``POST /exports`` starts an export (or finds the one an equal request started) → 202.
- ``GET /exports/{exportId}`` reports its status, progress and, when done, the video.
- ``GET /exports?projectId=...`` lists recent exports, a page at a time.
- ``POST /exports/{exportId}/cancel`` stops a running export (200; 409 once it ended otherwise).
- ``POST /exports/{exportId}/redrive`` continues one that did not succeed (202; 409 if it cannot).
- ``POST /webhooks/{exportId}/{token}`` is AI Studios' webhook: it wakes the export's wait.

The routes and their errors live beside this file, in :mod:`exports_api`; this module builds
the dispatch and the library objects once per container, at the first request. The dispatch
(:mod:`exports_api.dispatch`, not Powertools' resolver: its import costs a cold start) reads a
request of a known route through quick checks in plain Python. Any other request (a malformed
one, an unknown route) is answered by Powertools' resolver that validates it with pydantic
against the OpenAPI description (:mod:`exports_api.described`), built at the first such request.
Regenerate ``openapi.json`` with ``.venv/bin/python functions/api/app.py > openapi.json``.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aistudios_export import clients, observability, settings
from aistudios_export.errors import ConfigurationError
from aistudios_export.exports import ExportController, ExportLister, ExportStarter, StatusReader
from aistudios_export.settings import HttpApiSettings
from aistudios_export.webhooks import WebhookKey, WebhookWaker
from exports_api import body, dispatch, routes

logger = Logger()

EXPORT_ID_OR_REQUEST_ID = f"pathParameters.exportId || {correlation_paths.API_GATEWAY_REST}"
"""The correlation id: the export's id for a route that names one, else the request's id."""


@cache
def _services() -> routes.Services:
    observability.install_log_hygiene()
    api = HttpApiSettings.from_env()
    sfn = clients.stepfunctions()
    secret_id = settings.webhook_secret_id()
    return routes.Services(
        starter=ExportStarter(api, sfn=sfn),
        status=StatusReader(api, sfn=sfn, s3=clients.s3()),
        lister=ExportLister(api, sfn=sfn),
        controller=ExportController(api, sfn=sfn),
        waker=WebhookWaker(api, sfn=sfn),
        webhook_key=WebhookKey(secret_id) if secret_id else None,
    )


def _cors() -> dispatch.Cors | None:
    try:
        origin = HttpApiSettings.from_env().cors_allow_origin
    except ConfigurationError:
        return None  # every route answers 500 (exports_api.errors): nothing for a browser
    if origin is None:
        return None
    return dispatch.Cors(
        allow_origin=origin,
        allow_headers=["Idempotency-Key", "X-Amz-Security-Token", "X-Api-Key"],
        expose_headers=["Location", "Retry-After"],
        max_age=600,
    )


@cache
def _resolver() -> dispatch.Resolver:
    """Return this container's dispatch, made at its first request (CORS is a setting)."""
    resolver = dispatch.Resolver(cors=_cors())
    resolver.dependency_overrides[routes.services] = _services
    return resolver


@logger.inject_lambda_context(clear_state=True, correlation_id_path=EXPORT_ID_OR_REQUEST_ID)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer an API Gateway REST proxy event (payload format 1.0)."""
    request = body.as_json_request(event)
    resolver = _resolver()
    answer = resolver.resolve(request)
    if answer is not None:
        return answer
    # Malformed (the checks raise before anything is done) or no route of ours: Powertools
    # validates it and names each problem, or answers as it answers an unknown route.
    from exports_api import described

    return described.resolver(resolver).resolve(request, context)


def openapi_json() -> str:
    """Return the OpenAPI description of this API: what ``openapi.json`` holds."""
    # Imported here: pydantic and Powertools' OpenAPI models cost a cold start.
    from exports_api import described, openapi

    return openapi.describe(described.new_resolver())


if __name__ == "__main__":
    print(openapi_json(), end="")
