"""The export request, the polling job carried through the state machine, and their rules.

Only JSON-able, secret-free values go into a :class:`Job`: it is the state machine's data,
visible in the console and in execution history. The download URL is never part of it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from aistudios_export.echo import excerpt
from aistudios_export.errors import InvalidRequest, Problem

RESOLUTIONS = ("4k", "1080", "720", "480")
DEFAULT_RESOLUTION = "1080"
PROJECT_ID = re.compile(r"[0-9a-f]{24}")
"""A project id as this library writes it: 24 lowercase hex digits."""
REQUESTED_PROJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
"""A project id as a request may spell it: 24 hex digits in any case."""
WORKSPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
OUTPUT_PREFIX = re.compile(
    r"(?!/)"  # relative
    r"(?!(?:.*/)?\.{1,2}(?:/|$))"  # no "." or ".." segment
    r"(?!.*//+[^/])"  # no empty segment (trailing slashes are one)
    r"[A-Za-z0-9!_.*'()/-]{1,256}"
)
"""A non-empty ``outputPrefix``: a relative S3 key prefix of safe characters."""
WEBHOOK_URL_MAX = 2048
WEBHOOK_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?")
"""The webhook URLs :meth:`ExportRequest.parse` accepts (at most :data:`WEBHOOK_URL_MAX`
characters), exactly as ``openapi.json`` states them: an international host is written in its
``xn--`` form, and an address literal is not a webhook's."""

# Bounds of the per-export knobs: (minimum, maximum). The execution itself times out after
# 10800 s (statemachine/export.asl.json): the longest budget plus the longest wait for a render
# slot (RenderSlotMaxWaitSeconds, at most 3600 s) stays below that.
POLL_SECONDS = (0, 900)
TIMEOUT_SECONDS = (1, 5400)
STALL_SECONDS = (1, 5400)
DEFAULT_SECONDS = {"pollSeconds": 15, "timeoutSeconds": 1800, "stallSeconds": 600}
"""Used when neither the request nor the deployment's defaults say otherwise."""
MIN_POLL_SECONDS = 0
"""The floor under ``pollSeconds`` when the deployment's defaults set no ``minPollSeconds``."""
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
MAX_WAKES = 100
"""Checks a webhook may cause beyond ``maxPolls`` (each is one poll of history, bounded)."""
MAX_URL_MISSING_CHECKS = 3
"""How many polls at 100% without a download URL are tolerated before failing."""
MAX_UNKNOWN_STATES = 5
"""How many distinct unknown ``state`` words a job remembers (each is logged once per export)."""
EXPORT_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
"""An execution name that may stand in an object key as it is."""

REQUEST_FIELDS = frozenset(
    {
        "projectId",
        "resolution",
        "workspaceId",
        "webhookUrl",
        "outputPrefix",
        "pollSeconds",
        "timeoutSeconds",
        "stallSeconds",
    }
)

Outcome = Literal["waiting", "done", "failed", "timedOut"]


