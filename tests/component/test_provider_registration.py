"""Provider registration as Airflow's own processes see it: the CLI, the UI API's connection forms
and the plugin loader.

Each runs Airflow in a subprocess (same AIRFLOW_HOME/config as the tests, set by conftest), so the
plugin loader's module registrations cannot leak into, or be masked by, this pytest process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from threatq_provider import get_provider_info

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _run(args: list[str], timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=dict(os.environ), cwd=REPO)


def _json_out(stdout: str):
    # Airflow may log a line to stdout before the JSON (unit-test config notice).
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith(("[{", "{"))][-1:]
    return json.loads(line)


def test_airflow_cli_lists_provider_and_threatq_hook():
    listed = _run([AIRFLOW, "providers", "list", "-o", "json"])
    assert listed.returncode == 0, listed.stderr[-2000:]
    packages = {p["package_name"] for p in _json_out(listed.stdout)}
    assert "airflow-provider-threatq" in packages

    hooks = _run([AIRFLOW, "providers", "hooks", "-o", "json"])
    assert hooks.returncode == 0, hooks.stderr[-2000:]
    by_type = {h["connection_type"]: h for h in _json_out(hooks.stdout)}
    assert by_type["threatq"]["class"] == "threatq_provider.threatq.hook.ThreatQHook"
    assert by_type["threatq"]["conn_id_attribute_name"] == "threatq_conn_id"
    assert by_type["threatq"]["hook_name"] == "ThreatQ"


_FORM_PROBE = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
meta = {h.connection_type: h for h in HookMetaService.hook_meta_data()}
print(json.dumps({t: {"extra": {k: v["schema"] for k, v in (m.extra_fields or {}).items()},
                      "host": m.standard_fields.host.title if m.standard_fields.host else None,
                      "login_hidden": m.standard_fields.login.hidden if m.standard_fields.login else None,
                      "port": [m.standard_fields.port.hidden, m.standard_fields.port.title]
                      if m.standard_fields.port else None}
                  for t, m in meta.items() if t in ("threatq", "misp", "elasticsearch_ecs")}))
"""


def test_ui_api_serves_the_connection_forms_of_provider_info():
    # The form the UI's hook_meta endpoint serves: from provider info on 3.2+, from the hooks'
    # get_connection_form_widgets/get_ui_field_behaviour (threatq_provider._connection_form) on 3.1.
    probe = _run([sys.executable, "-c", _FORM_PROBE])
    assert probe.returncode == 0, probe.stderr[-2000:]
    forms = _json_out(probe.stdout)
    info = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert set(forms) == set(info)
    for conn_type, form in forms.items():
        assert set(form["extra"]) == set(info[conn_type]["conn-fields"]), conn_type
        assert form["host"] == info[conn_type]["ui-field-behaviour"]["relabeling"]["host"]
        for key, field in info[conn_type]["conn-fields"].items():
            assert form["extra"][key]["title"] == field["label"]
            assert form["extra"][key].get("format") == field["schema"].get("format")
    assert forms["misp"]["login_hidden"] is True and forms["threatq"]["login_hidden"] is False
    # Port is shown: Airflow 3.3's Test button needs a stored port (issue #14, apache/airflow#73298).
    assert {t: f["port"] for t, f in forms.items()} == dict.fromkeys(forms, [False, "Port (for the Test button)"])


_PLUGIN_PROBE = """
import json, sys
from airflow import plugins_manager, settings
if hasattr(plugins_manager, "get_import_errors"):  # Airflow 3.2+
    errors = plugins_manager.get_import_errors()
else:  # Airflow 3.1: load, then read the module-level dict the loader fills
    plugins_manager.ensure_plugins_loaded()
    errors = plugins_manager.import_errors
import elasticsearch, pymisp
print(json.dumps({
    "folder": settings.PLUGINS_FOLDER,
    "errors": errors,
    "elasticsearch": getattr(sys.modules["elasticsearch"], "__file__", None),
    "has_es_client": hasattr(sys.modules["elasticsearch"], "Elasticsearch"),
    "pymisp": getattr(sys.modules["pymisp"], "__file__", None),
    "has_pymisp": hasattr(sys.modules["pymisp"], "PyMISP"),
}))
"""


@pytest.mark.airflow
def test_plugin_loader_over_plugins_folder_has_no_errors_and_shadows_nothing():
    probe = _run([sys.executable, "-c", _PLUGIN_PROBE])
    assert probe.returncode == 0, probe.stderr[-2000:]
    result = _json_out(probe.stdout)
    assert Path(result["folder"]).resolve() == (REPO / "plugins").resolve()
    assert result["errors"] == {}
    assert result["has_es_client"] and "site-packages" in result["elasticsearch"]
    assert result["has_pymisp"] and "site-packages" in result["pymisp"]
