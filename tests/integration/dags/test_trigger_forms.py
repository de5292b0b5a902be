"""Every DAG's params make a trigger form that works with its defaults (issue #14).

Airflow 3's UI builds the form from each param's JSON schema (``FlexibleForm/FieldSelector.tsx``):
it marks a field required (``*``, empty refused) unless ``"null"`` is in its type, builds a
multi-select only from a top-level ``examples``/``enum`` of an array, a drop-down from a
string's ``enum``, a date picker from ``format: date-time`` and a one-per-line text box from a
string array. ``WIDGET`` below restates those rules so that each param's widget is pinned here
(fast, no browser); ``tests/browser`` checks the real form.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag


def _types(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def widget(schema: dict) -> str:
    """The field Airflow 3.3's trigger form renders for a param schema (FieldSelector's order)."""
    kind = next((t for t in _types(schema) if t != "null"), "string")
    items = schema.get("items") or {}
    if kind == "boolean":
        return "switch"
    if kind == "string" and schema.get("format") == "date-time":
        return "date-time picker"
    if kind in ("string", "number", "integer") and isinstance(schema.get("enum"), list):
        return "drop-down"
    if kind == "array" and isinstance(schema.get("examples") or schema.get("enum"), list):
        return "multi-select"
    if kind == "array" and items.get("type") in (None, "string"):
        return "one per line"
    if kind == "array":
        return "JSON editor"
    if kind in ("number", "integer"):
        return "number"
    return "text with suggestions" if schema.get("examples") else "text"


EXPECTED = {
    "threatq_indicators_to_elasticsearch": {
        "mode": "drop-down", "collection": "text", "since": "date-time picker", "until": "date-time picker",
        "indicator_types": "multi-select", "statuses": "multi-select", "min_score": "number",
        "sources": "one per line", "tags": "one per line", "ioc_expiration_duration": "text with suggestions",
        "active_statuses": "multi-select", "initial_lookback": "text with suggestions", "dry_run": "switch",
    },
    "threatq_events_to_misp": {
        "event_ids": "one per line", "updated_since": "date-time picker", "updated_until": "date-time picker",
        "event_types": "multi-select", "tags": "one per line", "sources": "one per line", "publish": "switch",
        "distribution": "drop-down", "sharing_group": "text", "initial_lookback": "text with suggestions",
    },
    "threatq_ioc_expiry_sweep": {"dry_run": "switch", "history_retention": "text with suggestions"},
    "threatq_deletion_reconcile": {"dry_run": "switch", "max_delete_percent": "number", "allow_mass_delete": "switch",
                                   "collection": "text"},
    "example_threatq_actions": {
        "value": "text", "type": "drop-down", "status": "drop-down", "source": "text", "event_title": "text",
        "event_type": "text with suggestions",
    },
}


def _schemas(dag) -> dict[str, dict]:
    return {name: dag.params.get_param(name).serialize()["schema"] for name in dag.params}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_each_param_gets_its_widget_a_title_and_a_description(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    schemas = _schemas(dag)
    widgets = {name: widget(schema) for name, schema in schemas.items()}
    assert {name: widgets.get(name) for name in EXPECTED[dag_id]} == EXPECTED[dag_id]
    # A param added later gets a real widget too, never the raw JSON editor.
    assert "JSON editor" not in widgets.values(), widgets
    for name in schemas:
        assert schemas[name].get("title"), f"{dag_id}.{name} has no title (the form would show the raw key)"
        assert dag.params.get_param(name).description, f"{dag_id}.{name} has no description"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_the_defaults_are_a_valid_form_and_empty_means_default(dagbag, dag_id):
    """The form refuses an empty required field; a param whose default is empty must not be required."""
    dag = dagbag.dags[dag_id]
    dag.params.validate()  # the defaults pass the server's check
    for name, schema in _schemas(dag).items():
        default = dag.params.get_param(name).value
        required = "null" not in _types(schema)
        empty = default is None or default == "" or default == [] or isinstance(default, bool)
        assert not (required and empty), f"{dag_id}.{name}: default {default!r} but marked required"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_null_from_an_emptied_field_is_accepted(dagbag, dag_id):
    """An emptied optional field arrives as null (the form never sends "")."""
    dag = dagbag.dags[dag_id]
    params = copy.deepcopy(dag.params)
    optional = [name for name, schema in _schemas(dag).items() if "null" in _types(schema)]
    params.update(dict.fromkeys(optional))
    params.validate()


def test_multi_selects_offer_exactly_what_the_server_accepts(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    dag = dagbag.dags["threatq_indicators_to_elasticsearch"]
    schemas = _schemas(dag)
    for name in ("indicator_types", "active_statuses"):
        assert schemas[name]["examples"] == schemas[name]["items"]["enum"]
    assert len(schemas["indicator_types"]["examples"]) == 34
    assert "Whitelisted" not in schemas["active_statuses"]["examples"]
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match="param indicator_types"):
        params.update({"indicator_types": ["IP Adress"]})
        params.validate()


def test_event_ids_take_integers_or_the_forms_lines(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    from threatq_provider.operators.share import parse_ids

    dag = dagbag.dags["threatq_events_to_misp"]
    for value in ([12, 15], ["12", "15", ""]):
        params = copy.deepcopy(dag.params)
        params.update({"event_ids": value})
        assert parse_ids(params.validate()["event_ids"]) == [12, 15]
    for bad in (["12a"], [0], ["0"], [1.5]):
        params = copy.deepcopy(dag.params)
        with pytest.raises(ParamValidationError, match="param event_ids"):
            params.update({"event_ids": bad})
            params.validate()


def test_a_null_publish_means_the_default_true(dagbag):
    """The API may send null for an optional switch; for publish that must still publish."""
    from jinja2.nativetypes import NativeEnvironment

    task = dagbag.dags["threatq_events_to_misp"].get_task("share_event")
    template = task.partial_kwargs["publish"]
    render = NativeEnvironment().from_string(template).render
    assert [render(params={"publish": v}) for v in (None, True, False)] == [True, True, False]
