"""aistudios_local.template: the YAML loader and the intrinsic-function Resolver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aistudios_local.template import Resolver, load_template
from tests.unit._fixtures import ACCOUNT, REGION, ROOT

PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": "stack",
    "AWS::Partition": "aws",
}

SMALL = """
Parameters:
  Stage: {Type: String, Default: dev}
  Size: {Type: Number, Default: 8}
  Secret: {Type: String, Default: ""}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NoSecret: !Equals [!Ref Secret, ""]
  ProdOrNoSecret: !Or [!Condition IsProd, !Condition NoSecret]
  ProdAndNoSecret: !And [!Condition IsProd, !Condition NoSecret]
  NotProd: !Not [!Condition IsProd]
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          STAGE: !Ref Stage
          SIZE: !Ref Size
          BUCKET: !Ref Bucket
          REGION: !Ref AWS::Region
          ARN_SHORT: !GetAtt Bucket.Arn
          ARN_LONG: {"Fn::GetAtt": [Bucket, Arn]}
          ARN_LONG_STRING: {"Fn::GetAtt": Bucket.Arn}
          SUB: !Sub "${AWS::StackName}-${Stage}-${Bucket}-${Bucket.Arn}"
          SUB_LIST: !Sub ["${Name}/${Stage}", {Name: !Ref Bucket}]
          SUB_LITERAL: !Sub "${!Literal}-${Stage}"
          IF: !If [IsProd, big, small]
          IF_NESTED: !If [NoSecret, !Ref Bucket, !Ref Secret]
          JOIN: !Join ["-", [a, !Ref Stage]]
          SELECT: !Select [1, [x, !Ref Stage]]
