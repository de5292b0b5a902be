"""Index templates for the active-IOC index and the append-only history, installed idempotently.

Names follow Elastic's ``ti_threatq`` conventions so Kibana's threat-intel views and
indicator-match rules find the data:

- active: alias :data:`ACTIVE_ALIAS` (``logs-ti_threatq_latest.threat``) over concrete indices
  ``logs-ti_threatq_latest.threat-000001``, ``-000002`` …, one document per ThreatQ indicator;
- history: daily indices ``logs-ti_threatq.threat_history-YYYY.MM.DD`` (the load's day), every
  version once per day (``_id`` = id and version), swept by age like Elastic's 5-day ILM;
- tombstones: the hidden index ``threatq-ioc-tombstones`` (outside ``logs-ti_*``), the version at
  which each IOC left the active index (see :mod:`.tombstones`).

The mapping is data: ``threatq_provider/data/mappings/ecs_fields.json`` (every field the transform writes,
with its type) plus ``threatq_provider/data/elasticsearch/templates.json`` (names, settings, extra constant
fields). Both documents are ``dynamic: false``: unknown keys stay in ``_source`` unindexed; the
component template ``logs-ti_threatq@custom`` (composed in, may be absent) is where users map
more fields.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from threatq_provider._resources import data_file
from threatq_provider.elasticsearch.errors import TemplateInstallError
from threatq_provider.elasticsearch.names import ACTIVE_ALIAS, HISTORY_PATTERN, HISTORY_PREFIX

__all__ = ["ACTIVE_ALIAS", "HISTORY_PATTERN", "HISTORY_PREFIX", "IndexNames", "ensure_tombstone_index",
           "install_templates", "mapped_types", "rollover_to_new_index", "template_body"]

log = logging.getLogger(__name__)

_NO_HANDLER = re.compile(r"(?:No handler for type|The mapper type) \[([a-z_]+)\]")


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


def template_body(kind: str, names: IndexNames, missing_types: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The composable index template for ``kind``.

    :param kind: ``"active"`` or ``"history"``.
    :param names: index names (with prefix).
    :param missing_types: field types the cluster lacks; replaced by ``type_fallbacks``.
    :return: the body of ``PUT _index_template/<name>``.
    """
    cfg = template_config()
    flat = _apply_fallbacks(field_mappings(kind), set(missing_types))
    pattern = names.active_index_prefix + "*" if kind == "active" else names.history_pattern
    body: dict[str, Any] = {
        "index_patterns": [pattern],
        "priority": cfg["priority"],
        "version": cfg["version"],
        "composed_of": [names.custom_component],
        "ignore_missing_component_templates": [names.custom_component],
        "template": {
            "settings": copy.deepcopy(cfg[kind]["settings"]),
            "mappings": {
                "dynamic": False,
                "date_detection": False,
                "properties": _nest(flat),
            },
        },
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    body["_meta"] = {"managed_by": cfg["managed_by"], "version": cfg["version"], "digest": digest}
    return body


def _installed_meta(client: Elasticsearch, name: str) -> dict[str, Any] | None:
    try:
        resp = client.indices.get_index_template(name=name)
    except NotFoundError:
        return None
    templates = resp.get("index_templates") or []
    return templates[0]["index_template"].get("_meta", {}) if templates else None


def _put_template(client: Elasticsearch, kind: str, names: IndexNames, digest: str) -> dict[str, Any]:
    """PUT a template, falling back per field type the cluster does not know.

    The digest stays the one of the body without fallbacks, so a re-run on the same cluster
    sees "unchanged".
    """
    missing: set[str] = set()
    fallbacks = template_config()["type_fallbacks"]
    name = names.active_template if kind == "active" else names.history_template
    for _ in range(len(fallbacks) + 1):
        body = template_body(kind, names, frozenset(missing))
        body["_meta"]["digest"] = digest
        try:
            client.indices.put_index_template(name=name, **body)
            if missing:
                log.warning("template %s: this cluster has no field type(s) %s; mapped as %s",
                            name, sorted(missing), {t: fallbacks[t]["type"] for t in sorted(missing)})
            return body
        except ApiError as exc:
            found = _NO_HANDLER.search(str(exc.info))
            if exc.meta.status != 400 or not found or found.group(1) not in fallbacks or found.group(1) in missing:
                raise TemplateInstallError(f"index template {name}: HTTP {exc.meta.status} {exc.error}") from exc
            missing.add(found.group(1))
    raise TemplateInstallError(f"index template {name}: field types still unsupported: {sorted(missing)}")


def _ensure_active_index(client: Elasticsearch, names: IndexNames, body: dict[str, Any], changed: bool) -> str:
    """Create the first concrete active index behind the alias, or add new fields to it."""
    if not client.indices.exists_alias(name=names.active_alias):
        try:
            client.indices.create(index=names.first_active_index,
                                  aliases={names.active_alias: {"is_write_index": True}})
        except ApiError as exc:
            if exc.error != "resource_already_exists_exception":
                raise TemplateInstallError(
                    f"active index {names.first_active_index}: HTTP {exc.meta.status} {exc.error}") from exc
            return "exists"
        return "created"
    if not changed:
        return "exists"
    # Additive template changes reach the live index at once; a changed type needs a rollover.
    try:
        client.indices.put_mapping(index=names.active_alias, **body["template"]["mappings"])
    except ApiError as exc:
        log.warning("active index %s keeps its old mapping (HTTP %s %s); run rollover_to_new_index",
                    names.active_alias, exc.meta.status, exc.error)
        return "needs_rollover"
    return "mapping_updated"


def ensure_tombstone_index(client: Elasticsearch, index: str) -> str:
    """Create the tombstone index (see :mod:`.tombstones`) unless it exists.

    :param client: an Elasticsearch client.
    :param index: its name (``IndexNames.tombstone_index``).
    :return: ``"created"`` or ``"exists"``.
    :raises TemplateInstallError: the cluster refused it.
    """
    if client.indices.exists(index=index, expand_wildcards="all"):
        return "exists"
    cfg = template_config()["tombstones"]
    try:
        client.indices.create(index=index, settings=copy.deepcopy(cfg["settings"]),
                              mappings=copy.deepcopy(cfg["mappings"]))
    except ApiError as exc:
        if exc.error == "resource_already_exists_exception":
            return "exists"
        raise TemplateInstallError(f"tombstone index {index}: HTTP {exc.meta.status} {exc.error}") from exc
    return "created"


def install_templates(client: Elasticsearch, *, prefix: str = "") -> dict[str, str]:
    """Install both index templates and the first active index, skipping what is current.

    A template whose ``_meta.digest`` matches ours is left alone. Idempotent and safe to run
    before every load.

    :param client: an Elasticsearch client.
    :param prefix: prepended to every name (tests).
    :return: what happened: ``{"active_template": "installed"|"unchanged",
        "history_template": …, "active_index": "created"|"exists"|"mapping_updated"|"needs_rollover",
        "tombstone_index": "created"|"exists"}``.
    :raises TemplateInstallError: the cluster refused a template or the index.
    """
    names = IndexNames(prefix)
    result: dict[str, str] = {}
    active_body: dict[str, Any] | None = None
    for kind, name in (("active", names.active_template), ("history", names.history_template)):
        wanted = template_body(kind, names)
        meta = _installed_meta(client, name)
        # Compare with the body we would send without fallbacks; fallbacks do not change the digest.
        if meta and meta.get("digest") == wanted["_meta"]["digest"]:
            result[f"{kind}_template"] = "unchanged"
            continue
        body = _put_template(client, kind, names, wanted["_meta"]["digest"])
        if kind == "active":
            active_body = body
        result[f"{kind}_template"] = "installed"
        log.info("index template %s installed (version %s)", name, wanted["version"])
    body = active_body or {"template": {"mappings": {}}}
    result["active_index"] = _ensure_active_index(client, names, body, active_body is not None)
    result["tombstone_index"] = ensure_tombstone_index(client, names.tombstone_index)
    return result


def mapped_types(client: Elasticsearch, index: str) -> dict[str, str]:
    """Flat field path → type as the cluster maps it (for checks and tests).

    :param client: an Elasticsearch client.
    :param index: index or alias (the first concrete index is read).
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
    return out


def rollover_to_new_index(client: Elasticsearch, *, prefix: str = "", delete_old: bool = True) -> dict[str, Any]:
    """Move the active alias to a new concrete index built from the current template.

    Order matters for concurrent loads: (1) create ``-00000N+1``; (2) swap the write index in one
    alias action, keeping the old index readable behind the alias; (3) copy the old documents
    with external versioning (a version already written by a concurrent load wins, the copy
    gets a conflict and is skipped); (4) drop the old index from the alias and delete it.

    :param client: an Elasticsearch client.
    :param prefix: prepended to every name (tests).
    :param delete_old: delete the previous index at the end.
    :return: ``{"old_index", "new_index", "copied", "skipped_newer"}``.
    """
    from elasticsearch import helpers  # local: only this rare path needs it

    names = IndexNames(prefix)
    aliases = client.indices.get_alias(name=names.active_alias)
    old = next(i for i, a in aliases.items() if a["aliases"][names.active_alias].get("is_write_index", True))
    number = int(old.rsplit("-", 1)[1]) + 1
    new = f"{names.active_index_prefix}{number:06d}"
    client.indices.create(index=new)
    client.indices.update_aliases(actions=[
        {"add": {"index": new, "alias": names.active_alias, "is_write_index": True}},
        {"add": {"index": old, "alias": names.active_alias, "is_write_index": False}},
    ])
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
    client.indices.update_aliases(actions=[{"remove": {"index": old, "alias": names.active_alias}}])
    if delete_old:
        client.indices.delete(index=old)
    client.indices.refresh(index=new)
    return {"old_index": old, "new_index": new, "copied": copied, "skipped_newer": skipped}
