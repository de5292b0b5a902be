"""Connection forms for Airflow 3.1, built from the declarative form in provider_info.

Airflow 3.2+ renders the form from provider info (``conn-fields`` / ``ui-field-behaviour``) and
skips the hook methods when those keys exist. Airflow 3.1 only knows the hook classmethods
``get_connection_form_widgets`` / ``get_ui_field_behaviour`` (its UI API reads them with wtforms
and Flask-AppBuilder mocked). The hooks delegate to this module so both versions show the same
form from one definition. wtforms/FAB are imported inside the functions: never at module import.

Each hook defines the two classmethods itself instead of inheriting them from a mixin: Airflow
3.1's providers manager only calls them when they are in the hook class's own ``__dict__``.
"""

from __future__ import annotations

from typing import Any

from threatq_provider.provider_info import PROVIDER_INFO


def _connection_type(conn_type: str) -> dict[str, Any]:
    (conf,) = [c for c in PROVIDER_INFO["connection-types"] if c["connection-type"] == conn_type]
    return conf


def form_widgets(conn_type: str) -> dict[str, Any]:
    """wtforms fields for Airflow 3.1 from the ``conn-fields`` of ``conn_type``.

    :param conn_type: connection type as declared in provider info.
    :return: field name -> unbound wtforms field (classes Airflow 3.1 accepts: String, Password,
        Integer, Boolean).
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, PasswordField, StringField
    from wtforms.validators import Optional

    widgets: dict[str, Any] = {}
    for name, field in _connection_type(conn_type)["conn-fields"].items():
        schema = field["schema"]
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        label = lazy_gettext(field["label"])
        text = {"description": field.get("description", "")}
        if "boolean" in types:
            widgets[name] = BooleanField(label, default=schema.get("default", False), **text)
        elif schema.get("format") == "password":
            widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), **text)
        elif "integer" in types:
            widgets[name] = IntegerField(label, validators=[Optional()], widget=BS3TextFieldWidget(),
                                         default=schema.get("default"), **text)
        else:  # strings and numbers (3.1 has no float field class): the hooks parse the text
            widgets[name] = StringField(label, widget=BS3TextFieldWidget(), default=schema.get("default"),
                                        **text)
    return widgets


def field_behaviour(conn_type: str) -> dict[str, Any]:
    """The ``ui-field-behaviour`` of ``conn_type`` in the key spelling Airflow 3.1 expects.

    :param conn_type: connection type as declared in provider info.
    :return: dict with ``hidden_fields``, ``relabeling`` and ``placeholders``.
    """
    behaviour = _connection_type(conn_type).get("ui-field-behaviour", {})
    return {key.replace("-", "_"): value for key, value in behaviour.items()}
