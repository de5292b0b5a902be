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

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from threatq_provider.ecs.dates import add, parse_threatq_date

__all__ = [
    "ioc_expiration",
    "REASON_EXPIRED_AT",
    "REASON_EXPIRES_AT",
    "REASON_STATUS",
    "REASON_DURATION",
]

REASON_EXPIRES_AT = "Expiration set by ThreatQ from expires_at field"
REASON_EXPIRED_AT = "Expiration set by ThreatQ from expired_at field"
REASON_STATUS = "Expiration set by Elastic when threatq.status is 'Expired'"
REASON_DURATION = "Expiration set by Elastic from the integration's parameter `IOC Expiration Duration`"


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
    expired_at = parse_threatq_date(raw.get("expired_at"))
    if expired_at is not None:
        return expired_at, REASON_EXPIRED_AT
    expires_at = parse_threatq_date(raw.get("expires_at"))
    if expires_at is not None:
        return expires_at, REASON_EXPIRES_AT
    updated_at = parse_threatq_date(raw.get("updated_at"))
    if updated_at is None:
        updated_at = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
    if status_name(raw) == "Expired":
        return updated_at, REASON_STATUS
    expiry = add(updated_at, duration)
    if expiry is None:
        return None, None
    return expiry, REASON_DURATION
