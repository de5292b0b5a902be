"""When an indicator stops being an active IOC: ``threatq.ioc_expired_at`` and its reason.

Elastic's ti_threatq pipeline (1.24.0+) decides with four rules, first match wins; the expiry
sweep deletes an active document once ``threatq.ioc_expired_at <= now``:

1. ``expired_at`` set by ThreatQ → that date.
2. ``expires_at`` set by ThreatQ → that date.
3. status ``Expired`` → ``updated_at`` (the moment it was marked Expired; Elastic writes
   ``@timestamp``, which is ``updated_at``).
4. otherwise → ``updated_at + ioc_expiration_duration``. Relative to ``updated_at``, not to the
   time of ingestion: an indicator that ThreatQ never touches again expires ``duration`` after its
   last change even if it is polled again later.

The reasons are Elastic's exact strings, so dashboards built on them keep working.

Rule 3 reads ``status.name``. Since 1.32.0 Elastic keeps ``threatq.status`` as the object
``{id, name, description}`` but its script still compares ``threatq.status == 'Expired'`` (an
object to a string), so in Elastic the rule never fires and an Expired indicator lingers for the
default duration. We compare the name, as the rule intends (a plain string ``status`` is accepted
too, the ≤1.31 shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from threatq_provider.ecs.dates import add, format_ecs_date, parse_threatq_date, to_ecs_date

__all__ = [
    "REASON_DURATION",
    "REASON_EXPIRED_AT",
    "REASON_EXPIRES_AT",
    "REASON_STATUS",
    "REASON_STATUS_POLICY",
    "expiration_of",
    "ioc_expiration",
    "status_name",
]

REASON_EXPIRES_AT = "Expiration set by ThreatQ from expires_at field"
REASON_EXPIRED_AT = "Expiration set by ThreatQ from expired_at field"
REASON_STATUS = "Expiration set by Elastic when threatq.status is 'Expired'"
REASON_DURATION = "Expiration set by Elastic from the integration's parameter `IOC Expiration Duration`"
#: Ours (issue 12): the status is outside the detection status policy (``threatq.status_policy``).
REASON_STATUS_POLICY = "Expiration set by the status policy: threatq.status is not an active status"


def status_name(raw: Mapping[str, Any]) -> str | None:
    """ThreatQ status name of a raw indicator (``status.name``, or a plain string ``status``)."""
    status = raw.get("status")
    if isinstance(status, dict):
        name = status.get("name")
        return name if isinstance(name, str) else None
    return status if isinstance(status, str) else None


def ioc_expiration(
    raw: Mapping[str, Any], *, now: datetime, duration: timedelta
) -> tuple[datetime | None, str | None]:
    """Expiry of one raw ThreatQ indicator, by Elastic's four rules.

    :param raw: the indicator as ThreatQ returns it (dates as ``YYYY-MM-DD HH:MM:SS``).
    :param now: the run's clock; used only when ``updated_at`` is missing or unparsable (rules 3
        and 4 then count from ``now``, so the document still expires).
    :param duration: the IOC expiration duration (``EcsOptions.expiration``).
    :return: ``(ioc_expired_at, reason)`` in UTC; ``(None, None)`` only when the date would pass
        year 9999.
    """
    expiry, reason = expiration_of(
        expired_at=to_ecs_date(raw.get("expired_at")),
        expires_at=to_ecs_date(raw.get("expires_at")),
        updated_at=to_ecs_date(raw.get("updated_at")),
        status=status_name(raw),
        now=now,
        duration=duration,
    )
    return (parse_threatq_date(expiry) if expiry is not None else None), reason


def expiration_of(
    *,
    expired_at: str | None,
    expires_at: str | None,
    updated_at: str | None,
    status: str | None,
    now: datetime,
    duration: timedelta,
) -> tuple[str | None, str | None]:
    """The four rules over dates already in ECS form (``2020-11-15T00:00:02.000Z``).

    The transform calls this directly with the fields it has converted; :func:`ioc_expiration`
    converts the raw fields first.

    :return: ``(ioc_expired_at as ECS date text, reason)``, ``(None, None)`` past year 9999.
    """
    if expired_at:
        return expired_at, REASON_EXPIRED_AT  # rule 1
    if expires_at:
        return expires_at, REASON_EXPIRES_AT  # rule 2
    if updated_at:
        base = datetime.fromisoformat(updated_at[:23])  # naive UTC, milliseconds kept
    else:
        base = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now
    if status == "Expired":
        return (updated_at or format_ecs_date(base)), REASON_STATUS  # rule 3 (status.name)
    expiry = add(base, duration)  # rule 4: updated_at + duration
    if expiry is None:
        return None, None
    # The ECS form as ecs/dates.py writes it (hot path, mirrored by native/), not coerce.format_iso_millis.
    return expiry.isoformat(timespec="milliseconds") + "Z", REASON_DURATION
