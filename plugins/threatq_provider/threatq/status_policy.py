"""The status policy: which ThreatQ statuses make an IOC *active* for detection.

One table (package data ``threatq/status_policy.json``) serves both halves: the ECS transform
takes an indicator whose status is outside the policy out of the Elasticsearch active index (its
``threatq.ioc_expired_at`` becomes its ``updated_at``, reason :data:`~threatq_provider.ecs.expiry.REASON_STATUS_POLICY`,
and the loader removes it on that load), and the MISP mapping gives it no IDS flag. Default:
Active only; Whitelisted never, whatever the setting. No Airflow import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from threatq_provider._resources import data_file

__all__ = ["StatusPolicy", "StatusPolicyError", "load_table"]


class StatusPolicyError(ValueError):
    """A status policy that names no status, a non-string, or a status that can never be active."""


@lru_cache(maxsize=1)
def load_table() -> dict[str, Any]:
    """The status table (``threatq/status_policy.json``), parsed once."""
    return json.loads(data_file("threatq", "status_policy.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class StatusPolicy:
    """The statuses that make an IOC active (names as given; compared case-insensitively).

    :param active: status names; build with :meth:`of` or :meth:`default` (they validate).
    """

    active: tuple[str, ...]

    @classmethod
    def default(cls) -> StatusPolicy:
        """Active only (the table's ``active_by_default`` rows)."""
        return cls.of(row["name"] for row in load_table()["statuses"] if row.get("active_by_default"))

    @classmethod
    def of(cls, names: Iterable[str] | str | None) -> StatusPolicy:
        """A policy from status names; ``None`` or an empty value gives :meth:`default`.

        :param names: status names (a list, or one comma-separated string as a Variable holds it).
        :raises StatusPolicyError: a name that is not a non-empty string, or a status marked
            ``never`` (Whitelisted).
        """
        if names is None or names == "" or names == []:
            return cls.default()
        if isinstance(names, str):
            names = [part for part in (p.strip() for p in names.split(",")) if part]
        names = list(names)
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad or not names:
            raise StatusPolicyError(f"active statuses must be non-empty status names, got {names!r}")
        never = {row["name"].casefold(): row["name"] for row in load_table()["statuses"] if row.get("never")}
        refused = sorted({never[n.strip().casefold()] for n in names if n.strip().casefold() in never})
        if refused:
            raise StatusPolicyError(f"status {', '.join(refused)} can never make an IOC active for detection "
                                    "(status_policy.json: never)")
        seen: dict[str, str] = {}
        for name in names:
            seen.setdefault(name.strip().casefold(), name.strip())
        return cls(tuple(seen.values()))

    @property
    def folded(self) -> frozenset[str]:
        """The active names, case-folded (what :meth:`allows` compares)."""
        return frozenset(n.casefold() for n in self.active)

    def allows(self, status: str | None) -> bool:
        """Whether an indicator with this status name is active for detection (no status: yes)."""
        return status is None or status.casefold() in self.folded