@dataclass(frozen=True)
class ExportRequest:
    """A validated request to export one project.

    Attributes
    ----------
    project_id
        The project's 24-hex ObjectId.
    resolution
        One of ``4k``, ``1080``, ``720``, ``480``.
    workspace_id, webhook_url
        Passed to AI Studios unchanged when given.
    output_prefix
        A key prefix under the deployment's output prefix, ending in ``/`` (or empty).
    poll_seconds, timeout_seconds, stall_seconds
        The longest wait between two progress checks (shorter ones are predicted from the
        export's pace), the export's overall budget, and how long progress may stand still.
    """

    project_id: str
    resolution: str = DEFAULT_RESOLUTION
    workspace_id: str | None = None
    webhook_url: str | None = None
    output_prefix: str = ""
    poll_seconds: int = DEFAULT_SECONDS["pollSeconds"]
    timeout_seconds: int = DEFAULT_SECONDS["timeoutSeconds"]
    stall_seconds: int = DEFAULT_SECONDS["stallSeconds"]

    @classmethod
    def parse(cls, raw: Any, defaults: Mapping[str, Any] | None = None) -> ExportRequest:
        """Validate ``raw`` (the request as received) and fill in ``defaults``.

        Parameters
        ----------
        raw
            The request object; anything that is not a JSON object is rejected.
        defaults
            ``pollSeconds``/``timeoutSeconds``/``stallSeconds`` to use when the request has none
            (strings are accepted, as template substitutions are strings).

        Raises
        ------
        InvalidRequest
            Naming every field that is wrong, so one round trip fixes them all.
        """
        if not isinstance(raw, Mapping):
            raise InvalidRequest.whole("the request must be a JSON object")
        problems: list[Problem] = []
        unknown = sorted(excerpt(str(k)) for k in raw if k not in REQUEST_FIELDS)
        if unknown:
            # Name a few, shortly: the message goes back to whoever sent them, and into reports.
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            problems.append(("", f"unknown field(s): {', '.join(unknown[:5])}{more}"))

        project_id = raw.get("projectId")
        if not isinstance(project_id, str) or not REQUESTED_PROJECT_ID.fullmatch(project_id):
            problems.append(("projectId", "must be a 24-character hexadecimal ObjectId"))
            project_id = ""
        resolution = _resolution(raw.get("resolution", DEFAULT_RESOLUTION), problems)
        workspace_id = _optional(
            raw, "workspaceId", WORKSPACE_ID, "letters, digits, _ or -, 1-64", problems
        )
        webhook_url = _webhook(raw.get("webhookUrl"), problems)
        output_prefix = _prefix(raw.get("outputPrefix"), problems)
        defaults = defaults or {}
        knobs = {
            name: _seconds(raw, defaults, name, bounds, problems)
            for name, bounds in (
                ("pollSeconds", POLL_SECONDS),
                ("timeoutSeconds", TIMEOUT_SECONDS),
                ("stallSeconds", STALL_SECONDS),
            )
        }
        if problems:
            raise InvalidRequest(problems)
        return cls(
            project_id=project_id.lower(),
            resolution=resolution,
            workspace_id=workspace_id,
            webhook_url=webhook_url,
            output_prefix=output_prefix,
            poll_seconds=knobs["pollSeconds"],
            timeout_seconds=knobs["timeoutSeconds"],
            stall_seconds=knobs["stallSeconds"],
        )

    def to_input(self) -> dict[str, Any]:
        """Return the canonical execution input of this request (every field, defaults filled in).

        Equal requests give equal inputs, so an execution name derived from it dedupes retries.
        """
        data: dict[str, Any] = {"projectId": self.project_id, "resolution": self.resolution}
        for key, value in (
            ("workspaceId", self.workspace_id),
            ("webhookUrl", self.webhook_url),
            ("outputPrefix", self.output_prefix),
        ):
            if value:
                data[key] = value
        data.update(
            pollSeconds=self.poll_seconds,
            timeoutSeconds=self.timeout_seconds,
            stallSeconds=self.stall_seconds,
        )
        return data

    def api_body(self, own_webhook_url: str | None = None) -> dict[str, str]:
        """Return the body of ``POST /editor/project/export``.

        AI Studios takes one ``webhookUrl``: ``own_webhook_url`` (this stack's, which wakes the
        waiting execution; the request's own is then relayed) when there is one, else the
        request's own.
        """
        body = {"projectId": self.project_id, "resolution": self.resolution}
        if self.workspace_id:
            body["workspaceId"] = self.workspace_id
        webhook = own_webhook_url or self.webhook_url
        if webhook:
            body["webhookUrl"] = webhook
        return body


def min_poll_seconds(defaults: Mapping[str, Any] | None) -> int:
    """Return the deployment's floor under ``pollSeconds``, which no request can lower.

    Each poll writes about ten events into the execution's history, which Step Functions ends
    at 25,000: the floor keeps a long budget's polls below that, and off the API.

    Parameters
    ----------
    defaults
        The deployment's defaults; ``minPollSeconds`` there (a string, as template substitutions
        are), else :data:`MIN_POLL_SECONDS`.

    Raises
    ------
    InvalidRequest
        When the deployment's value is not a whole number within :data:`POLL_SECONDS`.
    """
    return _deployment_seconds(defaults, "minPollSeconds", MIN_POLL_SECONDS)


def _deployment_seconds(defaults: Mapping[str, Any] | None, name: str, default: int) -> int:
    """Return the deployment's ``name`` (``default`` when unset), checked as a request's is."""
    problems: list[Problem] = []
    value = _seconds({name: (defaults or {}).get(name, default)}, {}, name, POLL_SECONDS, problems)
    if problems:
        raise InvalidRequest(problems)
    return value


def _resolution(value: Any, problems: list[Problem]) -> str:
    text = (
        str(value).strip().lower()
        if isinstance(value, str | int) and not isinstance(value, bool)
        else ""
    )
    if text not in RESOLUTIONS:
        problems.append(("resolution", f"must be one of {' | '.join(RESOLUTIONS)}"))
        return DEFAULT_RESOLUTION
    return text


