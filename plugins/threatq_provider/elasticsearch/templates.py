"""Index templates for the active-IOC index and the append-only history, installed idempotently.

Names follow Elastic's ``ti_threatq`` conventions so Kibana's threat-intel views and
indicator-match rules find the data:

- active: alias :data:`ACTIVE_ALIAS` (``logs-ti_threatq_latest.threat``) over concrete indices
  ``logs-ti_threatq_latest.threat-000001``, ``-000002`` …, one document per ThreatQ indicator;
- history, where the cluster has data streams (:mod:`.cluster` detects it): the data stream
  ``logs-ti_threatq.threat_history-default``, every version once per backing index (``_id`` = id
  and version), rolled over daily and its old backing indices deleted by age by the history sweep
  (a cluster with ILM or ISM can take both over: docs/capabilities.md);
- history elsewhere (Elastic's minimal test distribution): daily indices
  ``logs-ti_threatq.threat_history-YYYY.MM.DD`` (the load's day), every version once per day,
  swept by age like Elastic's 5-day ILM;
- tombstones: the hidden index ``threatq-ioc-tombstones`` (outside ``logs-ti_*``), the version at
  which each IOC left the active index (see :mod:`.tombstones`).

The mapping is data: ``threatq_provider/data/mappings/ecs_fields.json`` (every field the transform writes,
with its type) plus ``threatq_provider/data/elasticsearch/templates.json`` (names, settings, extra constant
fields). Where the cluster has runtime fields (Elasticsearch), the history indexes only a few fields
and declares the others as runtime fields of the same types (:func:`split_runtime`): the same
queries answer, and a history write, a second copy of every document, costs about a third of a
fully indexed one. Both documents are ``dynamic: false``: unknown keys stay in ``_source`` unindexed; the
component template ``logs-ti_threatq@custom`` (composed in, may be absent) is where users map
more fields. Field types the cluster lacks (``wildcard``, ``match_only_text``,
``constant_keyword`` on Elastic's minimal test distribution) are mapped as their
``type_fallbacks``; where it has them, the real types are mapped.

Calls use the dialect both ``elasticsearch`` and ``opensearch-py`` clients accept (:mod:`.cluster`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from threatq_provider._resources import data_file
from threatq_provider.elasticsearch.cluster import OPENSEARCH, cluster
from threatq_provider.elasticsearch.errors import TemplateInstallError
from threatq_provider.elasticsearch.names import (
    ACTIVE_ALIAS,
    HISTORY_DATA_STREAM_NAMESPACE,
    HISTORY_PATTERN,
    HISTORY_PREFIX,
)

__all__ = ["ACTIVE_ALIAS", "HISTORY_PATTERN", "HISTORY_PREFIX", "IndexNames", "ensure_tombstone_index",
           "history_target", "install_templates", "mapped_types", "rollover_to_new_index", "template_body"]

log = logging.getLogger(__name__)



@lru_cache(maxsize=1)
def template_config() -> dict[str, Any]:
    """``threatq_provider/data/elasticsearch/templates.json``, loaded once."""
    return json.loads(data_file("elasticsearch", "templates.json").read_text())


@lru_cache(maxsize=1)
def ecs_fields() -> dict[str, dict[str, Any]]:
    """Field path → mapping of every field the ECS transform writes (``ecs_fields.json``)."""
    return json.loads(data_file("mappings", "ecs_fields.json").read_text())["fields"]


@dataclass(frozen=True)
class IndexNames:
    """Every name the provider uses, with an optional prefix (tests use one per test).

    :param prefix: prepended to every index, alias and template name.
    """

    prefix: str = ""

    @property
    def active_alias(self) -> str:
        return self.prefix + template_config()["active"]["alias"]

    @property
    def active_template(self) -> str:
        return self.prefix + template_config()["active"]["index_template"]

    @property
    def active_index_prefix(self) -> str:
        return self.prefix + template_config()["active"]["index_prefix"]

    @property
    def first_active_index(self) -> str:
        return self.active_index_prefix + template_config()["active"]["first_suffix"]

    @property
    def history_template(self) -> str:
        return self.prefix + template_config()["history"]["index_template"]

    @property
    def history_prefix(self) -> str:
        return self.prefix + template_config()["history"]["index_prefix"]

    @property
    def history_pattern(self) -> str:
        return self.history_prefix + "*"

    @property
    def history_data_stream(self) -> str:
        """The history's data stream (clusters with data streams)."""
        return self.history_prefix + HISTORY_DATA_STREAM_NAMESPACE

    @property
    def custom_component(self) -> str:
        return self.prefix + template_config()["custom_component_template"]

    @property
    def tombstone_index(self) -> str:
        return self.prefix + template_config()["tombstones"]["index"]


