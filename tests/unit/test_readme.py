"""README.md keeps up with the code: the two commands first, every output, every error name.

The README is the operator's manual; these are the parts of it that the code can check.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from aistudios_export import errors
from tests.unit import _template

README = Path(__file__).resolve().parents[2] / "README.md"

ABSTRACT = {"ExportError", "TransientError", "FinalError", "ApiError"}
"""Base classes: no execution ends with their names."""


def section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of the same level."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"^(#+) {re.escape(title)}\n", text, re.MULTILINE)
    assert found, f"README has no section {title!r}"
    level = found[1]
    rest = text[found.end() :]
    end = re.search(rf"^{level} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def first_column(table_text: str) -> set[str]:
    """The code-quoted names in the first column of a Markdown table."""
    return set(re.findall(r"^\| `([^`]+)` \|", table_text, re.MULTILINE))


def test_the_readme_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert block and text.index("```sh") < text.index("\n## ")
    commands = [line.split("#")[0].strip() for line in block[1].splitlines()]
    assert commands == ["make demo", "make test"]


def test_every_error_name_has_a_troubleshooting_row() -> None:
    names = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ExportError) and name not in ABSTRACT
    }
    listed = first_column(section("Troubleshooting by error name"))
    assert names - listed == set(), "errors without a row"
    assert listed - names == {"States.Timeout"}, "rows for errors that do not exist"


def test_every_stack_output_is_described() -> None:
    outputs = set(_template.template()["Outputs"])
    assert first_column(section("The stack's outputs")) == outputs
