"""Fixtures of the unit tests: the template and state machines; moto S3 and a download server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.unit import _template
from tests.unit._downloads import DownloadServer
from tests.unit._s3 import fresh_buckets, moto_s3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """The parsed template.yaml (short tags in their long form)."""
    return _template.template()


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    """The template's resources by logical id."""
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.fixture(params=_template.machine_ids())
def machine_id(request: pytest.FixtureRequest) -> str:
    """Each state machine of the template in turn, by logical id."""
    name: str = request.param
    return name


@pytest.fixture
def machine(machine_id: str) -> dict[str, Any]:
    """Each state machine's definition in turn, substitutions resolved."""
    return _template.definition(machine_id)


@pytest.fixture(scope="module")
def s3_client() -> Iterator[S3Client]:
    """One moto S3 for the module (starting moto per test would dominate the run time)."""
    with moto_s3() as client:
        yield client


@pytest.fixture
def s3(s3_client: S3Client) -> S3Client:
    """The module's client with a fresh, empty, versioned BUCKET (and no bucket "plain")."""
    return fresh_buckets(s3_client, "plain")


@pytest.fixture(scope="module")
def running_server() -> Iterator[DownloadServer]:
    """One loopback download server for the module."""
    server = DownloadServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(running_server: DownloadServer) -> DownloadServer:
    """The module's download server with no routes and no hits."""
    return running_server.reset()
