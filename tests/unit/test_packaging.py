"""Packaging rules that need no build: production code never imports the simulators, and the
provider's ``[native]`` extra names the distribution native/ builds, at a version it accepts."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plugins" / "threatq_provider"
SIMULATORS = "threatq_provider.simulators"


def simulator_imports(source: str, package: str) -> list[str]:
    """Imports of the simulators package in ``source``, a module of ``package`` (relative ones resolved)."""
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
            # importlib.import_module("threatq_provider.simulators...") / __import__(...)
            names = [node.args[0].value] if isinstance(node.args[0].value, str) else []
        else:
            continue
        found += [n for n in names if n == SIMULATORS or n.startswith(SIMULATORS + ".")]
    return found


def production_modules() -> list[tuple[Path, str]]:
    """Every provider module outside simulators/, and the DAG files, with the package each belongs to."""
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        if rel.parts[1] == "simulators":
            continue
        modules.append((path, ".".join(rel.parent.parts)))
    modules += [(path, "dags") for path in sorted((REPO / "dags").glob("*.py"))]
    return modules


def test_scan_finds_every_form_of_simulator_import() -> None:
    package = "threatq_provider.operators"
    assert simulator_imports("import threatq_provider.simulators.corpus", package)
    assert simulator_imports("from threatq_provider.simulators import corpus", package)
    assert simulator_imports("from ..simulators.corpus import Corpus", package)
    assert simulator_imports("from .. import simulators", package)
    assert simulator_imports("from .simulators import faults", "threatq_provider")
    assert simulator_imports("importlib.import_module('threatq_provider.simulators.faults')", package)
    assert not simulator_imports("from ..threatq.client import ThreatQClient\nimport json", package)
    assert not simulator_imports("from .simulators import faults", "threatq_provider.operators")


def test_production_code_never_imports_the_simulators() -> None:
    modules = production_modules()
    assert len(modules) > 30, [str(path) for path, _ in modules]  # the walk found the provider's modules
    offenders = {
        str(path.relative_to(REPO)): hits
        for path, package in modules
        if (hits := simulator_imports(path.read_text(encoding="utf-8"), package))
    }
    assert offenders == {}


def test_native_extra_names_the_distribution_native_builds() -> None:
    provider = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    native = tomllib.loads((REPO / "native" / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    cargo = tomllib.loads((REPO / "native" / "Cargo.toml").read_text(encoding="utf-8"))["package"]
    [extra] = [Requirement(r) for r in provider["optional-dependencies"]["native"]]
    assert canonicalize_name(extra.name) == canonicalize_name(native["name"]) == canonicalize_name(cargo["name"])
    assert native["version"] == cargo["version"]
    assert extra.specifier.contains(native["version"]), (str(extra.specifier), native["version"])
