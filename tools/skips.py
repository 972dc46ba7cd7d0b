"""Apply checks/skips.yaml, the one list of accepted checker findings, to a transformed template.

Each entry names a check (cfn-lint ``rule`` or checkov ``check``), the resources it is
accepted for (logical ids, or resource types meaning every resource of that type) and the
reason. :func:`annotate` writes them where the checkers read per-resource skips: cfn-lint's
``Metadata.cfn-lint.config.ignore_checks`` and checkov's ``Metadata.checkov.skip`` (with the
reason as the comment its report prints).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tools.transform import ROOT

SKIPS = ROOT / "checks" / "skips.yaml"
# Each checker's key in the skips file and the key of its check ids there.
CHECKERS = {"cfn-lint": "rule", "checkov": "check"}


def load_skips(path: Path = SKIPS) -> dict[str, list[dict[str, Any]]]:
    """Read and validate the skips file.

    Raises
    ------
    ValueError
        An unknown checker, or an entry without its id, resources or reason.
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(document) - set(CHECKERS)
    if unknown:
        raise ValueError(f"{path}: unknown checker(s) {sorted(unknown)}")
    for checker, entries in document.items():
        for entry in entries:
            missing = {CHECKERS[checker], "resources", "reason"} - {
                k for k, v in entry.items() if v
            }
            if missing:
                raise ValueError(f"{path}: {checker} entry {entry} lacks {sorted(missing)}")
    return dict(document)


def annotate(
    template: Mapping[str, Any], skips: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Return a copy of ``template`` with each skip written into its resources' Metadata.

    Raises
    ------
    ValueError
        A skip that matches no resource (a stale skip must be removed, not kept).
    """
    annotated = copy.deepcopy(dict(template))
    resources: dict[str, Any] = annotated["Resources"]
    for checker, entries in skips.items():
        for entry in entries:
            check = entry[CHECKERS[checker]]
            for selector in entry["resources"]:
                names = [
                    name
                    for name, resource in resources.items()
                    if name == selector or resource.get("Type") == selector
                ]
                if not names:
                    raise ValueError(f"skip of {check} names {selector}, which is not there")
                for name in names:
                    metadata = resources[name].setdefault("Metadata", {})
                    if checker == "cfn-lint":
                        config = metadata.setdefault("cfn-lint", {}).setdefault("config", {})
                        config.setdefault("ignore_checks", []).append(check)
                    else:
                        skip = metadata.setdefault("checkov", {}).setdefault("skip", [])
                        skip.append({"id": check, "comment": " ".join(entry["reason"].split())})
    return annotated
