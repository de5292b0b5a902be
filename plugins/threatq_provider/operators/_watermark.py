"""Reading and saving the sync watermark (an Airflow Variable) for the poll, select and report tasks.

The arithmetic is :mod:`threatq_provider.threatq.watermark`; this module is the Airflow side: the
Variable (its key and text), the run's type (a backfill reads its own interval), and the small
dict the reading task puts in XCom so that the task that runs after the load can save it.

*Why a Variable* (and not a document in Elasticsearch): the MISP DAG has no Elasticsearch, the
collection cursor already lives in a Variable, and people can read, edit and delete it in the UI
(Admin → Variables) or with ``airflow variables``. The cost: a wiped or replaced Elasticsearch
cluster does not take the watermark with it; run ``full_resync`` (or delete the Variable) then.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from threatq_provider.coerce import format_iso, is_unset, parse_iso

from threatq_provider.threatq.watermark import (
    KIND_FULL,
    Window,
    WatermarkValueError,
    next_watermark,
    parse_lookback,
    parse_watermark_value,
    plan_window,
    watermark_key,
    watermark_value,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Variable read for the initial look-back when the DAG passes none.
LOOKBACK_VARIABLE = "threatq_initial_lookback"


def iso(moment: datetime | None) -> str | None:
    """The XCom/Variable text of a moment (``2026-01-31T12:00:00Z``), ``None`` for none."""
    return None if moment is None else format_iso(moment)


def _parse_iso(text: Any, name: str) -> datetime | None:
    return None if is_unset(text) else parse_iso(text, name)


def is_backfill(context: Context) -> bool:
    """Whether the running DAG run is a backfill (``airflow backfill create``)."""
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return str(getattr(run_type, "value", run_type) or "").lower() == "backfill"


def lookback(value: Any) -> timedelta:
    """The initial look-back from a rendered argument; fails the task on a typo."""
    try:
        return parse_lookback("90d" if is_unset(value) else value)
    except WatermarkValueError as exc:
        raise AirflowFailException(str(exc)) from None


def read_watermark(key: str) -> datetime | None:
    """The watermark stored under ``key`` (``None`` when unset); fails the task on an unreadable value."""
    from airflow.providers.common.compat.sdk import Variable

    try:
        return parse_watermark_value(Variable.get(key, default=None), key=key)
    except WatermarkValueError as exc:
        raise AirflowFailException(str(exc)) from None


def plan(context: Context, *, dag_id: str, instance: str, mode: str, filters: dict[str, Any],
         start: datetime, end: datetime, initial_lookback: Any, full: bool = False) -> tuple[Window, dict[str, Any]]:
    """The window to read and the XCom dict describing it (``watermark`` info for the saving task).

    :param full: the run reads everything (``full_resync``): it may create or move the watermark
        to its poll time.
    :return: ``(window, info)``.
    """
    key = watermark_key(dag_id, instance, mode, filters)
    current = read_watermark(key)
    if full:
        window = Window(start, end, start, end, KIND_FULL, current, may_create=True)
    else:
        window = plan_window(start, end, watermark=current, backfill=is_backfill(context),
                             initial_lookback=lookback(initial_lookback))
    info: dict[str, Any] = {
        "variable": key,
        "instance": instance,
        "kind": window.kind,
        "read": iso(current),
        "may_create": window.may_create,
        "window_start": iso(window.start),
        "window_end": iso(window.end),
        "interval_start": iso(window.interval_start),
        "interval_end": iso(window.interval_end),
        "gap": None,
        "filters": {k: v for k, v in filters.items() if v not in (None, "", [], ())},
    }
    if window.gap is not None:
        info["gap"] = {"start": iso(window.gap[0]), "end": iso(window.gap[1]),
                       "intervals": window.gap_intervals()}
    if window.kind == "initial_lookback":
        info["initial_lookback"] = str(initial_lookback or "90d")
    return window, info


def describe(info: dict[str, Any]) -> str:
    """One line for the task log: the window read and why."""
    text = f"[{info.get('window_start')}, {info.get('window_end')})"
    kind = info.get("kind")
    gap = info.get("gap")
    if gap:
        return (f"{text}: catching up from the watermark {gap['start']}, closing a gap of "
                f"{gap['intervals']} missed interval(s) [{gap['start']}, {gap['end']})")
    if kind == "initial_lookback":
        return f"{text}: no watermark yet, initial look-back {info.get('initial_lookback')}"
    return f"{text} ({kind})"


def save_watermark(info: dict[str, Any] | None, *, polled_at: Any, run_id: str | None = None,
                   highest_updated_at: str | None = None) -> dict[str, Any]:
    """Move the watermark after the window in ``info`` was loaded (see ``next_watermark``).

    Reads the Variable again first: a backfill may have moved it since this run read it.

    :param info: the ``watermark`` dict of the reading task's XCom (nothing is done without one).
    :param polled_at: when ThreatQ was read.
    :return: ``{"saved", "watermark", "previous", "variable"}``.
    """
    if not info or not info.get("variable"):
        return {"saved": False, "watermark": None, "previous": None, "variable": None}
    from airflow.providers.common.compat.sdk import Variable

    key = str(info["variable"])
    current = read_watermark(key)
    polled = _parse_iso(polled_at, "polled_at") or datetime.now(UTC)
    new = next_watermark(current, start=_parse_iso(info["window_start"], "window_start"),
                         end=_parse_iso(info["window_end"], "window_end"),
                         polled_at=polled, may_create=bool(info.get("may_create")))
    if new is not None:
        Variable.set(key, watermark_value(new, run_id=run_id, highest_updated_at=highest_updated_at,
                                          filters=info.get("filters")))
    return {"saved": new is not None, "watermark": iso(new or current), "previous": iso(current),
            "variable": key}
