"""Unit tests of the poll and report operators with a fake ThreatQ client (no HTTP, no Airflow run).

The end-to-end behaviour against the simulator and a real Airflow is in tests/integration/dags/.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from threatq_provider.operators import poll as poll_mod
from threatq_provider.operators.poll import ThreatQPollIndicatorsOperator, collection_cursor_variable
from threatq_provider.operators.report import ThreatQRunReportOperator, skip_when_dry_run
from threatq_provider.stage_io import compression_of, read_text

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
END = datetime(2026, 1, 2, tzinfo=timezone.utc)


class FakeClient:
    """Records the calls; serves fixed pages."""

    def __init__(self, pages=None, collection_pages=None):
        self.pages = pages or []
        self.collection_pages = collection_pages or []
        self.calls = []
        self.closed = 0

    def iter_indicator_pages(self, since, until, *, types=None, page_size=None, keep_unparsed=False, **filters):
        self.calls.append(("window", since, until, types, page_size))
        self.filters = filters
        yield from self.pages

    def iter_collection_pages(self, collection, *, cursor, page_size=None, keep_unparsed=False):
        self.calls.append(("collection", collection, cursor, page_size))
        for rows, nxt in self.collection_pages:
            yield SimpleNamespace(indicators=rows, next_cursor=nxt)


@pytest.fixture
def fake_client(monkeypatch, variables):
    from threatq_provider.threatq.instance import ThreatQInstance

    client = FakeClient()

    class FakeHook:
        def __init__(self, threatq_conn_id):
            self.conn_id = threatq_conn_id

        def instance(self):
            return ThreatQInstance("threatq.example.com")

        def ui_base_url(self):
            return "https://threatq.example.com"

        def get_client(self):
            return client

        def close(self):
            client.closed += 1

    import threatq_provider.threatq.hook as hook_mod

    monkeypatch.setattr(hook_mod, "ThreatQHook", FakeHook)
    return client


@pytest.fixture
def variables(monkeypatch):
    store: dict[str, str] = {}

    class FakeVariable:
        @staticmethod
        def get(key, default=None):
            return store.get(key, default)

        @staticmethod
        def set(key, value):
            store[key] = value

    import airflow.providers.common.compat.sdk as compat

    monkeypatch.setattr(compat, "Variable", FakeVariable, raising=False)
    return store


def _op(tmp_path, **kw):
    return ThreatQPollIndicatorsOperator(task_id="poll", stage_uri=f"file://{tmp_path}/run", **kw)


def test_window_mode_streams_every_page_to_raw_ndjson_and_returns_paths_and_counts(tmp_path, fake_client):
    fake_client.pages = [[{"id": 1}, {"id": 2}], [{"id": 3}]]
    out = _op(tmp_path, window_start=START, window_end=END.isoformat(), types='["IP Address"]').execute({})
    raw = tmp_path / "run" / "raw.ndjson.zst"
    assert compression_of(raw.read_bytes()[:4]) == "zstd"  # staged compressed (issue 17)
    lines = read_text(raw).splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3]
    assert out["indicators"] == 3 and out["pages"] == 2 and out["path"].endswith("/run/raw.ndjson.zst")
    assert fake_client.calls == [("window", START, END, ["IP Address"], None)]
    assert len(json.dumps(out)) < 2000  # paths, counts and the window read (watermark): never indicators


def test_full_resync_reads_from_1970_to_9999(tmp_path, fake_client):
    _op(tmp_path, mode="full_resync").execute({})
    assert fake_client.calls[0][1:3] == poll_mod.FULL_RESYNC_WINDOW


def test_full_resync_ignores_a_window_that_did_not_render(tmp_path, fake_client):
    """A run triggered with "logical_date": null has no data interval: the DAG's window templates
    render as jinja's Undefined, which failed a full resync with "window_start=Undefined is not an
    ISO-8601 date-time" (seen under a real scheduler, bench/worker_rss.py --no-logical-date)."""
    import jinja2
    from airflow.providers.common.compat.sdk import AirflowException

    _op(tmp_path, mode="full_resync", window_start=jinja2.Undefined(name="data_interval_start"),
        window_end=jinja2.Undefined(name="data_interval_end")).execute({})
    assert fake_client.calls[0][1:3] == poll_mod.FULL_RESYNC_WINDOW
    # A collection run reads no window either.
    plan = _op(tmp_path, mode="collection", collection="abc123",
               window_start=jinja2.Undefined(name="data_interval_start"),
               window_end=jinja2.Undefined(name="data_interval_end"))._plan()
    assert (plan["mode"], plan["window_start"], plan["window_end"]) == ("collection", None, None)
    # A window run still refuses it, saying why and what to do.
    with pytest.raises(AirflowException, match="window_start is undefined: this run has no data interval "
                                               r"\(it was triggered without a logical date\).*since and until"):
        _op(tmp_path, window_start=jinja2.Undefined(name="data_interval_start"), window_end=END).execute({})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "everything"}, "mode must be one of"),
        ({"mode": "window"}, "needs window_start and window_end"),
        ({"window_start": END, "window_end": START}, "is not before"),
        ({"window_start": "yesterday", "window_end": END}, "not an ISO-8601"),
        ({"mode": "collection"}, "needs a data collection hash"),
        ({"window_start": START, "window_end": END, "page_size": "1k"}, "page_size must be a whole number"),
        ({"window_start": START, "window_end": END, "types": '["IP Address"'}, "types is not a JSON list"),
    ],
)
def test_bad_arguments_fail_before_any_call_naming_the_argument(tmp_path, fake_client, kwargs, message):
    from airflow.providers.common.compat.sdk import AirflowException

    with pytest.raises(AirflowException, match=message):
        _op(tmp_path, **kwargs).execute({})
    assert fake_client.calls == []


