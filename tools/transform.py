"""Transform template.yaml into the CloudFormation that AWS would deploy, offline.

The same samtranslator that ``sam deploy`` uses turns every ``AWS::Serverless::*`` resource
into plain CloudFormation (roles with their policy templates expanded, state machines, the
API). Nothing here talks to AWS: the region is fixed, local code paths become placeholder S3
locations, each state machine's ``DefinitionUri`` is inlined as its ``Definition`` (so the
checkers see the ASL), and managed policy names are not looked up (the template names none).

Used by ``make test`` (cfn-lint with the serverless rules and checkov read its output, with
the accepted findings of checks/skips.yaml written into it) and by the IAM table test::

    python -m tools.transform --skips checks/skips.yaml -o .build/transformed.json
    python -m tools.transform --parameter CredentialsKmsKeyArn=arn:aws:kms:... -o out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
# What CloudFormation would pass for the pseudo parameters; fixed so the output is stable.
PSEUDO_PARAMETERS = {
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
}


def load_sam_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Parse a SAM template and make its local paths deployable without a build.

    Parameters
    ----------
    path
        The SAM template (YAML, short intrinsic tags allowed).

    Returns
    -------
    dict
        The template, with each state machine's ``DefinitionUri`` file inlined as its
        ``Definition`` and each local ``CodeUri``/``ContentUri`` replaced by a placeholder
        S3 location (what ``sam package`` would upload).
    """
    template: dict[str, Any] = yaml_parse(path.read_text(encoding="utf-8"))
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        uri = properties.get("DefinitionUri")
        if resource.get("Type") == "AWS::Serverless::StateMachine" and isinstance(uri, str):
            definition = (path.parent / uri).read_text(encoding="utf-8")
            properties["Definition"] = json.loads(definition)
            del properties["DefinitionUri"]
        for key in ("CodeUri", "ContentUri"):
            local = properties.get(key)
            if isinstance(local, str) and not local.startswith("s3://"):
                properties[key] = {"Bucket": "artifacts", "Key": local.strip("/") + ".zip"}
    return template


def transform_template(
    template: Mapping[str, Any], parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run the SAM transform on ``template`` without any AWS call.

    Parameters
    ----------
    template
        A SAM template as returned by :func:`load_sam_template` (not modified).
    parameters
        Parameter values; the template's defaults fill the rest.

    Returns
    -------
    dict
        The CloudFormation template (``Parameters``, ``Conditions`` and intrinsic functions
        kept, as CloudFormation would receive them).
    """
    # The translator writes into what it gets: give it a copy.
    fragment = json.loads(json.dumps(template))
    values = {**PSEUDO_PARAMETERS, **(parameters or {})}
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    # It logs feature-toggle notes on every run; they say nothing about this template.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    transformed: dict[str, Any] = translator.translate(
        fragment, parameter_values=values, get_managed_policy_map=dict
    )
    return transformed


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    """Write the transformed template as JSON (``python -m tools.transform --help``)."""
    parser = argparse.ArgumentParser(prog="python -m tools.transform", description=__doc__)
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--parameter", type=_parameter, action="append", default=[])
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    parser.add_argument(
        "--skips", type=Path, help="write this skips file into the resources' Metadata"
    )
    args = parser.parse_args(argv)
    transformed = transform_template(load_sam_template(args.template), dict(args.parameter))
    if args.skips is not None:
        from tools.skips import annotate, load_skips  # it imports this module

        transformed = annotate(transformed, load_skips(args.skips))
    text = json.dumps(transformed, indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
