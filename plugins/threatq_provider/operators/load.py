"""Load staged ECS NDJSON into Elasticsearch: the active-IOC index and the history.

A short recipe over :mod:`threatq_provider.elasticsearch`: install the index templates
(idempotent, skipped when current), stream the stage file through
:func:`~threatq_provider.elasticsearch.loader.load_ndjson` with the dead letter beside it (versions
from ``updated_at`` and the poll's ``observed_at``, tombstones checked), then
fail the task (no retry: ``AirflowFailException`` chained to ``RejectThresholdExceeded``) when
rejects exceed the threshold. A document refused by the active index or by the history counts
(once if both refused it), and the message names the two numbers apart. The check comes after
the dead letter is written and closed, so nothing accepted is lost and every reject can be
inspected.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from threatq_provider.coerce import CoercionError, is_unset, parse_int, parse_iso

# Light constants only: parsing a DAG must not import the Elasticsearch client.
from threatq_provider.elasticsearch.names import (
    ACTIVE_ALIAS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CHUNK_DOCS,
    DEFAULT_MAX_IN_FLIGHT,
)
from threatq_provider.operators._base import HookOperator, elasticsearch_hook
from threatq_provider.operators._common import (
    fail_fast,
    optional,
    sibling_ndjson_path,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

#: URI of the Asset that a load updates; the DAG declares ``outlets=[Asset(ACTIVE_INDEX_ASSET_URI)]``.
ACTIVE_INDEX_ASSET_URI = f"elasticsearch://elasticsearch_default/{ACTIVE_ALIAS}"


def default_dead_letter_path(source_path: str) -> str:
    """``…/ecs.ndjson`` → ``…/ecs.dead-letter.ndjson`` (beside the stage file)."""
    return sibling_ndjson_path(source_path, "dead-letter")


def _observed_at(value: Any) -> datetime | None:
    """The poll's time from a datetime or a rendered ISO-8601 string; ``None`` when unset."""
    if is_unset(value):
        return None
    try:
        return parse_iso(value, "observed_at")
    except CoercionError as exc:
        raise AirflowFailException(str(exc)) from None


