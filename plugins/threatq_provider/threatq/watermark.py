"""Watermarks: how far a scheduled sync has safely read ThreatQ, so no interval is ever skipped.

A window run reads the ThreatQ objects whose ``updated_at`` lies in ``[start, end)``. Left to the
scheduler, ``start`` is the run's data interval start, so intervals the scheduler never ran (it
was down, the DAG was paused, ``catchup=False`` skipped them) are never read. The watermark is the
end of the time range read *and loaded* without a hole, kept per (DAG, ThreatQ instance, mode and
filters); a run reads from ``min(watermark, data interval start)`` and so closes any gap, whatever
the scheduler did. This module is the arithmetic (no Airflow, no I/O): which window to read
(:func:`plan_window`), and where the watermark may move once that window is loaded
(:func:`next_watermark`). The operators read and save it (an Airflow Variable).

Rules, each for a reason:

* **No watermark yet** (a new deployment, a new instance, a new filter set): read an initial
  look-back, ``[end - initial_lookback, end)`` (default 90 days, the IOC lifetime), so the first run
  loads what is still relevant instead of ten minutes.
* **A backfill run** reads its own interval, never from the watermark (it replays the past; reading
  from the watermark would make every backfill run read up to now), and may only extend the
  watermark where it joins it.
* **An explicit window** (``since``/``until``) is read as given; the operators then neither read
  nor move the watermark (a one-off re-read must not claim to have covered anything).
* **The watermark only moves forward, and only over a range read without a hole**: a loaded window
  ``[start, end)`` moves it to ``min(end, polled_at)`` when ``start <= watermark``. A window that
  starts after it leaves a hole, which the next scheduled run still reads; a window that ends before
  it never moves it back. Only a run that read the initial look-back (or everything) may create it.
* ``polled_at`` caps it: rows updated after ThreatQ was read were not read, whatever the window said.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from threatq_provider.coerce import CoercionError, format_iso, parse_duration, parse_iso, to_utc

__all__ = [
    "DEFAULT_INITIAL_LOOKBACK",
    "KIND_BACKFILL",
    "KIND_CATCH_UP",
    "KIND_FULL",
    "KIND_INITIAL",
    "KIND_INTERVAL",
    "KIND_OVERRIDE",
    "Window",
    "WatermarkValueError",
    "filters_digest",
    "next_watermark",
    "parse_lookback",
    "parse_watermark_value",
    "plan_window",
    "watermark_key",
    "watermark_value",
]

DEFAULT_INITIAL_LOOKBACK = timedelta(days=90)
#: What a run read, in its XCom and run report: its own data interval; the interval plus the gap
#: since the watermark; the initial look-back (no watermark yet); a backfill interval; a window
#: given by hand.
KIND_INTERVAL = "interval"
KIND_CATCH_UP = "catch_up"
KIND_INITIAL = "initial_lookback"
KIND_BACKFILL = "backfill"
KIND_OVERRIDE = "override"
#: A full resync: it reads everything, so it may create the watermark or move it to its poll time.
KIND_FULL = "full_resync"


class WatermarkValueError(ValueError):
    """A stored watermark (or a look-back) that cannot be read; the message names it and why."""


@dataclass(frozen=True, slots=True)
class Window:
    """The window one run reads, and why.

    :ivar start: first ``updated_at`` read (included).
    :ivar end: end of the window (excluded).
    :ivar interval_start: the run's own interval start (what the scheduler asked for).
    :ivar interval_end: the run's own interval end.
    :ivar kind: one of the ``KIND_*`` constants.
    :ivar watermark: the watermark read before the run (``None``: none, or not consulted).
    :ivar gap: ``(watermark, interval_start)`` when the run reads time no earlier run loaded.
    :ivar may_create: whether loading this window may create a missing watermark.
    """

    start: datetime
    end: datetime
    interval_start: datetime
    interval_end: datetime
    kind: str
    watermark: datetime | None = None
    gap: tuple[datetime, datetime] | None = None
    may_create: bool = False

    def gap_intervals(self) -> int:
        """How many whole intervals of this run's length the gap spans (0 without a gap)."""
        if self.gap is None:
            return 0
        step = self.interval_end - self.interval_start
        if step <= timedelta(0):
            return 0
        return int((self.gap[1] - self.gap[0]) // step)


def parse_lookback(value: Any) -> timedelta:
    """An initial look-back, a duration (:func:`threatq_provider.coerce.parse_duration`; ``0d``: the
    run's own interval only).

    :raises WatermarkValueError: anything else (a typo must not silently read 90 days, or none).
    """
    try:
        return parse_duration(value, "initial_lookback", allow_zero=True)
    except CoercionError as exc:
        raise WatermarkValueError(str(exc)) from None


def plan_window(interval_start: datetime, interval_end: datetime, *, watermark: datetime | None,
                use_watermark: bool = True, backfill: bool = False,
                initial_lookback: timedelta = DEFAULT_INITIAL_LOOKBACK) -> Window:
    """The window a run reads.

    :param interval_start: the run's interval start (or the window given by hand).
    :param interval_end: the run's interval end.
    :param watermark: the stored watermark, ``None`` when there is none.
    :param use_watermark: ``False`` for a window given by hand (read as given).
    :param backfill: the run is a backfill (reads its own interval).
    :param initial_lookback: how far the first run reads back from ``interval_end``.
    :return: the :class:`Window`.
    """
    # Plain UTC datetimes: a pendulum DateTime loses its zone in arithmetic with timedelta.
    start, end = to_utc(interval_start), to_utc(interval_end)
    if not use_watermark:
        return Window(start, end, start, end, KIND_OVERRIDE, watermark)
    if backfill:
        return Window(start, end, start, end, KIND_BACKFILL, watermark)
    if watermark is None:
        first = min(start, end - initial_lookback)
        return Window(first, end, start, end, KIND_INITIAL, None, may_create=True)
    mark = to_utc(watermark)
    if mark < start:
        return Window(mark, end, start, end, KIND_CATCH_UP, mark, gap=(mark, start))
    return Window(start, end, start, end, KIND_INTERVAL, mark)


def next_watermark(current: datetime | None, *, start: datetime, end: datetime, polled_at: datetime,
                   may_create: bool) -> datetime | None:
    """Where the watermark moves once ``[start, end)``, read at ``polled_at``, is loaded.

    :param current: the watermark now stored (read again just before saving: another run may have
        moved it since this one started).
    :param start: the window read (included).
    :param end: the window's end (excluded).
    :param polled_at: when ThreatQ was read; nothing updated later was read.
    :param may_create: whether this run may create a missing watermark (it read the look-back).
    :return: the new watermark, or ``None`` when it must stay as it is.
    """
    reach = min(to_utc(end), to_utc(polled_at))
    if current is None:
        return reach if may_create else None
    current = to_utc(current)
    if to_utc(start) <= current < reach:
        return reach
    return None


def filters_digest(filters: dict[str, Any]) -> str | None:
    """A short digest of the read filters, or ``None`` when none is set.

    A filtered run reads part of the feed, so it must not move the unfiltered watermark: each filter
    set keeps its own (and a new one starts with the look-back). Values are compared as sets.
    """
    kept = {k: sorted(map(str, v)) if isinstance(v, list | tuple | set) else v
            for k, v in sorted(filters.items()) if v not in (None, "", [], (), set())}
    if not kept:
        return None
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def watermark_key(dag_id: str, instance: str, mode: str, filters: dict[str, Any] | None = None) -> str:
    """Name of the Airflow Variable holding one watermark.

    :param dag_id: the DAG.
    :param instance: the ThreatQ instance name (``ThreatQHook.instance_name``).
    :param mode: what is read (``window`` for window and full-resync runs of the indicator DAG,
        ``events`` for the MISP DAG).
    :param filters: the read filters; a filtered feed gets its own key.
    :return: ``threatq_watermark__<dag_id>__<instance>__<mode>[__<filters digest>]``.
    """
    key = f"threatq_watermark__{dag_id}__{instance}__{mode}"
    digest = filters_digest(filters or {})
    return key if digest is None else f"{key}__{digest}"


def watermark_value(watermark: datetime, *, run_id: str | None = None, highest_updated_at: str | None = None,
                    filters: dict[str, Any] | None = None, saved_at: datetime | None = None) -> str:
    """The Variable's text: JSON, so people can read (and edit) it in the UI.

    ``watermark`` is the only field read back; the others say where it came from.
    """
    body: dict[str, Any] = {"watermark": format_iso(watermark)}
    if highest_updated_at:
        body["highest_updated_at"] = highest_updated_at
    if filters:
        body["filters"] = {k: v for k, v in filters.items() if v not in (None, "", [], ())}
    if run_id:
        body["run_id"] = run_id
    body["saved_at"] = format_iso(saved_at or datetime.now(UTC))
    return json.dumps(body, sort_keys=True)


def parse_watermark_value(text: Any, *, key: str = "watermark") -> datetime | None:
    """The watermark in a Variable's text: the JSON :func:`watermark_value` writes, or a bare
    ISO-8601 time (set by hand). Empty means none.

    :raises WatermarkValueError: a text that holds neither (naming the Variable).
    """
    if text is None:
        return None
    raw = str(text).strip()
    if not raw:
        return None
    value: Any = raw
    if raw.startswith("{"):
        try:
            value = json.loads(raw).get("watermark")
        except (ValueError, AttributeError):
            value = None
    if isinstance(value, str) and value.strip():
        try:
            return parse_iso(value, key)
        except CoercionError:
            pass
    raise WatermarkValueError(
        f"Variable {key} does not hold a watermark: {raw[:120]!r}; expected "
        '{"watermark": "<ISO-8601 time>"} or an ISO-8601 time (delete it to start again with the look-back)'
    )
