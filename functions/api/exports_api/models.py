"""The API's request and response bodies: what ``openapi.json`` describes.

Fields are snake_case in Python and camelCase in JSON (an alias generator). Response bodies are
read from the library's records by attribute name (``from_attributes``): no field is copied by
hand. The request's rules are the library's (:mod:`aistudios_export.models`): the description
states them (``json_schema_extra``) and ``ExportRequest.parse`` enforces them, with its messages.
"""

import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from aistudios_export.exports import STATUSES
from aistudios_export.models import (
    DEFAULT_RESOLUTION,
    OUTPUT_PREFIX,
    REQUESTED_PROJECT_ID,
    RESOLUTIONS,
    WEBHOOK_URL,
    WEBHOOK_URL_MAX,
    WORKSPACE_ID,
)


def whole(pattern: re.Pattern[str], *, optional: bool = False) -> str:
    """Return the JSON Schema ``pattern`` of a rule that the whole value must match.

    JSON Schema looks for a pattern anywhere in the value; the rules match whole values.

    Examples
    --------
    >>> whole(re.compile("[0-9]{2}")), whole(re.compile("a"), optional=True)
    ('^(?:[0-9]{2})$', '^(?:a)?$')
    """
    return f"^(?:{pattern.pattern}){'?' if optional else ''}$"


ExportStatus = Annotated[
    str, Field(description=f"One of {', '.join(STATUSES)}.", json_schema_extra={"enum": STATUSES})
]


class ExportRequestBody(BaseModel):
    """What to export."""

    # The shape only: ExportRequest.parse (in ExportStarter.start) is the one keeper of the rules.
    # Clients write the camelCase names only: a snake_case one is an unknown field.
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        json_schema_extra={"examples": [{"projectId": "65fa6b07dca2e367461a2925"}]},
    )

    project_id: str = Field(
        description="The AI Studios project: its 24-character hexadecimal ObjectId.",
        json_schema_extra={"pattern": whole(REQUESTED_PROJECT_ID)},
    )
    resolution: str | None = Field(
        default=None,
        description=f"One of {', '.join(RESOLUTIONS)} (default {DEFAULT_RESOLUTION}).",
        json_schema_extra={"enum": [*RESOLUTIONS, None]},
    )
    workspace_id: str | None = Field(
        default=None,
        description="The AI Studios workspace (letters, digits, _ or -).",
        json_schema_extra={"pattern": whole(WORKSPACE_ID)},
    )
    webhook_url: str | None = Field(
        default=None,
        description=(
            "An https URL without credentials that is called with the export's progress and, "
            "once done, its download_url: relayed after the export confirmed it with AI Studios."
        ),
        json_schema_extra={"pattern": whole(WEBHOOK_URL), "maxLength": WEBHOOK_URL_MAX},
    )
    output_prefix: str | None = Field(
        default=None,
        description=(
            "A key prefix for the video under the deployment's output prefix: relative, "
            "without empty, '.' or '..' segments."
        ),
        json_schema_extra={"pattern": whole(OUTPUT_PREFIX, optional=True)},
    )


class ResponseBody(BaseModel):
    """A body the API answers with: camelCase in JSON, read from the library's records."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, from_attributes=True)


class ExportAccepted(ResponseBody):
    """The export that the request started, or that an equal request started before."""

    export_id: str = Field(description="The export's id (its execution name).")
    status: ExportStatus
    status_url: str = Field(description="Where to follow the export (GET).")


class ExportControlled(ResponseBody):
    """The export a cancel or a redrive acted on, and its status afterwards."""

    export_id: str = Field(description="The export's id (its execution name).")
    status: ExportStatus
    status_url: str = Field(description="Where to follow the export (GET).")


class VideoBody(ResponseBody):
    """The exported video."""

    s3_uri: str
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="SHA-256 of the bytes, in hex.")
    content_type: str | None = None
    download_url: str | None = Field(
        default=None, description="A presigned S3 GET of the video, valid for a short time."
    )
    download_url_expires_at: AwareDatetime | None = None


class ExportSummaryBody(ResponseBody):
    """One export in a listing."""

    export_id: str
    project_id: str
    resolution: str
    status: ExportStatus
    started_at: AwareDatetime
    stopped_at: AwareDatetime | None = None
    status_url: str


class ExportStatusBody(ResponseBody):
    """Everything known about one export."""

    export_id: str
    project_id: str
    resolution: str
    status: ExportStatus
    progress: float = Field(description="Percent done at the latest progress check.")
    state: str | None = Field(description="AI Studios' word for the export's state.")
    started_at: AwareDatetime
    stopped_at: AwareDatetime | None = None
    error: str | None = Field(default=None, description="Why the export failed.")
    cause: str | None = None
    video: VideoBody | None = Field(default=None, description="Once the export SUCCEEDED.")


class ExportListBody(ResponseBody):
    """A page of exports, most recent first."""

    exports: list[ExportSummaryBody]
    next_token: str | None = Field(
        default=None, description="Pass it as nextToken for the next page; null at the end."
    )


class ErrorBody(ResponseBody):
    """An error that is not about the request's fields."""

    status_code: int
    message: str


class WebhookAccepted(ResponseBody):
    """A webhook call taken as a hint; it says nothing of what the export does."""

    status: str = Field(description="Always accepted.", json_schema_extra={"enum": ["accepted"]})


class ProblemBody(ResponseBody):
    """One thing wrong with the request: where, what rule it breaks, and its kind."""

    loc: list[str | int] = Field(description='Where: ["body", "projectId"], ["query", "limit"].')
    msg: str = Field(description="The rule broken; it never quotes the input.")
    type: str


class InvalidRequestBody(ErrorBody):
    """The request breaks the rules: every bad field is named."""

    detail: list[ProblemBody]


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"model": model}}


_RETRY_AFTER = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
ERROR_RESPONSES: dict[int, Any] = {
    404: {"description": "No such export (or webhook)", "content": _json(ErrorBody)},
    409: {
        "description": "The export's status does not allow it (the message says why)",
        "content": _json(ErrorBody),
    },
    413: {"description": "The body is too large", "content": _json(ErrorBody)},
    422: {"description": "The request breaks the rules", "content": _json(InvalidRequestBody)},
    500: {"description": "Internal error", "content": _json(ErrorBody)},
    503: {
        "description": "Busy: retry after Retry-After seconds",
        "headers": {"Retry-After": _RETRY_AFTER},
        "content": _json(ErrorBody),
    },
}
"""The OpenAPI description of the errors a route may answer, by status."""
