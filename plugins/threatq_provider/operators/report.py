"""The last task of the indicator DAG: one summary line, and the collection cursor or the watermark saved.

The data-collection cursor (``cursorMark``) is saved here, after the load task succeeded, and
never by the poll task: Singer's rule — state is written only once the data it covers is safe.
If the load fails the cursor stays where it was and the next run re-reads the same pages; the
loader's idempotent ``_id``s make that re-read harmless. In a dry run nothing was loaded, so the
cursor is not moved either. The window-mode watermark (:mod:`threatq_provider.threatq.watermark`)
follows the same rule: it moves here, over the window the poll actually read, only after a load.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

from threatq_provider.operators._base import HookOperator, elasticsearch_hook

#: Default run-report index (``threatq_provider.elasticsearch.run_reports.RUNS_INDEX``; repeated
#: here so parsing a DAG does not import the Elasticsearch client).
RUNS_INDEX = "threatq-provider-runs"

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook


#: XCom key under which :func:`record_attempt` keeps a task's try number.
ATTEMPT_KEY = "attempt"


def record_attempt(context: Context) -> None:
    """``on_execute_callback`` of the DAG's tasks: push the task's try number (XCom ``attempt``).

    Airflow clears a task's XComs when a new try starts, so the value left is the try that
    produced the task's result; the report reads it to say what was retried (a worker that died,
    an Elasticsearch node or the object store away for a while).

    :param context: the task's Airflow context.
    :return: nothing.
    """
    ti = context.get("ti")
    if ti is not None and getattr(ti, "try_number", None):
        ti.xcom_push(key=ATTEMPT_KEY, value=int(ti.try_number))


def skip_when_dry_run(context: Context) -> None:
    """``pre_execute`` hook for write tasks: skip the task when the run's ``dry_run`` param is set.

    :param context: the task's Airflow context.
    :return: nothing; raises ``AirflowSkipException`` in a dry run.
    """
    params = context.get("params") or {}
    if params.get("dry_run"):
        raise AirflowSkipException("dry_run param is set: nothing is written")


class ThreatQRunReportOperator(HookOperator):
    """Summarise a poll → transform → load run and save the collection cursor once loaded.

    :param poll_result: XCom of ``ThreatQPollIndicatorsOperator``. (templated)
    :param transform_result: XCom of ``EcsTransformOperator``. (templated)
    :param load_result: XCom of ``ElasticsearchLoadOperator``; ``None`` when the load was
        skipped (dry run), which also means the cursor is not saved. (templated)
    :param elasticsearch_conn_id: when set, the summary is also written as one document of the
        run-report index (``elasticsearch.run_reports``: loads and rejects over time for Kibana);
        a failure to write it is logged, never fails the run (the IOCs are loaded already).
    :param runs_index: the run-report index (default ``threatq-provider-runs``). (templated)
    :return: XCom ``{"mode", "window_start", "window_end", "polled", "poll_rejected" (records the
        poll could not stage, by reason), "transformed", "rejected", "flagged" (documents kept with
        an ``error.message``),
        "loaded", "unchanged", "load_rejected" (documents refused by the active or history index),
        "withheld_by_reason", "removed_by_reason" (status policy), "transform_engine", "dry_run",
        "cursor_saved", "next_cursor", "interval_start", "interval_end", "window_kind", "gap_closed",
        "watermark", "watermark_saved", "attempts" (try number of each upstream task that recorded
        one with :func:`record_attempt`, and of this task), "retried" (the tasks of this run that
        needed more than one try)}``, plus ``run_report_indexed``
        when ``elasticsearch_conn_id`` is set and the run loaded (not a dry run).
    """

    template_fields: Sequence[str] = ("poll_result", "transform_result", "load_result", "runs_index")
    ui_color = "#f1f3f4"

    def __init__(
        self,
        *,
        poll_result: Any = None,
        transform_result: Any = None,
        load_result: Any = None,
        elasticsearch_conn_id: str | None = None,
        runs_index: str = RUNS_INDEX,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.poll_result = poll_result
        self.transform_result = transform_result
        self.load_result = load_result
        self.elasticsearch_conn_id = elasticsearch_conn_id
        self.runs_index = runs_index

    @cached_property
    def hook(self) -> ElasticsearchEcsHook:
        """Hook for ``elasticsearch_conn_id`` (Elasticsearch or OpenSearch)."""
        return elasticsearch_hook(self.elasticsearch_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        poll = _as_dict(self.poll_result)
        transform = _as_dict(self.transform_result)
        load = _as_dict(self.load_result)
        loaded = bool(load)
        cursor_saved = False
        collection = poll.get("mode") == "collection" and poll.get("cursor_variable")
        if loaded and collection and poll.get("next_cursor"):
            from airflow.providers.common.compat.sdk import Variable

            Variable.set(poll["cursor_variable"], poll["next_cursor"])
            cursor_saved = True
        mark = poll.get("watermark") if isinstance(poll.get("watermark"), dict) else {}
        saved = {"saved": False, "watermark": mark.get("read")}
        if loaded and mark:
            from threatq_provider.operators._watermark import save_watermark

            saved = save_watermark(mark, polled_at=poll.get("polled_at"), run_id=str(context.get("run_id") or ""),
                                   highest_updated_at=poll.get("highest_updated_at"))
        summary = {
            "mode": poll.get("mode"),
            "window_start": poll.get("window_start"),
            "window_end": poll.get("window_end"),
            "polled": poll.get("indicators", 0),
            "transformed": transform.get("written", 0),
            "rejected": transform.get("rejected", 0),
            # Documents kept with an error.message (e.g. a lone surrogate repaired), and records
            # the poll could not stage at all (its rejects file, by reason).
            "flagged": transform.get("flagged", 0),
            "poll_rejected": poll.get("rejected", {}),
            "loaded": _loaded_count(load),
            "unchanged": load.get("skipped_stale", 0),
            # Documents refused by the active or the history index, each once (the threshold's count).
            "load_rejected": load.get("rejected_documents", load.get("rejected_total", 0)),
            # IOCs this load kept out of (or took out of) the active index by the status policy.
            "withheld_by_reason": load.get("withheld_by_reason", {}),
            "removed_by_reason": load.get("removed_by_reason", {}),
            "transform_engine": transform.get("engine"),
            "dry_run": not loaded,
            "cursor_saved": cursor_saved,
            "next_cursor": poll.get("next_cursor"),
            # The window above is what was read; the interval is what the scheduler asked for.
            "interval_start": mark.get("interval_start"),
            "interval_end": mark.get("interval_end"),
            "window_kind": mark.get("kind"),
            "gap_closed": mark.get("gap"),
            "watermark": saved.get("watermark"),
            "watermark_saved": bool(saved.get("saved")),
        }
        summary["attempts"] = self._attempts(context)
        summary["retried"] = sorted(task for task, tries in summary["attempts"].items() if tries > 1)
        self.log.info(
            "ThreatQ run: mode=%s window=[%s, %s) polled=%s poll_rejected=%s transformed=%s (engine %s) "
            "rejected=%s flagged=%s loaded=%s "
            "unchanged=%s load_rejected=%s dry_run=%s cursor_saved=%s",
            summary["mode"],
            summary["window_start"],
            summary["window_end"],
            summary["polled"],
            summary["poll_rejected"] or "none",
            summary["transformed"],
            summary["transform_engine"],
            summary["rejected"],
            summary["flagged"],
            summary["loaded"],
            summary["unchanged"],
            summary["load_rejected"],
            summary["dry_run"],
            cursor_saved,
        )
        if summary["retried"]:
            self.log.warning("Retried in this run: %s", ", ".join(
                f"{task} (attempt {summary['attempts'][task]})" for task in summary["retried"]))
        if mark:
            from threatq_provider.operators._watermark import describe

            self.log.info("Window read: %s; watermark %s (%s)", describe(mark), summary["watermark"],
                          "moved" if summary["watermark_saved"] else "unchanged")
            if mark.get("gap"):
                gap = mark["gap"]
                self.log.warning("Gap closed: %s missed interval(s) [%s, %s) were read by this run",
                                 gap.get("intervals"), gap.get("start"), gap.get("end"))
        if self.elasticsearch_conn_id and not summary["dry_run"]:  # a dry run writes nothing
            summary["run_report_indexed"] = self._index_report(summary, context)
        return summary

    def _attempts(self, context: Context) -> dict[str, int]:
        """Try numbers of the upstream tasks (their ``attempt`` XCom) and of this task."""
        ti = context.get("ti")
        if ti is None:
            return {}
        attempts: dict[str, int] = {}
        for task_id in sorted(self.get_flat_relative_ids(upstream=True)):
            value = ti.xcom_pull(task_ids=task_id, key=ATTEMPT_KEY)
            if isinstance(value, int) and not isinstance(value, bool):
                attempts[task_id] = value
        if getattr(ti, "try_number", None):
            attempts[self.task_id] = int(ti.try_number)
        return attempts

    def _index_report(self, summary: dict[str, Any], context: Context) -> bool:
        from threatq_provider.elasticsearch.run_reports import index_run_report, run_document
        from threatq_provider.operators._common import resolve_now

        run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", "") or "unknown")
        dag_id = str(getattr(context.get("dag"), "dag_id", None) or self.dag_id)
        document = run_document(summary, dag_id=dag_id, run_id=run_id, when=resolve_now(None, context))
        try:
            with self.client(self.hook) as client:
                index_run_report(client, document, index=str(self.runs_index))
        except Exception as exc:  # monitoring data only: the IOCs are loaded; say so and go on
            self.log.warning("run report not written to %s: %s: %s", self.runs_index, type(exc).__name__,
                             str(exc)[:300])
            return False
        return True


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        import ast
        import json

        try:
            return json.loads(value)
        except ValueError:
            pass
        # Without render_template_as_native_obj the XCom renders as a Python repr ('…', None, True).
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        raise AirflowException(f"run report: cannot read a task result from {value[:200]!r}")
    return {}


def _loaded_count(load: dict[str, Any]) -> int:
    """Documents created or updated in the active index (``ElasticsearchLoadOperator``'s XCom)."""
    return int(load.get("indexed", 0)) + int(load.get("updated", 0))
