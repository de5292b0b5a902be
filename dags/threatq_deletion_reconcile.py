"""
### ThreatQ deletion reconciliation

Every 6 hours (`THREATQ_RECONCILE_CRON` in the scheduler's and dag-processor's environment changes
it): lists the ids of every indicator ThreatQ still has (ids only, keyset paging), merges them with
the ids in the active index (`logs-ti_threatq_latest.threat`, the connection's ThreatQ instance
only, through a point in time), and removes what ThreatQ no longer has: a tombstone with reason
`deleted_in_threatq` first (no replayed load brings it back), then an optimistic delete (a newer
load wins). Memory stays flat whatever the sizes; nothing is removed before both lists were read
to the end.

**Safety limit:** more than `max_delete_percent` (default 10 %) of the active IOCs missing at
once fails the run and removes nothing: check ThreatQ (a user that lost access to sources looks
like a mass deletion), then trigger with `allow_mass_delete`. `dry_run` only counts. Documents
updated in the last hour are left for the next run.

**Collection mode:** when the active index is fed by one data collection (the indicators DAG in
collection mode), set `collection` (or the Variable `threatq_reconcile_collection`) to its hash: the
ids kept are then the collection's members, and an IOC dropped from the collection leaves too
(reason `dropped_from_collection`; `deleted_in_threatq` when ThreatQ no longer has it at all).

Connections: `threatq_default` (ThreatQ), `elasticsearch_default` (Elasticsearch; OpenSearch when the
connection is of Airflow's `opensearch` type).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable

from threatq_provider.operators.reconcile import ThreatQDeletionReconcileOperator

THREATQ_CONN_ID = "threatq_default"
ELASTICSEARCH_CONN_ID = "elasticsearch_default"
CRON = os.environ.get("THREATQ_RECONCILE_CRON", "0 */6 * * *")

# [START threatq_reconcile_params]
PARAMS = {
    "dry_run": Param(False, type=["boolean", "null"], title="Dry run",
                     description="Find and count the IOCs ThreatQ no longer has; remove nothing."),
    "max_delete_percent": Param(10, type=["number", "null"], minimum=0, maximum=100,
                                title="Safety limit (% of the active IOCs)",
                                description="Refuse to remove more than this share of the instance's active IOCs "
                                "in one run (nothing is removed then). Null = 10."),
    "allow_mass_delete": Param(False, type=["boolean", "null"], title="Allow a mass deletion",
                               description="Remove even above the safety limit, once you checked that ThreatQ "
                               "really deleted them."),
    "collection": Param(None, type=["null", "string"], title="Data collection hash",
                        description="Keep only this data collection's members (an active index fed in collection "
                        "mode): IOCs dropped from it leave too. Null = the Variable threatq_reconcile_collection, "
                        "else every indicator ThreatQ has."),
}
# [END threatq_reconcile_params]

with DAG(
    dag_id="threatq_deletion_reconcile",
    description="Remove IOCs deleted in ThreatQ from the active index",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(CRON, timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    tags=["threatq", "elasticsearch", "ecs"],
) as dag:
    ThreatQDeletionReconcileOperator(
        task_id="reconcile_deletions",
        threatq_conn_id=THREATQ_CONN_ID,
        elasticsearch_conn_id=ELASTICSEARCH_CONN_ID,
        dry_run="{{ params.dry_run }}",
        max_delete_percent="{{ params.max_delete_percent if params.max_delete_percent is not none else 10 }}",
        allow_mass_delete="{{ params.allow_mass_delete }}",
        page_size="{{ var.value.get('threatq_page_size', None) }}",
        collection="{{ params.collection or var.value.get('threatq_reconcile_collection', None) }}",
    )
