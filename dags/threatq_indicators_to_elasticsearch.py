"""
### ThreatQ indicators → Elasticsearch (ECS)

Every 10 minutes: poll ThreatQ → transform to ECS → bulk load → report. Each task streams
NDJSON stage files under the Variable `threatq_stage_root` (default `file:///tmp/threatq-stage`),
one folder per run (`<root>/<dag_id>/<run_id>/`), and passes only paths and counts in XCom.

* **window** (default): indicators with `updated_at` in `[data_interval_start, data_interval_end)`,
  started at the watermark instead when that is earlier (intervals the scheduler missed are read by
  the next run; the report names the gap). No watermark yet: the first run reads `initial_lookback`
  (default 90 days). `since`/`until` give a window by hand (read as given, the watermark left alone).
  Backfills replay their own intervals.
  The watermark (Variable `threatq_watermark__<dag>__<instance>__window`) moves only after a load.
* **collection**: a ThreatQ data collection paged with `cursorMark`; the cursor lives in the
  Variable `threatq_collection_cursor__<hash>`, saved only after the load succeeded.
* **full_resync**: every indicator.

**stage_retention** runs last, whatever happened before (a teardown: it never hides a failed
load, the run still fails): it deletes the run folders under `<root>/<dag_id>/` whose newest file
is older than the Variable `threatq_stage_retention` (default `7d`; `<n>d`, `<n>h` or `<n>m`),
never this run's folder. The Variable `threatq_stage_retention_dry_run` = `true` only counts and logs.

Connections: `threatq_default` (ThreatQ), `elasticsearch_default` (Elasticsearch; OpenSearch when the
connection is of Airflow's `opensearch` type).
The load task updates the asset `threatq_active_indicators`, which triggers the expiry sweep DAG.
"""

from __future__ import annotations

import json
import os

import pendulum
from airflow.sdk import DAG, Asset, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from threatq_provider._resources import data_file
from threatq_provider.coerce import DURATION_PATTERN, ISO_DATETIME_PATTERN, POSITIVE_DURATION_PATTERN
from threatq_provider.operators.load import ACTIVE_INDEX_ASSET_URI, ElasticsearchLoadOperator
from threatq_provider.operators.poll import ThreatQPollIndicatorsOperator
from threatq_provider.operators.report import ThreatQRunReportOperator, record_attempt, skip_when_dry_run
from threatq_provider.operators.retention import StageRetentionOperator
from threatq_provider.operators.transform import EcsTransformOperator

THREATQ_CONN_ID = "threatq_default"
ELASTICSEARCH_CONN_ID = "elasticsearch_default"
# Poll interval; THREATQ_INDICATORS_CRON in the scheduler's and dag-processor's environment changes it.
CRON = os.environ.get("THREATQ_INDICATORS_CRON", "*/10 * * * *")
STAGE_ROOT = "{{ var.value.get('threatq_stage_root', 'file:///tmp/threatq-stage') }}"
STAGE = STAGE_ROOT + "/{{ dag.dag_id }}/{{ run_id }}"
RETENTION = "{{ var.value.get('threatq_stage_retention', '7d') }}"
RETENTION_DRY_RUN = "{{ var.value.get('threatq_stage_retention_dry_run', 'false') }}"
ACTIVE_INDEX = Asset(name="threatq_active_indicators", uri=ACTIVE_INDEX_ASSET_URI)
ENUMERATIONS = json.loads(data_file("threatq", "enumerations.json").read_text())
INDICATOR_TYPES = [t["name"] for t in ENUMERATIONS["indicator_types"]]
# Statuses a run may make active for detection (the status policy refuses Whitelisted).
STATUSES = [s["name"] for s in ENUMERATIONS["indicator_statuses"] if s["name"] != "Whitelisted"]
# Statuses a window run may read (a read filter: Whitelisted too, which the status policy then withholds).
READ_STATUSES = [s["name"] for s in ENUMERATIONS["indicator_statuses"]]

