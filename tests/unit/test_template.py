"""template.yaml and samconfig.toml: the linters pass, and what must hold of any correct template.

The tests state rules, not the template's current values: every function runs the project's
Python on what its layer was built for, gets only the settings its code reads, and can be
found from an output; every parameter is used, has a working default and is what the local
stack and samconfig.toml set. IAM is in test_template_iam.py, the other resources in
test_template_resources.py. The linters run once per module (``sam validate`` takes seconds).
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from aistudios_export import settings
from aistudios_export.errors import ConfigurationError
from aistudios_local.template import Resolver
from tests.unit._fixtures import ROOT
from tests.unit._template import (
    FUNCTION,
    STATE_MACHINE,
    SUB_VARIABLE,
    TEMPLATE,
    as_list,
    of_type,
    references,
    resolver,
    walk,
)

SAMCONFIG = ROOT / "samconfig.toml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# The venv's console scripts live next to its interpreter (do not resolve the symlink).
BIN = Path(sys.executable).parent
LAMBDA_TIMEOUT_SECONDS = (3, 900)
LAMBDA_MEMORY_MB = (128, 10240)
# What the embedded local stack resolves (see the comment at the top of template.yaml).
LOCAL_INTRINSICS = {
    "Ref",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::If",
    "Fn::Equals",
    "Fn::Not",
    "Fn::And",
    "Fn::Or",
}
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
LIBRARY_VARIABLES = {
    value
    for value in vars(settings).values()
    if isinstance(value, str) and ENV_NAME.fullmatch(value)
}
"""Every environment variable the library reads: settings.py names them all."""


# --- fixtures and helpers -------------------------------------------------------------


def _run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a venv tool offline-friendly: no telemetry, a region and dummy credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    executable = BIN / argv[0]
    assert executable.exists(), f"{executable} is missing: run `make test` to set up the venv"
    return subprocess.run(
        [str(executable), *argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def cfn_lint_run() -> subprocess.CompletedProcess[str]:
    return _run_tool("cfn-lint", str(TEMPLATE))


@pytest.fixture(scope="module")
def sam_validate_run() -> subprocess.CompletedProcess[str]:
    return _run_tool(
        "sam", "validate", "--lint", "--template", str(TEMPLATE), "--region", "us-east-1"
    )


def environments(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each function's environment variables (Globals and its own), unresolved."""
    base = template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    return {
        name: {**base, **function["Properties"].get("Environment", {}).get("Variables", {})}
        for name, function in of_type(template["Resources"], FUNCTION).items()
    }


def settings_readers() -> dict[str, Callable[..., object]]:
    """Every reader of settings.py that takes only ``env``: each ``from_env`` and the like."""
    readers: dict[str, Callable[..., object]] = {}
    for name, member in vars(settings).items():
        if inspect.isclass(member) and hasattr(member, "from_env"):
            readers[name] = member.from_env
        elif inspect.isfunction(member) and list(inspect.signature(member).parameters) == ["env"]:
            readers[name] = member
    return readers


def imported_packages(source: Path) -> set[str]:
    """The top-level packages a Python file imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _string_keys(node: ast.expr) -> Iterator[str]:
    """The string keys of the dict literals in ``node`` (and the strings of its set literals)."""
    for item in ast.walk(node):
        keys: list[ast.expr | None] = []
        if isinstance(item, ast.Dict):
            keys = list(item.keys)
        elif isinstance(item, ast.Set):
            keys = list(item.elts)
        for key in keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                yield key.value


def parameter_names_set_in(source: Path) -> Iterator[str]:
    """Template parameter names a Python file sets or reads.

    ``x.parameter("Name")``, ``parameters = {"Name": ...}``, ``parameters["Name"] = ...`` and
    ``parameters={"Name": ...}`` in a call.
    """
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        found: list[ast.expr] = []
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "parameter" and node.args:
                found.append(ast.Set(elts=[node.args[0]]))
            found += [k.value for k in node.keywords if k.arg == "parameters"]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "parameters":
                    found.append(node.value)
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "parameters"
                ):
                    found.append(ast.Set(elts=[target.slice]))
        for expression in found:
            yield from _string_keys(expression)


def samconfig_overrides(config: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(profile, parameter, value)`` of every ``parameter_overrides`` in samconfig.toml."""
    for profile, commands in config.items():
        if not isinstance(commands, dict):
            continue
        for command in commands.values():
            text = command.get("parameters", {}).get("parameter_overrides", "")
            for pair in shlex.split(text):
                name, _, value = pair.partition("=")
                yield profile, name, value