def test_collection_mode_starts_from_the_saved_cursor_and_reports_without_saving(tmp_path, fake_client, variables):
    variables[collection_cursor_variable("abc")] = "CUR1"
    fake_client.collection_pages = [([{"id": 1, "type": {"name": "FQDN"}}, {"id": 2, "type": "URL"}], "CUR2"),
                                    ([{"id": 3, "type": {"name": "FQDN"}}], "CUR3")]
    out = _op(tmp_path, mode="collection", collection="abc", types=["FQDN"]).execute({})
    assert fake_client.calls == [("collection", "abc", "CUR1", None)]
    assert out["cursor_start"] == "CUR1" and out["next_cursor"] == "CUR3"
    assert out["indicators"] == 2  # the run's type filter narrows the collection
    assert variables[collection_cursor_variable("abc")] == "CUR1", "the poll task must not move the cursor"


def test_report_saves_the_cursor_only_after_a_load(variables):
    poll = {"mode": "collection", "cursor_variable": "v", "next_cursor": "N", "indicators": 5}
    skipped = ThreatQRunReportOperator(task_id="r", poll_result=poll, transform_result={"written": 5},
                                       load_result=None).execute({})
    assert skipped["cursor_saved"] is False and "v" not in variables
    done = ThreatQRunReportOperator(task_id="r", poll_result=poll, transform_result={"written": 5},
                                    load_result={"indexed": 4, "updated": 1, "skipped_stale": 0}).execute({})
    assert done["cursor_saved"] is True and variables["v"] == "N"
    assert done["loaded"] == 5


def test_report_counts_history_rejects_and_names_the_transform_engine(variables):
    out = ThreatQRunReportOperator(
        task_id="r", poll_result={"mode": "window", "indicators": 5},
        transform_result={"written": 5, "engine": "native", "native_lines": 5},
        load_result={"indexed": 3, "updated": 0, "rejected_total": 1, "history_rejected": 2, "rejected_documents": 2},
    ).execute({})
    assert out["load_rejected"] == 2 and out["transform_engine"] == "native"
    legacy = ThreatQRunReportOperator(task_id="r", poll_result={"mode": "window"}, transform_result={"written": 1},
                                      load_result={"indexed": 1, "rejected_total": 1}).execute({})
    assert legacy["load_rejected"] == 1 and legacy["transform_engine"] is None


def test_dry_run_skips_write_tasks():
    from airflow.providers.common.compat.sdk import AirflowSkipException

    skip_when_dry_run({"params": {"dry_run": False}})
    with pytest.raises(AirflowSkipException):
        skip_when_dry_run({"params": {"dry_run": True}})


