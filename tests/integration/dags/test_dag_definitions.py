"""The DAG files load, are wired as documented, and refuse wrong params with a readable message."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

REPO = Path(__file__).resolve().parents[3]
INDICATORS = "threatq_indicators_to_elasticsearch"
SWEEP = "threatq_ioc_expiry_sweep"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.models import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_folder_loads_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {INDICATORS, SWEEP} <= set(dagbag.dag_ids)


def test_indicator_dag_polls_every_ten_minutes_over_real_data_intervals(dagbag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags[INDICATORS]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.summary == "*/10 * * * *"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert [t.task_id for t in dag.topological_sort()] == ["poll", "transform", "load", "report", "stage_retention"]
    # The load task updates the active-index asset the sweep DAG listens to.
    assert [a.name for a in dag.get_task("load").outlets] == ["threatq_active_indicators"]


def test_stage_retention_runs_last_whatever_happened_without_hiding_a_failure(dagbag):
    dag = dagbag.dags[INDICATORS]
    task = dag.get_task("stage_retention")
    assert task.upstream_task_ids == {"report"}
    # A teardown without setups: all_done, and Airflow leaves it out of the run's state, so a
    # failed load still fails the run (a plain all_done leaf would turn it into a success).
    assert task.is_teardown and not task.on_failure_fail_dagrun
    assert task.trigger_rule == "all_done_setup_success" and not any(t.is_setup for t in dag.tasks)
    assert task.stage_root.endswith("/{{ dag.dag_id }}") and task.keep == "{{ run_id }}"
    assert "threatq_stage_retention" in task.retention


def test_sweep_dag_runs_hourly_or_after_each_load(dagbag):
    dag = dagbag.dags[SWEEP]
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert dag.timetable.timetable.summary == "0 * * * *"
    assert dag.max_active_runs == 1
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["threatq_active_indicators"]


def test_param_defaults_reproduce_the_scheduled_run(dagbag):
    params = dagbag.dags[INDICATORS].params.validate()
    assert params == {
        "mode": "window",
        "collection": None,
        "since": None,
        "until": None,
        "indicator_types": [],
        "statuses": [],  # window filters as a data collection's: none by default
        "min_score": None,
        "sources": [],
        "tags": [],
        "ioc_expiration_duration": "90d",
        "active_statuses": None,  # the Variable threatq_active_statuses, else Active only
        "initial_lookback": None,  # the Variable threatq_initial_lookback, else 90d
        "dry_run": False,
    }


def test_params_carry_a_form_schema_the_ui_renders(dagbag):
    params = dagbag.dags[INDICATORS].params
    schema = {k: params.get_param(k).serialize()["schema"] for k in params}
    assert schema["mode"]["enum"] == ["window", "collection", "full_resync"]
    assert schema["since"]["format"] == "date-time"
    assert "IP Address" in schema["indicator_types"]["items"]["enum"]
    assert len(schema["indicator_types"]["items"]["enum"]) == 34
    assert schema["ioc_expiration_duration"]["pattern"] == "^[1-9][0-9]*[dhm]$"
    assert all(params.get_param(k).description for k in params)


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"mode": "bogus"}, "mode"),
        ({"ioc_expiration_duration": "90x"}, "ioc_expiration_duration"),
        ({"ioc_expiration_duration": "0d"}, "ioc_expiration_duration"),
        ({"indicator_types": ["Not A Type"]}, "indicator_types"),
        ({"since": "yesterday"}, "since"),
        ({"dry_run": "yes"}, "dry_run"),
    ],
)
def test_wrong_param_is_refused_naming_the_param(dagbag, conf, named):
    from airflow.sdk.definitions.param import ParamValidationError

    params = copy.deepcopy(dagbag.dags[INDICATORS].params)
    with pytest.raises(ParamValidationError) as err:
        params.update(conf)  # a ParamsDict validates on assignment, as a trigger does
        params.validate()
    assert f"param {named}" in str(err.value)


def test_dag_test_refuses_a_wrong_param_before_any_task_runs(airflow_db, dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="param mode"):
        dagbag.dags[INDICATORS].test(run_conf={"mode": "everything"})


def test_dag_files_parse_without_network_or_heavy_imports():
    """Parse each DAG file in a fresh interpreter; the provider modules it pulls in stay light."""
    import subprocess
    import sys

    # Airflow itself imports every installed provider's asset-URI handlers when a DAG declares an
    # Asset (the Amazon provider's pulls in requests): that baseline is not the DAG file's doing.
    baseline = (
        "import sys; from airflow.sdk import Asset; Asset(name='probe', uri='probe://x/y');"
        "print('HEAVY=' + ','.join(m for m in ('elasticsearch', 'pymisp', 'requests', 'pandas') if m in sys.modules))"
    )
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('elasticsearch', 'pymisp', 'requests', 'pandas') if m in sys.modules];"
        "print('HEAVY=' + ','.join(heavy))"
    )

    def heavy_of(*argv: str) -> set[str]:
        out = subprocess.run([sys.executable, "-c", *argv], capture_output=True, text=True, check=True, timeout=120)
        lines = [line for line in out.stdout.splitlines() if line.startswith("HEAVY=")]
        assert len(lines) == 1, out.stdout
        return {m for m in lines[0].removeprefix("HEAVY=").split(",") if m}

    allowed = heavy_of(baseline)
    assert not allowed & {"elasticsearch", "pymisp", "pandas"}, f"Airflow alone imports {allowed}"
    for name in (INDICATORS, SWEEP):
        heavy = heavy_of(code, str(REPO / "dags" / f"{name}.py")) - allowed
        assert not heavy, f"{name} imports {sorted(heavy)} at parse time"
