"""
### ThreatQ IOC expiry sweep

Hourly, and after every load of the active index (asset `threatq_active_indicators`): removes
from the active index every IOC whose `threatq.ioc_expired_at` has passed (reported by reason:
status Expired, ThreatQ expiration date, default duration), then deletes history documents
older than the retention. Runs never overlap (`max_active_runs=1`).

**refresh_detection_window** keeps active IOCs visible to Elastic Security's prebuilt
indicator-match rules, which read only `@timestamp` in the last 30 days: the few still-active
IOCs whose `@timestamp` (ThreatQ's `updated_at`) is about to leave that window get `@timestamp` =
the run's time (one partial update each; `threatq.updated_at` keeps ThreatQ's time). The Variable
`threatq_detection_window` sets the window (default `30d`) or turns it `off`.

Connection: `elasticsearch_default` (Elasticsearch; OpenSearch when it is of Airflow's `opensearch` type).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Param
from airflow.timetables.trigger import CronTriggerTimetable

try:  # Airflow 3.2+ exports it from the Task SDK
    from airflow.sdk import AssetOrTimeSchedule
except ImportError:  # Airflow 3.1 (the declared floor) has only the core timetable
    from airflow.timetables.assets import AssetOrTimeSchedule

from threatq_provider.coerce import POSITIVE_DURATION_PATTERN
from threatq_provider.operators.detection import DetectionWindowRefreshOperator
from threatq_provider.operators.load import ACTIVE_INDEX_ASSET_URI
from threatq_provider.operators.report import skip_when_dry_run
from threatq_provider.operators.sweep import HistoryRetentionSweepOperator, IocExpirySweepOperator

ELASTICSEARCH_CONN_ID = "elasticsearch_default"
ACTIVE_INDEX = Asset(name="threatq_active_indicators", uri=ACTIVE_INDEX_ASSET_URI)

# [START threatq_sweep_params]
PARAMS = {
    # "null" in the type: optional in the trigger form (no asterisk); null means the default, false.
    "dry_run": Param(False, type=["boolean", "null"], title="Dry run",
                     description="Count what would be removed, remove nothing."),
    # `examples` gives the form's text box suggestions; the pattern is checked at trigger time.
    "history_retention": Param("5d", type="string", pattern=POSITIVE_DURATION_PATTERN, examples=["1d", "5d", "30d"],
                               title="History retention",
                               description="Keep history documents this long: <n>d, <n>h or <n>m, e.g. 5d, 36h."),
}
# [END threatq_sweep_params]

with DAG(
    dag_id="threatq_ioc_expiry_sweep",
    description="Remove expired IOCs from the active index; trim the history",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 * * * *", timezone="UTC"), assets=[ACTIVE_INDEX]
    ),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    tags=["threatq", "elasticsearch", "ecs"],
) as dag:
    sweep = IocExpirySweepOperator(
        task_id="sweep_expired_iocs",
        elasticsearch_conn_id=ELASTICSEARCH_CONN_ID,
        dry_run="{{ params.dry_run }}",
    )
    retention = HistoryRetentionSweepOperator(
        task_id="trim_history",
        elasticsearch_conn_id=ELASTICSEARCH_CONN_ID,
        retention="{{ params.history_retention }}",
        pre_execute=skip_when_dry_run,
    )
    refresh_window = DetectionWindowRefreshOperator(
        task_id="refresh_detection_window",
        elasticsearch_conn_id=ELASTICSEARCH_CONN_ID,
        window="{{ var.value.get('threatq_detection_window', '30d') }}",
        dry_run="{{ params.dry_run }}",
    )
    sweep >> [refresh_window, retention]
