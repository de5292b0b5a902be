"""The front page and docs/ say what the code says (#11 item 6).

Each table that restates code is compared with the code it restates: every DAG's params table
with the params of the DAG as Airflow parses it, the Airflow Variables and environment tables
with what the DAG files and operators read, the connection tables with the form fields of the
provider info, the fault-plan key table with ``FaultRule``. The links between the documents are
checked with GitHub's heading slugs, and every repository path a document names must exist.
Generated tables are checked where their generator lives (tests/unit/ecs/test_types.py,
tests/unit/misp/test_docs.py, tests/unit/simulators/test_fault_schema.py).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DOCUMENTS = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
PROSE = object()  # a table cell that states no literal value


# ---- reading the Markdown ------------------------------------------------------------------

def _outside_code(text: str):
    """(line number, line) of each line outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _outside_code(path.read_text(encoding="utf-8")):
        if match := re.match(r"^#{1,6} (.*)$", line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def section(path: Path, heading: str) -> str:
    """The text under ``heading`` (exact heading text) up to the next heading of any level."""
    lines = path.read_text(encoding="utf-8").split("\n")
    starts = [i for i, line in enumerate(lines) if re.match(rf"^#{{1,6}} {re.escape(heading)}$", line)]
    assert len(starts) == 1, f"{path.name}: expected one heading {heading!r}, found {len(starts)}"
    body = []
    for line in lines[starts[0] + 1:]:
        if re.match(r"^#{1,6} ", line):
            break
        body.append(line)
    return "\n".join(body)


def table(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the first table in ``text`` whose header row starts with ``header_start``."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(header_start)), None)
    assert start is not None, f"no table starting {header_start!r}"

    def cells(row: str) -> list[str]:
        return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row.strip()[1:-1])]

    header = cells(lines[start])
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, cells(line), strict=True)))
    return rows


def literal(cell: str) -> Any:
    """The value a Default cell states: its leading `code` (read as JSON where it parses), null, or PROSE."""
    cell = cell.strip()
    if cell.startswith("null"):
        return None
    if match := re.match(r"^`([^`]*)`", cell):
        try:
            return json.loads(match.group(1))
        except ValueError:
            return match.group(1)
    if re.fullmatch(r"-?\d+(\.\d+)?", cell):  # a bare number
        return json.loads(cell)
    return PROSE


def code_name(cell: str) -> str:
    match = re.match(r"^`([^`]+)`", cell.strip())
    assert match, f"expected a `name` cell, got {cell!r}"
    return match.group(1)


# ---- links and paths ------------------------------------------------------------------------

def test_every_relative_link_and_anchor_resolves():
    broken = []
    for doc in DOCUMENTS:
        for number, line in _outside_code(doc.read_text(encoding="utf-8")):
            for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue  # https:, mailto:
                file, _, anchor = target.partition("#")
                dest = (doc.parent / file).resolve() if file else doc
                where = f"{doc.relative_to(REPO)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where}: no heading with that anchor")
    assert broken == []


def test_the_docs_index_lists_every_document():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\]\(([a-z-]+\.md)\)", index))
    assert listed == {p.name for p in DOCS.glob("*.md")} - {"README.md"}


PATH_PREFIXES = ("scripts/", "bench/", "tests/", "dags/", "include/", "plugins/", "simulators/", "native/", "docs/", ".ci/")


def test_every_repository_path_the_documents_name_exists():
    """Commands and files the documents name in code spans (`scripts/demo`, `bench/load.py`, a test file...)."""
    missing = []
    for doc in DOCUMENTS:
        spans = "\n".join(re.findall(r"`([^`\n]+)`", doc.read_text(encoding="utf-8")))  # code spans
        for token in re.findall(r"(?<![\w/.$-])((?:%s)[\w./-]*\w)" % "|".join(map(re.escape, PATH_PREFIXES)), spans):
            if not (REPO / token).exists():
                missing.append(f"{doc.relative_to(REPO)}: {token}")
    assert sorted(set(missing)) == []


