"""The poll reads one page ahead (issue 17): pages are fetched in a background thread while the
current one is written, an error of the feed fails the task with its own type after the pages
before it, no thread outlives the task, and a collection's cursor is that of the last page staged."""

from __future__ import annotations

import threading

import pytest

from threatq_provider.stage_io import read_text
from threatq_provider.threatq.errors import ThreatQServerError

from .test_poll_and_report import END, START, _op, fake_client, variables  # noqa: F401 - fixtures


def _ids(tmp_path):
    import json

    return [json.loads(line)["id"] for line in read_text(tmp_path / "run" / "raw.ndjson.zst").splitlines()]


def test_pages_are_fetched_in_a_background_thread_and_staged_in_order(tmp_path, fake_client):
    fetched_in = set()

    def pages(*args, **kwargs):
        for n in range(5):
            fetched_in.add(threading.current_thread().name)
            yield [{"id": n * 10 + i} for i in range(10)]

    fake_client.iter_indicator_pages = pages
    out = _op(tmp_path, window_start=START, window_end=END).execute({})

    assert fetched_in == {"poll-pages"}
    assert out["indicators"] == 50 and out["pages"] == 5
    assert _ids(tmp_path) == list(range(50))


def test_a_failing_page_fails_the_task_with_its_own_error_and_leaves_no_thread(tmp_path, fake_client):
    def pages(*args, **kwargs):
        yield [{"id": 1}]
        yield [{"id": 2}]
        raise ThreatQServerError(503, "POST", "/api/indicators/query", "unavailable")

    fake_client.iter_indicator_pages = pages
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ThreatQServerError):  # a 5xx keeps Airflow's retries (not fail-fast)
        _op(tmp_path, window_start=START, window_end=END).execute({})

    assert fake_client.closed == 1
    assert {t.name for t in threading.enumerate()} - before == set()


def test_a_failing_write_stops_the_read_ahead_and_closes_the_feed(tmp_path, fake_client, monkeypatch):
    import threatq_provider.operators.poll as poll_mod

    closed = threading.Event()

    def pages(*args, **kwargs):
        try:
            for n in range(1000):
                yield [{"id": n}]
        finally:
            closed.set()

    def disk_full(indicator):
        if indicator["id"] == 3:
            raise OSError(28, "No space left on device")
        return real(indicator)

    real = poll_mod.stage_record
    monkeypatch.setattr(poll_mod, "stage_record", disk_full)
    fake_client.iter_indicator_pages = pages
    with pytest.raises(OSError, match="No space left"):
        _op(tmp_path, window_start=START, window_end=END).execute({})
    assert closed.is_set() and fake_client.closed == 1
    assert "poll-pages" not in {t.name for t in threading.enumerate()}


def test_collection_mode_reports_the_cursor_of_the_last_page_staged(tmp_path, fake_client, variables):
    fake_client.collection_pages = [([{"id": 1}], "c1"), ([{"id": 2}], "c2"), ([{"id": 3}], "c3")]
    out = _op(tmp_path, mode="collection", collection="abc").execute({})
    assert out["next_cursor"] == "c3" and _ids(tmp_path) == [1, 2, 3]
    assert variables == {}  # never saved by the poll (the report task does, after the load)


def test_collection_mode_reports_nothing_when_a_later_page_fails(tmp_path, fake_client, variables):
    from types import SimpleNamespace

    def pages(*args, **kwargs):
        yield SimpleNamespace(indicators=[{"id": 1}], next_cursor="c1")
        raise ThreatQServerError(500, "GET", "/api/indicators/query/hash/abc", "boom")

    fake_client.iter_collection_pages = pages
    with pytest.raises(ThreatQServerError):
        _op(tmp_path, mode="collection", collection="abc").execute({})
    assert variables == {}
