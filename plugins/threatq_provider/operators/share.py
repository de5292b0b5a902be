"""Share ThreatQ events to MISP: the two actions of ThreatQ's MISP Operation, on Airflow.

* ``ThreatQSelectEventsOperator`` picks the events to share: ids given by hand, or the events
  updated in the run's data interval that match event types / tags / sources.
* ``MispShareEventOperator`` ("Share Event") maps each ThreatQ event with its indicators,
  attributes, adversaries and attachments to a MISP event and upserts it (deterministic UUIDs).
* ``MispSendInvestigationOperator`` ("Send Investigation") sends a ThreatQ investigation with
  its events, indicators and attachments as one MISP event.

Each operator's ``execute`` only orchestrates: what to share is read from ThreatQ by
:class:`~threatq_provider.threatq.sharing.ShareReader`, turned into a MISP event by the pure mapping,
and sent by the exporter; hooks follow :mod:`threatq_provider.operators._base`. The XCom holds
counts (and event ids for the selection), never indicators.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from threatq_provider.coerce import CoercionError, is_unset, parse_int
from threatq_provider.misp.options import OPTION_FIELDS, ShareOptions
from threatq_provider.operators._base import HookOperator, misp_hook, threatq_hook
from threatq_provider.operators._common import fail_fast

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.misp.exporter import ShareResult
    from threatq_provider.misp.hook import MispHook
    from threatq_provider.threatq.hook import ThreatQHook
    from threatq_provider.threatq.sharing import ShareReader


def parse_ids(value: Any, name: str = "event_ids") -> list[int]:
    """ThreatQ ids from an int, a list (blank strings skipped), ``"[1, 2]"``, ``"1,2"`` or ``""`` (rendered templates).

    :param value: the raw value.
    :param name: argument name for the error message.
    :return: ids in the given order without repeats.
    :raises AirflowFailException: for anything that is not a positive integer id (a retry cannot fix it).
    """
    if is_unset(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        except ValueError:
            reason = f"{name}={value!r}: expected a list of ThreatQ ids, e.g. [12, 15]"
            raise AirflowFailException(reason) from None
    if not isinstance(value, list | tuple | set):
        value = [value]
    ids: list[int] = []
    for item in value:
        if isinstance(item, str) and not item.strip():
            continue  # a blank line of the trigger form's one-id-per-line box
        try:
            ident = parse_int(item, name, minimum=1)
        except CoercionError:
            raise AirflowFailException(f"{name}: {item!r} is not a ThreatQ id (a positive integer)") from None
        if ident not in ids:
            ids.append(ident)
    return ids


def parse_names(value: Any) -> list[str]:
    """Names from a list, ``'["a","b"]'``, ``"a,b"`` or empty (rendered templates)."""
    if is_unset(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def _names(items: Any) -> set[str]:
    out = set()
    for item in items or []:
        name = item.get("name") if isinstance(item, Mapping) else item
        if name:
            out.add(str(name).strip().lower())
    return out


def event_matches(event: Mapping[str, Any], *, event_types: Sequence[str], tags: Sequence[str],
                  sources: Sequence[str]) -> bool:
    """Whether an event passes the DAG's filters (each empty filter passes everything).

    :param event: ThreatQ event with ``type``, ``tags`` and ``sources``.
    :param event_types: event type names, any of which must match.
    :param tags: tag names, any of which must be on the event.
    :param sources: source names, any of which must be on the event.
    :return: True when every non-empty filter matches (case-insensitive).
    """
    etype = event.get("type")
    type_name = (etype.get("name") if isinstance(etype, Mapping) else etype) or event.get("type_name") or ""
    if event_types and str(type_name).lower() not in {t.lower() for t in event_types}:
        return False
    if tags and not _names(event.get("tags")) & {t.lower() for t in tags}:
        return False
    return not (sources and not _names(event.get("sources")) & {s.lower() for s in sources})


class ThreatQSelectEventsOperator(HookOperator):
    """Pick the ThreatQ events to share: the given ids, or those updated in the window that match.

    :param threatq_conn_id: ThreatQ connection id. (templated)
    :param window_start: start of the window, included (default: the data interval start). (templated)
    :param window_end: end of the window, excluded (default: the data interval end). (templated)
    :param event_ids: ids to share instead of the window (manual trigger); empty → use the window. (templated)
    :param event_types: event type names to keep; empty keeps all. (templated)
    :param tags: tag names to keep (any); empty keeps all. (templated)
    :param sources: source names to keep (any); empty keeps all. (templated)
    :param max_tasks: most items returned; more events are grouped into lists of ids so the mapped
        share task stays under Airflow's ``max_map_length`` (1024 by default).
    :param events_per_task: most events per mapped share task (default 1: one id per task). Above
        1 the events go in lists of at most that many, so each task's fixed costs (a worker
        process, the ThreatQ token, PyMISP's user and type look-ups) are paid once per list.
    :param spread_over: fewest lists to spread the events over (the share task's parallelism), so a
        small selection still keeps every parallel slot busy; lists are never longer than
        ``events_per_task`` unless ``max_tasks`` requires it.
    :param use_watermark: start the window at the watermark when that is earlier (missed intervals
        are read by the next run), and read the initial look-back when there is none
        (:mod:`threatq_provider.threatq.watermark`); ``ThreatQSaveWatermarkOperator`` moves it after
        the shares succeeded. (templated)
    :param initial_lookback: how far back the first run reads (``<n>d``/``<n>h``/``<n>m``). (templated)
    :return: the event ids, one per mapped share task, or lists of ids when there are more events
        than ``max_tasks`` (the XCom, mapped over by the share task). The window read (and why, the
        gap it closed, the watermark Variable) is the XCom key ``window`` (``None`` for ids given).
    """

    template_fields: Sequence[str] = ("threatq_conn_id", "window_start", "window_end", "event_ids", "event_types",
                                      "tags", "sources", "use_watermark", "initial_lookback")

    def __init__(self, *, threatq_conn_id: str = "threatq_default",
                 window_start: Any = "{{ data_interval_start }}", window_end: Any = "{{ data_interval_end }}",
                 event_ids: Any = None, event_types: Any = (), tags: Any = (), sources: Any = (),
                 max_tasks: int = 1000, events_per_task: int = 1, spread_over: int = 1, use_watermark: Any = False,
                 initial_lookback: Any = "90d", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threatq_conn_id = threatq_conn_id
        self.window_start = window_start
        self.window_end = window_end
        self.event_ids = event_ids
        self.event_types = event_types
        self.tags = tags
        self.sources = sources
        self.max_tasks = max_tasks
        self.events_per_task = events_per_task
        self.spread_over = spread_over
        self.use_watermark = use_watermark
        self.initial_lookback = initial_lookback

    @cached_property
    def hook(self) -> ThreatQHook:
        """Hook for ``threatq_conn_id``."""
        return threatq_hook(self.threatq_conn_id)

    def batches(self, ids: list[int]) -> list[int] | list[list[int]]:
        """One id per item, or ids in lists of at most ``events_per_task`` (balanced over at least
        ``spread_over`` lists), longer only where at most ``max_tasks`` items may remain."""
        per_task = max(1, int(self.events_per_task))
        if per_task == 1 and len(ids) <= self.max_tasks:
            return ids
        size = min(per_task, -(-len(ids) // max(1, int(self.spread_over))))  # ceiling division
        size = max(1, size, -(-len(ids) // self.max_tasks))
        return [ids[i:i + size] for i in range(0, len(ids), size)]

    @fail_fast
    def execute(self, context: Context) -> list[int] | list[list[int]]:
        from threatq_provider.operators import _watermark
        from threatq_provider.operators._common import as_bool
        from threatq_provider.operators.poll import _as_datetime

        ti = context.get("ti")
        given = parse_ids(self.event_ids)
        if given:
            self.log.info("Sharing %d event(s) given by id", len(given))
            if ti is not None:
                ti.xcom_push(key="window", value=None)
            return self.batches(given)
        filters = {"event_types": parse_names(self.event_types), "tags": parse_names(self.tags),
                   "sources": parse_names(self.sources)}
        start = _as_datetime(self.window_start, "window_start")
        end = _as_datetime(self.window_end, "window_end")
        if start is None or end is None or start >= end:
            raise AirflowFailException(f"the window [{self.window_start}, {self.window_end}) is empty or reversed")
        use_watermark = as_bool(self.use_watermark, "use_watermark")
        info: dict[str, Any] | None = None
        with self.client(self.hook) as client:
            if use_watermark:
                dag_id = str(getattr(context.get("dag"), "dag_id", None) or self.dag_id)
                window, info = _watermark.plan(context, dag_id=dag_id, instance=self.hook.instance().name,
                                               mode="events", filters=filters, start=start, end=end,
                                               initial_lookback=self.initial_lookback)
                self.log.info("Reading ThreatQ events %s (watermark Variable %s)", _watermark.describe(info),
                              info["variable"])
                info["polled_at"] = _watermark.iso(datetime.now(timezone.utc))
                start, end = window.start, window.end
            events = client.iter_events(start, end, with_=("type", "tags", "sources"))
            ids = [int(e["id"]) for e in events if event_matches(e, **filters)]
        if info is not None:
            info["events"] = len(ids)
        self.log.info("%d event(s) updated in [%s, %s) match %s", len(ids), start.isoformat(), end.isoformat(),
                      filters)
        if ti is not None:
            ti.xcom_push(key="window", value=info)
        return self.batches(ids)


class ThreatQSaveWatermarkOperator(BaseOperator):
    """Move the watermark of a window once everything read from it is safe (the last task of a DAG).

    Give it ``trigger_rule="none_failed"`` after the tasks that write: it runs when they succeeded or
    had nothing to do, never after a failure, so a failed share is read again by the next run.

    :param window: the ``window`` XCom of ``ThreatQSelectEventsOperator`` (or a poll's ``watermark``
        dict with ``polled_at``); ``None`` (ids given by hand) saves nothing. (templated)
    :return: XCom ``{"window_start", "window_end", "interval_start", "interval_end", "window_kind",
        "gap_closed", "events", "watermark", "watermark_saved", "previous"}``.
    """

    template_fields: Sequence[str] = ("window",)

    def __init__(self, *, window: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.window = window

    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.operators._watermark import describe, save_watermark
        from threatq_provider.operators.report import _as_dict

        info = _as_dict(self.window)
        saved = save_watermark(info or None, polled_at=info.get("polled_at"),
                               run_id=str(context.get("run_id") or ""))
        summary = {
            "window_start": info.get("window_start"), "window_end": info.get("window_end"),
            "interval_start": info.get("interval_start"), "interval_end": info.get("interval_end"),
            "window_kind": info.get("kind"), "gap_closed": info.get("gap"), "events": info.get("events"),
            "watermark": saved.get("watermark"), "watermark_saved": bool(saved.get("saved")),
            "previous": saved.get("previous"),
        }
        if info:
            self.log.info("Window read: %s; watermark %s (%s)", describe(info), summary["watermark"],
                          "moved" if summary["watermark_saved"] else "unchanged")
            if info.get("gap"):
                gap = info["gap"]
                self.log.warning("Gap closed: %s missed interval(s) [%s, %s) were read by this run",
                                 gap.get("intervals"), gap.get("start"), gap.get("end"))
        else:
            self.log.info("No window was read (events given by id): the watermark stays")
        return summary


class _MispShareBase(HookOperator):
    """Common arguments: connection ids and every ``ShareOptions`` field (all templated).

    ``hook`` is the MISP written to, ``threatq_hook`` the ThreatQ read from (see :mod:`._base`).
    """

    template_fields: Sequence[str] = ("threatq_conn_id", "misp_conn_id", *OPTION_FIELDS)
    hook_names = ("hook", "threatq_hook")

    def __init__(self, *, threatq_conn_id: str = "threatq_default", misp_conn_id: str = "misp_default",
                 publish: Any = True, distribution: Any = "your_organisation_only", sharing_group: Any = None,
                 default_analysis: Any = "completed", default_threat_level: Any = "medium", to_ids: Any = True,
                 attachments_to_ids: Any = False, default_ip_type: Any = "ip-src",
                 include_unmapped_attribution: Any = False, send_attachments: Any = True, chunk_size: Any = 1000,
                 send_description: Any = True, active_statuses: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threatq_conn_id = threatq_conn_id
        self.misp_conn_id = misp_conn_id
        self.publish = publish
        self.distribution = distribution
        self.sharing_group = sharing_group
        self.default_analysis = default_analysis
        self.default_threat_level = default_threat_level
        self.to_ids = to_ids
        self.attachments_to_ids = attachments_to_ids
        self.default_ip_type = default_ip_type
        self.include_unmapped_attribution = include_unmapped_attribution
        self.send_attachments = send_attachments
        self.chunk_size = chunk_size
        self.send_description = send_description
        self.active_statuses = active_statuses  # status policy for the IDS flag (None: Active only)

    def share_options(self) -> ShareOptions:
        """The rendered option fields, validated. :raise MispConfigError: naming the field and its choices."""
        return ShareOptions(**{name: getattr(self, name) for name in OPTION_FIELDS})

    @cached_property
    def hook(self) -> MispHook:
        """Hook for ``misp_conn_id``."""
        return misp_hook(self.misp_conn_id)

    @cached_property
    def threatq_hook(self) -> ThreatQHook:
        """Hook for ``threatq_conn_id``."""
        return threatq_hook(self.threatq_conn_id)

    def uuid_scope(self, base_url: str) -> str:
        """What the MISP UUIDs derive from besides the ThreatQ id: the ThreatQ host (``base_url``), as
        always, or ``instance:<name>`` for an instance named on its connection (several instances,
        whose ids overlap, can then share one MISP; the name survives a change of URL)."""
        instance = self.threatq_hook.instance()
        return f"instance:{instance.name}" if instance.explicit else base_url

    def reader(self, client: Any) -> ShareReader:
        """The ThreatQ reader of this run (the task's logger gets its warnings)."""
        from threatq_provider.threatq.sharing import ShareReader

        return ShareReader(client, log=self.log)

    @staticmethod
    def attachments(reader: ShareReader, attachments: Iterable[Mapping[str, Any]],
                    options: ShareOptions) -> Iterator[tuple[Mapping[str, Any], bytes]]:
        """The attachments' contents, downloaded lazily, or none when attachments are not sent."""
        return reader.attachments(attachments) if options.send_attachments else iter(())

    @staticmethod
    def summary(results: list[ShareResult]) -> dict[str, Any]:
        """Totals over several shares, JSON-able and small (the XCom)."""
        skipped: Counter[str] = Counter()
        galaxies: Counter[str] = Counter()
        for r in results:
            skipped.update(r.skipped_unmapped)
            galaxies.update(r.galaxy_clusters)
        return {
            "events": len(results),
            "created": sum(r.created for r in results),
            "added": sum(r.added for r in results),
            "updated": sum(r.updated for r in results),
            "unchanged": sum(r.unchanged for r in results),
            "removed": sum(r.removed for r in results),
            "rejected": sum(len(r.rejected) for r in results),
            "rejected_reasons": [reason for r in results for reason in r.summary()["rejected_reasons"]][:20],
            "skipped_unmapped": dict(skipped),
            "published": sum(r.published for r in results),
            "reports_added": sum(r.reports_added for r in results),
            "reports_updated": sum(r.reports_updated for r in results),
            "reports_removed": sum(r.reports_removed for r in results),
            "reports_unavailable": sum(r.reports_unavailable for r in results),
            "attribute_tags_added": sum(r.attribute_tags_added for r in results),
            "attribute_tags_removed": sum(r.attribute_tags_removed for r in results),
            "galaxy_clusters": dict(sorted(galaxies.items())),
            "event_uuids": [r.event_uuid for r in results][:100],
        }

    def totals(self, results: list[ShareResult], reader: ShareReader) -> dict[str, Any]:
        """:meth:`summary` plus the attachments left out for their size (ids, at most 100)."""
        return {**self.summary(results), "attachments_too_large": len(reader.attachments_too_large),
                "attachments_too_large_ids": reader.attachments_too_large[:100]}


class MispShareEventOperator(_MispShareBase):
    """Share one or many ThreatQ events to MISP ("Share Event"), creating or updating each by UUID.

    :param event_ids: ThreatQ event id(s): an int, a list, or a rendered string such as ``"[1, 2]"``. (templated)
    :param threatq_conn_id: ThreatQ connection id. (templated)
    :param misp_conn_id: MISP connection id. (templated)
    :param publish: publish after create/update. (templated)
    :param distribution: ``your_organisation_only`` | ``this_community_only`` | ``connected_communities`` |
        ``all_communities`` | ``sharing_group``. (templated)
    :param sharing_group: sharing group name when distribution is ``sharing_group``. (templated)
    :param default_analysis: ``initial`` | ``ongoing`` | ``completed``. (templated)
    :param default_threat_level: ``high`` | ``medium`` | ``low`` | ``undefined``. (templated)
    :param to_ids: Send IOCs to IDS. (templated)
    :param attachments_to_ids: Send Attachments to IDS. (templated)
    :param default_ip_type: ``ip-src`` (default, as ThreatQ's MISP Operation) | ``ip-dst``. (templated)
    :param include_unmapped_attribution: send unmatched adversaries / unmapped types as attributes. (templated)
    :param send_attachments: upload the events' attachments. (templated)
    :param chunk_size: attributes per MISP request. (templated)
    :param send_description: send the ThreatQ description as a MISP event report. (templated)
    :return: totals: events, created, added, updated, unchanged, rejected (+ reasons), skipped_unmapped,
        published, reports_added/updated/removed, reports_unavailable (a MISP without event reports),
        attribute_tags_added/removed, event_uuids,
        attachments_too_large (+ their ids, over MAX_ATTACHMENT_BYTES).
    """

    template_fields: Sequence[str] = ("event_ids", *_MispShareBase.template_fields)

    def __init__(self, *, event_ids: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_ids = event_ids

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.misp.exporter import MispExporter
        from threatq_provider.misp.mapping import event_to_misp

        options = self.share_options()
        event_ids = parse_ids(self.event_ids)
        with self.client(self.hook) as misp, self.client(self.threatq_hook) as threatq:
            reader = self.reader(threatq)
            scope = self.uuid_scope(threatq.base_url)
            exporter = MispExporter(misp, options=options)
            results = []
            for event_id in event_ids:
                event = reader.event(event_id)
                mapping = event_to_misp(
                    event, reader.event_indicators(event_id), threatq_host=scope, options=options,
                    attachments=self.attachments(reader, event.get("attachments") or [], options),
                    describe_types=misp.describe_types)
                results.append(exporter.share(mapping))
                self.log.info("ThreatQ event %s → MISP event %s: %s", event_id, results[-1].event_uuid,
                              {k: v for k, v in results[-1].summary().items() if k != "rejected_reasons"})
        return self.totals(results, reader)


class MispSendInvestigationOperator(_MispShareBase):
    """Send a ThreatQ investigation as one MISP event ("Send Investigation").

    The MISP event holds every event's attributes, adversaries, TLP and type tags, every indicator
    of the investigation and of its events, and their attachments. Its UUID derives from the
    investigation id, so re-sending updates it.

    :param investigation: investigation name or id. (templated)
    :param threatq_conn_id: ThreatQ connection id. (templated)
    :param misp_conn_id: MISP connection id. (templated)
    :param publish: and the other share options: as for ``MispShareEventOperator``. (templated)
    :return: totals as for ``MispShareEventOperator`` plus ``investigation_id``.
    """

    template_fields: Sequence[str] = ("investigation", *_MispShareBase.template_fields)

    def __init__(self, *, investigation: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.investigation = investigation

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.misp.exporter import MispExporter
        from threatq_provider.misp.mapping import investigation_to_misp

        options = self.share_options()
        with self.client(self.hook) as misp, self.client(self.threatq_hook) as threatq:
            reader = self.reader(threatq)
            contents = reader.investigation(self.investigation)
            mapping = investigation_to_misp(
                contents.investigation, contents.events, contents.indicators,
                threatq_host=self.uuid_scope(threatq.base_url), options=options,
                attachments=self.attachments(reader, contents.attachments, options),
                describe_types=misp.describe_types)
            result = MispExporter(misp, options=options).share(mapping)
        return {**self.totals([result], reader), "investigation_id": contents.investigation.get("id")}
