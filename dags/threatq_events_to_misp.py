"""
### ThreatQ events → MISP

Hourly: selects the ThreatQ events updated in the run's data interval `[start, end)` that match
the params (event types, tags, sources; empty = all) and shares each to MISP with dynamic task
mapping, at most four at a time. Each ThreatQ event becomes one MISP event whose UUID derives
from the ThreatQ host and event id, so retries, reruns and backfills update it, never duplicate.
A manual trigger with `event_ids` shares exactly those events; `updated_since`/`updated_until`
replace the window (e.g. a one-off re-share of a week). Runs never overlap.

The window starts at the watermark when that is earlier than the interval (hours the scheduler
missed are shared by the next run; `save_watermark` logs the gap); with no watermark yet the first
run reads `initial_lookback` (default 90 days). The watermark (Variable
`threatq_watermark__threatq_events_to_misp__<instance>__events`) moves only after every share succeeded.

Connections: `threatq_default` (ThreatQ), `misp_default` (MISP).
"""

from __future__ import annotations

import json

import pendulum
from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from threatq_provider._resources import data_file
from threatq_provider.coerce import DURATION_PATTERN, ISO_DATETIME_PATTERN
from threatq_provider.misp.options import DISTRIBUTION_LABELS, DISTRIBUTIONS
from threatq_provider.operators.share import (
    MispShareEventOperator,
    ThreatQSaveWatermarkOperator,
    ThreatQSelectEventsOperator,
)

THREATQ_CONN_ID = "threatq_default"
MISP_CONN_ID = "misp_default"
MAX_PARALLEL_SHARES = 4
# Events per mapped share task: each task pays a worker process, a ThreatQ token and PyMISP's start-up
# once (~0.5 s); lists of up to 25, spread over the parallel slots, keep that off the per-event cost.
EVENTS_PER_TASK = 25
# ThreatQ's standard event types: the choices of the form's multi-select (custom types: conf JSON).
EVENT_TYPES = [t["name"] for t in json.loads(data_file("threatq", "enumerations.json").read_text())["event_types"]]

# The trigger form (Airflow 3 UI) picks a widget from the schema: a top-level `examples` list makes an
# array a multi-select, `enum` a drop-down, "null" in `type` an optional field (no asterisk; the form
# sends null for an emptied field). Null always means the default.
# [START threatq_misp_params]
PARAMS = {
    "event_ids": Param([], type=["array", "null"], title="Event ids",
                       # Integers from the API, digit strings from the form's one-per-line box (blank lines ignored).
                       items={"anyOf": [{"type": "integer", "minimum": 1},
                                        {"type": "string", "pattern": r"^\s*([1-9][0-9]*)?\s*$"}]},
                       description="Share exactly these ThreatQ event ids, one per line; empty = the events "
                       "updated in the window."),
    "updated_since": Param(None, type=["null", "string"], format="date-time", pattern=ISO_DATETIME_PATTERN,
                           title="Updated since (UTC)", description="Window start (included); empty = the data "
                           "interval's start."),
    "updated_until": Param(None, type=["null", "string"], format="date-time", pattern=ISO_DATETIME_PATTERN,
                           title="Updated until (UTC)", description="Window end (excluded); empty = the data "
                           "interval's end."),
    "event_types": Param([], type=["array", "null"], items={"type": "string"}, examples=EVENT_TYPES,
                         uniqueItems=True, title="Event types",
                         description="Share only events of these types; empty = all. Custom types: Advanced "
                         "Options > Configuration JSON."),
    "tags": Param([], type=["array", "null"], items={"type": "string"}, title="Tags",
                  description="Share only events with any of these tags, one per line; empty = all."),
    "sources": Param([], type=["array", "null"], items={"type": "string"}, title="Sources",
                     description="Share only events from any of these sources, one per line; empty = all."),
    "initial_lookback": Param(None, type=["null", "string"], pattern=DURATION_PATTERN,
                              examples=["0d", "1d", "7d", "30d", "90d"], title="Initial look-back",
                              description="How far back the first run shares when there is no watermark yet: <n>d, "
                              "<n>h or <n>m (0d: its own hour). Null = the Variable threatq_initial_lookback, else 90d."),
    "publish": Param(True, type=["boolean", "null"], title="Publish",
                     description="Publish each MISP event after it is created or updated."),
    "distribution": Param("your_organisation_only", type="string", enum=list(DISTRIBUTIONS),
                          values_display=DISTRIBUTION_LABELS, title="Distribution",
                          description="MISP distribution of the shared events."),
    "sharing_group": Param(None, type=["null", "string"], title="Sharing group",
                           description="MISP sharing group name; needed when Distribution is Sharing group."),
}
# [END threatq_misp_params]

with DAG(
    dag_id="threatq_events_to_misp",
    description="Share ThreatQ events updated each hour to MISP",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    tags=["threatq", "misp"],
) as dag:
    select = ThreatQSelectEventsOperator(
        task_id="select_events",
        threatq_conn_id=THREATQ_CONN_ID,
        window_start="{{ params.updated_since or data_interval_start }}",
        window_end="{{ params.updated_until or data_interval_end }}",
        event_ids="{{ params.event_ids }}",
        event_types="{{ params.event_types }}",
        tags="{{ params.tags }}",
        sources="{{ params.sources }}",
        events_per_task=EVENTS_PER_TASK,
        spread_over=MAX_PARALLEL_SHARES,
        # A window given by hand is read as given; otherwise from the watermark, or the look-back.
        use_watermark="{{ not params.updated_since and not params.updated_until }}",
        initial_lookback="{{ params.initial_lookback or var.value.get('threatq_initial_lookback', '90d') }}",
    )
    share = MispShareEventOperator.partial(
        task_id="share_event",
        threatq_conn_id=THREATQ_CONN_ID,
        misp_conn_id=MISP_CONN_ID,
        publish="{{ params.publish is not false }}",  # null (API) = the default, true
        distribution="{{ params.distribution }}",
        sharing_group="{{ params.sharing_group }}",
        # The status policy shared with the Elasticsearch side: only these statuses get the IDS flag.
        active_statuses="{{ var.value.get('threatq_active_statuses', '') }}",
        max_active_tis_per_dagrun=MAX_PARALLEL_SHARES,
    ).expand(event_ids=select.output)
    # After every share succeeded (or there was none): a failed share is read again by the next run.
    save_watermark = ThreatQSaveWatermarkOperator(
        task_id="save_watermark",
        window="{{ ti.xcom_pull(task_ids='select_events', key='window') }}",
        trigger_rule="none_failed",
    )
    select >> share >> save_watermark
