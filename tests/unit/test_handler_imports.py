"""Only the HTTP API carries pydantic: no other handler imports it, directly or through the layer.

The API's requirements bring pydantic into its own package; the common layer, which every
function gets, does not ship it (a cold start and ~6 MiB less for the other functions). No
function imports requests either: HTTP goes through urllib3, which botocore loads anyway.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.unit._fixtures import ROOT

LAYER = ROOT / "layers" / "common"
API = ROOT / "functions" / "api"
# Powertools modules that import pydantic themselves.
PYDANTIC_MODULES = (
    "pydantic",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.event_handler.openapi",
)
HANDLERS = sorted(p.parent for p in (ROOT / "functions").glob("*/app.py") if p.parent != API)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from x import y`` also counts ``x.y``), at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def loads_pydantic(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in PYDANTIC_MODULES)


def requirement_names(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in lines
        if line.strip() and not line.startswith("#")
    }


def test_no_module_outside_the_api_handler_imports_pydantic() -> None:
    sources = [*LAYER.rglob("*.py"), *(p for d in HANDLERS for p in d.rglob("*.py"))]
    assert len(sources) > len(HANDLERS)
    offenders = {
        str(path.relative_to(ROOT)): sorted(filter(loads_pydantic, imported_modules(path)))
        for path in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pydantic_is_the_api_handlers_own_requirement_not_the_layers() -> None:
    assert "pydantic" not in requirement_names(LAYER / "requirements.txt")
    assert "pydantic" in requirement_names(API / "requirements.txt")
    # What the API's own modules import from pydantic is what its requirements bring.
    assert any(
        any(loads_pydantic(name) for name in imported_modules(path)) for path in API.rglob("*.py")
    )
    # No other function has requirements of its own: the layer serves them.
    assert not [d.name for d in HANDLERS if (d / "requirements.txt").exists()]


def test_no_function_imports_requests_and_the_layer_does_not_ship_it() -> None:
    sources = [*LAYER.rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    offenders = {
        str(path.relative_to(ROOT))
        for path in sources
        if any(
            name == "requests" or name.startswith("requests.") for name in imported_modules(path)
        )
    }
    assert offenders == set()
    assert "requests" not in requirement_names(LAYER / "requirements.txt")
    assert "requests" not in requirement_names(API / "requirements.txt")
    assert {"urllib3", "certifi"} <= requirement_names(LAYER / "requirements.txt")


CHILD = """
import importlib.util, json, sys
loaded = {}
for folder in sys.argv[1:]:
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("app_" + str(len(loaded)), folder + "/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.path.remove(folder)
    loaded[folder] = "pydantic" in sys.modules
print(json.dumps(loaded))
"""


def test_importing_a_handler_other_than_the_api_loads_no_pydantic() -> None:
    # One fresh process imports them one after the other and looks after each.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(LAYER)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, HANDLERS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(out.stdout)
    assert loaded == dict.fromkeys(map(str, HANDLERS), False)