def _optional(
    raw: Mapping[str, Any], name: str, pattern: re.Pattern[str], rule: str, problems: list[Problem]
) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        problems.append((name, f"must be {rule}"))
        return None
    return value


def _webhook(value: Any, problems: list[Problem]) -> str | None:
    if value is None:
        return None
    try:
        fits = (
            isinstance(value, str)
            and len(value) <= WEBHOOK_URL_MAX
            and WEBHOOK_URL.fullmatch(value) is not None
        )
        parts = urlsplit(value) if fits else None
    except ValueError:  # e.g. an unclosed "[" or a host that changes under NFKC
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname or parts.username is not None:
        problems.append(
            (
                "webhookUrl",
                f"must be an https URL without credentials, at most {WEBHOOK_URL_MAX} characters",
            )
        )
        return None
    return str(value)


def _prefix(value: Any, problems: list[Problem]) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not OUTPUT_PREFIX.fullmatch(value):
        problems.append(
            (
                "outputPrefix",
                "must be a relative key prefix of letters, digits and !_.*'()/- "
                "without empty, '.' or '..' segments, at most 256 characters",
            )
        )
        return ""
    return value if value.endswith("/") else value + "/"


def _seconds(
    raw: Mapping[str, Any],
    defaults: Mapping[str, Any],
    name: str,
    bounds: tuple[int, int],
    problems: list[Problem],
) -> int:
    low, high = bounds
    value = raw[name] if name in raw else defaults.get(name, DEFAULT_SECONDS.get(name))
    if isinstance(value, str) and WHOLE_NUMBER.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append((name, f"must be a whole number of seconds from {low} to {high}"))
        return low
    return value


