"""Provider metadata: what ``get_provider_info()`` declares, and the forms Airflow's providers
manager builds from it in this process. Airflow's own processes (CLI, UI API, plugin loader) are
checked in tests/component/test_provider_registration.py."""

from __future__ import annotations

from pathlib import Path

from threatq_provider import get_provider_info

REPO = Path(__file__).resolve().parents[2]


def test_provider_info_declares_threatq_connection_type_with_its_fields():
    info = get_provider_info()
    (threatq,) = [c for c in info["connection-types"] if c["connection-type"] == "threatq"]
    assert threatq["hook-class-name"] == "threatq_provider.threatq.hook.ThreatQHook"
    assert set(threatq["conn-fields"]) == {"client_id", "client_secret", "verify_tls", "ca_bundle", "proxy",
                                           "timeout", "page_size", "allow_insecure_http", "ui_base_url", "instance"}
    assert threatq["conn-fields"]["client_secret"]["schema"]["format"] == "password"


def test_every_public_operator_and_hook_module_is_declared():
    package = REPO / "plugins" / "threatq_provider"
    info = get_provider_info()
    for kind, files in (("operators", (package / "operators").glob("*.py")),
                        ("hooks", package.glob("*/hook.py"))):
        declared = {module for entry in info[kind] for module in entry["python-modules"]}
        public = {".".join(("threatq_provider", *path.relative_to(package).with_suffix("").parts))
                  for path in files if not path.name.startswith("_")}
        assert declared == public, kind


_THREATQ_EXTRAS = ("client_id", "client_secret", "verify_tls", "ca_bundle", "proxy", "timeout", "page_size",
                   "allow_insecure_http")


def test_every_connection_type_has_the_same_plain_http_opt_in_off_by_default():
    from threatq_provider._conn_extras import ALLOW_INSECURE_HTTP

    for conn_type in get_provider_info()["connection-types"]:
        field = conn_type["conn-fields"][ALLOW_INSECURE_HTTP]
        assert field["schema"] == {"type": "boolean", "default": False}, conn_type["connection-type"]


def test_providers_manager_exposes_connection_form():
    from airflow import __version__ as airflow_version
    from airflow.providers_manager import ProvidersManager
    from packaging.version import Version

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    if Version(airflow_version) >= Version("3.2"):
        # 3.2+ reads conn-fields / ui-field-behaviour from provider info, no wtforms needed.
        for key in _THREATQ_EXTRAS:
            assert f"extra__threatq__{key}" in widgets
        assert manager.field_behaviours["threatq"]["relabeling"]["host"] == "ThreatQ URL"
    else:
        # 3.1 ignores conn-fields and builds forms only from the hook classmethods, which import
        # wtforms/Flask-AppBuilder; outside the UI API (which mocks them, see the next test) and
        # without the FAB provider installed, it registers no form for our hooks.
        assert not any(key.startswith("extra__threatq__") for key in widgets)
        assert "threatq" not in manager.field_behaviours
