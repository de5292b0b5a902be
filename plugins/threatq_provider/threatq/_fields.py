"""Small value helpers the client's parts share: query lists, path ids, result projections.

No I/O and no Airflow import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from threatq_provider.coerce import CoercionError, parse_int
from threatq_provider.threatq.errors import ThreatQValidationError


def project(row: Any, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(row, dict):
        return {}
    return {k: row[k] for k in keys if k in row}


def join(values: Iterable[str] | str | None) -> str | None:
    if values is None:
        return None
    if isinstance(values, str):
        return values or None
    joined = ",".join(v for v in values if v)
    return joined or None


def int_id(field_name: str, value: Any) -> int:
    try:
        return parse_int(value, field_name, minimum=1)
    except CoercionError:
        raise ThreatQValidationError(field_name, value, reason="a positive integer id is required") from None

