"""Sweep expired IOCs out of the active index, and old versions out of the history.

``now`` defaults to the run's ``data_interval_end``, so a rerun of an old run sweeps as of that
run's time, and a dry run reports the same counts the real run would delete. Every IOC the expiry
sweep removes leaves a tombstone first (so no replayed load brings it back); tombstones older than
``tombstone_retention`` are pruned, counted in real time (not the run's clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

# Light constants only: parsing a DAG must not import the Elasticsearch client.
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS, TOMBSTONE_INDEX
from threatq_provider.operators._base import HookOperator, elasticsearch_hook
from threatq_provider.operators._common import as_bool, fail_fast, resolve_now

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook


class _SweepBase(HookOperator):
    def __init__(self, *, elasticsearch_conn_id: str = "elasticsearch_default", dry_run: bool = False,
                 now: str | None = None, index_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index_prefix = index_prefix
        self.elasticsearch_conn_id = elasticsearch_conn_id
        self.dry_run = dry_run
        self.now = now

    @cached_property
    def hook(self) -> ElasticsearchEcsHook:
        """Hook for ``elasticsearch_conn_id`` (Elasticsearch or OpenSearch)."""
        return elasticsearch_hook(self.elasticsearch_conn_id)


class IocExpirySweepOperator(_SweepBase):
    """Delete from the active index every IOC whose ``threatq.ioc_expired_at`` has passed.

    :param elasticsearch_conn_id: connection of type ``elasticsearch_ecs`` or ``elasticsearch``, or
        Airflow's ``opensearch`` (the OpenSearch target; docs/capabilities.md).
    :param dry_run: count by reason only, delete nothing. (templated)
    :param now: ISO-8601 sweep clock; default the run's ``data_interval_end``. (templated)
    :param index: active index or alias; default :data:`ACTIVE_ALIAS` with ``index_prefix``. (templated)
    :param tombstone_index: where tombstones go; default :data:`TOMBSTONE_INDEX` with
        ``index_prefix``. (templated)
    :param tombstone_retention: prune tombstones older than this, ``<n>d``/``<n>h``/``<n>m``
        (default ``30d``; keep it longer than the stage retention, which bounds what a replay
        can load). (templated)
    :param index_prefix: prefix of every index name (default none: Elastic's names).
    :return: XCom ``{"now", "matched", "deleted", "by_reason", "conflicts", "remaining",
        "passes", "dry_run", "tombstones", "tombstone_failures", "tombstones_pruned"}``
        (``by_reason`` counted before deleting; ``tombstones_pruned`` counts what would go on a
        dry run).
    """

    template_fields: Sequence[str] = ("dry_run", "now", "index", "tombstone_index", "tombstone_retention")
    ui_color = "#fde8e8"

    def __init__(self, *, index: str | None = None, tombstone_index: str | None = None,
                 tombstone_retention: str = "30d", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index if index is not None else self.index_prefix + ACTIVE_ALIAS
        self.tombstone_index = tombstone_index if tombstone_index is not None else self.index_prefix + TOMBSTONE_INDEX
        self.tombstone_retention = tombstone_retention

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.coerce import parse_duration
        from threatq_provider.elasticsearch.sweeper import sweep_expired, sweep_tombstones

        dry_run = as_bool(self.dry_run, "dry_run")
        try:
            parse_duration(self.tombstone_retention, "tombstone_retention")
        except ValueError as exc:
            raise AirflowFailException(f"task {self.task_id}: {exc}") from None
        now = resolve_now(self.now, context)
        with self.client(self.hook) as client:
            result = sweep_expired(client, now=now, index=str(self.index),
                                   dry_run=dry_run, tombstone_index=str(self.tombstone_index))
            pruned = sweep_tombstones(client, now=datetime.now(timezone.utc), dry_run=dry_run,
                                      retention=str(self.tombstone_retention), index=str(self.tombstone_index))
        result["tombstones_pruned"] = pruned["pruned"]
        self.log.info("Expiry sweep: matched %d, deleted %d (tombstones %d), by reason %s; %d old tombstones "
                      "pruned%s", result["matched"], result["deleted"], result["tombstones"], result["by_reason"],
                      pruned["pruned"], " (dry run)" if result["dry_run"] else "")
        return result


class HistoryRetentionSweepOperator(_SweepBase):
    """Delete daily history indices older than ``retention`` (Elastic's ILM keeps 5 days).

    :param retention: how long history is kept: ``<n>d``, ``<n>h``, ``<n>m``. (templated)
    :param elasticsearch_conn_id: connection of type ``elasticsearch_ecs`` or ``elasticsearch``, or
        Airflow's ``opensearch`` (the OpenSearch target; docs/capabilities.md).
    :param dry_run: list only, delete nothing. (templated)
    :param now: ISO-8601 sweep clock; default the run's ``data_interval_end``. (templated)
    :param index_prefix: prefix of every index name (default none: Elastic's names).
    :return: XCom ``{"cutoff", "retention", "deleted_indices", "kept_indices", "dry_run"}``.
    """

    template_fields: Sequence[str] = ("retention", "dry_run", "now")
    ui_color = "#fde8e8"

    def __init__(self, *, retention: str = "5d", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retention = retention

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.coerce import parse_duration
        from threatq_provider.elasticsearch.sweeper import sweep_history
        from threatq_provider.elasticsearch.templates import IndexNames

        try:
            parse_duration(self.retention, "retention")
        except ValueError as exc:
            raise AirflowFailException(f"task {self.task_id}: {exc}") from None
        now, dry_run = resolve_now(self.now, context), as_bool(self.dry_run, "dry_run")
        with self.client(self.hook) as client:
            result = sweep_history(client, now=now, retention=str(self.retention), dry_run=dry_run,
                                   prefix=IndexNames(self.index_prefix).history_prefix)
        self.log.info("History sweep: deleted %d indices, kept %d", len(result["deleted_indices"]),
                      result["kept_indices"])
        return result
