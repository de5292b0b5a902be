"""Sweep expired IOCs out of the active index, and old versions out of the history.

``now`` defaults to the run's ``data_interval_end``, so a rerun of an old run sweeps as of that
run's time, and a dry run reports the same counts the real run would delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

# Light constants only: parsing a DAG must not import the Elasticsearch client.
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def resolve_now(value: Any, context: Context) -> datetime:
    """The sweep clock: the given ISO-8601 value, else ``data_interval_end``, ``logical_date``, now."""
    if value in (None, "", "None"):
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


class _SweepBase(BaseOperator):
    def __init__(self, *, elasticsearch_conn_id: str = "elasticsearch_default", dry_run: bool = False,
                 now: str | None = None, index_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index_prefix = index_prefix
        self.elasticsearch_conn_id = elasticsearch_conn_id
        self.dry_run = dry_run
        self.now = now

    @cached_property
    def hook(self) -> ElasticsearchEcsHook:
        from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

        return ElasticsearchEcsHook(elasticsearch_conn_id=self.elasticsearch_conn_id)


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

        result = sweep_expired(self.hook.get_client(), now=resolve_now(self.now, context),
                               index=str(self.index), dry_run=_as_bool(self.dry_run))
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
        result = sweep_history(self.hook.get_client(), now=resolve_now(self.now, context),
                               retention=str(self.retention), dry_run=_as_bool(self.dry_run),
                               prefix=IndexNames(self.index_prefix).history_prefix)
        self.log.info("History sweep: deleted %d indices, kept %d", len(result["deleted_indices"]),
                      result["kept_indices"])
        return result