def test_poll_closes_the_hook_after_success_and_after_a_failed_page(tmp_path, fake_client):
    fake_client.pages = [[{"id": 1}]]
    _op(tmp_path, window_start=START, window_end=END).execute({})
    assert fake_client.closed == 1

    def broken(*args, **kwargs):
        yield [{"id": 2}]
        raise RuntimeError("page 2 malformed")

    fake_client.iter_indicator_pages = broken
    with pytest.raises(RuntimeError, match="page 2 malformed"):
        _op(tmp_path, window_start=START, window_end=END).execute({})
    assert fake_client.closed == 2


def test_report_reads_results_rendered_as_python_reprs_and_names_unreadable_ones(variables):
    # A DAG without render_template_as_native_obj renders each XCom as str(dict): single quotes, None.
    poll = {"mode": "collection", "cursor_variable": "v", "next_cursor": "N", "indicators": 5, "types": None}
    out = ThreatQRunReportOperator(task_id="r", poll_result=str(poll), transform_result=str({"written": 5}),
                                   load_result=str({"indexed": 5, "updated": 0})).execute({})
    assert out["cursor_saved"] is True and variables["v"] == "N" and out["loaded"] == 5

    from airflow.providers.common.compat.sdk import AirflowException

    with pytest.raises(AirflowException, match="cannot read a task result"):
        ThreatQRunReportOperator(task_id="r", poll_result="{not a result", load_result=None).execute({})


def test_a_local_stage_folder_is_private_to_the_worker_user(tmp_path, fake_client):
    import os
    import stat

    fake_client.pages = [[{"id": 1, "value": "203.0.113.9"}]]
    out = _op(tmp_path, window_start=START, window_end=END).execute({})
    mode = stat.S_IMODE(os.stat(tmp_path / "run").st_mode)
    assert mode == 0o700, oct(mode)
    assert out["stage_dir"].endswith("/run")


# -- watermark (threatq_provider.threatq.watermark; the DAG-level proof is in tests/integration/dags) --

WM_KEY = "threatq_watermark__adhoc_airflow__threatq.example.com__window"
LOADED = {"indexed": 3, "updated": 0, "skipped_stale": 0}


def _poll_and_report(tmp_path, *, context=None, load=LOADED, **kw):
    out = _op(tmp_path, window_start=START, window_end=END, use_watermark=True, **kw).execute(context or {})
    report = ThreatQRunReportOperator(task_id="r", poll_result=out, transform_result={"written": 3},
                                      load_result=load).execute(context or {})
    return out, report


def test_first_window_run_reads_the_lookback_and_the_report_creates_the_watermark(tmp_path, fake_client, variables):
    out, report = _poll_and_report(tmp_path, initial_lookback="30d")
    assert fake_client.calls[0][1:3] == (END - timedelta(days=30), END)
    assert (out["window_start"], out["window_end"]) == ((END - timedelta(days=30)).isoformat(), END.isoformat())
    assert out["watermark"]["kind"] == "initial_lookback" and out["watermark"]["variable"] == WM_KEY
    assert report["window_kind"] == "initial_lookback" and report["watermark_saved"] is True
    assert json.loads(variables[WM_KEY])["watermark"] == "2026-01-02T00:00:00Z"


def test_a_later_run_reads_from_the_watermark_and_the_report_names_the_gap(tmp_path, fake_client, variables):
    variables[WM_KEY] = json.dumps({"watermark": "2025-12-25T00:00:00Z"})
    out, report = _poll_and_report(tmp_path)
    assert fake_client.calls[0][1] == datetime(2025, 12, 25, tzinfo=timezone.utc)
    assert report["gap_closed"] == {"start": "2025-12-25T00:00:00Z", "end": "2026-01-01T00:00:00Z", "intervals": 7}
    assert (report["interval_start"], report["interval_end"]) == ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
    assert json.loads(variables[WM_KEY])["watermark"] == "2026-01-02T00:00:00Z"


def test_a_backfill_reads_its_own_interval_and_never_moves_the_watermark_back(tmp_path, fake_client, variables):
    variables[WM_KEY] = json.dumps({"watermark": "2026-02-01T00:00:00Z"})
    backfill = {"dag_run": SimpleNamespace(run_type="backfill")}
    out, report = _poll_and_report(tmp_path, context=backfill)
    assert fake_client.calls[0][1:3] == (START, END)
    assert out["watermark"]["kind"] == "backfill" and report["watermark_saved"] is False
    assert json.loads(variables[WM_KEY])["watermark"] == "2026-02-01T00:00:00Z"