def assert_allowed(parameter: Mapping[str, Any], value: str, where: str) -> None:
    """Check that a parameter accepts ``value`` as CloudFormation would."""
    if "AllowedPattern" in parameter:
        assert re.fullmatch(parameter["AllowedPattern"], value), where
    if "AllowedValues" in parameter:
        assert value in {str(v) for v in parameter["AllowedValues"]}, where
    if parameter["Type"] == "Number":
        number = float(value)
        assert parameter.get("MinValue", number) <= number <= parameter.get("MaxValue", number)


# --- the linters ----------------------------------------------------------------------


def test_cfn_lint_reports_nothing(cfn_lint_run: subprocess.CompletedProcess[str]) -> None:
    output = cfn_lint_run.stdout + cfn_lint_run.stderr
    assert cfn_lint_run.returncode == 0, output
    assert cfn_lint_run.stdout.strip() == ""


def test_sam_validate_lint_passes(sam_validate_run: subprocess.CompletedProcess[str]) -> None:
    output = sam_validate_run.stdout + sam_validate_run.stderr
    assert sam_validate_run.returncode == 0, output
    assert "is a valid SAM Template" in output


# --- functions ------------------------------------------------------------------------


def test_functions_run_the_projects_python_on_what_their_layers_are_built_for(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    version_match = re.fullmatch(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert version_match, "requires-python names the one version the functions run"
    version = version_match[1]
    assert PYPROJECT["tool"]["mypy"]["python_version"] == version
    runtime = f"python{version}"
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == runtime
    assert globals_["Tracing"] == "Active"
    (architecture,) = globals_["Architectures"]
    functions = of_type(resources, FUNCTION)
    assert functions
    for name, function in functions.items():
        overrides = {"Runtime", "Architectures", "Tracing", "Layers"} & set(function["Properties"])
        assert not overrides, f"{name} overrides {overrides} from Globals"

    layer_packages: set[str] = set()
    assert globals_["Layers"]
    for ref in globals_["Layers"]:
        layer = resources[ref["Ref"]]
        assert layer["Type"] == "AWS::Serverless::LayerVersion"
        assert runtime in layer["Properties"]["CompatibleRuntimes"]
        assert layer["Properties"]["CompatibleArchitectures"] == [architecture]
        # Built by its own Makefile: the runtime's wheels, and their bytecode (see the next test).
        assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": architecture}
        content = ROOT / layer["Properties"]["ContentUri"]
        assert (content / "requirements.txt").is_file(), "what the layer's build installs"
        layer_packages |= {p.parent.name for p in content.glob("*/__init__.py")}
    # Every package of this project a handler imports is deployed in a layer.
    project_packages = set(PYPROJECT["tool"]["setuptools"]["package-dir"])
    for function in functions.values():
        handler_file = ROOT / function["Properties"]["CodeUri"] / "app.py"
        assert imported_packages(handler_file) & project_packages <= layer_packages


def test_the_layer_is_built_for_the_runtime_with_bytecode_that_never_goes_stale(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """SAM unpacks wheels without compiling them, and Lambda cannot write .pyc files to /opt."""
    version = template["Globals"]["Function"]["Runtime"].removeprefix("python")
    (architecture,) = template["Globals"]["Function"]["Architectures"]
    for ref in template["Globals"]["Function"]["Layers"]:
        content = ROOT / resources[ref["Ref"]]["Properties"]["ContentUri"]
        makefile = (content / "Makefile").read_text()
        assert f"build-{ref['Ref']}:" in makefile  # the target `sam build` runs
        assert f"--python-version {version}" in makefile
        assert {"arm64": "manylinux2014_aarch64"}[architecture] in makefile
        assert "--only-binary=:all:" in makefile and "-r requirements.txt" in makefile
        # Hash-checked: the zip's timestamps cannot make it stale; all of the layer is compiled.
        assert '-m compileall -q -j 0 --invalidation-mode unchecked-hash "$(SITE)"' in makefile


def test_functions_with_wheels_of_their_own_ship_them_and_their_code_with_bytecode(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """As the layer: SAM's builder ships no .pyc files, and Lambda cannot write to /var/task."""
    version = template["Globals"]["Function"]["Runtime"].removeprefix("python")
    (architecture,) = template["Globals"]["Function"]["Architectures"]
    functions = of_type(resources, FUNCTION)
    code = {name: ROOT / f["Properties"]["CodeUri"] for name, f in functions.items()}
    with_wheels = {name for name, folder in code.items() if (folder / "requirements.txt").is_file()}
    assert "ApiFunction" in with_wheels  # pydantic
    for name, function in functions.items():
        built_by_make = function.get("Metadata") == {"BuildMethod": "makefile"}
        assert built_by_make == (code[name] / "Makefile").is_file(), name
        assert built_by_make or name not in with_wheels, f"{name} would ship its wheels uncompiled"
        if not built_by_make:
            continue
        makefile = (code[name] / "Makefile").read_text()
        assert f"build-{name}:" in makefile  # the target `sam build` runs, in a copy of the folder
        assert f"--python-version {version}" in makefile
        assert {"arm64": "manylinux2014_aarch64"}[architecture] in makefile
        assert "--only-binary=:all:" in makefile
        assert '--target "$(ARTIFACTS_DIR)" -r requirements.txt' in makefile
        # All of the folder's code (each module, each package), without the bytecode of local
        # runs: compileall keeps a timestamp-checked .pyc whose source has not changed.
        packages = sorted(p.parent.name for p in code[name].glob("*/__init__.py"))
        assert f'cp -R *.py {" ".join(packages)} "$(ARTIFACTS_DIR)/"' in makefile
        assert 'find "$(ARTIFACTS_DIR)" -name __pycache__ -prune -exec rm -rf {} +' in makefile
        # Hash-checked: the zip's timestamps cannot make it stale; the wheels are compiled too.
        compile_all = '-m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)"'
        assert compile_all in makefile


def test_every_function_has_its_handler_in_a_code_folder_of_its_own(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    folders: list[str] = []
    for name, function in of_type(resources, FUNCTION).items():
        props = function["Properties"]
        code = Path(props["CodeUri"])
        assert code.parent == Path("functions"), name
        folders.append(code.name)
        assert (ROOT / code / "__init__.py").is_file(), name
        handler = props.get("Handler", template["Globals"]["Function"].get("Handler"))
        module, _, entry = handler.rpartition(".")
        tree = ast.parse((ROOT / code / f"{module}.py").read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert entry in defined, f"{name}: {handler} is not defined in {code}"
        assert isinstance(props["Timeout"], int), name
        assert isinstance(props["MemorySize"], int), name
        assert LAMBDA_TIMEOUT_SECONDS[0] <= props["Timeout"] <= LAMBDA_TIMEOUT_SECONDS[1], name
        assert LAMBDA_MEMORY_MB[0] <= props["MemorySize"] <= LAMBDA_MEMORY_MB[1], name
    assert len(set(folders)) == len(folders), "one folder per function"
    handlers = {d.name for d in (ROOT / "functions").iterdir() if (d / "app.py").is_file()}
    assert set(folders) == handlers, "every handler folder is deployed"


def test_functions_that_stream_videos_hold_one_part_and_may_run_longest(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    streaming = {
        name: env
        for name, env in environments(template).items()
        if settings.DOWNLOAD_PART_SIZE_MIB in env
    }
    assert streaming
    for name, env in streaming.items():
        props = resources[name]["Properties"]
        part = template["Parameters"][env[settings.DOWNLOAD_PART_SIZE_MIB]["Ref"]]
        # About one part is in memory (transfer.py), beside the runtime and its clients.
        assert props["MemorySize"] >= part["MaxValue"] + 256, name
        # Multi-gigabyte videos take minutes: the copy gets all the time Lambda allows.
        assert props["Timeout"] == LAMBDA_TIMEOUT_SECONDS[1], name


# --- environment variables ------------------------------------------------------------


def test_functions_get_only_settings_the_code_reads_and_every_one_it_reads(
    template: dict[str, Any],
) -> None:
    given: dict[str, Any] = {}
    for name, env in environments(template).items():
        for variable, value in env.items():
            if variable.startswith("POWERTOOLS_") and variable not in LIBRARY_VARIABLES:
                continue  # read by Powertools itself only
            assert variable in LIBRARY_VARIABLES, f"{name}: nothing reads {variable}"
            assert isinstance(value, dict), f"{name}: {variable} is not wired to the template"
            # A variable means the same thing in every function that has it.
            assert given.setdefault(variable, value) == value, f"{name}: {variable}"
    assert set(given) == LIBRARY_VARIABLES, "every setting the library reads has a source"


def _union_environment(template: dict[str, Any], values: Resolver) -> dict[str, str]:
    """Every function's environment variables in one mapping, resolved by ``values``."""
    merged: dict[str, str] = {}
    for env in environments(template).values():
        merged |= {k: str(v) for k, v in values.resolve(env).items()}
    return merged


def test_the_settings_parse_from_the_template_whatever_its_parameters_allow(
    template: dict[str, Any],
) -> None:
    readers = settings_readers()
    assert readers
    defaults = resolver()
    cases: list[dict[str, str]] = [{}]
    for env in environments(template).values():
        for value in env.values():
            for name in references(value) & set(template["Parameters"]):
                spec = template["Parameters"][name]
                cases += [{name: str(spec[k])} for k in ("MinValue", "MaxValue") if k in spec]
    for overrides in cases:
        values = Resolver(
            template,
            overrides,
            refs=defaults.refs,
            attributes=defaults.attributes,
            pseudo=defaults.pseudo,
        )
        env = _union_environment(template, values)
        for name, reader in readers.items():
            try:
                reader(env=env)
            except ConfigurationError as e:
                pytest.fail(f"{name} with {overrides or 'the defaults'}: {e}")


def test_local_stack_fragments_use_only_intrinsics_it_resolves(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    known = set(template["Parameters"]) | set(resources) | set(resolver().pseudo)
    machines = of_type(resources, STATE_MACHINE)
    fragments: list[Any] = [template["Globals"]["Function"]["Environment"]]
    fragments += [f["Properties"].get("Environment", {}) for f in resources.values()]
    fragments += [m["Properties"].get("DefinitionSubstitutions", {}) for m in machines.values()]
    fragments += list(template["Conditions"].values())

    def attribute_known(name: str, attribute: str) -> bool:
        # The local stack names an Arn of everything and a Name of state machines.
        return attribute in ("", "Arn") or (attribute == "Name" and name in machines)

    for item in walk(fragments):
        if not isinstance(item, dict):
            continue
        functions = {key for key in item if key == "Ref" or key.startswith("Fn::")}
        assert functions <= LOCAL_INTRINSICS, functions
        if "Fn::GetAtt" in item:
            assert attribute_known(*item["Fn::GetAtt"]), item
        if "Fn::If" in item:
            assert item["Fn::If"][0] in template["Conditions"], item
        if "Fn::Sub" in item:
            text, *mapping = as_list(item["Fn::Sub"])
            local = set(mapping[0]) if mapping else set()
            for variable in SUB_VARIABLE.findall(text):
                name, _, attribute = variable.partition(".")
                assert name in known | local and attribute_known(name, attribute), variable
    assert references(fragments) <= known


# --- parameters -----------------------------------------------------------------------


def test_every_parameter_has_a_default_that_passes_its_own_constraints(
    template: dict[str, Any],
) -> None:
    for name, parameter in template["Parameters"].items():
        assert "Default" in parameter, name
        assert_allowed(parameter, str(parameter["Default"]), name)


def test_every_parameter_is_used_and_shown_in_one_group(template: dict[str, Any]) -> None:
    parameters = set(template["Parameters"])
    used = references({k: v for k, v in template.items() if k not in ("Parameters", "Metadata")})
    assert parameters <= used, f"unused: {sorted(parameters - used)}"
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(parameters), "each parameter in exactly one group"


def test_every_parameter_the_local_stack_or_its_tests_set_exists(
    template: dict[str, Any],
) -> None:
    sources = sorted((ROOT / "local").rglob("*.py")) + sorted(
        (ROOT / "tests" / "integration").glob("*.py")
    )
    found = {(source, name) for source in sources for name in parameter_names_set_in(source)}
    assert {source.parent.name for source, _ in found} >= {"aistudios_local", "integration"}
    for source, name in found:
        assert name in template["Parameters"], f"{source.relative_to(ROOT)} sets {name}"


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("ApiBaseUrl", "https://app.aistudios.com", True),
        ("ApiBaseUrl", "https://app.aistudios.cn/", True),
        ("ApiBaseUrl", "http://127.0.0.1:8080", True),
        ("ApiBaseUrl", "http://localhost:9000", True),
        ("ApiBaseUrl", "http://app.aistudios.com", False),
        ("ApiBaseUrl", "https://user:pw@app.aistudios.com", False),
        ("ApiBaseUrl", "http://169.254.169.254", False),
        ("TrustedDownloadOrigin", "", True),
        ("TrustedDownloadOrigin", "http://127.0.0.1:8080", True),
        ("TrustedDownloadOrigin", "https://cdn.example.com", False),
        ("TrustedDownloadOrigin", "http://169.254.169.254", False),
        ("TrustedDownloadOrigin", "http://10.0.0.1:80", False),
        ("TrustedWebhookOrigin", "", True),
        ("TrustedWebhookOrigin", "https://127.0.0.1:8443", True),
        ("TrustedWebhookOrigin", "http://127.0.0.1:8443", False),
        ("TrustedWebhookOrigin", "https://hooks.example.com", False),
        ("OutputKeyPrefix", "", True),
        ("OutputKeyPrefix", "videos/2024/", True),
        ("OutputKeyPrefix", "exports", False),
        ("OutputKeyPrefix", "exports/*", False),
        (
            "CredentialsSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf",
            True,
        ),
        ("CredentialsSecretArn", "my-secret", False),
        ("TokenRotationSchedule", "rate(1 day)", True),
        ("TokenRotationSchedule", "cron(0 */12 * * ? *)", True),
        ("TokenRotationSchedule", "12h", False),
    ],
)
def test_parameter_patterns(
    template: dict[str, Any], parameter: str, value: str, accepted: bool
) -> None:
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


@pytest.mark.parametrize("parameter", ["TrustedDownloadOrigin", "TrustedWebhookOrigin"])
def test_a_trusted_loopback_origin_cannot_be_set_in_aws(
    template: dict[str, Any], parameter: str
) -> None:
    rule = template["Rules"][f"{parameter}IsLocalOnly"]
    assert "Condition" not in rule
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": parameter}, ""]}
    assert template["Parameters"][parameter]["Default"] == ""


# --- outputs --------------------------------------------------------------------------


def test_every_output_names_something_that_exists_whenever_it_is_shown(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    known = set(template["Parameters"]) | set(resources) | set(resolver().pseudo)
    for name, output in template["Outputs"].items():
        value = output["Value"]
        named = references(value)
        assert named, f"{name} is a literal"
        assert named <= known, name
        if "Condition" in output:
            assert output["Condition"] in template["Conditions"], name
        guards = {output.get("Condition")}
        if isinstance(value, dict) and "Fn::If" in value:
            guards.add(value["Fn::If"][0])
            named = references(value["Fn::If"][1])  # the other branch exists without it
        for resource in named & set(resources):
            if "Condition" in resources[resource]:
                assert resources[resource]["Condition"] in guards, (name, resource)


def test_users_can_find_every_resource_they_operate(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    shown = references([o["Value"] for o in template["Outputs"].values()])
    operated = (
        FUNCTION,
        STATE_MACHINE,
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
        "AWS::SQS::Queue",
        "AWS::Serverless::Api",
    )
    for kind in operated:
        missing = set(of_type(resources, kind)) - shown
        assert not missing, f"no output names {sorted(missing)}"
    read_by_cloud_tests = {
        match
        for source in (ROOT / "tests" / "cloud").glob("*.py")
        for match in re.findall(r"outputs\[\"(\w+)\"\]", source.read_text(encoding="utf-8"))
    }
    assert read_by_cloud_tests <= set(template["Outputs"])


# --- samconfig.toml -------------------------------------------------------------------


def test_samconfig_profiles_deploy_their_own_stack_safely_without_account_details(
    template: dict[str, Any],
) -> None:
    text = SAMCONFIG.read_text(encoding="utf-8")
    config = tomllib.loads(text)
    assert config.pop("version") == 0.1, "the only samconfig format SAM CLI reads"
    assert {"default", "prod"} <= set(config)
    creates_roles = bool(of_type(template["Resources"], "AWS::IAM::Role"))
    stacks = set()
    for env, commands in config.items():
        stacks.add(commands["global"]["parameters"]["stack_name"])
        assert commands["build"]["parameters"], env
        deploy = commands["deploy"]["parameters"]
        capabilities = set(deploy["capabilities"].split())
        assert ("CAPABILITY_IAM" in capabilities) is creates_roles, env
        assert "CAPABILITY_NAMED_IAM" not in capabilities, env
        assert deploy.get("resolve_s3") is True or "s3_bucket" in deploy, env
    assert len(stacks) == len(config), "each profile deploys a stack of its own"
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert not re.search(r"^\s*region\s*=", text, re.MULTILINE)
    assert not re.search(r"\b\d{12}\b", text)
    overrides = list(samconfig_overrides(config))
    assert overrides
    for profile, name, value in overrides:
        assert name in template["Parameters"], f"{profile} sets {name}"
        assert_allowed(template["Parameters"][name], value, f"{profile}: {name}={value}")
