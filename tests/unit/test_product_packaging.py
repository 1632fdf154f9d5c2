"""What `pip install .` (and so the operator image) gets: the product, its runtime
dependencies and nothing of the sandbox, simulator, load generator or tests."""

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from setuptools import find_namespace_packages

from llmops.cli import PLUGIN_HOMES, _missing_plugin, build_parser

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Distributions only development and tests need (the product's `test` and `bench` extras,
# and what the split distributions need for themselves).
DEV_ONLY = {"llmops-sandbox", "llmops-sim", "llmops-load", "pytest", "pytest-timeout", "openai",
            "matplotlib", "cryptography", "huggingface-hub"}
SPLIT_PACKAGES = ("llmops_sandbox", "llmops_sim", "llmops_load", "llmops_testing")


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def _runtime_closure(requirements: list[str]) -> set[str]:
    """Names pip installs for these requirements, from the installed distributions' metadata
    (extras and markers that do not apply here are left out, as pip leaves them out)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _name(str(req))
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(name) or ()]
        except metadata.PackageNotFoundError:
            pass   # not installed here: it adds nothing further we could check
    return seen


def test_the_product_declares_no_development_dependency():
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert "kopf" in declared and "kubernetes" in declared   # the file was read
    assert declared & DEV_ONLY == set()


def test_installing_the_product_pulls_no_development_dependency():
    closure = _runtime_closure(PYPROJECT["project"]["dependencies"])
    assert {"kopf", "kubernetes", "pydantic", "aiohttp"} <= closure
    assert closure & DEV_ONLY == set()


def test_the_product_wheel_holds_only_the_llmops_package():
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = find_namespace_packages(where=str(ROOT / find["where"][0]), include=find["include"])
    assert "llmops" in packages and "llmops.render" in packages
    assert [p for p in packages if p.split(".")[0] != "llmops"] == []


def test_the_split_distributions_depend_on_what_they_need_not_the_other_way():
    for dist, package in (("llmops-sandbox", "llmops_sandbox"), ("llmops-sim", "llmops_sim"),
                          ("llmops-load", "llmops_load")):
        project = tomllib.loads((ROOT / "src" / dist / "pyproject.toml").read_text())
        assert project["project"]["name"] == dist
        assert project["tool"]["setuptools"]["packages"]["find"]["include"][0] == package
        assert package.split("_")[1] in project["project"]["entry-points"]["llmops.commands"]
    sandbox = tomllib.loads((ROOT / "src/llmops-sandbox/pyproject.toml").read_text())
    assert {"llmops_sandbox", "llmops_fixtures"} <= set(sandbox["project"]["entry-points"]["pytest11"])


def _modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys, json; print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True, cwd=ROOT / "operator")
    return json.loads(out.stdout.splitlines()[-1])


def test_importing_the_controller_loads_no_sandbox_sim_load_or_test_module():
    loaded = _modules_after("import llmops.controller")
    assert "llmops.controller" in loaded and "kopf" in loaded
    assert [m for m in loaded if m.split(".")[0] in SPLIT_PACKAGES + ("pytest", "_pytest")] == []


def test_the_operator_verb_loads_no_other_distribution():
    loaded = _modules_after("from llmops.cli import build_parser; build_parser('run')")
    assert "llmops.commands" in loaded
    assert [m for m in loaded if m.split(".")[0] in SPLIT_PACKAGES] == []


def test_a_verb_whose_distribution_is_missing_names_the_fix():
    parser = build_parser("run")   # loads no plugin: as on the operator image
    message = _missing_plugin("sandbox", parser)
    assert message and "llmops-sandbox" in message and "pip install -e src/llmops-sandbox" in message
    assert _missing_plugin("render", parser) is None
    assert set(PLUGIN_HOMES) == {"sandbox", "sim", "load"}


def test_the_simulator_image_and_the_kind_workflow_install_what_they_run():
    sim_image = (ROOT / "e2e" / "images" / "vllm-sim" / "Dockerfile").read_text()
    assert "pip install . ./src/llmops-sim" in sim_image     # `llmops sim serve` is its entrypoint
    workflow = (ROOT / ".github" / "workflows" / "e2e-kind.yml").read_text()
    assert "-e src/llmops-sandbox" in workflow               # the e2e suite's fixtures


def test_the_operator_image_installs_only_the_product():
    dockerfile = (ROOT / "operator" / "Dockerfile").read_text()
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY") and "--from" not in line]
    sources = {s for c in copies for s in c}
    assert "src/llmops" in sources and not [s for s in sources if s in ("src", "src/") or s.startswith("src/llmops-")]
    assert "llmops-sandbox" not in dockerfile and "llmops-sim" not in dockerfile
