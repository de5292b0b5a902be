"""The seven actions of the ThreatQ plugin for Rapid7 InsightConnect, as Airflow operators.

Inputs and outputs follow the plugin's spec (1.0.2). Each return value is the task's XCom:

=========================  ======================================  ============================
operator                   inputs (all templated)                  XCom
=========================  ======================================  ============================
ThreatQSearchIndicators…   ``indicator`` (dict of filters),        ``{"total", "data"}``
                           ``limit``
ThreatQSearchOperator      ``query``, ``limit`` (10)               ``{"results"}``
ThreatQListEvents…         ``event`` (dict of filters), ``limit``  ``{"total", "data"}``
ThreatQCreateIndicator…    ``status``, ``source``, ``type``,       ``{"id"}``
                           ``value``
ThreatQCreateEvent…        ``title``, ``type``, ``date``,          ``{"id"}``
                           ``source``, ``description``
ThreatQGetIndicator…       ``indicator_id``, ``with_``             ``{"data"}``
ThreatQGetEvent…           ``event_id``, ``with_``                 ``{"data"}``
=========================  ======================================  ============================

Names departing from the plugin: its ``id`` input is ``indicator_id``/``event_id`` here and
``with`` is ``with_`` (a Python keyword). ``limit`` on the two list actions is an addition
(the plugin returned the server's default page). Create Event looks the event up before
creating it on a task retry, so a lost answer never leaves a duplicate event (see the class).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from threatq_provider.operators._base import HookOperator, threatq_hook
from threatq_provider.operators._common import fail_fast

if TYPE_CHECKING:
    from threatq_provider.threatq.hook import ThreatQHook

# Literal rather than ThreatQHook.default_conn_name: DAG files importing these operators stay
# light at parse time (the hook pulls in requests only when a task runs).
DEFAULT_CONN_ID = "threatq_default"


class _ThreatQActionOperator(HookOperator):
    """Shared plumbing: the connection id and the hook (the pattern of :mod:`._base`)."""

    ui_color = "#e8f0fb"

    def __init__(self, *, threatq_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threatq_conn_id = threatq_conn_id

    @cached_property
    def hook(self) -> ThreatQHook:
        """Hook for ``threatq_conn_id``, built on first use in ``execute``."""
        return threatq_hook(self.threatq_conn_id)

    def _run(self, action: str, **kwargs: Any) -> dict[str, Any]:
        with self.client(self.hook) as client:
            return getattr(client, action)(**kwargs)


class ThreatQSearchIndicatorsOperator(_ThreatQActionOperator):
    """Search Indicators: indicators whose fields equal the given filters.

    :param indicator: filters, keys of the plugin's ``indicator`` type (``id``, ``value``,
        ``class``, ``hash``, ``type_id``, ``status_id``, ``created_at``, ``updated_at``,
        ``last_detected_at``), plus ``type``/``status`` by name. (templated)
    :param limit: maximum rows; server default if ``None``. (templated)
    :param threatq_conn_id: ThreatQ connection id.
    :return: ``{"total": int, "data": [indicator]}``.
    """

    template_fields: Sequence[str] = ("indicator", "limit", "threatq_conn_id")

    def __init__(self, *, indicator: dict[str, Any] | None = None, limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.indicator = indicator
        self.limit = limit

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        result = self._run("search_indicators", indicator=self.indicator,
                           limit=int(self.limit) if self.limit not in (None, "") else None)
        self.log.info("ThreatQ search indicators: %d of %d returned", len(result["data"]), result["total"])
        return result


class ThreatQSearchOperator(_ThreatQActionOperator):
    """Search: ThreatQ's global search across all objects.

    :param query: search text. (templated)
    :param limit: maximum number of results (default 10). (templated)
    :param threatq_conn_id: ThreatQ connection id.
    :return: ``{"results": [{"id", "object", "value"}]}``.
    """

    template_fields: Sequence[str] = ("query", "limit", "threatq_conn_id")

    def __init__(self, *, query: str, limit: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.query = query
        self.limit = limit

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        result = self._run("search", query=self.query, limit=int(self.limit))
        self.log.info("ThreatQ search: %d result(s)", len(result["results"]))
        return result


class ThreatQListEventsOperator(_ThreatQActionOperator):
    """List Events: events whose fields equal the given filters.

    :param event: filters, keys of the plugin's ``event`` type (``id``, ``title``, ``type_id``,
        ``description``, ``hash``, ``happened_at``, ``created_at``, ``updated_at``), plus
        ``type`` by name. (templated)
    :param limit: maximum rows; server default if ``None``. (templated)
    :param threatq_conn_id: ThreatQ connection id.
    :return: ``{"total": int, "data": [event]}``.
    """

    template_fields: Sequence[str] = ("event", "limit", "threatq_conn_id")

    def __init__(self, *, event: dict[str, Any] | None = None, limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event = event
        self.limit = limit

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        result = self._run("list_events", event=self.event,
                           limit=int(self.limit) if self.limit not in (None, "") else None)
        self.log.info("ThreatQ list events: %d of %d returned", len(result["data"]), result["total"])
        return result


class ThreatQCreateIndicatorOperator(_ThreatQActionOperator):
    """Create Indicator (an existing type+value is returned, not duplicated).

    :param status: Active, Expired, Indirect, Review or Whitelisted. (templated)
    :param source: source name. (templated)
    :param type: indicator type name; ``"Eamil Attachment"`` is read as ``"Email Attachment"``. (templated)
    :param value: indicator value. (templated)
    :param threatq_conn_id: ThreatQ connection id.
    :return: ``{"id": int}``.
    """

    template_fields: Sequence[str] = ("status", "source", "type", "value", "threatq_conn_id")

    def __init__(self, *, status: str, source: str, type: str, value: str, **kwargs: Any) -> None:  # noqa: A002
        super().__init__(**kwargs)
        self.status = status
        self.source = source
        self.type = type
        self.value = value

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        result = self._run("create_indicator", status=self.status, source=self.source, type=self.type,
                           value=self.value)
        self.log.info("ThreatQ indicator %s (%s) has id %s", self.type, self.status, result["id"])
        return result


class ThreatQCreateEventOperator(_ThreatQActionOperator):
    """Create Event, safe to retry.

    ThreatQ has no idempotency key for ``POST /api/events``: when a POST took effect but its
    answer was lost (connection reset, proxy timeout), the try fails and a plain retry would
    create a second event. So on a retry (the task instance's ``try_number`` > 1) the operator
    first looks the event up (:meth:`~threatq_provider.threatq.client.ThreatQClient.find_event`:
    same title, type and ``happened_at``, and the source among its sources) and, when ThreatQ has
    it, returns that event's id instead of creating another, logging that it did. The first try
    never pays for the lookup. An identical event made by someone else before the retry is
    reused too: title, type, date and source are all ThreatQ lets us compare.

    :param title: event title. (templated)
    :param type: event type name, e.g. ``"Malware"``. (templated)
    :param date: when it happened: ISO 8601 string or datetime, UTC if no zone. (templated)
    :param source: source name. (templated)
    :param description: optional description (HTML allowed). (templated)
    :param threatq_conn_id: ThreatQ connection id.
    :return: ``{"id": int}``.
    """

    template_fields: Sequence[str] = ("title", "type", "date", "source", "description", "threatq_conn_id")

    def __init__(self, *, title: str, type: str, date: Any, source: str,  # noqa: A002
                 description: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.type = type
        self.date = date
        self.source = source
        self.description = description

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        try_number = _try_number(context)
        with self.client(self.hook) as client:
            if try_number > 1:
                found = client.find_event(title=self.title, type=self.type, date=self.date,
                                          source=self.source)
                if found is not None:
                    self.log.info("ThreatQ event of type %s already exists with id %s (try %d): an earlier "
                                  "try likely created it and lost the answer; reusing it instead of "
                                  "creating a duplicate", self.type, found["id"], try_number)
                    return {"id": found["id"]}
                self.log.info("ThreatQ event of type %s not found on try %d; creating it",
                              self.type, try_number)
            result = client.create_event(title=self.title, type=self.type, date=self.date,
                                         source=self.source, description=self.description)
        self.log.info("ThreatQ event of type %s created with id %s", self.type, result["id"])
        return result


def _try_number(context: Any) -> int:
    """The running try (1 on the first), from the context's task instance; 1 when there is none."""
    ti = (context.get("ti") or context.get("task_instance")) if hasattr(context, "get") else None
    try:
        return int(getattr(ti, "try_number", None) or 1)
    except (TypeError, ValueError):
        return 1


class ThreatQGetIndicatorOperator(_ThreatQActionOperator):
    """Get Indicator: one indicator with the related classes asked for.

    :param indicator_id: ThreatQ indicator id (the plugin's ``id``). (templated)
    :param with_: related classes to embed, e.g. ``["adversaries", "attachments"]`` (the
        plugin's ``with``). (templated)
    :param threatq_conn_id: ThreatQ connection id.
    :return: ``{"data": {...}}``.
    """

    template_fields: Sequence[str] = ("indicator_id", "with_", "threatq_conn_id")

    def __init__(self, *, indicator_id: int | str, with_: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.indicator_id = indicator_id
        self.with_ = with_

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        result = self._run("get_indicator", indicator_id=self.indicator_id, with_=self.with_)
        self.log.info("ThreatQ indicator %s fetched", self.indicator_id)
        return result


class ThreatQGetEventOperator(_ThreatQActionOperator):
    """Get Event: one event with the related classes asked for.

    :param event_id: ThreatQ event id (the plugin's ``id``). (templated)
    :param with_: related classes to embed, e.g. ``["adversaries", "attachments"]``. (templated)
    :param threatq_conn_id: ThreatQ connection id.
    :return: ``{"data": {...}}``.
    """

    template_fields: Sequence[str] = ("event_id", "with_", "threatq_conn_id")

    def __init__(self, *, event_id: int | str, with_: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_id = event_id
        self.with_ = with_

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        result = self._run("get_event", event_id=self.event_id, with_=self.with_)
        self.log.info("ThreatQ event %s fetched", self.event_id)
        return result
