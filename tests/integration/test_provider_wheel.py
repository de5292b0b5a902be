"""The provider wheel, built as published (sdist, then wheel), carries everything it reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    # uv is installed by scripts/bootstrap next to the interpreter running the tests.
    subprocess.run([str(UV), "build", "--quiet", "--out-dir", str(out), str(REPO)], check=True, timeout=300)
    [path] = out.glob("airflow_provider_threatq-*-py3-none-any.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


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


def test_wheel_metadata_declares_the_native_extra_and_the_provider_entry_point(wheel: zipfile.ZipFile) -> None:
    info = next(n.rsplit("/", 1)[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    assert metadata["Name"] == "airflow-provider-threatq"
    assert "native" in metadata.get_all("Provides-Extra")
    native = [r for r in metadata.get_all("Requires-Dist") if r.startswith("threatq-ecs-native")]
    assert native == ['threatq-ecs-native<0.2,>=0.1; extra == "native"']
    entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "[apache_airflow_provider]\nprovider_info = threatq_provider:get_provider_info" in entry_points
