"""Typed errors of the Elasticsearch side (connection, templates, loader, sweeper).

Messages name the cause and the object (connection id, index, extra key, count), never a
password, API key or Cloud credential.

Family::

    ElasticsearchEcsError
    ├── ConnectionConfigError       a connection field is missing or malformed (also a ValueError)
    ├── TemplateInstallError        an index template or the first active index could not be made
    ├── RejectThresholdExceeded     the loader rejected more documents than allowed
    ├── TombstoneError              tombstones could not be read (a load must not go on blind)
    ├── SweepIncomplete             documents still match the expiry query after the bounded retries
    └── ReconcileLimitExceeded      a deletion reconciliation would remove more than its safety limit
"""

from __future__ import annotations

from collections.abc import Mapping


class ElasticsearchEcsError(Exception):
    """Base of every error raised by :mod:`threatq_provider.elasticsearch`."""


class ConnectionConfigError(ElasticsearchEcsError, ValueError):
    """A connection field is missing or malformed.

    :param conn_id: the Airflow connection id.
    :param field: the field or extra key at fault (its value is never shown).
    :param reason: what is wrong with it.
    """

    def __init__(self, conn_id: str, field: str, reason: str) -> None:
        self.conn_id = conn_id
        self.field = field
        super().__init__(f"connection {conn_id!r}: {field}: {reason}")


class TemplateInstallError(ElasticsearchEcsError):
    """An index template, component template or the first active index could not be installed."""


class RejectThresholdExceeded(ElasticsearchEcsError):
    """More documents were rejected than the load allows; accepted ones stay indexed.

    The message names the active-index and the history rejects apart, e.g. ``3 of 100 documents
    rejected (active index 1: document_parsing_exception=1; history 3:
    cluster_block_exception=3), over the limit max_rejects=0; see …dead-letter.ndjson``.

    :param rejected: number of rejected documents (refused by the active index, the history, or both).
    :param total: number of documents read.
    :param limit: the threshold that was exceeded, as text.
    :param by_reason: active-index rejects per error type.
    :param dead_letter: where the rejected documents were written, if anywhere.
    :param history_rejected: writes the history index refused.
    :param history_by_reason: history rejects per error type.
    """

    def __init__(self, rejected: int, total: int, limit: str, by_reason: Mapping[str, int],
                 dead_letter: str | None = None, *, history_rejected: int = 0,
                 history_by_reason: Mapping[str, int] | None = None) -> None:
        self.rejected = rejected
        self.total = total
        self.by_reason = dict(by_reason)
        self.active_rejected = sum(self.by_reason.values())
        self.history_rejected = history_rejected
        self.history_by_reason = dict(history_by_reason or {})
        self.dead_letter = dead_letter
        where = f"; see {dead_letter}" if dead_letter else ""
        parts = [_part(f"active index {self.active_rejected}", self.by_reason),
                 _part(f"history {history_rejected}", self.history_by_reason)]
        super().__init__(f"{rejected} of {total} documents rejected ({'; '.join(parts)}), over the limit "
                         f"{limit}{where}")


class ReconcileLimitExceeded(ElasticsearchEcsError):
    """The deletion reconciliation found more IOCs missing from ThreatQ than it may remove at once.

    Nothing was removed. :param missing: documents ThreatQ no longer lists. :param active: the
    instance's active documents. :param max_percent: the limit, in percent of ``active``.
    """

    def __init__(self, missing: int, active: int, max_percent: float) -> None:
        self.missing = missing
        self.active = active
        self.max_percent = max_percent
        share = 100.0 * missing / active if active else 100.0
        super().__init__(
            f"{missing} of {active} active IOCs ({share:.1f}%) are no longer listed by ThreatQ, over the safety "
            f"limit of {max_percent:g}%: nothing was removed. A ThreatQ answering with less than it has (a user "
            "without access to some sources, a restore in progress) looks the same as a mass deletion; check it, "
            "then run again with allow_mass_delete (or a higher max_delete_percent)"
        )


def _part(head: str, by_reason: Mapping[str, int]) -> str:
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(by_reason.items()))
    return f"{head}: {reasons}" if reasons else head


class TombstoneError(ElasticsearchEcsError):
    """Tombstones could not be read; loading without them could bring removed IOCs back."""


class SweepIncomplete(ElasticsearchEcsError):
    """Expired documents still matched after the bounded number of sweep passes."""
