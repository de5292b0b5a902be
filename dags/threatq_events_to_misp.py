"""
### ThreatQ events → MISP

Hourly: selects the ThreatQ events updated in the run's data interval `[start, end)` that match
the params (event types, tags, sources; empty = all) and shares each to MISP with dynamic task
mapping, at most four at a time. Each ThreatQ event becomes one MISP event whose UUID derives
from the ThreatQ host and event id, so retries, reruns and backfills update it, never duplicate.
A manual trigger with `event_ids` shares exactly those events; `updated_since`/`updated_until`
replace the window (e.g. a one-off re-share of a week). Runs never overlap.

Connections: `threatq_default` (ThreatQ), `misp_default` (MISP).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from threatq_provider.misp.options import DISTRIBUTIONS
from threatq_provider.operators.share import MispShareEventOperator, ThreatQSelectEventsOperator

THREATQ_CONN_ID = "threatq_default"
MISP_CONN_ID = "misp_default"
MAX_PARALLEL_SHARES = 4

# [START threatq_misp_params]
PARAMS = {
    "event_ids": Param([], type="array", items={"type": "integer"},
                       description="Share exactly these ThreatQ event ids (manual run); empty = the data interval."),
    "updated_since": Param("", type="string", description="ISO start (included) replacing the data interval's."),
    "updated_until": Param("", type="string", description="ISO end (excluded) replacing the data interval's."),
    "event_types": Param([], type="array", items={"type": "string"}, description="Event types to share; empty = all."),
    "tags": Param([], type="array", items={"type": "string"}, description="Share events with any of these tags."),
    "sources": Param([], type="array", items={"type": "string"}, description="Share events from any of these sources."),
    "publish": Param(True, type="boolean", description="Publish each MISP event after it is created or updated."),
    "distribution": Param("your_organisation_only", type="string", enum=list(DISTRIBUTIONS),
                          description="MISP distribution of the shared events."),
    "sharing_group": Param("", type="string", description="Sharing group name (distribution sharing_group)."),
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
    )
    share = MispShareEventOperator.partial(
        task_id="share_event",
        threatq_conn_id=THREATQ_CONN_ID,
        misp_conn_id=MISP_CONN_ID,
        publish="{{ params.publish }}",
        distribution="{{ params.distribution }}",
        sharing_group="{{ params.sharing_group }}",
        # The status policy shared with the Elasticsearch side: only these statuses get the IDS flag.
        active_statuses="{{ var.value.get('threatq_active_statuses', '') }}",
        max_active_tis_per_dagrun=MAX_PARALLEL_SHARES,
    ).expand(event_ids=select.output)
    select >> share
