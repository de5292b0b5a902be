"""Remove from the active index the IOCs deleted in ThreatQ (:mod:`threatq_provider.elasticsearch.reconcile`).

A short recipe: list ThreatQ's indicator ids (ids only, keyset paging), merge them with the active
index's ids of the same ThreatQ instance, and tombstone then delete what ThreatQ no longer has,
counted by reason (``deleted_in_threatq``). With ``collection`` (an index fed in collection mode), the
ids kept are the data collection's members: an IOC dropped from it leaves too
(``dropped_from_collection``). A dry run only counts. Over the safety limit the task
fails without retry and removes nothing (a retry would find the same), unless
``allow_mass_delete`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from threatq_provider.coerce import is_unset, parse_duration

# Light constants only: parsing a DAG must not import the Elasticsearch client.
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS, TOMBSTONE_INDEX
from threatq_provider.operators._base import HookOperator, elasticsearch_hook, threatq_hook
from threatq_provider.operators._common import as_bool, fail_fast, optional

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook
    from threatq_provider.threatq.hook import ThreatQHook


def _member_ids(pages: Any, collection: str) -> Any:
    """The ids of a data collection's feed pages (a row without one fails the run: nothing removed)."""
    for page in pages:
        for row in page.indicators:
            try:
                yield int(row["id"])
            except (KeyError, TypeError, ValueError):
                raise AirflowFailException(f"data collection {collection}: a row has no integer id") from None


class ThreatQDeletionReconcileOperator(HookOperator):
    """Take the IOCs that ThreatQ no longer has out of the active index.

    :param threatq_conn_id: the ThreatQ connection (its instance selects the documents checked).
    :param elasticsearch_conn_id: connection of type ``elasticsearch_ecs`` or ``elasticsearch``.
    :param dry_run: count only, remove nothing. (templated)
    :param max_delete_percent: refuse to remove more than this share (in %) of the instance's active
        IOCs in one run (default 10). (templated)
    :param allow_mass_delete: remove even above ``max_delete_percent`` (after checking that ThreatQ
        really lost them). (templated)
    :param margin: documents updated this close to the start of ThreatQ's listing are left for the
        next run: ``<n>d``/``<n>h``/``<n>m``/``<n>s`` (default ``1h``). (templated)
    :param page_size: ids per ThreatQ request (default: the connection's ``page_size``). (templated)
    :param collection: a data collection's hash: keep its members only, for an active index fed by
        that collection alone (collection mode); empty = every indicator ThreatQ has. (templated)
    :param index_prefix: prefix of every index name (default none: Elastic's names).
    :return: XCom ``{"instance", "collection", "existing_ids" (with a collection), "active", "checked",
        "threatq_ids", "missing", "deleted", "conflicts",
        "failed", "tombstones", "tombstone_failures", "by_reason", "sample_ids" (first 100 ThreatQ ids),
        "limit", "max_delete_percent", "dry_run", "refused", "started_at"}``.
    """

    template_fields: Sequence[str] = ("dry_run", "max_delete_percent", "allow_mass_delete", "margin", "page_size",
                                      "collection")
    ui_color = "#fde8e8"
    #: ``hook`` is the index written to, ``threatq_hook`` the ThreatQ read from (see :mod:`._base`).
    hook_names = ("hook", "threatq_hook")

    def __init__(self, *, threatq_conn_id: str = "threatq_default",
                 elasticsearch_conn_id: str = "elasticsearch_default", dry_run: Any = False,
                 max_delete_percent: Any = 10, allow_mass_delete: Any = False, margin: Any = "1h",
                 page_size: Any = None, index_prefix: str = "", collection: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threatq_conn_id = threatq_conn_id
        self.elasticsearch_conn_id = elasticsearch_conn_id
        self.dry_run = dry_run
        self.max_delete_percent = max_delete_percent
        self.allow_mass_delete = allow_mass_delete
        self.margin = margin
        self.page_size = page_size
        self.index_prefix = index_prefix
        self.collection = collection

    @cached_property
    def hook(self) -> ElasticsearchEcsHook:
        """Hook for ``elasticsearch_conn_id`` (Elasticsearch or OpenSearch)."""
        return elasticsearch_hook(self.elasticsearch_conn_id)

    @cached_property
    def threatq_hook(self) -> ThreatQHook:
        """Hook for ``threatq_conn_id``."""
        return threatq_hook(self.threatq_conn_id)

    def _arguments(self) -> dict[str, Any]:
        try:
            percent = float(10 if is_unset(self.max_delete_percent) else self.max_delete_percent)
            margin = parse_duration(self.margin or "1h", "margin", allow_zero=True)
            page_size = optional(self.page_size, int)
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(f"task {self.task_id}: {exc}") from None
        if not 0 <= percent <= 100:
            raise AirflowFailException(f"max_delete_percent must be between 0 and 100; got {percent:g}")
        collection = None if is_unset(self.collection) else str(self.collection).strip() or None
        return {"dry_run": as_bool(self.dry_run, "dry_run"), "max_delete_percent": percent,
                "allow_mass_delete": as_bool(self.allow_mass_delete, "allow_mass_delete"), "margin": margin,
                "page_size": page_size, "collection": collection}

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from threatq_provider.elasticsearch.errors import ReconcileLimitExceeded
        from threatq_provider.elasticsearch.reconcile import reconcile_deletions, sorted_id_pages

        args = self._arguments()
        instance = self.threatq_hook.instance()
        collection, page_size = args.pop("collection"), args.pop("page_size")
        try:
            with self.client(self.threatq_hook) as threatq, self.client(self.hook) as index:
                started_at = datetime.now(UTC)  # before ThreatQ's first request
                ids = threatq.iter_indicator_ids(page_size=page_size)
                if collection is not None:
                    # The feed comes in updated_at order: sorted (externally) for the merge.
                    pages = threatq.iter_collection_pages(collection, page_size=page_size, fields=("id",))
                    members = sorted_id_pages(_member_ids(pages, collection))
                    args["existing_id_pages"], ids = ids, members
                result = reconcile_deletions(
                    index, ids, started_at=started_at, index=self.index_prefix + ACTIVE_ALIAS,
                    tombstone_index=self.index_prefix + TOMBSTONE_INDEX, instance=instance.name,
                    explicit_instance=instance.explicit, **args)
        except ReconcileLimitExceeded as exc:
            raise AirflowFailException(str(exc)) from exc
        result["instance"], result["collection"] = instance.name, collection
        self.log.info("Deletion reconciliation (%s%s): %d active IOCs, %d ids in ThreatQ%s, %d no longer there %s, "
                      "%d removed (tombstones %d, conflicts %d)%s; first ids %s", instance.name,
                      f", collection {collection}" if collection else "", result["active"], result["threatq_ids"],
                      " (the collection's members)" if collection else "", result["missing"], result["by_reason"],
                      result["deleted"], result["tombstones"], result["conflicts"],
                      " (dry run)" if result["dry_run"] else "", result["sample_ids"][:20])
        return result
