"""The provider wheel, built as published (sdist, then wheel), carries everything it reads at run time
and no simulator code; the simulators' wheel carries the simulators, their data and console scripts."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")


def _build(project: Path, pattern: str, out: Path) -> zipfile.ZipFile:
    # uv is installed by scripts/bootstrap next to the interpreter running the tests.
    subprocess.run([str(UV), "build", "--quiet", "--out-dir", str(out), str(project)], check=True, timeout=300)
    [path] = out.glob(pattern)
    return zipfile.ZipFile(path)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    with _build(REPO, "airflow_provider_threatq-*-py3-none-any.whl", tmp_path_factory.mktemp("dist")) as zf:
        yield zf


@pytest.fixture(scope="module")
def simulators_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist-simulators")
    with _build(REPO / "simulators", "threatq_simulators-*-py3-none-any.whl", out) as zf:
        yield zf


def _metadata(wheel: zipfile.ZipFile) -> tuple[str, object]:
    info = next(n.rsplit("/", 1)[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return info, Parser().parsestr(wheel.read(f"{info}/METADATA").decode())


def test_wheel_lists_every_json_table_of_the_package(wheel: zipfile.ZipFile) -> None:
    source = REPO / "plugins"
    tables = sorted(str(p.relative_to(source)) for p in (source / "threatq_provider" / "data").rglob("*.json"))
    assert {"threatq_provider/data/mappings/threatq_to_ecs.json", "threatq_provider/data/mappings/ecs_fields.json",
            "threatq_provider/data/mappings/threatq_to_misp.json", "threatq_provider/data/elasticsearch/templates.json",
            "threatq_provider/data/threatq/enumerations.json"} <= set(tables)
    names = set(wheel.namelist())
    assert [t for t in tables if t not in names] == []
    # The packaged copy is the source file, byte for byte.
    for table in tables:
        assert wheel.read(table) == (source / table).read_bytes(), table


def test_wheel_holds_only_the_provider_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    assert top == {"threatq_provider", next(t for t in top if t.endswith(".dist-info"))}
    assert "threatq_provider/py.typed" in wheel.namelist()


def test_provider_wheel_holds_no_simulator_module(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert len([n for n in names if n.endswith(".py")]) > 30, names  # the provider's modules are there
    assert [n for n in names if "simulat" in n.lower() or n.endswith("threatq_seed.json")] == []
    info, _ = _metadata(wheel)
    # No console scripts: threatq-sim and misp-double come with threatq-simulators.
    assert f"{info}/entry_points.txt" in names and "console_scripts" not in wheel.read(f"{info}/entry_points.txt").decode()


def test_wheel_metadata_declares_the_extras_and_the_provider_entry_point(wheel: zipfile.ZipFile) -> None:
    info, metadata = _metadata(wheel)
    assert metadata["Name"] == "airflow-provider-threatq"
    assert {"native", "simulators"} <= set(metadata.get_all("Provides-Extra"))
    native = [r for r in metadata.get_all("Requires-Dist") if r.startswith("threatq-ecs-native")]
    assert native == ['threatq-ecs-native<0.2,>=0.1; extra == "native"']
    simulators = [r for r in metadata.get_all("Requires-Dist") if r.startswith("threatq-simulators")]
    assert simulators == ['threatq-simulators<0.2,>=0.1; extra == "simulators"']
    entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "[apache_airflow_provider]\nprovider_info = threatq_provider:get_provider_info" in entry_points


def test_simulators_wheel_holds_the_simulators_their_data_and_console_scripts(simulators_wheel: zipfile.ZipFile) -> None:
    source = REPO / "simulators"
    modules = sorted(str(p.relative_to(source)) for p in (source / "threatq_simulators").rglob("*.py"))
    data = sorted(str(p.relative_to(source)) for p in (source / "threatq_simulators" / "data").glob("*.json"))
    assert {"threatq_simulators/threatq_sim.py", "threatq_simulators/misp_double.py",
            "threatq_simulators/faults.py"} <= set(modules)
    assert data == ["threatq_simulators/data/threatq_enumerations.json", "threatq_simulators/data/threatq_seed.json"]
    names = set(simulators_wheel.namelist())
    for name in modules + data:
        assert simulators_wheel.read(name) == (source / name).read_bytes(), name
    top = {name.split("/")[0] for name in names}
    assert top == {"threatq_simulators", next(t for t in top if t.endswith(".dist-info"))}
    info, metadata = _metadata(simulators_wheel)
    assert metadata["Name"] == "threatq-simulators"
    # Nothing of Airflow or of the provider: the simulators run without either.
    requires = {r.split(";")[0].split("<")[0].split(">")[0].strip() for r in metadata.get_all("Requires-Dist")}
    assert requires == {"pymisp", "pymispgalaxies", "orjson"}
    entry_points = simulators_wheel.read(f"{info}/entry_points.txt").decode()
    assert "threatq-sim = threatq_simulators.threatq_cli:main" in entry_points
    assert "misp-double = threatq_simulators.misp_cli:main" in entry_points
