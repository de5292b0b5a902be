"""
### ThreatQ actions (example)

The seven actions of the ThreatQ plugin for InsightConnect, as Airflow tasks, chained the way
an analyst would use them: record an indicator and an event, read them back, search for them.
Trigger it by hand (no schedule); every input is a Param, so the trigger form fills them.

Each task's XCom is exactly the plugin's output: `{id}`, `{data}`, `{total, data}`, `{results}`.
Run it against the ThreatQ simulator: `threatq-sim --port 8080` and a `threatq_default`
connection to `http://127.0.0.1:8080` with the extra `"allow_insecure_http": true` (the simulator
speaks plain http; see docs/threatq-client.md).

Connection: `threatq_default` (ThreatQ).
"""

from __future__ import annotations

import json

import pendulum
from airflow.sdk import DAG, Param

from threatq_provider._resources import data_file
from threatq_provider.operators.actions import (
    ThreatQCreateEventOperator,
    ThreatQCreateIndicatorOperator,
    ThreatQGetEventOperator,
    ThreatQGetIndicatorOperator,
    ThreatQListEventsOperator,
    ThreatQSearchIndicatorsOperator,
    ThreatQSearchOperator,
)

THREATQ_CONN_ID = "threatq_default"
ENUMERATIONS = json.loads(data_file("threatq", "enumerations.json").read_text())
# The form's choices, from ThreatQ's lists: drop-downs of indicator types and statuses; the standard
# event types only as suggestions, since an admin can add event types.
INDICATOR_TYPES = [t["name"] for t in ENUMERATIONS["indicator_types"]]
STATUSES = [s["name"] for s in ENUMERATIONS["indicator_statuses"]]
EVENT_TYPES = [t["name"] for t in ENUMERATIONS["event_types"]]

# [START threatq_actions]
with DAG(
    dag_id="example_threatq_actions",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["threatq", "example"],
    doc_md=__doc__,
    params={
        "value": Param("203.0.113.77", type="string", minLength=1, title="Indicator value",
                       description="Indicator value to record."),
        "type": Param("IP Address", type="string", enum=INDICATOR_TYPES, title="Indicator type",
                      description="ThreatQ indicator type."),
        "status": Param("Review", type="string", enum=STATUSES, title="Indicator status",
                        description="Status of the recorded indicator."),
        "source": Param("Airflow", type="string", minLength=1, title="Source",
                        description="Source name recorded in ThreatQ."),
        "event_title": Param("Suspicious beaconing", type="string", minLength=1, title="Event title",
                             description="Title of the event to create."),
        "event_type": Param("Command and Control", type="string", examples=EVENT_TYPES, minLength=1,
                            title="Event type", description="ThreatQ event type name (suggestions: the standard types)."),
    },
) as dag:
    create_indicator = ThreatQCreateIndicatorOperator(
        task_id="create_indicator", threatq_conn_id=THREATQ_CONN_ID,
        value="{{ params.value }}", type="{{ params.type }}", status="{{ params.status }}",
        source="{{ params.source }}",
    )
    get_indicator = ThreatQGetIndicatorOperator(
        task_id="get_indicator", threatq_conn_id=THREATQ_CONN_ID,
        indicator_id="{{ ti.xcom_pull(task_ids='create_indicator')['id'] }}", with_=["sources", "attributes"],
    )
    search_indicators = ThreatQSearchIndicatorsOperator(
        task_id="search_indicators", threatq_conn_id=THREATQ_CONN_ID, indicator={"value": "{{ params.value }}"},
    )
    search = ThreatQSearchOperator(task_id="search", threatq_conn_id=THREATQ_CONN_ID,
                                   query="{{ params.value }}", limit=5)
    create_event = ThreatQCreateEventOperator(
        task_id="create_event", threatq_conn_id=THREATQ_CONN_ID,
        title="{{ params.event_title }}", type="{{ params.event_type }}", date="{{ logical_date | ts }}",
        source="{{ params.source }}", description="Created by Airflow run {{ run_id }}",
    )
    get_event = ThreatQGetEventOperator(
        task_id="get_event", threatq_conn_id=THREATQ_CONN_ID,
        event_id="{{ ti.xcom_pull(task_ids='create_event')['id'] }}", with_=["sources"],
    )
    list_events = ThreatQListEventsOperator(
        task_id="list_events", threatq_conn_id=THREATQ_CONN_ID, event={"title": "{{ params.event_title }}"},
    )

    create_indicator >> [get_indicator, search_indicators, search]
    create_event >> [get_event, list_events]
# [END threatq_actions]