"""


@pytest.fixture
def small(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "template.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return load_template(path)


def resolver(template: dict[str, Any], **parameters: str) -> Resolver:
    return Resolver(
        template,
        parameters,
        refs={"Bucket": "my-bucket", "Fn": "my-fn"},
        attributes={("Bucket", "Arn"): "arn:aws:s3:::my-bucket"},
        pseudo=PSEUDO,
    )


def env(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    value: dict[str, Any] = resolver(template, **parameters).resolve(
        template["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]
    )
    return value


def test_short_tags_load_as_long_form(small: dict[str, Any]) -> None:
    variables = small["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]
    assert variables["STAGE"] == {"Ref": "Stage"}
    assert variables["ARN_SHORT"] == {"Fn::GetAtt": ["Bucket", "Arn"]}
    assert variables["IF"] == {"Fn::If": ["IsProd", "big", "small"]}
    assert small["Conditions"]["ProdOrNoSecret"] == {
        "Fn::Or": [{"Condition": "IsProd"}, {"Condition": "NoSecret"}]
    }


def test_resolves_every_supported_function(small: dict[str, Any]) -> None:
    assert env(small) == {
        "STAGE": "dev",
        "SIZE": "8",
        "BUCKET": "my-bucket",
        "REGION": REGION,
        "ARN_SHORT": "arn:aws:s3:::my-bucket",
        "ARN_LONG": "arn:aws:s3:::my-bucket",
        "ARN_LONG_STRING": "arn:aws:s3:::my-bucket",
        "SUB": "stack-dev-my-bucket-arn:aws:s3:::my-bucket",
        "SUB_LIST": "my-bucket/dev",
        "SUB_LITERAL": "${Literal}-dev",
        "IF": "small",
        "IF_NESTED": "my-bucket",
        "JOIN": "a-dev",
        "SELECT": "dev",
    }


def test_parameter_overrides_win_over_defaults(small: dict[str, Any]) -> None:
    values = env(small, Stage="prod", Secret="s3cret-arn")
    assert (values["STAGE"], values["IF"], values["IF_NESTED"]) == ("prod", "big", "s3cret-arn")


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (
            {},
            {
                "IsProd": False,
                "NoSecret": True,
                "ProdOrNoSecret": True,
                "ProdAndNoSecret": False,
                "NotProd": True,
            },
        ),
        (
            {"Stage": "prod"},
            {
                "IsProd": True,
                "NoSecret": True,
                "ProdOrNoSecret": True,
                "ProdAndNoSecret": True,
                "NotProd": False,
            },
        ),
        (
            {"Secret": "x"},
            {
                "IsProd": False,
                "NoSecret": False,
                "ProdOrNoSecret": False,
                "ProdAndNoSecret": False,
                "NotProd": True,
            },
        ),
    ],
)
def test_conditions(
    small: dict[str, Any], parameters: dict[str, str], expected: dict[str, bool]
) -> None:
    r = resolver(small, **parameters)
    assert {name: r.condition(name) for name in expected} == expected


def test_pseudo_parameters_come_first(small: dict[str, Any]) -> None:
    r = resolver(small)
    assert r.resolve({"Ref": "AWS::AccountId"}) == ACCOUNT
    assert (
        r.resolve({"Fn::Sub": "arn:${AWS::Partition}:s3:::${AWS::Region}"})
        == f"arn:aws:s3:::{REGION}"
    )


def test_lists_and_plain_mappings_are_walked(small: dict[str, Any]) -> None:
    r = resolver(small)
    node = {"a": [{"Ref": "Stage"}, 1, None, {"b": {"Ref": "Bucket"}}], "c": True}
    assert r.resolve(node) == {"a": ["dev", 1, None, {"b": "my-bucket"}], "c": True}


@pytest.mark.parametrize(
    ("node", "function"),
    [
        ({"Fn::FindInMap": ["M", "k", "v"]}, "Fn::FindInMap"),
        ({"Fn::Base64": "x"}, "Fn::Base64"),
        ({"Fn::ImportValue": "x"}, "Fn::ImportValue"),
        ({"Fn::GetAZs": ""}, "Fn::GetAZs"),
        ({"Fn::Split": [",", "a,b"]}, "Fn::Split"),
    ],
)
def test_unknown_function_raises_naming_it(
    small: dict[str, Any], node: dict[str, Any], function: str
) -> None:
    with pytest.raises(ValueError, match=f"{function} is not supported"):
        resolver(small).resolve(node)


def test_ref_to_something_unknown_raises_naming_it(small: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Ref to Nowhere"):
        resolver(small).resolve({"Ref": "Nowhere"})
    with pytest.raises(ValueError, match="Ref to Nowhere"):
        resolver(small).resolve({"Fn::Sub": "x-${Nowhere}"})


def test_get_att_unknown_raises_naming_it(small: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"GetAtt Fn\.Arn is not known locally"):
        resolver(small).resolve({"Fn::GetAtt": ["Fn", "Arn"]})
    with pytest.raises(ValueError, match=r"GetAtt Bucket\.DomainName"):
        resolver(small).resolve({"Fn::Sub": "${Bucket.DomainName}"})


def test_missing_parameter_value_raises(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("Parameters:\n  Needed: {Type: String}\nResources: {}\n", encoding="utf-8")
    template = load_template(path)
    with pytest.raises(ValueError, match="template parameter Needed has no default and no value"):
        Resolver(template).resolve({"Ref": "Needed"})
    assert Resolver(template, {"Needed": "here"}).resolve({"Ref": "Needed"}) == "here"


def test_unknown_parameter_override_raises(small: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unknown template parameter"):
        resolver(small, Stge="prod").resolve({"Ref": "Stage"})


def test_a_file_that_is_not_a_template_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is not a CloudFormation template"):
        load_template(path)


# --- the real template --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> tuple[dict[str, Any], Resolver]:
    template = load_template(ROOT / "template.yaml")
    refs: dict[str, str] = {}
    attributes: dict[tuple[str, str], str] = {}
    for logical in template["Resources"]:
        refs[logical] = f"ref-{logical}"
        attributes[(logical, "Arn")] = f"arn:aws:local:{REGION}:{ACCOUNT}:{logical}"
        attributes[(logical, "Name")] = f"name-{logical}"
    pseudo = PSEUDO | {"AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": ""}
    return template, Resolver(template, {}, refs=refs, attributes=attributes, pseudo=pseudo)


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_environment_resolves_to_strings(
    real: tuple[dict[str, Any], Resolver],
) -> None:
    template, r = real
    base = r.resolve(template["Globals"]["Function"]["Environment"]["Variables"])
    assert functions(template)
    for logical, resource in functions(template).items():
        own = r.resolve(resource["Properties"].get("Environment", {}).get("Variables", {}))
        variables = {**base, **own}
        assert variables, logical
        for name, value in variables.items():
            assert isinstance(value, str), f"{logical}: {name} resolved to {value!r}"
        assert variables["TOKEN_SECRET_ID"] == "ref-TokenSecret"


def test_real_template_conditions_and_handlers(real: tuple[dict[str, Any], Resolver]) -> None:
    template, r = real
    assert all(isinstance(r.condition(name), bool) for name in template.get("Conditions", {}))
    for logical, resource in functions(template).items():
        props = resource["Properties"]
        code_dir = ROOT / str(r.resolve(props["CodeUri"]))
        module, _, _ = str(r.resolve(props["Handler"])).rpartition(".")
        assert (code_dir / f"{module}.py").is_file(), logical


def test_real_template_credentials_secret_follows_the_condition(
    real: tuple[dict[str, Any], Resolver],
) -> None:
    template, r = real
    variables = template["Resources"]["RefreshTokenFunction"]["Properties"]["Environment"][
        "Variables"
    ]
    assert r.resolve(variables)["CREDENTIALS_SECRET_ID"] == "ref-CredentialsSecret"
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mine"
    with_arn = Resolver(
        template,
        {"CredentialsSecretArn": arn},
        refs=r.refs,
        attributes=r.attributes,
        pseudo=r.pseudo,
    )
    assert with_arn.resolve(variables)["CREDENTIALS_SECRET_ID"] == arn


def test_real_template_substitutions_resolve_to_strings(
    real: tuple[dict[str, Any], Resolver],
) -> None:
    template, r = real
    machines = [
        res
        for res in template["Resources"].values()
        if res["Type"] == "AWS::Serverless::StateMachine"
    ]
    assert machines
    for machine in machines:
        for name, value in r.resolve(machine["Properties"]["DefinitionSubstitutions"]).items():
            assert isinstance(value, str) and value, name
