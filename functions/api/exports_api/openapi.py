"""The API's OpenAPI description, generated from its routes and models (``openapi.json``)."""

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

API_TITLE = "aistudios-export"
API_VERSION = "1.0.0"


def describe(resolver: APIGatewayRestResolver) -> str:
    """Return the OpenAPI description of ``resolver``'s routes, as ``openapi.json`` holds it."""
    schema = resolver.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description=(
            "Export DeepBrain AI Studios projects to verified MP4s in S3. Requests are signed "
            "with AWS Signature Version 4 (the default), or carry an API key in x-api-key when "
            "the stack is deployed with ApiAuth=API_KEY."
        ),
        security_schemes={
            "sigv4": APIKey.model_validate(
                {
                    "name": "Authorization",
                    "in": APIKeyIn.header,
                    "description": "AWS Signature Version 4 (IAM).",
                    "openapi_extensions": {"x-amazon-apigateway-authtype": "awsSigv4"},
                }
            ),
            "apiKey": APIKey.model_validate(
                {
                    "name": "x-api-key",
                    "in": APIKeyIn.header,
                    "description": "An API Gateway API key.",
                }
            ),
        },
        security=[{"sigv4": []}, {"apiKey": []}],
    )
    return json.dumps(_without_unused_schemas(json.loads(schema)), indent=2) + "\n"


def _without_unused_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Drop the component schemas nothing refers to (Powertools' own 422 bodies, unused here)."""
    schemas = document.get("components", {}).get("schemas", {})
    prefix = "#/components/schemas/"
    used: set[str] = set()
    pending = [{k: v for k, v in document.items() if k != "components"}]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix) and ref[len(prefix) :] not in used:
                used.add(ref[len(prefix) :])
                pending.append(schemas.get(ref[len(prefix) :]))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    if schemas:
        document["components"]["schemas"] = {k: v for k, v in schemas.items() if k in used}
    return document
