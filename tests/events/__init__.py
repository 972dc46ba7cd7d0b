"""Sample events of each handler, kept as JSON files and loaded by one helper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent


def load_event(name: str) -> dict[str, Any]:
    """Return a fresh copy of the sample event ``tests/events/<name>.json``."""
    value = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise TypeError(f"{name}.json does not hold a JSON object")
    return value