def test_a_dry_run_or_a_filtered_run_leaves_the_watermark_alone(tmp_path, fake_client, variables):
    _out, dry = _poll_and_report(tmp_path, load=None)
    assert dry["watermark_saved"] is False and WM_KEY not in variables
    out, report = _poll_and_report(tmp_path, types=["FQDN"])
    assert out["watermark"]["variable"].startswith(WM_KEY + "__") and report["watermark_saved"] is True
    assert WM_KEY not in variables, "a filtered run moved the unfiltered watermark"


def test_a_window_given_by_hand_is_read_as_given_and_an_unreadable_watermark_fails_the_task(
        tmp_path, fake_client, variables):
    from airflow.providers.common.compat.sdk import AirflowFailException

    variables[WM_KEY] = "last tuesday"
    with pytest.raises(AirflowFailException, match=WM_KEY):
        _op(tmp_path, window_start=START, window_end=END, use_watermark=True).execute({})
    variables[WM_KEY] = "2025-06-01T00:00:00Z"
    out = _op(tmp_path, window_start=START, window_end=END, use_watermark=False).execute({})
    assert fake_client.calls[-1][1:3] == (START, END) and out["watermark"] is None
    report = ThreatQRunReportOperator(task_id="r", poll_result=out, transform_result={"written": 3},
                                      load_result=LOADED).execute({})
    assert report["watermark_saved"] is False and variables[WM_KEY] == "2025-06-01T00:00:00Z"


def test_a_full_resync_moves_the_watermark_to_its_poll_time(tmp_path, fake_client, variables):
    out = _op(tmp_path, mode="full_resync", use_watermark=True).execute({})
    report = ThreatQRunReportOperator(task_id="r", poll_result=out, transform_result={"written": 0},
                                      load_result=LOADED).execute({})
    assert report["watermark_saved"] is True
    assert json.loads(variables[WM_KEY])["watermark"] == out["polled_at"].replace("+00:00", "Z")


# -- window-mode filters (#13 item 6) ------------------------------------------------------------


def test_status_score_source_and_tag_filters_reach_the_query_and_key_their_own_watermark(
        tmp_path, fake_client, variables):
    out = _op(tmp_path, window_start=START, window_end=END, use_watermark=True, statuses='["Active", "Review"]',
              min_score="7", sources="Abuse.ch, CrowdStrike", tags=["apt29"]).execute({})
    assert fake_client.filters == {"statuses": ["Active", "Review"], "min_score": 7,
                                   "sources": ["Abuse.ch", "CrowdStrike"], "tags": ["apt29"]}
    assert out["filters"] == {"statuses": ["Active", "Review"], "min_score": 7,
                              "sources": ["Abuse.ch", "CrowdStrike"], "tags": ["apt29"]}
    assert out["watermark"]["variable"].startswith(WM_KEY + "__")  # a filtered feed: its own watermark
    _op(tmp_path, window_start=START, window_end=END, min_score="None", tags=[]).execute({})
    assert fake_client.filters == {}  # unset filters are not sent


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_score": "11"}, "min_score must be a whole number from 0 to 10"),
    ({"min_score": "high"}, "min_score must be a whole number"),
    ({"min_score": 7.5}, "min_score must be a whole number"),
    ({"min_score": 7.0}, "min_score must be a whole number"),  # decided drift (#11): a float is not read as an int
    ({"page_size": 12.5}, "page_size must be a whole number of rows"),  # decided drift (#11): was cut to 12
    ({"mode": "collection", "collection": "abc", "tags": ["apt29"]}, "a data collection has its own criteria"),
    ({"sources": '["Abuse.ch"'}, "sources is not a JSON list"),
])
def test_bad_filters_fail_before_any_call(tmp_path, fake_client, kwargs, message):
    from airflow.providers.common.compat.sdk import AirflowException

    args = {"window_start": START, "window_end": END} | kwargs
    with pytest.raises(AirflowException, match=message):
        _op(tmp_path, **args).execute({})
    assert fake_client.calls == []
