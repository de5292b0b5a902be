"""The backfill example of docs/dags.md plans the runs it says (issue #14 item 7).

``airflow backfill create --dry-run`` parses its dates with the CLI's own parser and plans with
``airflow.models.backfill._get_info_list`` over the serialized DAG; both are used here, in
process (the CLI itself needs a migrated home and a reserialize: a minute and a half on CI for
the same answer). ``--to-date`` is an instant, both ends included: a bare date is its midnight,
so ``2026-11-01``..``2026-11-03`` on the 10-minute schedule plans 289 runs, and three whole days
need ``--to-date 2026-11-03T23:59:59``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

REPO = Path(__file__).resolve().parents[3]
DAG_ID = "threatq_indicators_to_elasticsearch"


def planned(monkeypatch: pytest.MonkeyPatch, cron: str | None, to_date: str) -> list[str]:
    """Logical dates the documented backfill command would create, as its ``--dry-run`` lists them."""
    from airflow.cli.cli_parser import get_parser
    from airflow.models import DagBag
    from airflow.models.backfill import _get_info_list
    from airflow.serialization.serialized_objects import DagSerialization

    if cron:
        monkeypatch.setenv("THREATQ_INDICATORS_CRON", cron)  # read when the DAG file is parsed
    else:
        monkeypatch.delenv("THREATQ_INDICATORS_CRON", raising=False)
    args = get_parser().parse_args(["backfill", "create", "--dag-id", DAG_ID, "--from-date", "2026-11-01",
                                    "--to-date", to_date, "--dry-run"])
    dag = DagBag(dag_folder=str(REPO / "dags" / f"{DAG_ID}.py")).dags[DAG_ID]
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    infos = _get_info_list(dag=serialized, from_date=args.from_date, to_date=args.to_date, reverse=False)
    return [info.logical_date.isoformat() for info in infos]


def test_the_documented_backfill_example_plans_the_runs_it_says(monkeypatch):
    runs = planned(monkeypatch, None, "2026-11-03")
    assert (len(runs), runs[0], runs[-1]) == (289, "2026-11-01T00:00:00+00:00", "2026-11-03T00:00:00+00:00")
    assert len(planned(monkeypatch, None, "2026-11-03T23:59:59")) == 432
    assert planned(monkeypatch, "0 0 * * *", "2026-11-03") == [
        "2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00"]
    readme = (REPO / "docs" / "dags.md").read_text(encoding="utf-8")
    assert "289 runs" in readme and "432" in readme and "--to-date 2026-11-03T23:59:59" in readme
