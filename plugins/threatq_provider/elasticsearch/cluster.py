"""One small client protocol for both targets: Elasticsearch (``elasticsearch`` 8.x) and OpenSearch
(``opensearch-py``), and what each cluster can do, detected once per client.

The loader, the templates, the sweeps and the tombstones call their client in one dialect both
libraries accept: request bodies as ``body=`` (the ``elasticsearch`` 8.x client still takes it,
``opensearch-py`` takes nothing else), query parameters as keywords, responses read by key. What
differs goes through :func:`cluster`, which wraps a client of either library in a :class:`Cluster`:
its ``helpers`` module (``scan``, ``streaming_bulk``), the HTTP status and error type of an
exception (:meth:`Cluster.status`, :meth:`Cluster.error_type`), and :class:`Capabilities`.

Capabilities are probed without side effects, once per client (one client per task: once per
run), and logged: ``_delete_by_query`` (the reindex module), ingest pipelines with Painless
(``_ingest/pipeline/_simulate`` of a ``set`` and a ``script`` processor), data streams
(``GET _data_stream/_stats``), runtime fields and each field type the templates use (both by
``_index_template/_simulate``). Elastic's minimal test distribution has none of them but runtime
fields; OpenSearch's test distribution has all of them but runtime fields.
Callers take the full-cluster path where the capability is there and the fallback where not
(see docs/capabilities.md).
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import asdict, dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

ELASTICSEARCH = "elasticsearch"
OPENSEARCH = "opensearch"

#: Field types the templates map when the cluster has them (each has a fallback in templates.json).
PROBED_FIELD_TYPES = ("wildcard", "match_only_text", "constant_keyword")
_PROBE_PATTERN = "threatq-capability-probe-*"


@dataclass(frozen=True)
class Capabilities:
    """What one cluster can do (see the module docstring for how each is probed).

    :param flavor: ``"elasticsearch"`` or ``"opensearch"``.
    :param version: the node's version number, ``""`` when it does not say.
    :param delete_by_query: ``_delete_by_query`` / ``_update_by_query`` exist (reindex module).
    :param ingest_painless: ingest pipelines run ``set`` and Painless ``script`` processors.
    :param data_streams: data streams (with rollover) exist.
    :param field_types: the probed field types the cluster maps.
    :param runtime_fields: mappings may declare runtime fields (Elasticsearch 7.11 on; OpenSearch
        has none), which the history mapping uses (:func:`.templates.template_body`).
    """

    flavor: str
    version: str = ""
    delete_by_query: bool = False
    ingest_painless: bool = False
    data_streams: bool = False
    field_types: frozenset[str] = field(default_factory=frozenset)
    runtime_fields: bool = False

    @property
    def missing_field_types(self) -> frozenset[str]:
        """Probed field types the cluster lacks (the templates map their fallbacks instead)."""
        return frozenset(PROBED_FIELD_TYPES) - self.field_types

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (for logs and XCom)."""
        out = asdict(self)
        out["field_types"] = sorted(self.field_types)
        return out


def flavor_of(client: Any) -> str:
    """``"opensearch"`` for an ``opensearchpy`` client, else ``"elasticsearch"``.

    Judged by the client's transport too, so a proxy that forwards attributes to a client (tests
    wrap one to act between two calls) is told apart like the client itself.
    """
    for obj in (client, getattr(client, "transport", None)):
        if type(obj).__module__.startswith("opensearchpy"):
            return OPENSEARCH
    return ELASTICSEARCH


