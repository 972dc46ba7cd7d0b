"""Configuration read from the environment: every variable name, default and bound lives here.

One rule decides every value, as in Powertools: an explicit argument, else the environment
variable, else the default (:func:`resolve`). Nothing is read at import time, so a test (or the
embedded local stack) sets the environment before the first call, and nothing else in the
library or the handlers reads ``os.environ``. Each handler reads its settings once per
container, at its first invocation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aistudios_export.errors import ConfigurationError

API_URL = "AISTUDIOS_API_URL"
TOKEN_SECRET_ID = "TOKEN_SECRET_ID"  # noqa: S105 - variable names, not secrets
CREDENTIALS_SECRET_ID = "CREDENTIALS_SECRET_ID"  # noqa: S105
OUTPUT_BUCKET = "OUTPUT_BUCKET"
OUTPUT_PREFIX = "OUTPUT_PREFIX"
TRUSTED_DOWNLOAD_ORIGIN = "TRUSTED_DOWNLOAD_ORIGIN"
TRUSTED_WEBHOOK_ORIGIN = "TRUSTED_WEBHOOK_ORIGIN"
DOWNLOAD_PART_SIZE_MIB = "DOWNLOAD_PART_SIZE_MIB"
MAX_VIDEO_SIZE_GIB = "MAX_VIDEO_SIZE_GIB"
STATE_MACHINE_ARN = "STATE_MACHINE_ARN"
DEDUPE_WINDOW_SECONDS = "DEDUPE_WINDOW_SECONDS"
DOWNLOAD_LINK_SECONDS = "DOWNLOAD_LINK_SECONDS"
CORS_ALLOW_ORIGIN = "CORS_ALLOW_ORIGIN"
WEBHOOK_SECRET_ID = "WEBHOOK_SECRET_ID"  # noqa: S105
RENDER_SLOTS_TABLE = "RENDER_SLOTS_TABLE"
MAX_RENDERS_IN_FLIGHT = "MAX_RENDERS_IN_FLIGHT"
RENDER_SLOT_RETRY_SECONDS = "RENDER_SLOT_RETRY_SECONDS"
RENDER_SLOT_MAX_WAIT_SECONDS = "RENDER_SLOT_MAX_WAIT_SECONDS"
METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

DEFAULT_API_URL = "https://app.aistudios.com"
DEFAULT_OUTPUT_PREFIX = "exports/"
DEFAULT_METRICS_NAMESPACE = "AiStudiosExport"
DEFAULT_PART_SIZE_MIB = 32
PART_SIZE_MIB_BOUNDS = (5, 512)
DEFAULT_MAX_VIDEO_SIZE_GIB = 50
MAX_VIDEO_SIZE_GIB_BOUNDS = (1, 5120)
"""Up to S3's largest object, 5 TiB (whose parts would be 525 MiB each: memory follows)."""
GIB = 1024 * 1024 * 1024
DEFAULT_DEDUPE_WINDOW_SECONDS = 600
DEFAULT_DOWNLOAD_LINK_SECONDS = 900
TOKEN_CACHE_SECONDS = 300
"""How long a warm function trusts its cached copy of the token secret."""
DEFAULT_MAX_RENDERS_IN_FLIGHT = 10
MAX_RENDERS_IN_FLIGHT_BOUNDS = (1, 1000)
"""The limiter keeps every holder in one DynamoDB item: 1000 fit well within its 400 KB."""
DEFAULT_RENDER_SLOT_LEASE_SECONDS = 1200
"""A slot's lease; CheckProgress renews it, so only a holder that died loses it, this long after."""
DEFAULT_RENDER_SLOT_RETRY_SECONDS = 30
"""The first wait for a slot; later waits grow to ten times this."""
DEFAULT_RENDER_SLOT_MAX_WAIT_SECONDS = 3600
RATE_LIMIT_WAIT_SECONDS = 8.0
"""How long a function waits out AI Studios' ``Retry-After`` before the state machine backs off:
8 s plus one call's (3 + 15) s timeout fit the API functions' 30 s timeout."""


