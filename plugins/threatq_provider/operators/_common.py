"""Plumbing the operators share: reading rendered template values, the run's clock, stage-file names
and the lazily built Elasticsearch hook.

Light at import time (DAG files import the operators): no client library is imported here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

# What an unset optional argument renders to: nothing, an empty string, or a template that
# printed Python's None.
UNSET = (None, "", "None")


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off", "", "none")


def is_template(value: Any) -> bool:
    """Whether an argument is still a Jinja template (checked at run time, not at parse time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def as_bool(value: Any, name: str = "flag") -> bool:
    """A flag from a bool or a rendered template (``"true"``/``"false"``, ``"1"``/``"0"``, ``"yes"``/``"no"``,
    ``"on"``/``"off"``; any case; empty or ``None`` is false).

    A misspelt word is an error, not "false": ``dry_run="ture"`` must not sweep for real.

    :param value: the raw value.
    :param name: the argument's name, for the error message.
    :return: the flag.
    :raises AirflowFailException: the text is not one of the words above (a retry cannot fix it).
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise AirflowFailException(
            f"{name}={value!r} is not a boolean; use true/false (also 1/0, yes/no, on/off)"
        )
    return bool(value)


def optional(value: Any, cast: type) -> Any:
    """``cast(value)``, or ``None`` when the value is unset (see :data:`UNSET`).

    :param value: the raw (rendered) value.
    :param cast: ``int``, ``float`` or ``str``.
    :return: the cast value or ``None``.
    """
    return None if value in UNSET else cast(value)


def resolve_now(value: Any, context: Context) -> datetime:
    """The run's clock: the given ISO-8601 value, else ``data_interval_end``, ``logical_date``, now.

    :param value: a datetime, an ISO-8601 string (``Z`` accepted) or unset.
    :param context: the task context.
    :return: an aware datetime (UTC when the value has no zone).
    :raises AirflowFailException: the value is not an ISO-8601 date-time (a retry cannot fix it).
    """
    if value in UNSET:
        value = context.get("data_interval_end") or context.get("logical_date")
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise AirflowFailException(f"now is not an ISO-8601 date-time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def sibling_ndjson_path(path: str, tag: str) -> str:
    """``…/ecs.ndjson`` → ``…/ecs.<tag>.ndjson``: a file written beside a stage file.

    :param path: the stage file's URI (with or without the ``.ndjson`` suffix).
    :param tag: what the sibling holds, e.g. ``"rejects"``.
    :return: the sibling's URI.
    """
    return f"{path.removesuffix('.ndjson')}.{tag}.ndjson"


class ElasticsearchHookMixin:
    """Gives an operator with an ``elasticsearch_conn_id`` a ``hook`` built on first use in execute."""

    elasticsearch_conn_id: str

    @cached_property
    def hook(self) -> ElasticsearchEcsHook:
        """Hook for ``elasticsearch_conn_id`` (imports the client only when a task runs)."""
        from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

        return ElasticsearchEcsHook(elasticsearch_conn_id=self.elasticsearch_conn_id)
