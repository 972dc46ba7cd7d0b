"""Readers shared by the custom checks: checkov hands over parsed JSON/YAML nodes."""

from __future__ import annotations

from typing import Any


def is_true(value: Any) -> bool:
    """Return whether a template value is a literal true (``true`` or ``"true"``)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def as_list(value: Any) -> list[Any]:
    """Return ``value`` as a list (a missing value is an empty list)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