def test_the_front_page_stays_a_front_page():
    lines = (REPO / "README.md").read_text(encoding="utf-8").split("\n")
    assert len(lines) < 300
    headings = [line for _, line in _outside_code("\n".join(lines)) if line.startswith("## ")]
    assert headings == ["## Prerequisites", "## Install into your Airflow", "## Two commands", "## Where to read next"]


# ---- DAG params -----------------------------------------------------------------------------

@cache
def dags() -> dict[str, Any]:
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return dict(bag.dags)


def documented_params(dag_id: str) -> list[dict[str, str]]:
    found = []
    for doc in DOCS.glob("*.md"):
        if f"Params of `{dag_id}`" in doc.read_text(encoding="utf-8"):
            body = section(doc, f"Params of `{dag_id}`")
            if "| Param |" in body:
                found.append(table(body, "| Param |"))
    assert len(found) == 1, f"{dag_id}: expected one params table in docs/, found {len(found)}"
    return found[0]


def test_every_dag_file_is_documented():
    files = sorted(p.stem for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    assert sorted(dags()) == files
    table_rows = table((DOCS / "dags.md").read_text(encoding="utf-8"), "| DAG | Schedule |")
    assert sorted(code_name(row["DAG"]) for row in table_rows) == files


@pytest.mark.parametrize("dag_id", sorted(p.stem for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_")))
def test_the_params_table_equals_the_dags_params(dag_id):
    dag = dags()[dag_id]
    rows = documented_params(dag_id)
    assert [code_name(row["Param"]) for row in rows] == list(dag.params)
    for row in rows:
        name = code_name(row["Param"])
        stated = literal(row["Default"])
        assert stated is not PROSE, f"{dag_id}.{name}: the Default cell states no value: {row['Default']!r}"
        assert stated == dag.params.get_param(name).value, f"{dag_id}.{name}"
        schema = dag.params.get_param(name).schema
        patterns = re.findall(r"`(\^[^`]*\$)`", row["Type"])
        if patterns:  # a pattern the table states is the one the trigger form checks
            assert patterns == [schema.get("pattern")], f"{dag_id}.{name}: Type column"
        if "enum" in schema and "|" in row["Type"]:
            assert re.findall(r"`([^`]+)`", row["Type"]) == list(schema["enum"]), f"{dag_id}.{name}: choices"


# ---- Airflow Variables and environment ------------------------------------------------------

def _dag_calls() -> list[tuple[str, str, Any]]:
    """(kind, name, default) of each ``var.value.get(...)`` template and ``os.environ.get(...)`` in dags/."""
    calls = []
    for path in sorted((REPO / "dags").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for name, default in re.findall(r"var\.value\.get\('([^']+)',\s*([^)]*)\)", source):
            calls.append(("variable", name, ast.literal_eval(default)))
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and ast.unparse(node.func.value) == "os.environ"):
                calls.append(("environment", ast.literal_eval(node.args[0]), ast.literal_eval(node.args[1])))
    return calls


def _variables_doc() -> str:
    return section(DOCS / "dags.md", "Airflow Variables and environment")


def test_the_variables_table_equals_what_the_code_reads():
    from threatq_provider.operators.poll import collection_cursor_variable
    from threatq_provider.threatq.watermark import watermark_key

    rows = {code_name(row["Variable"]): row for row in table(_variables_doc(), "| Variable |")}
    read = {name: default for kind, name, default in _dag_calls() if kind == "variable"}
    # Names built at run time by the operators (plugins), shown with <placeholders> in the table.
    built = {
        "threatq_collection_cursor__<hash>": collection_cursor_variable("<hash>"),
        "threatq_watermark__<dag>__<instance>__<window|events>[__<filters>]":
            watermark_key("<dag>", "<instance>", "<window|events>"),
    }
    assert set(rows) == set(read) | set(built)
    for documented, name in built.items():
        assert documented.startswith(name), documented
    for name, default in read.items():
        stated = literal(rows[name]["Default"])
        if default in (None, ""):  # unset: the cell says what that means in words
            assert stated is PROSE, f"{name}: the code's default is unset, the table says {stated!r}"
        else:
            assert str(stated).lower() == str(default).lower(), f"{name}: table {stated!r}, code {default!r}"


def test_the_watermark_modes_are_the_documented_ones():
    """The ``<window|events>`` part of the watermark Variable: the modes the operators plan with."""
    modes = set()
    for path in (REPO / "plugins/threatq_provider/operators").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "_watermark.plan":
                modes |= {ast.literal_eval(k.value) for k in node.keywords if k.arg == "mode"}
    documented = re.search(r"`threatq_watermark__<dag>__<instance>__<([a-z|\\]+)>", _variables_doc()).group(1)
    assert modes == set(documented.replace("\\", "").split("|"))


def test_the_environment_table_equals_what_the_dag_files_read():
    rows = {code_name(row["Environment"]): literal(row["Default"]) for row in table(_variables_doc(), "| Environment |")}
    read = {name: default for kind, name, default in _dag_calls() if kind == "environment"}
    assert rows == read


# ---- connections ----------------------------------------------------------------------------

CONNECTION_SECTIONS = {
    "threatq": "ThreatQ: `threatq_default` (type `threatq`)",
    "elasticsearch_ecs": "Elasticsearch: `elasticsearch_default` (type `elasticsearch_ecs`)",
    "misp": "MISP: `misp_default` (type `misp`)",
}


@pytest.mark.parametrize("conn_type", sorted(CONNECTION_SECTIONS))
def test_the_connection_table_equals_the_provider_info_fields(conn_type):
    from threatq_provider.provider_info import PROVIDER_INFO

    declared = next(c for c in PROVIDER_INFO["connection-types"] if c["connection-type"] == conn_type)["conn-fields"]
    rows = table(section(DOCS / "connections.md", CONNECTION_SECTIONS[conn_type]), "| Field |")
    extras = {code_name(row["Extra key"]): row for row in rows if row["Extra key"].startswith("`")}
    assert list(extras) == list(declared)
    for key, row in extras.items():
        schema = declared[key]["schema"]
        stated = literal(row["Default"])
        if "default" in schema:
            assert stated == schema["default"], f"{conn_type}.{key}"
        else:
            assert stated in (PROSE, None), f"{conn_type}.{key}: no default is declared, the table says {stated!r}"
        secret = schema.get("format") == "password"
        assert ("yes" in row["Secret"]) == secret, f"{conn_type}.{key}: Secret column"


def test_the_front_page_connection_examples_use_the_declared_types():
    from threatq_provider.provider_info import PROVIDER_INFO

    declared = {c["connection-type"] for c in PROVIDER_INFO["connection-types"]}
    used = set(re.findall(r'"conn_type": "([a-z_]+)"', (REPO / "README.md").read_text(encoding="utf-8")))
    assert used and used <= declared


# ---- simulators -----------------------------------------------------------------------------

def test_the_fault_rule_tables_name_every_field_of_fault_rule():
    from threatq_simulators.faults import FaultRule

    text = section(DOCS / "simulators.md", "Fault plans (both simulators)")
    keys = {code_name(row["key"]): literal(row["default"]) for row in table(text, "| key | default |")}
    data_keys = set()
    for row in table(text, "| rule | reproduces |"):
        data_keys |= set(json.loads(code_name(row["rule"]))) - {"path_regex", "times"}
    fields = {f.name: f for f in dataclasses.fields(FaultRule) if f.compare}
    assert set(keys) | data_keys == set(fields)
    for key, stated in keys.items():
        field = fields[key]
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if default is not None:
            assert stated == default, f"{key}: table {stated!r}, FaultRule {default!r}"


# ---- Elastic Security -----------------------------------------------------------------------

def test_the_fields_the_rules_filter_on_are_on_every_active_document():
    """elastic-security.md's table of the fields the prebuilt rules filter on, against a transformed document."""
    from datetime import UTC, datetime

    from threatq_provider.ecs.options import EcsOptions
    from threatq_provider.ecs.transform import indicator_to_ecs
    from threatq_simulators.corpus import Corpus

    raw = next(iter(Corpus(3, indicators=5).iter_indicators()))
    doc = indicator_to_ecs(raw, now=datetime(2026, 11, 25, tzinfo=UTC), options=EcsOptions())
    assert "error" not in doc

    def get(name: str) -> Any:
        value: Any = doc
        for part in name.split("."):
            value = value[part]
        return value

    rows = table((DOCS / "elastic-security.md").read_text(encoding="utf-8"), "| Field | Value |")
    checked = []
    for row in rows:
        names = re.findall(r"`([^`]+)`", row["Field"])
        values = re.findall(r"`([^`]+)`", row["Value"])
        base = names[0].rsplit(".", 1)[0]
        full = [names[0]] + [base + n if n.startswith(".") else n for n in names[1:]]
        for name, value in zip(full, values, strict=False):
            assert get(name) == (json.loads(value) if value.startswith("[") else value), name
            checked.append(name)
    tables = json.loads((REPO / "plugins/threatq_provider/data/mappings/threatq_to_ecs.json").read_text())
    constants = {k for k in tables["document_constants"] if not k.startswith("_")}
    assert constants <= set(checked), f"written on every document but not in the table: {sorted(constants - set(checked))}"


# ---- MISP share options ---------------------------------------------------------------------

def test_the_share_options_table_states_the_code_defaults():
    """Names are checked by tests/unit/misp/test_docs.py; here each stated default against ShareOptions."""
    from threatq_provider.misp.options import OPTION_FIELDS, ShareOptions

    text = (DOCS / "misp.md").read_text(encoding="utf-8")
    body = re.search(r"<!-- \[START misp_options\] -->\n(.*?)<!-- \[END misp_options\] -->", text, re.S).group(1)
    rows = {code_name(row["Option"]): literal(row["Default"]) for row in table(body, "| Option |")}
    defaults = {f.name: f.default for f in dataclasses.fields(ShareOptions) if f.name in OPTION_FIELDS}
    for name, default in defaults.items():
        stated = rows[name]
        if default is None:
            assert stated in (None, PROSE), f"{name}: no default in the code, the table says {stated!r}"
        else:
            assert stated == default, f"{name}: table {stated!r}, ShareOptions {default!r}"


HOOK_MODULES = {
    "threatq": "plugins/threatq_provider/threatq/hook.py",
    "misp": "plugins/threatq_provider/misp/hook.py",
    "elasticsearch_ecs": "plugins/threatq_provider/elasticsearch/hook.py",
}


def extras_read_by(path: Path) -> set[str]:
    """The extra keys a hook module reads: the key argument of ``extra_value``/``_extra``/``_flag`` and
    ``extra(s).get``, string literals or the constants of ``_conn_extras``."""
    import threatq_provider._conn_extras as names

    def key(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and isinstance(getattr(names, node.id, None), str):
            return getattr(names, node.id)
        return None

    keys = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        if func.endswith(("extra_value", "._extra", "._flag")) or func in ("extra.get", "extras.get"):
            for arg in node.args:
                if (found := key(arg)) and re.fullmatch(r"[a-z_]+", found):
                    keys.add(found)
    return keys


@pytest.mark.parametrize("conn_type", sorted(HOOK_MODULES))
def test_every_extra_a_hook_reads_is_documented(conn_type):
    read = extras_read_by(REPO / HOOK_MODULES[conn_type]) - {conn_type}  # extra_value's conn_type argument
    rows = table(section(DOCS / "connections.md", CONNECTION_SECTIONS[conn_type]), "| Field |")
    documented = {code_name(row["Extra key"]) for row in rows if row["Extra key"].startswith("`")}
    assert read, f"no extra read found in {HOOK_MODULES[conn_type]}: the pattern this test knows changed"
    assert read <= documented, f"read by the hook but not documented: {sorted(read - documented)}"