@dataclass
class Job:
    """The polling state of one export, carried between the state machine's steps.

    ``outcome`` drives the state machine's Choice: ``waiting`` loops, ``done`` finalizes,
    ``failed``/``timedOut`` end the execution with ``error`` and ``cause``.
    """

    projectId: str  # noqa: N815 - the state machine's JSON names
    resolution: str
    outputPrefix: str  # noqa: N815
    submittedAt: float  # noqa: N815
    deadline: float
    pollSeconds: int  # noqa: N815
    stallSeconds: int  # noqa: N815
    maxPolls: int  # noqa: N815
    polls: int = 0
    progress: float = 0.0
    state: str = ""
    lastChangeAt: float = 0.0  # noqa: N815
    urlMissingChecks: int = 0  # noqa: N815
    outcome: Outcome = "waiting"
    nextPollSeconds: int = 0  # noqa: N815
    error: str | None = None
    cause: str | None = None
    exportId: str = ""  # noqa: N815 - empty in jobs written before it existed
    submittedUtc: str = ""  # noqa: N815 - submittedAt for people: the failure cause names it
    slotExpires: float = 0.0  # noqa: N815 - when the render slot's lease ends; 0: none held
    minPollSeconds: int = 0  # noqa: N815 - the shortest adaptive wait (0: as pollSeconds)
    webhookPollSeconds: int = 0  # noqa: N815
    """Every wait's length when AI Studios calls this stack's webhook (0: no webhook, waits are
    predicted): the webhook ends the wait, the timeout is the fall-back."""
    checkedAt: float = 0.0  # noqa: N815 - when the previous check ran; 0: none yet
    predictedDoneAt: float = 0.0  # noqa: N815 - when the previous check expected the end; 0: unknown
    wake: Any = None
    """What ended the last wait: ``{"by": "webhook"}`` when a webhook woke it (set by the state
    machine, never by a caller: the callback's own output is dropped), else a timeout's error."""
    wakes: int = 0
    """Checks a webhook caused; up to :data:`MAX_WAKES` of them are not counted in ``polls``."""
    relayWebhookUrl: str | None = None  # noqa: N815 - the request's own webhookUrl, relayed
    relayedProgress: float = -1.0  # noqa: N815 - the progress last relayed to it
    unknownStates: list[str] = field(default_factory=list)  # noqa: N815
    """The ``state`` words this export reported that the library does not know, each logged once
    (at most :data:`MAX_UNKNOWN_STATES`, cut to 40 characters)."""

    @classmethod
    def start(
        cls,
        request: ExportRequest,
        now: float,
        *,
        export_id: str = "",
        min_poll_seconds: int = 0,
        slot_expires: float = 0.0,
        relay_webhook_url: str | None = None,
        webhook_poll_seconds: int = 0,
    ) -> Job:
        """Return the job of a just-submitted export.

        Parameters
        ----------
        request
            The validated request.
        now
            When the export was submitted (epoch seconds).
        export_id
            The execution's name: it makes the object key of this export its own. A name with
            characters an object key should not carry is replaced by a digest of it.
        min_poll_seconds
            The deployment's floor (:func:`min_poll_seconds`): a request asking to poll more
            often polls this often.
        slot_expires
            When the lease of the export's render slot ends (0: it holds none).
        relay_webhook_url
            The request's own ``webhookUrl`` when AI Studios was given this stack's instead:
            CheckProgress relays confirmed progress to it (:mod:`~aistudios_export.relay`).
        webhook_poll_seconds
            The deployment's wait when AI Studios calls this stack's webhook (0: it does not):
            every wait lasts this long (at least the floor) unless the webhook ends it, with no
            prediction and no early probe, as the webhook announces the end. A ``pollSeconds``
            of 0 (no waits at all) stays 0.
        """
        poll_seconds = max(request.poll_seconds, min_poll_seconds)
        shortest = shortest_wait(poll_seconds, min_poll_seconds)
        webhook_wait = max(webhook_poll_seconds, shortest) if webhook_poll_seconds > 0 else 0
        webhook_wait = webhook_wait if poll_seconds > 0 else 0
        # The poll count is a second bound beside the deadline, so a clock that misbehaves
        # still cannot loop forever. Adaptive waits may be as short as the shortest wait.
        max_polls = math.ceil(request.timeout_seconds / max(shortest, 1)) + 10
        return cls(
            projectId=request.project_id,
            resolution=request.resolution,
            outputPrefix=request.output_prefix,
            submittedAt=now,
            deadline=now + request.timeout_seconds,
            pollSeconds=poll_seconds,
            stallSeconds=request.stall_seconds,
            maxPolls=max_polls,
            lastChangeAt=now,
            # Nothing is known of the export's pace yet: look early, then predict; with a
            # webhook, wait for it.
            nextPollSeconds=min(webhook_wait, request.timeout_seconds + 1) or shortest,
            exportId=_key_safe(export_id),
            submittedUtc=datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            slotExpires=slot_expires,
            minPollSeconds=shortest,
            relayWebhookUrl=relay_webhook_url,
            webhookPollSeconds=webhook_wait,
        )

    @classmethod
    def from_dict(cls, raw: Any) -> Job:
        """Rebuild a job from the state machine's data.

        Raises
        ------
        InvalidRequest
            When the data is not a job this library wrote.
        """
        if not isinstance(raw, Mapping):
            raise InvalidRequest([("job", "must be a JSON object")], "job: must be a JSON object")
        known = set(cls.__dataclass_fields__)
        try:
            job = cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as e:
            raise InvalidRequest([("job", str(e))], f"job: {e}") from None
        if (
            not PROJECT_ID.fullmatch(str(job.projectId))
            or job.resolution not in RESOLUTIONS
            or not isinstance(job.exportId, str)
            or _key_safe(job.exportId) != job.exportId
        ):
            raise InvalidRequest(
                [("job", "projectId, resolution or exportId is not valid")],
                "job: projectId, resolution or exportId is not valid",
            )
        return job

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form handed back to the state machine."""
        return asdict(self)


def webhook_poll_seconds(defaults: Mapping[str, Any] | None) -> int:
    """Return the deployment's wait when AI Studios calls this stack's webhook (0: predict waits).

    Parameters
    ----------
    defaults
        The deployment's defaults; ``webhookPollSeconds`` there (a string, as template
        substitutions are), else 0.

    Raises
    ------
    InvalidRequest
        When the deployment's value is not a whole number within :data:`POLL_SECONDS`.
    """
    return _deployment_seconds(defaults, "webhookPollSeconds", 0)


def shortest_wait(poll_seconds: int, min_poll_seconds: int) -> int:
    """Return the shortest adaptive wait: the floor, at least 1 s, at most ``poll_seconds``.

    ``pollSeconds`` is the longest wait between two checks; 0 checks without waiting (local runs).

    Examples
    --------
    >>> shortest_wait(60, 10), shortest_wait(60, 0), shortest_wait(0, 0), shortest_wait(3, 10)
    (10, 1, 0, 3)
    """
    return min(poll_seconds, max(min_poll_seconds, 1))


def _key_safe(export_id: str) -> str:
    if not export_id or EXPORT_ID.fullmatch(export_id):
        return export_id
    return hashlib.sha256(export_id.encode()).hexdigest()[:24]