def _nest(flat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Dotted field paths → nested ``properties`` (parents become plain objects)."""
    root: dict[str, Any] = {}
    for path in sorted(flat):
        node = root
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}).setdefault("properties", {})
        node.setdefault(parts[-1], {}).update(copy.deepcopy(flat[path]))
    return root


def field_mappings(kind: str) -> dict[str, dict[str, Any]]:
    """Flat field path → mapping for ``kind`` (``"active"`` or ``"history"``).

    :param kind: which template.
    :return: the transform's fields plus the template's extra (constant) fields.
    """
    fields = dict(ecs_fields())
    fields.update(template_config()[kind]["extra_properties"])
    return fields


def _apply_fallbacks(flat: dict[str, dict[str, Any]], missing: set[str]) -> dict[str, dict[str, Any]]:
    fallbacks = template_config()["type_fallbacks"]
    out = {}
    for path, spec in flat.items():
        if spec.get("type") in missing:
            spec = dict(fallbacks[spec["type"]])
        out[path] = spec
    return out


def split_runtime(flat: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The history's fields where the cluster has runtime fields: ``(indexed, runtime)``.

    Indexed are the fields ``runtime_fields.indexed`` of templates.json names, the fields whose type
    has no runtime counterpart (text, ``ip_range``, ``constant_keyword``) and those mapped
    ``index: false``; every other field becomes a runtime field of its type (``runtime_fields.types``),
    which Elasticsearch reads from ``_source`` when a query, a sort or an aggregation needs it.

    :param flat: field path → mapping (fallbacks already applied).
    :return: ``(properties, runtime)``, both flat.
    """
    spec = template_config()["history"]["runtime_fields"]
    keep, types = set(spec["indexed"]), spec["types"]
    indexed: dict[str, dict[str, Any]] = {}
    runtime: dict[str, dict[str, Any]] = {}
    for path, mapping in flat.items():
        kind = mapping.get("type")
        if path in keep or kind not in types or mapping.get("index") is False:
            indexed[path] = mapping
        else:
            runtime[path] = {"type": types[kind]}
    return indexed, runtime


def template_body(kind: str, names: IndexNames, missing_types: frozenset[str] = frozenset(),
                  data_stream: bool = False, ignore_missing_custom: bool = True,
                  runtime_fields: bool = False) -> dict[str, Any]:
    """The composable index template for ``kind``.

    :param kind: ``"active"`` or ``"history"``.
    :param names: index names (with prefix).
    :param missing_types: field types the cluster lacks; replaced by ``type_fallbacks``.
    :param data_stream: the history is a data stream (ignored for ``"active"``).
    :param ignore_missing_custom: the template may compose ``@custom`` while it does not exist
        (Elasticsearch's ``ignore_missing_component_templates``; OpenSearch has no such option, so
        :func:`install_templates` creates an empty ``@custom`` there instead).
    :param runtime_fields: the cluster has runtime fields: the history indexes a few fields and
        declares the others as runtime fields (:func:`split_runtime`; ignored for ``"active"``).
    :return: the body of ``PUT _index_template/<name>``.
    """
    cfg = template_config()
    flat = _apply_fallbacks(field_mappings(kind), set(missing_types))
    runtime: dict[str, dict[str, Any]] = {}
    if kind == "history" and runtime_fields:
        flat, runtime = split_runtime(flat)
    pattern = names.active_index_prefix + "*" if kind == "active" else names.history_pattern
    body: dict[str, Any] = {
        "index_patterns": [pattern],
        "priority": cfg["priority"],
        "version": cfg["version"],
        "composed_of": [names.custom_component],
        "template": {
            "settings": copy.deepcopy(cfg[kind]["settings"]),
            "mappings": {
                "dynamic": False,
                "date_detection": False,
                "properties": _nest(flat),
            },
        },
    }
    if runtime:
        body["template"]["mappings"]["runtime"] = runtime
    if ignore_missing_custom:
        body["ignore_missing_component_templates"] = [names.custom_component]
    if kind == "history" and data_stream:
        body["data_stream"] = {}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    body["_meta"] = {"managed_by": cfg["managed_by"], "version": cfg["version"], "digest": digest}
    return body


def _installed_meta(client: Any, name: str) -> dict[str, Any] | None:
    c = cluster(client)
    try:
        resp = client.indices.get_index_template(name=name)
    except c.api_error as exc:
        if c.status(exc) == 404:
            return None
        raise
    templates = resp.get("index_templates") or []
    return templates[0]["index_template"].get("_meta", {}) if templates else None


def wanted_template(client: Any, kind: str, names: IndexNames) -> dict[str, Any]:
    """The template ``kind`` as this cluster gets it: its missing field types mapped as fallbacks,
    the history a data stream where the cluster has them.

    :param client: a client of either library.
    :param kind: ``"active"`` or ``"history"``.
    :param names: index names (with prefix).
    """
    c = cluster(client)
    caps = c.capabilities
    return template_body(kind, names, caps.missing_field_types, data_stream=caps.data_streams,
                         ignore_missing_custom=c.flavor != OPENSEARCH, runtime_fields=caps.runtime_fields)


def ensure_custom_component(client: Any, names: IndexNames) -> str:
    """An empty ``@custom`` component template where the cluster cannot ignore a missing one
    (OpenSearch), so the templates can compose it; a user's own is never overwritten.

    :return: ``"created"``, ``"exists"`` or ``"not_needed"``.
    """
    c = cluster(client)
    if c.flavor != OPENSEARCH:
        return "not_needed"
    try:
        client.cluster.put_component_template(
            name=names.custom_component, create=True,
            body={"template": {}, "_meta": {"description": "Your mappings and settings for the ThreatQ indices "
                                            "(created empty by airflow-provider-threatq, never overwritten)"}})
    except c.api_error as exc:
        if c.status(exc) == 400 and "already exists" in c.error_reason(exc):
            return "exists"
        raise TemplateInstallError(f"component template {names.custom_component}: HTTP {c.status(exc)} "
                                   f"{c.error_type(exc)}") from exc
    return "created"


def _put_template(client: Any, kind: str, names: IndexNames, body: dict[str, Any]) -> None:
    c = cluster(client)
    name = names.active_template if kind == "active" else names.history_template
    try:
        client.indices.put_index_template(name=name, body=body)
    except c.api_error as exc:
        raise TemplateInstallError(f"index template {name}: HTTP {c.status(exc)} {c.error_type(exc)}") from exc
    missing = sorted(cluster(client).capabilities.missing_field_types)
    if missing:
        fallbacks = template_config()["type_fallbacks"]
        log.warning("template %s: this cluster has no field type(s) %s; mapped as %s",
                    name, missing, {t: fallbacks[t]["type"] for t in missing})


def _ensure_active_index(client: Any, names: IndexNames, body: dict[str, Any], changed: bool) -> str:
    """Create the first concrete active index behind the alias, or add new fields to it."""
    c = cluster(client)
    if not client.indices.exists_alias(name=names.active_alias):
        try:
            client.indices.create(index=names.first_active_index,
                                  body={"aliases": {names.active_alias: {"is_write_index": True}}})
        except c.api_error as exc:
            if c.error_type(exc) != "resource_already_exists_exception":
                raise TemplateInstallError(
                    f"active index {names.first_active_index}: HTTP {c.status(exc)} {c.error_type(exc)}") from exc
            return "exists"
        return "created"
    if not changed:
        return "exists"
    # Additive template changes reach the live index at once; a changed type needs a rollover.
    try:
        client.indices.put_mapping(index=names.active_alias, body=body["template"]["mappings"])
    except c.api_error as exc:
        log.warning("active index %s keeps its old mapping (HTTP %s %s); run rollover_to_new_index",
                    names.active_alias, c.status(exc), c.error_type(exc))
        return "needs_rollover"
    return "mapping_updated"


def ensure_tombstone_index(client: Any, index: str) -> str:
    """Create the tombstone index (see :mod:`.tombstones`) unless it exists.

    :param client: a client of either library.
    :param index: its name (``IndexNames.tombstone_index``).
    :return: ``"created"`` or ``"exists"``.
    :raises TemplateInstallError: the cluster refused it.
    """
    if client.indices.exists(index=index, expand_wildcards="all"):
        return "exists"
    cfg = template_config()["tombstones"]
    c = cluster(client)
    try:
        client.indices.create(index=index, body={"settings": copy.deepcopy(cfg["settings"]),
                                                 "mappings": copy.deepcopy(cfg["mappings"])})
    except c.api_error as exc:
        if c.error_type(exc) == "resource_already_exists_exception":
            return "exists"
        raise TemplateInstallError(f"tombstone index {index}: HTTP {c.status(exc)} {c.error_type(exc)}") from exc
    return "created"


def install_templates(client: Any, *, prefix: str = "") -> dict[str, str]:
    """Install both index templates and the first active index, skipping what is current.

    A template whose ``_meta.digest`` matches ours is left alone. Idempotent and safe to run
    before every load. What the templates hold follows the cluster's capabilities
    (:mod:`.cluster`): real field types where it has them, the history a data stream where it
    has data streams.

    :param client: a client of either library.
    :param prefix: prepended to every name (tests).
    :return: what happened: ``{"active_template": "installed"|"unchanged",
        "history_template": …, "active_index": "created"|"exists"|"mapping_updated"|"needs_rollover",
        "tombstone_index": "created"|"exists", "history": "data_stream"|"daily_indices"}``.
    :raises TemplateInstallError: the cluster refused a template or the index.
    """
    names = IndexNames(prefix)
    result: dict[str, str] = {}
    active_body: dict[str, Any] | None = None
    ensure_custom_component(client, names)
    for kind, name in (("active", names.active_template), ("history", names.history_template)):
        wanted = wanted_template(client, kind, names)
        meta = _installed_meta(client, name)
        if meta and meta.get("digest") == wanted["_meta"]["digest"]:
            result[f"{kind}_template"] = "unchanged"
            continue
        _put_template(client, kind, names, wanted)
        body = wanted
        if kind == "active":
            active_body = body
        result[f"{kind}_template"] = "installed"
        log.info("index template %s installed (version %s)", name, wanted["version"])
    body = active_body or {"template": {"mappings": {}}}
    result["active_index"] = _ensure_active_index(client, names, body, active_body is not None)
    result["tombstone_index"] = ensure_tombstone_index(client, names.tombstone_index)
    result["history"] = "data_stream" if cluster(client).capabilities.data_streams else "daily_indices"
    return result


def history_target(client: Any, names: IndexNames, day: Any = None) -> str:
    """Where a load writes the history: the data stream where the cluster has them (the template
    :func:`install_templates` puts makes it one), else the daily index of ``day``.

    :param client: a client of either library.
    :param names: index names (with prefix).
    :param day: the load's day (a datetime; default today, UTC) for daily indices.
    """
    if cluster(client).capabilities.data_streams:
        return names.history_data_stream
    from threatq_provider.elasticsearch.loader import history_suffix  # loader imports templates' names

    return names.history_prefix + history_suffix(day)


def mapped_types(client: Any, index: str) -> dict[str, str]:
    """Flat field path → type as the cluster maps it, runtime fields included (for checks and tests).

    :param client: a client of either library.
    :param index: index, alias or data stream (the first concrete index is read).
    :return: e.g. ``{"threat.indicator.ip": "ip", ...}``.
    """
    resp = client.indices.get_mapping(index=index)
    mappings = next(iter(resp.values()))["mappings"]
    out: dict[str, str] = {}

    def walk(props: dict[str, Any], base: str) -> None:
        for name, spec in props.items():
            path = f"{base}{name}"
            if "properties" in spec:
                walk(spec["properties"], path + ".")
            if "type" in spec:
                out[path] = spec["type"]

    walk(mappings.get("properties", {}), "")
    for path, spec in (mappings.get("runtime") or {}).items():
        out.setdefault(path, spec["type"])
    return out


def rollover_to_new_index(client: Any, *, prefix: str = "", delete_old: bool = True) -> dict[str, Any]:
    """Move the active alias to a new concrete index built from the current template.

    Order matters for concurrent loads: (1) create ``-00000N+1``; (2) swap the write index in one
    alias action, keeping the old index readable behind the alias; (3) copy the old documents
    with external versioning (a version already written by a concurrent load wins, the copy
    gets a conflict and is skipped); (4) drop the old index from the alias and delete it.

    :param client: a client of either library.
    :param prefix: prepended to every name (tests).
    :param delete_old: delete the previous index at the end.
    :return: ``{"old_index", "new_index", "copied", "skipped_newer"}``.
    """
    helpers = cluster(client).helpers
    names = IndexNames(prefix)
    aliases = client.indices.get_alias(name=names.active_alias)
    old = next(i for i, a in aliases.items() if a["aliases"][names.active_alias].get("is_write_index", True))
    number = int(old.rsplit("-", 1)[1]) + 1
    new = f"{names.active_index_prefix}{number:06d}"
    client.indices.create(index=new)
    client.indices.update_aliases(body={"actions": [
        {"add": {"index": new, "alias": names.active_alias, "is_write_index": True}},
        {"add": {"index": old, "alias": names.active_alias, "is_write_index": False}},
    ]})
    client.indices.refresh(index=old)  # the scan must see every write made before the swap
    copied = skipped = 0
    actions = ({"_op_type": "index", "_index": new, "_id": hit["_id"], "version": hit["_version"],
                "version_type": "external", "_source": hit["_source"]}
               for hit in helpers.scan(client, index=old, version=True, query={"query": {"match_all": {}}}))
    for ok, item in helpers.streaming_bulk(client, actions, raise_on_error=False, max_retries=5):
        if ok:
            copied += 1
        elif item["index"].get("status") == 409:
            skipped += 1
        else:
            raise TemplateInstallError(f"rollover copy {old} -> {new}: {item['index'].get('error')}")
    client.indices.update_aliases(body={"actions": [{"remove": {"index": old, "alias": names.active_alias}}]})
    if delete_old:
        client.indices.delete(index=old)
    client.indices.refresh(index=new)
    return {"old_index": old, "new_index": new, "copied": copied, "skipped_newer": skipped}
