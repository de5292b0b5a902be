"""docs/misp.md stays in step with the code: every option documented, the type table generated."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pymisp.abstract import describe_types

from threatq_provider.misp.options import OPTION_FIELDS

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "misp.md"


def type_table() -> str:
    table_file = REPO / "plugins" / "threatq_provider" / "data" / "mappings" / "threatq_to_misp.json"
    table = json.loads(table_file.read_text())["indicator_types"]
    rows = ["| ThreatQ indicator type | MISP type | Category | IDS by default |", "|---|---|---|---|"]
    for name, row in table.items():
        if row["type"] == "@ip":
            rows.append(f"| {name} | `ip-src` / `ip-dst` (option `default_ip_type`) | Network activity | yes |")
            continue
        default = describe_types["sane_defaults"][row["type"]]
        category = row.get("category", default["default_category"])
        rows.append(f"| {name} | `{row['type']}` | {category} | {'yes' if default['to_ids'] else 'no'} |")
    return "\n".join(rows)


def section(text: str, name: str) -> str:
    match = re.search(rf"<!-- \[START {name}\] -->\n(.*?)\n<!-- \[END {name}\] -->", text, re.S)
    assert match, name
    return match.group(1)


def test_every_share_option_is_documented_with_its_effect():
    documented = re.findall(r"^\| `([a-z_]+)` \|", section(DOC.read_text(), "misp_options"), re.M)
    assert documented == list(OPTION_FIELDS)


def test_the_type_table_matches_the_mapping_data():
    text = DOC.read_text()
    if os.environ.get("MISP_REGEN_GOLDEN") == "1":
        DOC.write_text(text.replace(section(text, "misp_type_table"), type_table()))
        text = DOC.read_text()
    assert section(text, "misp_type_table") == type_table()