def resolve(
    name: str,
    explicit: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    default: str = "",
) -> str:
    """Return a setting: ``explicit`` if given, else the variable ``name`` if set, else ``default``.

    Parameters
    ----------
    name
        The environment variable.
    explicit
        A value passed in code, which wins over the environment.
    env
        Where variables are read (default: ``os.environ``).
    default
        The value when neither is given (or the variable is blank).

    Returns
    -------
    str
        The value, stripped of surrounding white space.

    Examples
    --------
    >>> resolve("OUTPUT_PREFIX", env={"OUTPUT_PREFIX": " videos/ "})
    'videos/'
    >>> resolve("OUTPUT_PREFIX", "clips/", env={"OUTPUT_PREFIX": "videos/"})
    'clips/'
    >>> resolve("OUTPUT_PREFIX", env={}, default="exports/")
    'exports/'
    """
    if explicit is not None:
        return explicit.strip()
    value = (os.environ if env is None else env).get(name, "").strip()
    return value or default


def required(
    name: str, explicit: str | None = None, *, env: Mapping[str, str] | None = None
) -> str:
    """Return a setting that has no default.

    Raises
    ------
    ConfigurationError
        Naming the variable when it is not set.
    """
    value = resolve(name, explicit, env=env)
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def whole_number(
    name: str,
    *,
    env: Mapping[str, str] | None = None,
    default: int,
    minimum: int = 1,
    maximum: int | None = None,
    unit: str = "seconds",
) -> int:
    """Return a setting that is a whole number from ``minimum`` to ``maximum`` (inclusive).

    Raises
    ------
    ConfigurationError
        Naming the variable and the rule when the value is not such a number.
    """
    raw = resolve(name, env=env, default=str(default))
    if not raw.isdigit() or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        upper = f" to {maximum}" if maximum is not None else " or more"
        raise ConfigurationError(f"{name} must be a whole number of {unit} from {minimum}{upper}")
    return int(raw)


@dataclass(frozen=True)
class ApiSettings:
    """Where AI Studios is and where its token is kept."""

    api_url: str
    token_secret_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        return cls(
            api_url=resolve(API_URL, env=env, default=DEFAULT_API_URL),
            token_secret_id=required(TOKEN_SECRET_ID, env=env),
        )