class Cluster:
    """A client of either library with what differs between them.

    :param client: an ``elasticsearch.Elasticsearch`` or an ``opensearchpy.OpenSearch``.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.flavor = flavor_of(client)
        self._lock = threading.Lock()

    @cached_property
    def helpers(self) -> ModuleType:
        """The library's ``helpers`` module (``scan``, ``streaming_bulk``: same signatures)."""
        if self.flavor == OPENSEARCH:
            from opensearchpy import helpers
        else:
            from elasticsearch import helpers
        return helpers

    @cached_property
    def api_error(self) -> type[BaseException]:
        """The library's class of errors that carry an HTTP status (catch it, then read :meth:`status`)."""
        if self.flavor == OPENSEARCH:
            from opensearchpy.exceptions import TransportError
            return TransportError
        from elasticsearch import ApiError
        return ApiError

    def status(self, exc: BaseException) -> int | None:
        """HTTP status of an error of this library; ``None`` when it has none (no answer)."""
        if self.flavor == OPENSEARCH:
            status = getattr(exc, "status_code", None)
        else:
            meta = getattr(exc, "meta", None)
            status = getattr(meta, "status", None)
        return status if isinstance(status, int) else None

    def error_type(self, exc: BaseException) -> str:
        """The cluster's error type (``resource_already_exists_exception``, …) or the class name."""
        info = getattr(exc, "info", None)
        if isinstance(info, dict) and isinstance(info.get("error"), dict):
            return str(info["error"].get("type") or type(exc).__name__)
        error = getattr(exc, "error", None)
        return str(error) if isinstance(error, str) and error else type(exc).__name__

    def error_reason(self, exc: BaseException) -> str:
        """Root cause text of an error answer (for matching, never for secrets: bodies carry none)."""
        info = getattr(exc, "info", None)
        return str(info)[:2000] if info is not None else str(exc)[:2000]

    def is_not_found(self, exc: BaseException) -> bool:
        return isinstance(exc, self.api_error) and self.status(exc) == 404

    # -- the few calls whose shape differs ------------------------------------------------------

    def bulk(self, payload: bytes, *, filter_path: str) -> list[dict[str, Any]]:
        """POST one NDJSON bulk body; the response's ``items``."""
        if self.flavor == OPENSEARCH:
            return self.client.bulk(body=payload, filter_path=filter_path)["items"]
        return self.client.bulk(operations=payload, filter_path=filter_path).body["items"]

    def mget_versions(self, index: str, ids: list[str]) -> list[dict[str, Any]]:
        """``_mget`` of ``ids`` without their sources: the response's ``docs``."""
        if self.flavor == OPENSEARCH:
            return self.client.mget(index=index, body={"ids": ids}, _source=False)["docs"]
        return self.client.mget(index=index, ids=ids, source=False)["docs"]

    def delete_data_streams(self, pattern: str) -> None:
        """Delete the data streams matching ``pattern`` (tests' clean-up; none is fine)."""
        try:
            self.client.indices.delete_data_stream(name=pattern)
        except self.api_error as exc:
            if self.status(exc) != 404:
                raise

    # -- capabilities ---------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """What this cluster can do; probed on first use (one set of requests per client), logged."""
        with self._lock:
            found = self.__dict__.get("_capabilities")
            if found is None:
                found = self._probe()
                self.__dict__["_capabilities"] = found
                log.info("cluster capabilities: %s", found.as_dict())
            return found

    def _answers(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> bool:
        """True when the cluster answers 2xx; False for a refusal (no such endpoint, processor, type)."""
        try:
            self._request(method, path, body, params)
        except self.api_error as exc:
            status = self.status(exc)
            if status is None or status >= 500 and status != 501:
                raise  # not an answer about the capability: let the task's retry handle it
            return False
        return True

    def _request(self, method: str, path: str, body: Any, params: dict[str, Any] | None) -> Any:
        if self.flavor == OPENSEARCH:
            return self.client.transport.perform_request(method, path, params=params or None, body=body)
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        return self.client.perform_request(method, path, params=params or None, headers=headers, body=body)

    def _version(self) -> str:
        try:
            nodes = self._request("GET", "/_nodes/_local", None, {"filter_path": "nodes.*.version"})
            return str(next(iter((nodes.get("nodes") or {}).values()), {}).get("version", ""))
        except self.api_error:
            return ""

    def _probe(self) -> Capabilities:
        delete_by_query = self._answers(
            "POST", f"/{_PROBE_PATTERN}/_delete_by_query", {"query": {"match_none": {}}},
            {"allow_no_indices": "true", "ignore_unavailable": "true"})
        ingest_painless = self._answers("POST", "/_ingest/pipeline/_simulate", {
            "pipeline": {"processors": [{"set": {"field": "a", "value": "1"}},
                                        {"script": {"lang": "painless", "source": "ctx.b = 2"}}]},
            "docs": [{"_source": {}}]})
        # _stats, not a name: without the module a name answers 405, which the elasticsearch client
        # takes for a failed node (a second of back-off); _stats answers 400.
        data_streams = self._answers("GET", "/_data_stream/_stats")
        types = frozenset(t for t in PROBED_FIELD_TYPES if self._answers("POST", "/_index_template/_simulate", {
            "index_patterns": [_PROBE_PATTERN],
            "template": {"mappings": {"properties": {"probe": _probe_mapping(t)}}}}))
        runtime_fields = self._answers("POST", "/_index_template/_simulate", {
            "index_patterns": [_PROBE_PATTERN], "template": {"mappings": {"runtime": {"probe": {"type": "keyword"}}}}})
        return Capabilities(self.flavor, self._version(), delete_by_query, ingest_painless, data_streams, types,
                            runtime_fields)


def _probe_mapping(field_type: str) -> dict[str, Any]:
    return {"type": field_type, "value": "probe"} if field_type == "constant_keyword" else {"type": field_type}


_CLUSTERS: weakref.WeakKeyDictionary[Any, Cluster] = weakref.WeakKeyDictionary()
_CLUSTERS_LOCK = threading.Lock()


def cluster(client: Any) -> Cluster:
    """The :class:`Cluster` of ``client`` (one per client object, so capabilities are probed once).

    :param client: an ``elasticsearch.Elasticsearch``, an ``opensearchpy.OpenSearch``, or a
        :class:`Cluster` (returned as is).
    """
    if isinstance(client, Cluster):
        return client
    with _CLUSTERS_LOCK:
        found = _CLUSTERS.get(client)
        if found is None:
            found = _CLUSTERS[client] = Cluster(client)
        return found