# The trigger form (Airflow 3 UI) picks a widget from the schema: a top-level `examples` list makes an
# array a multi-select, `enum` a drop-down, "null" in `type` an optional field (no asterisk; the form
# sends null for an emptied field). Null always means the default.
# [START threatq_indicator_params]
PARAMS = {
    "mode": Param(
        "window", type="string", enum=["window", "collection", "full_resync"], title="Mode",
        values_display={"window": "Window (the run's data interval)", "collection": "Data collection (cursorMark)",
                        "full_resync": "Full resync (every indicator)"},
        description="window: the run's data interval; collection: a data collection by cursorMark; "
        "full_resync: every indicator.",
    ),
    "collection": Param(None, type=["null", "string"], title="Data collection hash",
                        description="Data collection hash (collection mode)."),
    "since": Param(None, type=["null", "string"], format="date-time", pattern=ISO_DATETIME_PATTERN,
                   title="Window start (UTC)", description="Override the window start (UTC, included)."),
    "until": Param(None, type=["null", "string"], format="date-time", pattern=ISO_DATETIME_PATTERN,
                   title="Window end (UTC)", description="Override the window end (UTC, excluded)."),
    "indicator_types": Param([], type=["array", "null"], items={"type": "string", "enum": INDICATOR_TYPES},
                             examples=INDICATOR_TYPES, uniqueItems=True, title="Indicator types",
                             description="Only these ThreatQ indicator types; empty = all."),
    # Window and full-resync filters, as a data collection's criteria (a collection keeps its own).
    "statuses": Param([], type=["array", "null"], items={"type": "string", "enum": READ_STATUSES},
                      examples=READ_STATUSES, uniqueItems=True, title="Statuses (read filter)",
                      description="Only indicators with these ThreatQ statuses; empty = all. Not the status policy "
                      "(Active statuses), which decides what stays active among what was read."),
    "min_score": Param(None, type=["null", "integer"], minimum=0, maximum=10, title="Minimum score",
                       description="Only indicators whose ThreatQ score (0-10) is at least this; empty = all."),
    "sources": Param([], type=["array", "null"], items={"type": "string"}, uniqueItems=True, title="Sources",
                     description="Only indicators from any of these ThreatQ sources, one per line; empty = all."),
    "tags": Param([], type=["array", "null"], items={"type": "string"}, uniqueItems=True, title="Tags",
                  description="Only indicators carrying any of these tags, one per line; empty = all."),
    "ioc_expiration_duration": Param("90d", type="string", pattern=POSITIVE_DURATION_PATTERN,
                                     examples=["30d", "90d", "180d", "365d"], title="IOC expiration duration",
                                     description="IOC lifetime after its last update: <n>d, <n>h or <n>m, "
                                     "e.g. 90d, 12h, 30m."),
    "active_statuses": Param(None, type=["null", "array"], items={"type": "string", "enum": STATUSES},
                             examples=STATUSES, uniqueItems=True, title="Active statuses",
                             description="ThreatQ statuses that keep an IOC in the active index (status policy); "
                             "null = the Variable threatq_active_statuses, else Active only. Whitelisted never."),
    "initial_lookback": Param(None, type=["null", "string"], pattern=DURATION_PATTERN,
                              examples=["0d", "7d", "30d", "90d", "365d"], title="Initial look-back",
                              description="How far back the first window run reads when there is no watermark yet: "
                              "<n>d, <n>h or <n>m (0d: its own interval). Null = the Variable "
                              "threatq_initial_lookback, else 90d."),
    "dry_run": Param(False, type=["boolean", "null"], title="Dry run",
                     description="Poll and transform, write nothing to Elasticsearch."),
}
# [END threatq_indicator_params]

