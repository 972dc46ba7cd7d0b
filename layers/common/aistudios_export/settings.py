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
DOWNLOAD_PART_SIZE_MIB = "DOWNLOAD_PART_SIZE_MIB"
STATE_MACHINE_ARN = "STATE_MACHINE_ARN"
DEDUPE_WINDOW_SECONDS = "DEDUPE_WINDOW_SECONDS"
DOWNLOAD_LINK_SECONDS = "DOWNLOAD_LINK_SECONDS"
CORS_ALLOW_ORIGIN = "CORS_ALLOW_ORIGIN"

DEFAULT_API_URL = "https://app.aistudios.com"
DEFAULT_OUTPUT_PREFIX = "exports/"
DEFAULT_PART_SIZE_MIB = 8
PART_SIZE_MIB_BOUNDS = (5, 512)
DEFAULT_DEDUPE_WINDOW_SECONDS = 600
DEFAULT_DOWNLOAD_LINK_SECONDS = 900
TOKEN_CACHE_SECONDS = 300
"""How long a warm function trusts its cached copy of the token secret."""
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


def credentials_secret_id(env: Mapping[str, str] | None = None) -> str:
    """Return the id of the secret that holds ``{"appId", "userKey"}``."""
    return required(CREDENTIALS_SECRET_ID, env=env)
