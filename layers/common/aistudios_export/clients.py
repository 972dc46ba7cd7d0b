"""The one place AWS clients are built: an explicit client wins, else one from a session.

As in Powertools' parameter providers: a function that accepts ``client`` returns it as is
(tests pass a stubbed or moto-backed one); otherwise a client is made from ``session`` or
boto3's default session, with :data:`DEFAULT_CONFIG` (explicit timeouts and standard retries)
merged under the caller's ``config``. Handlers build their clients once per container, at their
first invocation, and pass them down; the library never builds a client per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_stepfunctions import SFNClient

DEFAULT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"mode": "standard", "max_attempts": 3},
    user_agent_extra="aistudios-export",
)
"""Every AWS call has a bounded connect and read timeout and a bounded number of retries."""


def _config(config: Config | None) -> Config:
    return DEFAULT_CONFIG if config is None else DEFAULT_CONFIG.merge(config)


def _session(session: boto3.Session | None) -> boto3.Session:
    # boto3's default session (made on first use), as boto3.client() itself uses.
    return session if session is not None else boto3._get_default_session()


def s3(
    client: S3Client | None = None,
    *,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> S3Client:
    """Return ``client``, or a new S3 client (SigV4, so presigned links work in every region).

    Its payloads are not signed (``UNSIGNED-PAYLOAD`` in the signature): requests go over
    HTTPS, and every part of a copy carries a CRC32 that S3 verifies. Left to its default,
    botocore would SHA-256 each part's body to sign it, as it skips that only for a checksum
    it computed itself, not for the one that
    :class:`~aistudios_export.multipart.MultipartUpload` sends: a second SHA-256 pass over
    every byte of a video.
    """
    if client is not None:
        return client
    base = Config(signature_version="s3v4", s3={"payload_signing_enabled": False})
    return _session(session).client("s3", config=_config(base.merge(config or Config())))


def stepfunctions(
    client: SFNClient | None = None,
    *,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> SFNClient:
    """Return ``client``, or a new Step Functions client."""
    if client is not None:
        return client
    return _session(session).client("stepfunctions", config=_config(config))


def secretsmanager(
    client: SecretsManagerClient | None = None,
    *,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> SecretsManagerClient:
    """Return ``client``, or a new Secrets Manager client."""
    if client is not None:
        return client
    return _session(session).client("secretsmanager", config=_config(config))


def dynamodb(
    client: DynamoDBClient | None = None,
    *,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> DynamoDBClient:
    """Return ``client``, or a new DynamoDB client."""
    if client is not None:
        return client
    return _session(session).client("dynamodb", config=_config(config))
