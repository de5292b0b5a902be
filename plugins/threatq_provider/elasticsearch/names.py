"""Index names and loader defaults, importable without the Elasticsearch client.

Operators and DAG files import these at parse time; keeping them here (no imports) means parsing
a DAG does not load the ``elasticsearch`` library. :mod:`.templates` and :mod:`.loader`
re-export them.
"""

from __future__ import annotations

#: Alias of the active-IOC index (Elastic's ``ti_threatq`` latest-transform name).
ACTIVE_ALIAS = "logs-ti_threatq_latest.threat"
#: Prefix of the daily history indices ``<prefix>YYYY.MM.DD``.
HISTORY_PREFIX = "logs-ti_threatq.threat_history-"
HISTORY_PATTERN = HISTORY_PREFIX + "*"
#: The history data stream is ``<prefix>default`` (Elastic's ``<type>-<dataset>-<namespace>``) on
#: clusters with data streams; elsewhere the history is daily indices ``<prefix>YYYY.MM.DD``.
HISTORY_DATA_STREAM_NAMESPACE = "default"
#: Hidden index of tombstones (IOCs removed from the active index, at the version removed).
TOMBSTONE_INDEX = "threatq-ioc-tombstones"
#: Largest bulk request body, and most documents per bulk request.
DEFAULT_CHUNK_BYTES = 5 * 1024 * 1024
DEFAULT_CHUNK_DOCS = 2000
#: Most bulk requests in flight at once (the loader builds the next while these are answered).
#: Two keep a small (1-3 node) cluster's write threads busy without queueing into 429s.
DEFAULT_MAX_IN_FLIGHT = 2
