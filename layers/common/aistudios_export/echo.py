"""Showing a user's own input back to them: short, printable, never a spreadsheet formula.

Messages and reports quote what a manifest or a request held (a bad ``projectId``, an unknown
column) so that users can find it. What they quote is untrusted: it may be megabytes long, hold
NUL bytes, lone surrogates (which no UTF-8 encoder writes) or terminal escapes, or be a formula
that a spreadsheet runs when the report is opened in one (OWASP "CSV injection"). Every echo of
input goes through :func:`excerpt`, and every report field that holds input on its own through
:func:`safe_cell`.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP)."""
EXCERPT_CHARS = 40
"""How much of a value a message quotes."""


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    r"""Return ``text`` escaped and cut to at most ``limit`` characters, with ``...`` if cut.

    Each character that is not printable (controls, NUL, lone surrogates, bidirectional
    overrides, ...) is written as Python writes it in a string literal; the limit counts what
    is written, so an excerpt is short however odd the text.

    Examples
    --------
    >>> excerpt("a\x00b")
    'a\\x00b'
    >>> excerpt("x" * 50, 4)
    'xxxx...'
    """
    shown: list[str] = []
    length = 0
    for char in text:
        part = char if char.isprintable() else ascii(char)[1:-1]
        length += len(part)
        if length > limit:
            return "".join(shown) + "..."
        shown.append(part)
    return "".join(shown)


def safe_cell(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Return :func:`excerpt` of ``text``, with ``'`` first when it would start a formula.

    For a report field that holds a user's value on its own. A valid value never starts with
    one of :data:`FORMULA_STARTS`, so only invalid input shows the quote.

    Examples
    --------
    >>> safe_cell("=1+1")
    "'=1+1"
    >>> safe_cell("65fa6b07dca2e367461a2925")
    '65fa6b07dca2e367461a2925'
    """
    shown = excerpt(text, limit)
    return "'" + shown if shown.startswith(FORMULA_STARTS) else shown
