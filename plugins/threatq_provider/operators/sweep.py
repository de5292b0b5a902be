"""Sweep expired IOCs out of the active index, and old versions out of the history.

``now`` defaults to the run's ``data_interval_end``, so a rerun of an old run sweeps as of that
run's time, and a dry run reports the same counts the real run would delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

# Light constants only: parsing a DAG must not import the Elasticsearch client.
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS
from threatq_provider.operators._common import ElasticsearchHookMixin, as_bool, resolve_now

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class _SweepBase(ElasticsearchHookMixin, BaseOperator):
    def __init__(self, *, elasticsearch_conn_id: str = "elasticsearch_default", dry_run: bool = False,
                 now: str | None = None, index_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index_prefix = index_prefix
        self.elasticsearch_conn_id = elasticsearch_conn_id
        self.dry_run = dry_run
        self.now = now


class IocExpirySweepOperator(_SweepBase):
    """Delete from the active index every IOC whose ``threatq.ioc_expired_at`` has passed.

    :param elasticsearch_conn_id: connection of type ``elasticsearch_ecs`` or ``elasticsearch``.
    :param dry_run: count by reason only, delete nothing. (templated)
    :param now: ISO-8601 sweep clock; default the run's ``data_interval_end``. (templated)
    :param index: active index or alias; default :data:`ACTIVE_ALIAS` with ``index_prefix``. (templated)
    :param index_prefix: prefix of every index name (default none: Elastic's names).
    :return: XCom ``{"now", "matched", "deleted", "by_reason", "conflicts", "remaining",
        "passes", "dry_run"}`` (``by_reason`` counted before deleting).
    """

    template_fields: Sequence[str] = ("dry_run", "now", "index")
    ui_color = "#fde8e8"

    def __init__(self, *, index: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index if index is not None else self.index_prefix + ACTIVE_ALIAS

    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.elasticsearch.sweeper import sweep_expired

        try:
            result = sweep_expired(self.hook.get_client(), now=resolve_now(self.now, context),
                                   index=str(self.index), dry_run=as_bool(self.dry_run, "dry_run"))
        finally:
            self.hook.close()
        self.log.info("Expiry sweep: matched %d, deleted %d, by reason %s%s", result["matched"],
                      result["deleted"], result["by_reason"], " (dry run)" if result["dry_run"] else "")
        return result


class HistoryRetentionSweepOperator(_SweepBase):
    """Delete daily history indices older than ``retention`` (Elastic's ILM keeps 5 days).

    :param retention: how long history is kept: ``<n>d``, ``<n>h``, ``<n>m``. (templated)
    :param elasticsearch_conn_id: connection of type ``elasticsearch_ecs`` or ``elasticsearch``.
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

    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.elasticsearch.sweeper import parse_duration, sweep_history
        from threatq_provider.elasticsearch.templates import IndexNames

        try:
            parse_duration(str(self.retention))
        except ValueError as exc:
            raise AirflowFailException(f"task {self.task_id}: {exc}") from None
        try:
            result = sweep_history(self.hook.get_client(), now=resolve_now(self.now, context),
                                   retention=str(self.retention), dry_run=as_bool(self.dry_run, "dry_run"),
                                   prefix=IndexNames(self.index_prefix).history_prefix)
        finally:
            self.hook.close()
        self.log.info("History sweep: deleted %d indices, kept %d", len(result["deleted_indices"]),
                      result["kept_indices"])
        return result
