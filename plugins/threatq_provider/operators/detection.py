"""Keep active IOCs visible to Elastic Security's prebuilt indicator-match rules.

Those rules read only indicators with ``@timestamp`` in the last 30 days; ours is ThreatQ's
``updated_at``. The refresh (:mod:`threatq_provider.elasticsearch.detection_window`) moves the
``@timestamp`` of the few active IOCs about to leave that window to the run's time, and nothing
else. The sweep DAG runs it after each expiry sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

# Light constants only: parsing a DAG must not import the Elasticsearch client.
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS
from threatq_provider.operators._base import HookOperator, elasticsearch_hook
from threatq_provider.operators._common import as_bool, resolve_now

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

#: ``window`` value that turns the refresh off (``@timestamp`` stays ThreatQ's ``updated_at``, as
#: in Elastic's integration).
OFF = "off"


class DetectionWindowRefreshOperator(HookOperator):
    """Refresh ``@timestamp`` of the active IOCs about to leave the rules' look-back window.

    :param elasticsearch_conn_id: connection of type ``elasticsearch_ecs`` or ``elasticsearch``, or
        Airflow's ``opensearch`` (the OpenSearch target; docs/capabilities.md).
    :param window: the rules' window on ``@timestamp``, ``<n>d``/``<n>h``/``<n>m`` (default
        ``30d``, Elastic's prebuilt rules), or ``off``. (templated)
    :param margin: refresh this long before a document would leave the window (default ``2d``). (templated)
    :param dry_run: count what is due, change nothing. (templated)
    :param now: ISO-8601 clock; default the run's ``data_interval_end``. (templated)
    :param index: active index or alias; default :data:`ACTIVE_ALIAS` with ``index_prefix``. (templated)
    :param index_prefix: prefix of every index name (default none: Elastic's names).
    :return: XCom ``{"now", "older_than", "matched", "refreshed", "conflicts", "failed", "dry_run"}``,
        or ``{"off": True}`` when ``window`` is ``off``.
    """

    template_fields: Sequence[str] = ("window", "margin", "dry_run", "now", "index")
    ui_color = "#e8f5e9"

    def __init__(self, *, elasticsearch_conn_id: str = "elasticsearch_default", window: str = "30d",
                 margin: str = "2d", dry_run: Any = False, now: str | None = None, index: str | None = None,
                 index_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.elasticsearch_conn_id = elasticsearch_conn_id
        self.window = window
        self.margin = margin
        self.dry_run = dry_run
        self.now = now
        self.index = index if index is not None else index_prefix + ACTIVE_ALIAS

    @cached_property
    def hook(self) -> ElasticsearchEcsHook:
        """Hook for ``elasticsearch_conn_id`` (Elasticsearch or OpenSearch)."""
        return elasticsearch_hook(self.elasticsearch_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.elasticsearch.detection_window import refresh_detection_window
        from threatq_provider.coerce import parse_duration

        if str(self.window).strip().lower() == OFF:
            self.log.info("Detection window refresh is off: @timestamp stays ThreatQ's updated_at")
            return {"off": True}
        try:
            window = parse_duration(self.window, "window")
            margin = parse_duration(self.margin, "margin", allow_zero=True)
            if not margin < window:
                raise ValueError(f"margin {self.margin} must be shorter than the window {self.window}")
        except ValueError as exc:
            raise AirflowFailException(f"task {self.task_id}: detection window: {exc}") from None
        now, dry_run = resolve_now(self.now, context), as_bool(self.dry_run, "dry_run")
        with self.client(self.hook) as client:
            counts = refresh_detection_window(client, index=str(self.index), now=now, window=window, margin=margin,
                                              dry_run=dry_run)
        self.log.info("Detection window: %d active IOCs older than %s, %d refreshed, %d changed meanwhile, "
                      "failed %s%s", counts.matched, counts.older_than, counts.refreshed, counts.conflicts,
                      dict(counts.failed), " (dry run)" if counts.dry_run else "")
        if counts.failed:
            raise AirflowFailException(f"detection window refresh: {sum(counts.failed.values())} updates failed: "
                                       f"{dict(counts.failed)}")
        return counts.as_dict()