with DAG(
    dag_id="threatq_indicators_to_elasticsearch",
    description="ThreatQ indicators to Elasticsearch in ECS, every 10 minutes by default",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    # record_attempt: each task keeps its try number in XCom, so the report names what was retried.
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30), "on_execute_callback": record_attempt},
    tags=["threatq", "elasticsearch", "ecs"],
) as dag:
    poll = ThreatQPollIndicatorsOperator(
        task_id="poll",
        threatq_conn_id=THREATQ_CONN_ID,
        stage_uri=STAGE,
        mode="{{ params.mode }}",
        window_start="{{ params.since or data_interval_start }}",
        window_end="{{ params.until or data_interval_end }}",
        collection="{{ params.collection }}",
        types="{{ params.indicator_types }}",
        statuses="{{ params.statuses }}",
        min_score="{{ params.min_score }}",
        sources="{{ params.sources }}",
        tags="{{ params.tags }}",
        page_size="{{ var.value.get('threatq_page_size', None) }}",  # None: the connection's page_size
        # A window given by hand is read as given; otherwise from the watermark, or the look-back.
        use_watermark="{{ not params.since and not params.until }}",
        initial_lookback="{{ params.initial_lookback or var.value.get('threatq_initial_lookback', '90d') }}",
    )
    transform = EcsTransformOperator(
        task_id="transform",
        source_path="{{ ti.xcom_pull(task_ids='poll')['path'] }}",
        # Stage files are zstd-compressed NDJSON (zstdcat reads them); readers also take plain files.
        target_path=STAGE + "/ecs.ndjson.zst",
        rejects_path=STAGE + "/rejects.ndjson.zst",
        ioc_expiration_duration="{{ params.ioc_expiration_duration }}",
        active_statuses="{{ params.active_statuses or var.value.get('threatq_active_statuses', '') }}",
        # threat.indicator.reference = <ui_base_url>/indicators/<id>/details (connection extra, else its URL)
        threatq_url="{{ ti.xcom_pull(task_ids='poll').get('ui_base_url') }}",
        instance="{{ ti.xcom_pull(task_ids='poll').get('instance') }}",  # threatq.instance
    )
    load = ElasticsearchLoadOperator(
        task_id="load",
        source_path="{{ ti.xcom_pull(task_ids='transform')['path'] }}",
        elasticsearch_conn_id=ELASTICSEARCH_CONN_ID,
        dead_letter_path=STAGE + "/dead_letter.ndjson.zst",
        # The poll's time orders copies with the same updated_at: a later poll's wins, a replay's never.
        observed_at="{{ ti.xcom_pull(task_ids='poll').get('polled_at') }}",
        # "<instance>:" for a ThreatQ instance named on its connection: several share the index.
        document_id_prefix="{{ ti.xcom_pull(task_ids='poll').get('document_id_prefix') }}",
        # Bulk requests awaiting Elasticsearch at once: 2 suits a small cluster; raise with its data nodes.
        max_in_flight="{{ var.value.get('threatq_bulk_max_in_flight', 2) }}",
        outlets=[ACTIVE_INDEX],
        pre_execute=skip_when_dry_run,
    )
    report = ThreatQRunReportOperator(
        task_id="report",
        poll_result="{{ ti.xcom_pull(task_ids='poll') }}",
        transform_result="{{ ti.xcom_pull(task_ids='transform') }}",
        load_result="{{ ti.xcom_pull(task_ids='load') }}",
        elasticsearch_conn_id=ELASTICSEARCH_CONN_ID,  # the run's counts, for Kibana's loads/rejects chart
        trigger_rule="none_failed",
    )
    # all_done as a teardown: it runs after a failed load, and the run still ends failed.
    stage_retention = StageRetentionOperator(
        task_id="stage_retention",
        stage_root=STAGE_ROOT + "/{{ dag.dag_id }}",
        retention=RETENTION,
        keep="{{ run_id }}",
        dry_run=RETENTION_DRY_RUN,
    ).as_teardown()
    poll >> transform >> load >> report >> stage_retention
