"""Configuration read from the environment: every variable name lives here.

Explicit argument > environment variable > default. Nothing is read at import time, so a
test (or the embedded local stack) sets the environment before the first call.
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
TOKEN_CACHE_SECONDS = 300
"""How long a warm function trusts its cached copy of the token secret."""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


@dataclass(frozen=True)
class ApiSettings:
    """Where AI Studios is and where its token is kept."""

    api_url: str
    token_secret_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        return cls(
            api_url=env.get(API_URL, "").strip() or DEFAULT_API_URL,
            token_secret_id=_required(env, TOKEN_SECRET_ID),
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
        env = os.environ if env is None else env
        prefix = env.get(OUTPUT_PREFIX, DEFAULT_OUTPUT_PREFIX)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        raw_part = env.get(DOWNLOAD_PART_SIZE_MIB, "").strip() or str(DEFAULT_PART_SIZE_MIB)
        try:
            part_mib = int(raw_part)
        except ValueError:
            raise ConfigurationError(f"{DOWNLOAD_PART_SIZE_MIB} must be an integer") from None
        if not 5 <= part_mib <= 512:
            raise ConfigurationError(f"{DOWNLOAD_PART_SIZE_MIB} must be between 5 and 512")
        return cls(
            bucket=_required(env, OUTPUT_BUCKET),
            prefix=prefix,
            trusted_download_origin=env.get(TRUSTED_DOWNLOAD_ORIGIN, "").strip() or None,
            part_size=part_mib * 1024 * 1024,
        )


def credentials_secret_id(env: Mapping[str, str] | None = None) -> str:
    """Return the id of the secret that holds ``{"appId", "userKey"}``."""
    return _required(os.environ if env is None else env, CREDENTIALS_SECRET_ID)
