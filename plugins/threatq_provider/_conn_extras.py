"""Reading Airflow connection extras: the one place the hooks look up and parse extra values.

Used by the ThreatQ and Elasticsearch hooks. Each hook keeps its own error type, so the parsers
take a factory that builds the hook's exception from a reason text. Imports no Airflow.
"""

from __future__ import annotations

from typing import Any, Callable

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n"})
POSITIVE_REQUIRED = "a positive number is required"


def extra_value(extras: dict[str, Any], conn_type: str, key: str) -> Any:
    """The value of an extra, falling back to the legacy ``extra__<conn_type>__<key>`` form.

    :param extras: the connection's ``extra_dejson``.
    :param conn_type: connection type used in the legacy key.
    :param key: plain extra key.
    :return: the value, or ``None`` when absent or empty in both forms.
    """
    value = extras.get(key)
    if value is None or value == "":
        value = extras.get(f"extra__{conn_type}__{key}")
    return None if value == "" else value


def as_bool(value: Any, default: bool, invalid: Callable[[str], Exception], *,
            blank_is_false: bool = False) -> bool:
    """Parse a yes/no extra (``true/false``, ``yes/no``, ``on/off``, ``1/0``, ``y/n``; any case).

    :param value: raw extra value (``None`` → ``default``; a bool is taken as is).
    :param default: result when the value is absent.
    :param invalid: builds the exception to raise from a reason text.
    :param blank_is_false: a value that is blank after stripping means false (else it is invalid).
    :return: the boolean.
    :raises Exception: what ``invalid`` builds, when the value is not a recognised word.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS or (blank_is_false and text == ""):
        return False
    raise invalid("true or false is required")


def as_positive_number(value: Any, default: float, invalid: Callable[[str], Exception], *,
                       cast: type = float, not_a_number: str = POSITIVE_REQUIRED) -> Any:
    """Parse a positive number extra.

    :param value: raw extra value (``None`` or ``""`` → ``cast(default)``).
    :param default: result when the value is absent.
    :param invalid: builds the exception to raise from a reason text.
    :param cast: ``float`` or ``int``.
    :param not_a_number: reason given when the value does not parse.
    :return: the number, of type ``cast``.
    :raises Exception: what ``invalid`` builds, when the value does not parse or is not above zero.
    """
    if value is None or value == "":
        return cast(default)
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise invalid(not_a_number) from None
    if number <= 0:
        raise invalid(POSITIVE_REQUIRED)
    return number
