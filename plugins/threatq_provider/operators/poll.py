"""Poll ThreatQ indicators into a raw NDJSON stage file.

One operator, three ways of choosing what to read (``mode``):

``window``
    indicators whose ``updated_at`` falls in ``[window_start, window_end)`` — the run's data
    interval. With ``use_watermark`` the window starts at the watermark when that is earlier, so
    intervals the scheduler never ran are read by the next run; without a watermark it reads the
    initial look-back; a backfill run reads its own interval (:mod:`threatq_provider.threatq.watermark`).
    The operator only *reads* the watermark; the report task saves it once the load succeeded.
``collection``
    a ThreatQ data collection (saved search) paged with ``cursorMark``, as Elastic's
    ``ti_threatq`` integration reads it. The cursor to start from is read from an Airflow
    Variable; this operator only *reports* the cursor reached (``next_cursor``) and never saves
    it: the report task saves it after the pages are staged **and** loaded (Singer's rule —
    saving earlier would lose records when the load fails).
``full_resync``
    every indicator (a window from 1970 to 9999).

The operator streams page by page to ``<stage_uri>/raw.ndjson.zst`` (one indicator per line,
zstd-compressed, written in blocks: :mod:`threatq_provider.stage_io`) under an
``ObjectStoragePath``, so memory stays flat and any worker can read the file. A rerun of the same
run writes the same path, replacing its own file. The XCom is a small dict of paths and counts.

One bad record never blocks the feed: a record no UTF-8 writer can hold (a lone surrogate) is
staged with ``\\u`` escapes, as ThreatQ sent it, for the transform to repair; a record nested too
deeply to stage goes to ``raw.rejects.ndjson`` with its id and reason, and the rest of its page is
staged (so, in collection mode, the cursor moves past it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from airflow.providers.common.compat.sdk import AirflowFailException

from threatq_provider._jsonscan import MAX_DEPTH, depth_exceeds
from threatq_provider.coerce import CoercionError, is_unset, parse_int, parse_iso
from threatq_provider._prefetch import prefetch
from threatq_provider.operators._base import HookOperator, threatq_hook
from threatq_provider.operators._common import fail_fast, optional, sibling_ndjson_path
from threatq_provider.threatq.paging import UnparsedRow

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

    from threatq_provider.threatq.hook import ThreatQHook

MODES = ("window", "collection", "full_resync")
#: zstd-compressed NDJSON (threatq_provider.stage_io): ~10x smaller; every reader also takes plain files.
RAW_FILE_NAME = "raw.ndjson.zst"
# Indicators named one by one in the task log, and in the XCom, when their text needed escaping.
_LOGGED_IDS = 20
_XCOM_IDS = 100
CURSOR_START = "*"
# full_resync reads every indicator: a window wider than any ThreatQ timestamp.
FULL_RESYNC_WINDOW = (
    datetime(1970, 1, 1, tzinfo=timezone.utc),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
)


def collection_cursor_variable(collection: str, instance: str | None = None) -> str:
    """Name of the Airflow Variable holding the saved ``cursorMark`` of a data collection.

    :param collection: the ThreatQ data collection hash.
    :param instance: the ThreatQ instance, when its connection names it (hashes are only unique
        within an instance); ``None`` keeps the name of a single-instance deployment.
    :return: ``threatq_collection_cursor__<hash>`` or ``threatq_collection_cursor__<instance>__<hash>``.
    """
    if instance:
        return f"threatq_collection_cursor__{instance}__{collection}"
    return f"threatq_collection_cursor__{collection}"


def _as_datetime(value: Any, name: str, *, needs_interval: bool = True) -> datetime | None:
    """Accept a datetime, an ISO-8601 string (rendered template) or nothing; the result is UTC.

    ``needs_interval=False``: a template over a data interval the run does not have counts as nothing."""
    if is_unset(value):
        return None
    from jinja2 import Undefined

    if isinstance(value, Undefined) and not needs_interval:
        return None
    if isinstance(value, Undefined):
        # A template over the run's data interval, in a run that has none: triggered with
        # "logical_date": null (the REST API, or the UI's form with the date unset).
        raise AirflowFailException(
            f"{name} is undefined: this run has no data interval (it was triggered without a logical "
            "date). A window run needs one: trigger it with a logical date, give since and until, or "
            "use mode full_resync")
    try:
        return parse_iso(value, name)
    except CoercionError as exc:
        raise AirflowFailException(str(exc)) from None


def _as_type_list(value: Any, name: str = "types") -> list[str] | None:
    """Accept a list of names, a JSON list string, a comma-separated string, or nothing."""
    if value == [] or is_unset(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                reason = f"{name} is not a JSON list of names: {text[:200]!r}"
                raise AirflowFailException(reason) from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    names = [str(v).strip() for v in value if str(v).strip()]
    return names or None


def _as_min_score(value: Any) -> int | None:
    """A minimum ThreatQ score (0-10) from a number, a rendered template or nothing."""
    if is_unset(value):
        return None
    try:
        score = parse_int(value, "min_score")
    except CoercionError:
        score = -1
    if not 0 <= score <= 10:
        raise AirflowFailException(f"min_score must be a whole number from 0 to 10 (ThreatQ's score); got {value!r}")
    return score


class ThreatQPollIndicatorsOperator(HookOperator):
    """Stream ThreatQ indicators of one window, collection or full resync to ``raw.ndjson``.

    :param threatq_conn_id: Airflow connection id of the ThreatQ instance (type ``threatq``).
    :param stage_uri: folder (ObjectStoragePath URI, e.g. ``file:///tmp/threatq-stage/dag/run``)
        the raw file is written to; one folder per DAG run. (templated)
    :param mode: ``window``, ``collection`` or ``full_resync``. (templated)
    :param window_start: start of the window, included (datetime or ISO-8601). (templated)
    :param window_end: end of the window, excluded (datetime or ISO-8601). (templated)
    :param collection: data collection hash; required in ``collection`` mode. (templated)
    :param types: indicator type names to keep (list, JSON list or comma-separated); empty or
        ``None`` keeps all. (templated)
    :param statuses: window and full-resync modes: only indicators with one of these statuses (names,
        as ``types``); empty keeps all. A data collection has its own criteria: these four filters
        are refused in collection mode. (templated)
    :param min_score: only indicators whose score is at least this (0-10); ``None`` keeps all. (templated)
    :param sources: only indicators from any of these sources (names, as ``types``). (templated)
    :param tags: only indicators carrying any of these tags (names, as ``types``). (templated)
    :param page_size: indicators per API page; ``None`` uses the client's default. (templated)
    :param cursor_variable: Variable holding the collection cursor; default
        ``threatq_collection_cursor__<collection>``. (templated)
    :param use_watermark: in window mode, start at the watermark when it is earlier than
        ``window_start``, and read the initial look-back when there is none; a full resync may move
        it to its poll time. The report task moves it after the load. The DAG sets it unless the run
        gives its own window; off (the default), the window is read as given and no state is kept.
        (templated)
    :param initial_lookback: how far back the first run reads (``<n>d``/``<n>h``/``<n>m``; default
        ``90d``). (templated)
    :return: XCom ``{"path", "stage_dir", "mode", "indicators", "pages", "polled_at", "window_start",
        "window_end", "collection", "cursor_variable", "cursor_start", "next_cursor", "types",
        "rejected", "rejects_path", "lone_surrogates", "lone_surrogate_ids", "instance", "watermark",
        "highest_updated_at", "ui_base_url", "document_id_prefix", "filters"}``: ``window_start``/``window_end`` are the window actually read, and
        ``watermark`` says why (its ``kind``, the ``gap`` it closed, the Variable); ``rejected`` counts by
        reason the records that could not be staged (listed in ``rejects_path``,
        ``raw.rejects.ndjson``: nested too deeply); ``lone_surrogates`` the ones staged with ``\\u``
        escapes because their text held lone UTF-16 surrogates (and the first 100 ids).
    """

    template_fields: Sequence[str] = (
        "stage_uri",
        "mode",
        "window_start",
        "window_end",
        "collection",
        "types",
        "page_size",
        "cursor_variable",
        "use_watermark",
        "initial_lookback",
        "statuses",
        "min_score",
        "sources",
        "tags",
    )
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        threatq_conn_id: str = "threatq_default",
        stage_uri: str,
        mode: str = "window",
        window_start: Any = None,
        window_end: Any = None,
        collection: str | None = None,
        types: Any = None,
        page_size: Any = None,
        cursor_variable: str | None = None,
        use_watermark: Any = False,
        initial_lookback: Any = "90d",
        statuses: Any = None,
        min_score: Any = None,
        sources: Any = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.threatq_conn_id = threatq_conn_id
        self.stage_uri = stage_uri
        self.mode = mode
        self.window_start = window_start
        self.window_end = window_end
        self.collection = collection
        self.types = types
        self.page_size = page_size
        self.cursor_variable = cursor_variable
        self.use_watermark = use_watermark
        self.initial_lookback = initial_lookback
        self.statuses = statuses
        self.min_score = min_score
        self.sources = sources
        self.tags = tags

    @cached_property
    def hook(self) -> ThreatQHook:
        """Hook for ``threatq_conn_id``."""
        return threatq_hook(self.threatq_conn_id)

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        plan = self._plan()
        # When ThreatQ is read (before the first request): the load versions two copies with the same
        # updated_at by it, so a later poll's copy wins and a replayed load never does.
        plan["polled_at"] = datetime.now(timezone.utc)
        hook = self.hook
        # The HTTP session's pooled connections are released even when paging fails.
        with self.client(hook) as client:
            # Where links back to ThreatQ point (threat.indicator.reference, set by the transform), and
            # which instance this is (threatq.instance; a named one prefixes the document ids).
            plan["ui_base_url"] = hook.ui_base_url()
            instance = hook.instance()
            plan["instance"] = instance.name
            plan["document_id_prefix"] = instance.document_id("")
            if instance.explicit and plan["mode"] == "collection" and not self.cursor_variable:
                plan["cursor_variable"] = collection_cursor_variable(plan["collection"], instance.name)
            if plan["mode"] != "collection":  # a collection's state is its cursor
                self._plan_watermark(plan, hook, context)
            stage_dir = self._stage_dir()
            raw_path = stage_dir / RAW_FILE_NAME
            if plan["mode"] == "collection":
                written, pages, next_cursor = self._stage_collection(client, raw_path, plan)
                plan["next_cursor"] = next_cursor
            else:
                written, pages = self._stage_pages(
                    raw_path,
                    # The next page is fetched (and parsed) while this one is written.
                    prefetch(client.iter_indicator_pages(
                        plan["window_start"], plan["window_end"], types=plan["types"], page_size=plan["page_size"],
                        keep_unparsed=True, **{k: v for k, v in _read_filters(plan).items()
                                               if k != "types" and v is not None},
                    ), name=f"{self.task_id}-pages"),
                    plan,
                )
        self.log.info("Staged %d indicators from %d pages (%s mode) to %s",
                      written, pages, plan["mode"], raw_path)
        return self._xcom(plan, raw_path, stage_dir, written, pages)

    # -- steps ---------------------------------------------------------------------------------

    def _plan(self) -> dict[str, Any]:
        """Validate and normalise the (rendered) arguments into one plain dict.

        :raises AirflowFailException: a bad argument (a retry would meet the same one).
        """
        mode = str(self.mode or "window")
        if mode not in MODES:
            raise AirflowFailException(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if mode == "full_resync":
            # The window arguments are not read: a run triggered without a logical date (the REST
            # API's "logical_date": null) has no data interval, and the DAG's window templates
            # render as jinja's Undefined, which is no reason to refuse a full resync.
            start, end = FULL_RESYNC_WINDOW
        else:
            start = _as_datetime(self.window_start, "window_start", needs_interval=mode == "window")
            end = _as_datetime(self.window_end, "window_end", needs_interval=mode == "window")
        if mode == "window":
            if start is None or end is None:
                raise AirflowFailException("window mode needs window_start and window_end")
            if start >= end:
                raise AirflowFailException(
                    f"window_start {start.isoformat()} is not before window_end {end.isoformat()}"
                )
        collection = optional(self.collection, str)
        if mode == "collection" and not collection:
            raise AirflowFailException("collection mode needs a data collection hash (param 'collection')")
        try:
            page_size = optional(self.page_size, int)
        except (TypeError, ValueError):
            # e.g. the Variable threatq_page_size holds "1k": name the argument, not int()'s text.
            reason = f"page_size must be a whole number of rows; got {self.page_size!r}"
            raise AirflowFailException(reason) from None
        filters = {"statuses": _as_type_list(self.statuses, "statuses"), "min_score": _as_min_score(self.min_score),
                   "sources": _as_type_list(self.sources, "sources"), "tags": _as_type_list(self.tags, "tags")}
        if mode == "collection" and any(v is not None for v in filters.values()):
            given = ", ".join(k for k, v in filters.items() if v is not None)
            raise AirflowFailException(f"{given}: window and full_resync filters; a data collection has its own "
                                       "criteria (edit the saved search in ThreatQ)")
        return {
            **filters,
            "mode": mode,
            "window_start": start,
            "window_end": end,
            "collection": collection,
            "types": _as_type_list(self.types),
            "page_size": page_size,
            "cursor_variable": (self.cursor_variable or collection_cursor_variable(collection))
            if collection and mode == "collection"
            else None,
        }

    def _plan_watermark(self, plan: dict[str, Any], hook: Any, context: Context) -> None:
        """Widen a window run to the watermark (or the initial look-back); note it for the report."""
        from threatq_provider.operators import _watermark
        from threatq_provider.operators._common import as_bool

        if not as_bool(self.use_watermark, "use_watermark"):
            return  # a window given by hand (or an operator used on its own): read as given, no state
        dag_id = str(getattr(context.get("dag"), "dag_id", None) or self.dag_id)
        window, info = _watermark.plan(
            context, dag_id=dag_id, instance=plan["instance"], mode="window", filters=_read_filters(plan),
            start=plan["window_start"], end=plan["window_end"],
            initial_lookback=self.initial_lookback, full=plan["mode"] == "full_resync")
        plan["window_start"], plan["window_end"] = window.start, window.end
        plan["watermark"] = info
        self.log.info("Reading ThreatQ %s (watermark Variable %s)", _watermark.describe(info), info["variable"])

    def _stage_dir(self) -> ObjectStoragePath:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        stage_dir = ObjectStoragePath(str(self.stage_uri))
        stage_dir.mkdir(parents=True, exist_ok=True)
        if stage_dir.protocol in ("file", "local"):
            # Staged intel may be TLP:AMBER/RED and the default root is under /tmp: the run folder
            # (raw, ECS, rejects and dead-letter files all live in it) is for the worker's user only.
            os.chmod(stage_dir.path, 0o700)
        return stage_dir

    def _stage_pages(self, raw_path: ObjectStoragePath, pages: Any, plan: dict[str, Any]) -> tuple[int, int]:
        """Stream ``pages`` to ``raw_path``; records that cannot be staged go to the rejects file
        beside it (one per line, with their id and reason), so one bad record never blocks a feed."""
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        from threatq_provider.stage_io import open_writer

        written = n_pages = 0
        highest = ""  # ThreatQ's "YYYY-MM-DD HH:MM:SS" sorts as text
        escaped: list[Any] = plan.setdefault("lone_surrogate_ids", [])
        rejected: dict[str, int] = plan.setdefault("rejected", {})
        rejects_path = ObjectStoragePath(rejects_path_of(str(raw_path)))
        plan["rejects_path"] = str(rejects_path)
        # Both files are written whole on every try, so a retry never keeps a previous try's rejects.
        # closing(pages) first on the way out: a read-ahead thread stops before the files close.
        with open_writer(raw_path) as out, open_writer(rejects_path) as rejects, closing(pages):
            for page in pages:
                n_pages += 1
                for indicator in page:
                    staged = stage_record(indicator)
                    if staged.reject is not None:
                        rejected[staged.reject["reason"]] = rejected.get(staged.reject["reason"], 0) + 1
                        rejects.write(_json_line(staged.reject))
                        self.log.warning("Indicator %s not staged: %s (see %s)", indicator.get("id"),
                                         staged.reject["message"], rejects_path)
                        continue
                    if staged.escaped:
                        escaped.append(indicator.get("id"))
                        if len(escaped) <= _LOGGED_IDS:
                            self.log.warning(
                                "Indicator %s holds a lone UTF-16 surrogate: staged as a \\u escape (what ThreatQ "
                                "sent); the transform replaces it with U+FFFD and flags the document",
                                indicator.get("id"),
                            )
                    out.write(staged.line)
                    written += 1
                    updated = indicator.get("updated_at")
                    if isinstance(updated, str) and updated > highest:
                        highest = updated
        plan["highest_updated_at"] = highest or None
        if len(escaped) > _LOGGED_IDS:
            self.log.warning("%d indicators held lone UTF-16 surrogates (first %d logged)", len(escaped), _LOGGED_IDS)
        return written, n_pages

    def _stage_collection(
        self, client: Any, raw_path: ObjectStoragePath, plan: dict[str, Any]
    ) -> tuple[int, int, str]:
        from airflow.providers.common.compat.sdk import Variable

        cursor = Variable.get(plan["cursor_variable"], default=CURSOR_START) or CURSOR_START
        plan["cursor_start"] = cursor
        reached = {"cursor": cursor}
        wanted = set(plan["types"] or ())

        def pages() -> Any:
            # One page read ahead. The cursor below still moves only as pages reach the writer, and
            # the report task saves it after the load, never this task.
            feed = prefetch(client.iter_collection_pages(plan["collection"], cursor=cursor,
                                                         page_size=plan["page_size"], keep_unparsed=True),
                            name=f"{self.task_id}-pages")
            with closing(feed):
                for page in feed:
                    if page.next_cursor:
                        reached["cursor"] = page.next_cursor
                    # A data collection is a saved search: its criteria choose the types; the run's
                    # type filter narrows it further here.
                    # A row too deep to parse has no type to filter on: it goes to the rejects, seen.
                    yield [i for i in page.indicators
                           if not wanted or isinstance(i, UnparsedRow) or _type_name(i) in wanted]

        written, n_pages = self._stage_pages(raw_path, pages(), plan)
        return written, n_pages, reached["cursor"]

    def _xcom(
        self,
        plan: dict[str, Any],
        raw_path: ObjectStoragePath,
        stage_dir: ObjectStoragePath,
        written: int,
        pages: int,
    ) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "path": str(raw_path),
            "stage_dir": str(stage_dir),
            "mode": plan["mode"],
            "indicators": written,
            "pages": pages,
            "window_start": iso(plan["window_start"]),
            "window_end": iso(plan["window_end"]),
            "types": plan["types"],
            "collection": plan["collection"],
            "cursor_variable": plan["cursor_variable"],
            "cursor_start": plan.get("cursor_start"),
            "next_cursor": plan.get("next_cursor"),
            "polled_at": iso(plan.get("polled_at")),
            "rejected": dict(plan.get("rejected", {})),
            "rejects_path": plan.get("rejects_path"),
            "lone_surrogates": len(plan.get("lone_surrogate_ids", ())),
            "lone_surrogate_ids": plan.get("lone_surrogate_ids", [])[:_XCOM_IDS],
            "instance": plan.get("instance"),
            "watermark": plan.get("watermark"),
            "highest_updated_at": plan.get("highest_updated_at"),
            "ui_base_url": plan.get("ui_base_url"),
            "document_id_prefix": plan.get("document_id_prefix", ""),
            "filters": {k: v for k, v in _read_filters(plan).items() if v is not None},
        }


def _read_filters(plan: dict[str, Any]) -> dict[str, Any]:
    """What narrows the read (a filtered feed keeps its own watermark)."""
    return {key: plan.get(key) for key in ("types", "statuses", "min_score", "sources", "tags")}


def rejects_path_of(raw_path: str) -> str:
    """``…/raw.ndjson`` → ``…/raw.rejects.ndjson``: records the poll could not stage."""
    return sibling_ndjson_path(raw_path, "rejects")


class StagedRecord(NamedTuple):
    """What :func:`stage_record` made of one record: a line to stage, or a reject entry."""

    line: bytes
    escaped: bool
    reject: dict[str, Any] | None


def stage_record(indicator: dict[str, Any]) -> StagedRecord:
    """The NDJSON line of one indicator, or the reject entry when it cannot be staged.

    A record nested deeper than :data:`~threatq_provider._jsonscan.MAX_DEPTH` levels (ThreatQ's are
    about 5; Python's JSON code recurses per level and gives up near 1,000) is rejected here, at
    that fixed depth, whether or not the client could still parse it: reason
    ``too_deeply_nested``, with its id, ``updated_at`` and text as the server sent it.

    :param indicator: one row of a page (an :class:`~threatq_provider.threatq.paging.UnparsedRow`
        when the client could not parse it).
    :return: the staged line (or ``b""``), whether it was escaped, and the reject entry (or ``None``).
    """
    text: str | None
    if isinstance(indicator, UnparsedRow):
        text = indicator.text
    else:
        try:
            line, escaped = ndjson_line(indicator)
        except RecursionError:
            text = None
        else:
            if not depth_exceeds(line):
                return StagedRecord(line, escaped, None)
            text = line.decode("utf-8").rstrip("\n")
    ident = indicator.get("id")
    reject = {
        "reason": "too_deeply_nested",
        "message": f"indicator {ident}: nested more than {MAX_DEPTH} levels deep (ThreatQ records are about 5); "
                   "not staged",
        "id": ident,
        "updated_at": indicator.get("updated_at"),
        "raw": text,
    }
    return StagedRecord(b"", False, reject)


def _json_line(entry: dict[str, Any]) -> bytes:
    """A rejects-file line: UTF-8 JSON, with ``\\u`` escapes where a lone surrogate needs them."""
    text = json.dumps(entry, ensure_ascii=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(entry, ensure_ascii=True).encode("ascii") + b"\n"


def ndjson_line(indicator: dict[str, Any]) -> tuple[bytes, bool]:
    """One staged line (UTF-8 JSON and a newline) and whether it had to be written ASCII-escaped.

    A string holding a lone UTF-16 surrogate (``"x \\ud83d y"``: valid JSON from the API, but no
    UTF-8 encoder can write it) used to fail the whole poll at the same page on every run. That
    record is written with non-ASCII characters as ``\\u`` escapes instead, which is what the server
    sent; the transform decides what becomes of it (ecs/transform.py: repaired, flagged).

    :param indicator: one indicator as the API returned it.
    :return: ``(line, escaped)``.
    """
    try:
        # orjson writes the same compact UTF-8 JSON as json.dumps(separators=(",", ":"),
        # ensure_ascii=False) (an exponent aside: 1.5e-7 for 1.5e-07), several times faster; what it refuses (a lone surrogate, an integer
        # beyond 64 bits) takes the standard library below. Non-standard NaN/Infinity (never in
        # ThreatQ's JSON) would become null.
        return orjson.dumps(indicator) + b"\n", False
    except (orjson.JSONEncodeError, TypeError):
        pass
    text = json.dumps(indicator, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8") + b"\n", False
    except UnicodeEncodeError:
        return json.dumps(indicator, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n", True


def _type_name(indicator: dict[str, Any]) -> str | None:
    """The indicator's type name whether the API sent ``type: {name}`` or ``type: "name"``."""
    kind = indicator.get("type")
    if isinstance(kind, dict):
        return kind.get("name")
    return kind if isinstance(kind, str) else None