@dataclass(frozen=True)
class OutputSettings:
    """Where finished videos go and how they are fetched."""

    bucket: str
    prefix: str
    trusted_download_origin: str | None
    part_size: int
    max_video_size: int = DEFAULT_MAX_VIDEO_SIZE_GIB * GIB
    """Bytes; a download announcing or delivering more is refused (DownloadRejected)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OutputSettings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        prefix = (os.environ if env is None else env).get(OUTPUT_PREFIX, DEFAULT_OUTPUT_PREFIX)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        raw_part = resolve(DOWNLOAD_PART_SIZE_MIB, env=env, default=str(DEFAULT_PART_SIZE_MIB))
        try:
            part_mib = int(raw_part)
        except ValueError:
            raise ConfigurationError(f"{DOWNLOAD_PART_SIZE_MIB} must be an integer") from None
        low, high = PART_SIZE_MIB_BOUNDS
        if not low <= part_mib <= high:
            raise ConfigurationError(f"{DOWNLOAD_PART_SIZE_MIB} must be between {low} and {high}")
        return cls(
            bucket=required(OUTPUT_BUCKET, env=env),
            prefix=prefix,
            trusted_download_origin=resolve(TRUSTED_DOWNLOAD_ORIGIN, env=env) or None,
            part_size=part_mib * 1024 * 1024,
            max_video_size=whole_number(
                MAX_VIDEO_SIZE_GIB,
                env=env,
                default=DEFAULT_MAX_VIDEO_SIZE_GIB,
                minimum=MAX_VIDEO_SIZE_GIB_BOUNDS[0],
                maximum=MAX_VIDEO_SIZE_GIB_BOUNDS[1],
                unit="GiB",
            )
            * GIB,
        )


@dataclass(frozen=True)
class HttpApiSettings:
    """What the HTTP API starts and how it answers.

    Attributes
    ----------
    state_machine_arn
        The export state machine.
    output_bucket
        The only bucket download links are made for (None: any bucket a video is in).
    dedupe_window_seconds
        How long an equal request without an ``Idempotency-Key`` names the same export.
    download_link_seconds
        How long a download link stays valid.
    cors_allow_origin
        The one browser origin allowed to call the API, or None (CORS off).
    """

    state_machine_arn: str
    output_bucket: str | None = None
    dedupe_window_seconds: int = DEFAULT_DEDUPE_WINDOW_SECONDS
    download_link_seconds: int = DEFAULT_DOWNLOAD_LINK_SECONDS
    cors_allow_origin: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpApiSettings:
        """Read the settings from ``env`` (default: ``os.environ``).

        Raises
        ------
        ConfigurationError
            When the state machine is missing or a number is not a positive whole number.
        """
        return cls(
            state_machine_arn=required(STATE_MACHINE_ARN, env=env),
            output_bucket=resolve(OUTPUT_BUCKET, env=env) or None,
            dedupe_window_seconds=whole_number(
                DEDUPE_WINDOW_SECONDS, env=env, default=DEFAULT_DEDUPE_WINDOW_SECONDS
            ),
            download_link_seconds=whole_number(
                DOWNLOAD_LINK_SECONDS, env=env, default=DEFAULT_DOWNLOAD_LINK_SECONDS
            ),
            cors_allow_origin=resolve(CORS_ALLOW_ORIGIN, env=env) or None,
        )


@dataclass(frozen=True)
class SlotSettings:
    """The account-wide limit on renders in flight at AI Studios, and how an export waits for it.

    Attributes
    ----------
    table
        The DynamoDB table of the render semaphore.
    limit
        How many renders may be in flight at once, across every way in.
    lease_seconds
        How long a slot is held without a renewal (CheckProgress renews it while rendering).
    retry_seconds
        The first wait of an export that found every slot taken (later ones grow to ten times it).
    max_wait_seconds
        How long an export waits for a slot before it fails with ``NoSlotFree``.
    """

    table: str
    limit: int = DEFAULT_MAX_RENDERS_IN_FLIGHT
    lease_seconds: int = DEFAULT_RENDER_SLOT_LEASE_SECONDS
    retry_seconds: int = DEFAULT_RENDER_SLOT_RETRY_SECONDS
    max_wait_seconds: int = DEFAULT_RENDER_SLOT_MAX_WAIT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlotSettings:
        """Read the settings from ``env`` (default: ``os.environ``).

        Raises
        ------
        ConfigurationError
            When the table is not named or a number is out of its bounds.
        """
        low, high = MAX_RENDERS_IN_FLIGHT_BOUNDS
        return cls(
            table=required(RENDER_SLOTS_TABLE, env=env),
            limit=whole_number(
                MAX_RENDERS_IN_FLIGHT,
                env=env,
                default=DEFAULT_MAX_RENDERS_IN_FLIGHT,
                minimum=low,
                maximum=high,
                unit="renders",
            ),
            retry_seconds=whole_number(
                RENDER_SLOT_RETRY_SECONDS,
                env=env,
                default=DEFAULT_RENDER_SLOT_RETRY_SECONDS,
                maximum=3600,
            ),
            max_wait_seconds=whole_number(
                RENDER_SLOT_MAX_WAIT_SECONDS,
                env=env,
                default=DEFAULT_RENDER_SLOT_MAX_WAIT_SECONDS,
                minimum=0,
            ),
        )


def webhook_secret_id(env: Mapping[str, str] | None = None) -> str | None:
    """Return the webhook secret's name (``{"key", "baseUrl"}``), or None: no webhooks."""
    return resolve(WEBHOOK_SECRET_ID, env=env) or None


def trusted_webhook_origin(env: Mapping[str, str] | None = None) -> str | None:
    """Return the one loopback origin relayed webhooks may go to (the local stack's), or None.

    Examples
    --------
    >>> trusted_webhook_origin({"TRUSTED_WEBHOOK_ORIGIN": "https://127.0.0.1:8443"})
    'https://127.0.0.1:8443'
    >>> trusted_webhook_origin({}) is None
    True
    """
    return resolve(TRUSTED_WEBHOOK_ORIGIN, env=env) or None


def credentials_secret_id(env: Mapping[str, str] | None = None) -> str:
    """Return the id of the secret that holds ``{"appId", "userKey"}``."""
    return required(CREDENTIALS_SECRET_ID, env=env)


def metrics_namespace(env: Mapping[str, str] | None = None) -> str:
    """Return the CloudWatch namespace of the functions' metrics (the template sets it)."""
    return resolve(METRICS_NAMESPACE, env=env, default=DEFAULT_METRICS_NAMESPACE)
