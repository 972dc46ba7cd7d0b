"""Batch manifests: a CSV or JSON file of export requests dropped into S3, read and checked.

A manifest is either

- ``*.csv`` with a header row naming some of ``projectId,resolution,workspaceId,outputPrefix``
  (any order, only ``projectId`` required; an empty cell means "not given"), or
- ``*.json``: an array of request objects, as ``POST /exports`` takes them.

:func:`parse_manifest` turns its bytes into one execution per distinct valid row, named by
:func:`~aistudios_export.naming.execution_name` in the scope of the manifest's SHA-256 (so the
same file uploaded twice names the same executions and exports nothing twice), plus the
rejected rows with their errors. A file that cannot be read as rows at all raises
:class:`~aistudios_export.errors.ManifestInvalid`, whose message says exactly what is wrong.

This module only reads bytes; :mod:`aistudios_export.batches` fetches them from S3 and writes
what the batch state machine needs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aistudios_export.echo import excerpt, safe_cell
from aistudios_export.errors import ConfigurationError, InvalidRequest, ManifestInvalid
from aistudios_export.models import ExportRequest
from aistudios_export.naming import execution_name

CSV_COLUMNS = ("projectId", "resolution", "workspaceId", "outputPrefix")
"""The columns a CSV manifest may have; only ``projectId`` is required."""
ROW_IDENTITIES = ("manifest", "request")
"""What makes two manifest rows one export (the template's ``BatchRowIdentity``): the same
canonical request (every request field, defaults filled in) in the same file, or in any file."""
MAX_MANIFEST_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
"""Bounds of one manifest: the batch stays one Distributed Map run of bounded cost."""
_HINT_CHARS = 64
"""A longer ``projectId`` is not shown: it is no id, and the row number finds the row."""
_INT_DIGITS = 20
_JSON_TYPES = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Rejection:
    """A manifest row that is not a valid export request.

    Attributes
    ----------
    row
        1-based position among the data rows (CSV: after the header; JSON: in the array).
    error
        What is wrong, naming each bad field.
    project_id
        The row's ``projectId`` as written, when it has one, so users can find the row.
    """

    row: int
    error: str
    project_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used in the state machine's data and the report.

        The ``projectId`` shown is a :func:`~aistudios_export.echo.safe_cell`: a report opened in a
        spreadsheet never runs a formula a row held.
        """
        data: dict[str, Any] = {"row": self.row}
        if self.project_id:
            data["projectId"] = safe_cell(self.project_id, _HINT_CHARS)
        data["error"] = self.error
        return data


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: what to run, what was refused, and what was dropped as a repeat.

    Attributes
    ----------
    sha256
        Hex SHA-256 of the manifest's bytes: the scope of its execution names.
    items
        One ``{"name", "input"}`` per distinct valid row, in file order.
    rejected
        Rows that are not valid requests.
    rows
        Data rows read (blank lines are not rows).
    duplicates
        Valid rows dropped because an earlier row asks for the same export.
    """

    sha256: str
    items: tuple[dict[str, Any], ...]
    rejected: tuple[Rejection, ...]
    rows: int
    duplicates: int


@dataclass(frozen=True)
class _Row:
    number: int
    raw: Any
    problem: str | None = None


def manifest_format(key: str) -> str:
    """Return ``"csv"`` or ``"json"`` from the key's suffix.

    Raises
    ------
    ManifestInvalid
        For any other suffix.
    """
    lowered = key.lower()
    for suffix in ("csv", "json"):
        if lowered.endswith("." + suffix):
            return suffix
    raise ManifestInvalid(f"manifest {key}: the file name must end in .csv or .json")


def too_big(key: str, size: int | None = None) -> ManifestInvalid:
    """Return the error of a manifest of ``size`` bytes, over :data:`MAX_MANIFEST_BYTES`.

    One message whether the size is known before reading (S3's ``ContentLength``) or after;
    ``None`` when reading stopped at the limit, so the size is not known.
    """
    written = f"{size} bytes" if size is not None else f"more than {MAX_MANIFEST_BYTES} bytes"
    return ManifestInvalid(
        f"manifest {key} is {written}; at most {MAX_MANIFEST_BYTES} are allowed "
        "(split it into several files)"
    )


def _too_many_rows(key: str) -> ManifestInvalid:
    return ManifestInvalid(
        f"manifest {key} has more than {MAX_ROWS} rows (split it into several files)"
    )


def parse_manifest(
    data: bytes,
    key: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    scope: str = "",
    row_identity: str = "manifest",
) -> Manifest:
    """Validate a manifest's bytes and turn them into named executions.

    Parameters
    ----------
    data
        The file as stored; a UTF-8 BOM and CRLF line ends are accepted.
    key
        Its object key: the suffix says the format, and messages name it.
    defaults
        ``pollSeconds``/``timeoutSeconds``/``stallSeconds`` for rows that have none.
    scope
        Extra scope of the execution names (a schedule's run), beside the file's digest.
    row_identity
        What makes two rows the same export (see :data:`ROW_IDENTITIES`): ``"manifest"``, the
        same request in this very file; ``"request"``, the same request in any manifest.

    Raises
    ------
    ManifestInvalid
        When the file is empty, too big, not UTF-8, has no header or unknown columns, is not a
        JSON array, or has no valid row at all.
    """
    fmt = manifest_format(key)
    if len(data) > MAX_MANIFEST_BYTES:
        raise too_big(key, len(data))
    text = _decode(data, key)
    if not text.strip():
        raise ManifestInvalid(f"manifest {key} is empty")
    rows = list(_csv_rows(text, key) if fmt == "csv" else _json_rows(text, key))
    if not rows:
        raise ManifestInvalid(f"manifest {key} has no rows")

    if row_identity not in ROW_IDENTITIES:
        raise ConfigurationError(
            f"the batch row identity must be one of {', '.join(ROW_IDENTITIES)}, "
            f"not {row_identity[:40]!r}"
        )
    digest = hashlib.sha256(data).hexdigest()
    # The request's canonical fields always name the export; the file's digest joins them only
    # when a row is the same export only within its own manifest.
    within = digest if row_identity == "manifest" else "any-manifest"
    name_scope = f"{within}:{scope}" if scope else within
    items: dict[str, dict[str, Any]] = {}
    rejected: list[Rejection] = []
    duplicates = 0
    for row in rows:
        try:
            if row.problem is not None:
                raise InvalidRequest.whole(row.problem)
            request_input = ExportRequest.parse(row.raw, defaults).to_input()
        except InvalidRequest as e:
            rejected.append(Rejection(row.number, str(e), _project_hint(row.raw)))
            continue
        name = execution_name(request_input, scope=name_scope)
        if name in items:  # the same canonical request: export it once
            duplicates += 1
            continue
        items[name] = {"name": name, "input": request_input}
    if not items:
        shown = "; ".join(f"row {r.row}: {r.error}" for r in rejected[:5])
        more = f"; and {len(rejected) - 5} more" if len(rejected) > 5 else ""
        raise ManifestInvalid(f"manifest {key} has no valid row: {shown}{more}")
    return Manifest(digest, tuple(items.values()), tuple(rejected), len(rows), duplicates)


def _decode(data: bytes, key: str) -> str:
    try:
        # utf-8-sig drops the byte-order mark spreadsheet programs put first.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestInvalid(
            f"manifest {key} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
            "cannot be decoded (save the file as UTF-8)"
        ) from None


def _csv_rows(text: str, key: str) -> Iterator[_Row]:
    # newline="" lets the csv module see CRLF itself, as its documentation asks.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next((r for r in reader if any(cell.strip() for cell in r)), None)
        if header is None:
            raise ManifestInvalid(f"manifest {key} is empty")
        columns = _columns(header, key)
        number = 0
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines, such as a trailing one, are not rows
            number += 1
            if number > MAX_ROWS:
                raise _too_many_rows(key)
            raw = {
                c: cell.strip() for c, cell in zip(columns, record, strict=False) if cell.strip()
            }
            problem = None
            if len(record) > len(columns):
                problem = (
                    f"the row has {len(record)} fields but the header names {len(columns)} columns"
                )
            yield _Row(number, raw, problem)
    except csv.Error as e:
        raise ManifestInvalid(
            f"manifest {key} is not valid CSV at line {reader.line_num}: {e}"
        ) from None


def _columns(header: list[str], key: str) -> list[str]:
    canonical = {c.lower(): c for c in CSV_COLUMNS}
    names = [cell.strip() for cell in header]
    allowed = ",".join(CSV_COLUMNS)
    if not any(n.lower() in canonical for n in names):
        raise ManifestInvalid(
            f"manifest {key} has no header row: the first line must name the columns "
            f"(some of {allowed}), but it is '{excerpt(','.join(names))}'"
        )
    unknown = [n for n in names if n.lower() not in canonical]
    if unknown:
        shown = ", ".join(f"'{excerpt(n)}'" for n in unknown[:5])
        raise ManifestInvalid(
            f"manifest {key} has unknown column(s) {shown}; the columns may be {allowed}"
        )
    columns = [canonical[n.lower()] for n in names]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ManifestInvalid(f"manifest {key} names column(s) {', '.join(repeated)} twice")
    if "projectId" not in columns:
        raise ManifestInvalid(f"manifest {key} has no projectId column (it is required)")
    return columns


def _json_rows(text: str, key: str) -> Iterator[_Row]:
    try:
        document = json.loads(text, parse_int=_json_int)
    except ValueError as e:
        raise ManifestInvalid(f"manifest {key} is not valid JSON: {e}") from None
    except RecursionError:
        raise ManifestInvalid(
            f"manifest {key} is nested too deeply: it must be an array of request objects "
            "whose fields are strings or numbers"
        ) from None
    if not isinstance(document, list):
        raise ManifestInvalid(
            f"manifest {key} must be a JSON array of request objects, "
            f"not a JSON {_JSON_TYPES.get(type(document), 'null')}"
        )
    if len(document) > MAX_ROWS:
        raise _too_many_rows(key)
    for index, raw in enumerate(document, start=1):
        yield _Row(index, raw)


def _json_int(digits: str) -> int | float:
    # No field takes a number this long; as a float it is refused as that field's value, where
    # int() would refuse the whole file past 4300 digits (sys.get_int_max_str_digits).
    return int(digits) if len(digits) <= _INT_DIGITS else float(digits)


def _project_hint(raw: Any) -> str | None:
    value = raw.get("projectId") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and 0 < len(value) <= _HINT_CHARS else None
