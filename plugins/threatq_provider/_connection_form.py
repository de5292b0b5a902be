"""Connection forms for Airflow 3.1, built from the declarative form in provider_info.

Airflow 3.2+ renders the form from provider info (``conn-fields`` / ``ui-field-behaviour``) and
skips the hook methods when those keys exist. Airflow 3.1 only knows the hook classmethods
``get_connection_form_widgets`` / ``get_ui_field_behaviour`` (its UI API reads them with wtforms
and Flask-AppBuilder mocked). The hooks delegate to this module so both versions show the same
form from one definition. wtforms/FAB are imported inside the functions: never at module import.

The hooks get the two classmethods from the :func:`connection_form` class decorator rather than
from a mixin: Airflow 3.1's providers manager only calls them when they are in the hook class's
own ``__dict__``, which the decorator writes to.
"""

from __future__ import annotations

from typing import Any, TypeVar

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


HookClass = TypeVar("HookClass", bound=type)


def connection_form(hook_class: HookClass) -> HookClass:
    """Class decorator: give a hook Airflow 3.1's two form classmethods, read from provider info
    for the hook's ``conn_type`` (3.2+ reads provider info itself and skips them)."""

    def get_connection_form_widgets(cls: type) -> dict[str, Any]:
        return form_widgets(cls.conn_type)  # type: ignore[attr-defined]

    def get_ui_field_behaviour(cls: type) -> dict[str, Any]:
        return field_behaviour(cls.conn_type)  # type: ignore[attr-defined]

    hook_class.get_connection_form_widgets = classmethod(get_connection_form_widgets)  # type: ignore[attr-defined]
    hook_class.get_ui_field_behaviour = classmethod(get_ui_field_behaviour)  # type: ignore[attr-defined]
    return hook_class
