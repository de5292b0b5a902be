"""The compiled fast path of :func:`~threatq_provider.ecs.transform.transform_stream`.

``threatq_ecs_native`` (Rust, ``native/`` in the repository, distribution ``threatq-ecs-native``,
the provider's ``native`` extra) maps the common, clean ThreatQ record to the exact bytes the
Python transform writes for it, about 5x faster per line. For every other line (a record the
Python transform rejects or flags, or one needing a rule the native code does not carry) it
answers ``None`` and the Python transform handles the line, so rejects, error messages and
counts are always Python's. ``tests/unit/ecs/test_native.py`` holds the two paths byte-identical.

The native module is optional: without it (no Rust toolchain where the package was built) the
transform runs on the Python path alone, same output, slower.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Literal

from threatq_provider.ecs.key_kinds import DATE, LONG, NESTED, STR, ObjectKinds
from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.ecs.expiry import (
    REASON_DURATION,
    REASON_EXPIRED_AT,
    REASON_EXPIRES_AT,
    REASON_STATUS,
    REASON_STATUS_POLICY,
)
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.tables import Tables

__all__ = ["ENGINES", "Engine", "LineMapper", "available", "check_engine", "line_mapper", "resolve_engine", "tables_json"]

Engine = Literal["auto", "native", "python"]
ENGINES: tuple[str, ...] = ("auto", "native", "python")
#: One raw NDJSON line (``bytes`` or ``str``) → the ECS document's JSON text, or ``None`` when the
#: Python transform must handle the line.
LineMapper = Callable[[bytes | str], str | None]
#: Set to 1 to make ``engine="auto"`` fail instead of falling back when the native module is missing
#: (scripts/test and CI set it, so a broken native build cannot pass unnoticed).
REQUIRE_ENV = "TQ_REQUIRE_NATIVE"


def _module():  # noqa: ANN202 - the extension has no type stubs
    try:
        import threatq_ecs_native
    except ImportError:
        return None
    return threatq_ecs_native


def available() -> bool:
    """Whether the compiled module is importable here."""
    return _module() is not None


def check_engine(engine: str) -> Engine:
    """The engine name, checked (at DAG parse time by the operator, at run time by the stream).

    :raises EcsConfigError: a name outside :data:`ENGINES`.
    """
    if engine not in ENGINES:
        raise EcsConfigError(f"invalid transform engine {engine!r}: expected one of {', '.join(ENGINES)}")
    return engine  # type: ignore[return-value]


def resolve_engine(engine: str) -> Literal["native", "python"]:
    """Which path a transform with ``engine`` runs on.

    :param engine: ``auto`` (native when installed), ``native`` (required) or ``python``.
    :return: ``native`` or ``python``.
    :raises EcsConfigError: an unknown name, or ``native`` required (by the argument or by
        ``TQ_REQUIRE_NATIVE=1``) but not installed.
    """
    if check_engine(engine) == "python":
        return "python"
    if available():
        return "native"
    if engine == "native" or os.environ.get(REQUIRE_ENV, "") == "1":
        why = f"{REQUIRE_ENV}=1" if engine == "auto" else "engine='native'"
        raise EcsConfigError(
            f"the native ECS transform (threatq_ecs_native) is not installed but {why} requires it; "
            "build it with scripts/bootstrap (needs a Rust toolchain) or install the provider's 'native' extra"
        )
    return "python"


_KIND_NAMES = {DATE: "date", STR: "str", LONG: "long", NESTED: "nested"}


def tables_json(tables: Tables, object_kinds: Mapping[str, ObjectKinds], hives: Mapping[str, str]) -> str:
    """Everything the native engine reads, defined once in Python: the loaded (already validated)
    type tables, the transform's key → kind table of each object (``indicator``, ``source``,
    ``attribute``, ``adversary``, ``comment``, ``id_object``), the registry hive abbreviations, the
    expiry reasons and the document constants."""
    types = {
        name: {
            "ecs_type": rule.ecs_type,
            "path": list(rule.path),
            "kind": rule.kind,
            "related": rule.related,
            "extra": [[list(path), value] for path, value in rule.extra],
        }
        for name, rule in tables.types.items()
    }
    return json.dumps(
        {
            "ecs_version": tables.ecs_version,
            "keyword_max_chars": tables.keyword_max_chars,
            "types": types,
            "confidence": list(tables.confidence),
            "tlp_prefixes": list(tables.tlp_prefixes),
            "tlp_spellings": dict(tables.tlp_spellings),
            "hives": dict(hives),
            "constants": [[list(path), value] for path, value in tables.constants],
            "indicator_dates": [[name, list(keys)] for name, keys in tables.indicator_dates],
            "expiration_reasons": {
                "expired_at": REASON_EXPIRED_AT,
                "expires_at": REASON_EXPIRES_AT,
                "status": REASON_STATUS,
                "duration": REASON_DURATION,
                "status_policy": REASON_STATUS_POLICY,
            },
            "kinds": {
                name: {key: _KIND_NAMES[kind] for key, kind in kinds.kinds.items()}
                for name, kinds in object_kinds.items()
            },
        }
    )


def line_mapper(
    options: EcsOptions, tables: Tables, object_kinds: Mapping[str, ObjectKinds], hives: Mapping[str, str]
) -> LineMapper:
    """A native line mapper for these options, tables, key kinds and hive abbreviations.

    :raises EcsConfigError: when the native module is not installed.
    """
    module = _module()
    if module is None:
        raise EcsConfigError("the native ECS transform (threatq_ecs_native) is not installed")
    engine = module.Engine(
        tables_json(tables, object_kinds, hives),
        keep_duplicates=options.preserve_duplicate_custom_fields,
        preserve_original=options.preserve_original_event,
        threatq_url=options.threatq_url,
        instance=options.instance,
        expiration_seconds=int(options.expiration.total_seconds()),
        active_statuses=sorted(options.status_policy.folded),
    )
    return engine.map_line
