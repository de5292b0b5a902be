"""Ground truth and Elasticsearch read-back for the DAG tests.

The expiry rules are re-implemented here on purpose, small and readable, from Elastic's
ti_threatq pipeline description (docs/reference/elastic-ti_threatq.md §2.7) rather than imported from
``threatq_provider.ecs.expiry``: the test is an independent computation of which indicators
must be in the active index, so a bug in the provider's rules cannot hide on both sides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

ACTIVE_ALIAS = "logs-ti_threatq_latest.threat"
THREATQ_INDEX_PATTERN = "logs-ti_threatq*"

_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str) -> timedelta:
    """``"90d"`` → 90 days; ``h`` and ``m`` for hours and minutes."""
    return timedelta(**{_UNITS[text[-1]]: int(text[:-1])})


def _date(value: Any) -> datetime | None:
    """ThreatQ writes ``YYYY-MM-DD HH:MM:SS`` in UTC without a zone."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


#: The default status policy (``status_policy.json``): only these statuses stay active.
ACTIVE_STATUSES = frozenset({"active"})


def expires(raw: dict[str, Any], duration: timedelta, active_statuses: frozenset[str] = ACTIVE_STATUSES) -> datetime:
    """When a raw ThreatQ indicator stops being an active IOC (first rule that applies wins).

    1. ThreatQ's ``expired_at``; 2. ThreatQ's ``expires_at``; 3. status ``Expired`` → its
    ``updated_at``; 4. ``updated_at`` + the IOC expiration duration. Then the status policy: a
    status outside ``active_statuses`` (lower case) ends it at ``updated_at`` if that is earlier.
    """
    updated = _date(raw.get("updated_at"))
    assert updated is not None, f"simulator indicator {raw.get('id')} has no updated_at"
    status = raw.get("status")
    name = status.get("name") if isinstance(status, dict) else status
    when = _date(raw.get("expired_at")) or _date(raw.get("expires_at"))
    if when is None:
        when = updated if name == "Expired" else updated + duration
    if name is not None and name.lower() not in active_statuses:
        when = min(when, updated)
    return when


def active_ids(indicators: Iterable[dict[str, Any]], *, now: datetime, duration: str = "90d") -> set[str]:
    """Ids of the indicators still active at ``now`` (expiry strictly after ``now``)."""
    lifetime = parse_duration(duration)
    return {str(raw["id"]) for raw in indicators if expires(raw, lifetime) > now}


def all_ids(indicators: Iterable[dict[str, Any]]) -> list[str]:
    return [str(raw["id"]) for raw in indicators]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def es_active_docs(es: Any) -> dict[str, dict[str, Any]]:
    """Every document of the active alias, keyed by ThreatQ indicator id (``threatq.id``).

    Asserts that no indicator appears twice (nothing doubled).
    """
    from threatq_provider.elasticsearch.cluster import cluster

    helpers = cluster(es).helpers  # either library's: the DAG tests run on both nodes
    if not es.indices.exists_alias(name=ACTIVE_ALIAS) and not es.indices.exists(index=ACTIVE_ALIAS):
        return {}
    es.indices.refresh(index=ACTIVE_ALIAS)
    docs: dict[str, dict[str, Any]] = {}
    for hit in helpers.scan(es, index=ACTIVE_ALIAS, query={"query": {"match_all": {}}}, seq_no_primary_term=True):
        tq_id = str(hit["_source"]["threatq"]["id"])
        assert tq_id not in docs, f"indicator {tq_id} is twice in {ACTIVE_ALIAS}"
        docs[tq_id] = hit
    return docs


def wipe_threatq_indices(es: Any) -> None:
    """Delete the DAGs' indices (active and history; templates stay, the loader reinstalls them).

    Only names starting with ``logs-ti_threatq``: other tests' indices carry a unique prefix. On a
    node with data streams the history is one (``logs-ti_threatq.threat_history-default``): its
    backing indices go with it.
    """
    from threatq_provider.elasticsearch.cluster import cluster

    target = cluster(es)
    if target.capabilities.data_streams:
        target.delete_data_streams(THREATQ_INDEX_PATTERN)
    es.indices.delete(index=THREATQ_INDEX_PATTERN, expand_wildcards="all", ignore_unavailable=True, allow_no_indices=True)
    # the sweep's tombstones (threatq_provider.elasticsearch.names.TOMBSTONE_INDEX, hidden)
    es.indices.delete(index="threatq-ioc-tombstones", ignore_unavailable=True)
    # the report task's run reports (threatq_provider.elasticsearch.run_reports.RUNS_INDEX)
    es.indices.delete(index="threatq-provider-runs", ignore_unavailable=True)


def assert_active_index_matches(es: Any, indicators: list[dict[str, Any]], *, before: datetime, after: datetime,
                                duration: str = "90d") -> dict[str, dict[str, Any]]:
    """The active index holds exactly the indicators active by the rules.

    ``before``/``after`` bracket the sweep: an indicator expiring between the two clocks may be on
    either side, and only such an indicator. When none falls in between (the usual case) this is
    plain set equality.
    """
    docs = es_active_docs(es)
    got = set(docs)
    must = active_ids(indicators, now=after, duration=duration)  # still active after the sweep
    may = active_ids(indicators, now=before, duration=duration)  # active when the sweep began
    missing = must - got
    extra = got - may
    assert not missing, f"{len(missing)} active indicators missing from the active index, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} indicators in the active index that are expired or unknown, e.g. {sorted(extra)[:5]}"
    return docs


def read_ndjson_ids(path: str) -> list[str]:
    """ThreatQ ids of a raw stage file (one indicator per line)."""
    from airflow.sdk import ObjectStoragePath

    from threatq_provider.stage_io import open_lines

    with open_lines(ObjectStoragePath(path)) as fh:  # zstd, or plain
        return [str(json.loads(line)["id"]) for line in fh if line.strip()]