class ElasticsearchLoadOperator(HookOperator):
    """Bulk-load ECS NDJSON into the active index (newest version wins) and the history.

    :param source_path: ECS NDJSON written by the transform task (ObjectStoragePath URI). (templated)
    :param elasticsearch_conn_id: connection of type ``elasticsearch_ecs`` or ``elasticsearch``, or
        Airflow's ``opensearch`` (the OpenSearch target; docs/capabilities.md).
    :param dead_letter_path: where rejected documents go; default beside the source,
        ``<source without .ndjson>.dead-letter.ndjson``. (templated)
    :param max_rejects: most rejected documents allowed (refused by the active index, the
        history, or both); ``None`` for no absolute limit. (templated)
    :param max_reject_ratio: most rejected documents allowed as a share of those read
        (default 0.01); ``None`` for no ratio limit. (templated)
    :param observed_at: when the poll read ThreatQ (ISO-8601; the DAG passes the poll's
        ``polled_at``). With the same ``updated_at``, the copy a later poll read wins (edits within
        one second, re-mapping after a change of options); a replayed load keeps its poll's time
        and never wins over a later one. Unset: such copies never replace one another. (templated)
    :param max_future_skew: how far ``updated_at`` may lie after the load's clock before the
        document is rejected as ``timestamp_in_future``: ``<n>d``, ``<n>h``, ``<n>m``, ``<n>s``
        (default ``1d``). (templated)
    :param install_templates: install/refresh the index templates first (skipped when current).
    :param write_history: also append every version to the daily history indices.
    :param chunk_bytes: largest bulk request in bytes.
    :param chunk_docs: most documents per bulk request.
    :param max_in_flight: most bulk requests awaiting Elasticsearch's answer at once (default 2,
        for a small cluster; raise it with the cluster's data nodes and write threads). (templated)
    :param index_prefix: prefix of every index/alias/template name (default none: Elastic's names).
    :param document_id_prefix: put before ``threatq.id`` in each ``_id`` (the DAG passes the poll's
        ``document_id_prefix``: ``<instance>:`` for a ThreatQ instance named on its connection,
        ``""`` otherwise, keeping ``_id`` = ``threatq.id``). (templated)
    :return: XCom ``{"path", "dead_letter_path", "templates", <LoadCounts.as_dict()>}``.
    """

    template_fields: Sequence[str] = ("source_path", "dead_letter_path", "max_rejects", "max_reject_ratio",
                                      "observed_at", "max_future_skew", "max_in_flight", "document_id_prefix")
    ui_color = "#e0f0fe"

    def __init__(
        self,
        *,
        source_path: str,
        elasticsearch_conn_id: str = "elasticsearch_default",
        dead_letter_path: str | None = None,
        max_rejects: int | None = None,
        max_reject_ratio: float | None = 0.01,
        observed_at: Any = None,
        max_future_skew: str = "1d",
        install_templates: bool = True,
        write_history: bool = True,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        chunk_docs: int = DEFAULT_CHUNK_DOCS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        index_prefix: str = "",
        document_id_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_path = source_path
        self.elasticsearch_conn_id = elasticsearch_conn_id
        self.dead_letter_path = dead_letter_path
        self.max_rejects = max_rejects
        self.max_reject_ratio = max_reject_ratio
        self.observed_at = observed_at
        self.max_future_skew = max_future_skew
        self.install_templates = install_templates
        self.write_history = write_history
        self.chunk_bytes = chunk_bytes
        self.chunk_docs = chunk_docs
        self.max_in_flight = max_in_flight
        self.index_prefix = index_prefix
        self.document_id_prefix = document_id_prefix

    @cached_property
    def hook(self) -> ElasticsearchEcsHook:
        """Hook for ``elasticsearch_conn_id`` (Elasticsearch or OpenSearch)."""
        return elasticsearch_hook(self.elasticsearch_conn_id)

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        from threatq_provider.elasticsearch.errors import RejectThresholdExceeded
        from threatq_provider.elasticsearch.loader import check_reject_threshold, load_ndjson
        from threatq_provider.coerce import parse_duration
        from threatq_provider.elasticsearch.templates import IndexNames, install_templates
        from threatq_provider.elasticsearch.versioning import observed_part
        from threatq_provider.stage_io import open_lines, open_text_writer

        observed_at = _observed_at(self.observed_at)
        try:
            observed_part(observed_at)
            max_future_skew = parse_duration(self.max_future_skew, "max_future_skew", allow_zero=True)
            max_in_flight = parse_int(self.max_in_flight, "max_in_flight", minimum=1)
        except ValueError as exc:  # a wrong clock or a typo: no retry heals it
            raise AirflowFailException(f"task {self.task_id}: {exc}") from None
        names = IndexNames(self.index_prefix)
        source = ObjectStoragePath(str(self.source_path))
        dead_uri = str(self.dead_letter_path or default_dead_letter_path(str(self.source_path)))
        dead = ObjectStoragePath(dead_uri)
        # The client's connection pool is released whether the load succeeded or not.
        with self.client(self.hook) as client:
            templates = install_templates(client, prefix=self.index_prefix) if self.install_templates else {}
            dead.parent.mkdir(parents=True, exist_ok=True)
            with open_lines(source) as src, open_text_writer(dead) as dead_out:
                counts = load_ndjson(client, src, dead_letter=dead_out, active_index=names.active_alias,
                                     history_date=context.get("data_interval_end"), observed_at=observed_at,
                                     tombstone_index=names.tombstone_index, max_future_skew=max_future_skew,
                                     history_prefix=names.history_prefix if self.write_history else None,
                                     chunk_bytes=int(self.chunk_bytes), chunk_docs=int(self.chunk_docs),
                                     max_in_flight=max_in_flight,
                                     id_prefix=optional(self.document_id_prefix, str) or "")
        self.log.info("Loaded %s: %s", source, counts.as_dict())
        try:
            check_reject_threshold(counts, max_rejects=optional(self.max_rejects, int),
                                   max_reject_ratio=optional(self.max_reject_ratio, float),
                                   dead_letter_path=dead_uri)
        except RejectThresholdExceeded as exc:
            # Rejects are data problems a retry cannot fix; the cause stays chained for callers.
            raise AirflowFailException(str(exc)) from exc
        return {"path": str(source), "dead_letter_path": dead_uri, "templates": templates, **counts.as_dict()}
