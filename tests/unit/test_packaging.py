"""Packaging rules that need no build: production code never imports the simulators, the
simulators never import the provider, and the provider's ``[native]`` and ``[simulators]`` extras
name the distributions native/ and simulators/ build, at versions they accept."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plugins" / "threatq_provider"
SIMULATORS_DIR = REPO / "simulators"
SIMULATORS = "threatq_simulators"
PROVIDER = "threatq_provider"


def imports_of(source: str, package: str, target: str) -> list[str]:
    """Imports of ``target`` (a top-level package) in ``source``, a module of ``package``
    (relative imports resolved)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            # importlib.import_module("threatq_simulators...") / __import__(...)
            names = [node.args[0].value] if isinstance(node.args[0].value, str) else []
        else:
            continue
        found += [n for n in names if n == target or n.startswith(target + ".")]
    return found


def modules_under(root: Path, top: str) -> list[tuple[Path, str]]:
    """Every module of the package ``root/top``, with the package each belongs to."""
    return [(path, ".".join(path.relative_to(root).parent.parts)) for path in sorted((root / top).rglob("*.py"))]


def production_modules() -> list[tuple[Path, str]]:
    """Every provider module and the DAG files, with the package each belongs to."""
    return modules_under(PACKAGE.parent, PROVIDER) + [(path, "dags") for path in sorted((REPO / "dags").glob("*.py"))]


def offenders(modules: list[tuple[Path, str]], target: str) -> dict[str, list[str]]:
    return {
        str(path.relative_to(REPO)): hits
        for path, package in modules
        if (hits := imports_of(path.read_text(encoding="utf-8"), package, target))
    }


def test_scan_finds_every_form_of_import() -> None:
    package = "threatq_provider.operators"
    assert imports_of("import threatq_simulators.corpus", package, SIMULATORS)
    assert imports_of("from threatq_simulators import corpus", package, SIMULATORS)
    assert imports_of("import threatq_simulators as sims", package, SIMULATORS)
    assert imports_of("importlib.import_module('threatq_simulators.faults')", package, SIMULATORS)
    assert imports_of("from ..threatq.client import ThreatQClient", package, PROVIDER)
    assert imports_of("from threatq_provider._resources import data_file", "threatq_simulators", PROVIDER)
    assert not imports_of("from ..threatq.client import ThreatQClient\nimport json", package, SIMULATORS)
    assert not imports_of("from .faults import FaultPlan", "threatq_simulators", PROVIDER)


def test_production_code_never_imports_the_simulators() -> None:
    modules = production_modules()
    assert len(modules) > 30, [str(path) for path, _ in modules]  # the walk found the provider's modules
    assert offenders(modules, SIMULATORS) == {}


def test_the_provider_package_holds_no_simulator_code() -> None:
    assert not (PACKAGE / "simulators").exists()
    assert [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if "simulat" in p.name] == []


def test_the_simulators_import_nothing_of_the_provider() -> None:
    # An independent model of ThreatQ and MISP: the simulators run without Airflow or the
    # provider, and a bug in the provider's client cannot hide behind the same code in them.
    modules = modules_under(SIMULATORS_DIR, SIMULATORS)
    assert len(modules) > 8, [str(path) for path, _ in modules]
    assert offenders(modules, PROVIDER) == {}


def test_the_simulators_enumerations_are_the_providers() -> None:
    # The simulator serves ThreatQ's default enumerations from its own copy (it imports nothing of
    # the provider); both describe the same product, so they may not drift apart.
    copy = SIMULATORS_DIR / SIMULATORS / "data" / "threatq_enumerations.json"
    assert copy.read_bytes() == (PACKAGE / "data" / "threatq" / "enumerations.json").read_bytes(), (
        f"{copy.relative_to(REPO)} differs from plugins/threatq_provider/data/threatq/enumerations.json: "
        "copy the provider's file over it")


@pytest.mark.parametrize(("extra", "project_dir"), [("native", "native"), ("simulators", "simulators")])
def test_extra_names_the_distribution_the_repository_builds(extra: str, project_dir: str) -> None:
    provider = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    built = tomllib.loads((REPO / project_dir / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    [requirement] = [Requirement(r) for r in provider["optional-dependencies"][extra]]
    assert canonicalize_name(requirement.name) == canonicalize_name(built["name"])
    assert requirement.specifier.contains(built["version"]), (str(requirement.specifier), built["version"])
    if project_dir == "native":
        cargo = tomllib.loads((REPO / "native" / "Cargo.toml").read_text(encoding="utf-8"))["package"]
        assert canonicalize_name(cargo["name"]) == canonicalize_name(built["name"])
        assert built["version"] == cargo["version"]


def test_console_scripts_come_from_the_simulators_distribution() -> None:
    provider = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    simulators = tomllib.loads((SIMULATORS_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "scripts" not in provider
    assert simulators["scripts"] == {"threatq-sim": "threatq_simulators.threatq_cli:main",
                                     "misp-double": "threatq_simulators.misp_cli:main"}
