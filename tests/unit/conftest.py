"""Fixtures of the unit tests that read template.yaml and the state machine definitions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit import _template


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
