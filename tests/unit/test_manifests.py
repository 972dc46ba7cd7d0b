"""aistudios_export.manifests: a manifest's bytes to rows, rejections, duplicates and bounds.

Everything here is checked on bytes; reading and writing S3 is tests/unit/test_batches.py's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aistudios_export.errors import ManifestInvalid, readable_cause
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


@given(st.binary(max_size=300))
def test_any_bytes_give_a_manifest_or_manifest_invalid(data: bytes) -> None:
    for key in ("m.csv", "m.json"):
        try:
            manifest = parse_manifest(data, key, defaults=DEFAULTS)
        except ManifestInvalid:
            continue
        assert manifest.items and all(is_export_id(i["name"]) for i in manifest.items)


def test_readable_cause() -> None:
    lambda_cause = json.dumps({"errorMessage": "it broke", "errorType": "X", "stackTrace": []})
    assert readable_cause(lambda_cause) == "it broke"
    assert readable_cause("plain words") == "plain words"
    assert readable_cause('["json", "list"]') == '["json", "list"]'
    assert readable_cause(None) is None
    assert readable_cause("") is None
