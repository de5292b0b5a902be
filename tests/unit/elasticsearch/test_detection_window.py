"""The detection-window refresh's selection and the run-report documents, without a node
(the real-node behaviour is tests/integration/detection/test_detection_window.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threatq_provider.elasticsearch.detection_window import due_query
from threatq_provider.elasticsearch.run_reports import run_document

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_due_means_older_than_window_minus_margin_and_not_expired():
    assert due_query(NOW) == {"bool": {
        "filter": [{"range": {"@timestamp": {"lt": "2026-11-03T12:00:00.000Z"}}}],
        "must_not": [{"range": {"threatq.ioc_expired_at": {"lte": "2026-12-01T12:00:00.000Z"}}}],
    }}
    assert due_query(NOW, window=timedelta(days=7), margin=timedelta(0))["bool"]["filter"][0]["range"][
        "@timestamp"]["lt"] == "2026-11-24T12:00:00.000Z"


@pytest.mark.parametrize("margin", [timedelta(days=30), timedelta(days=31), timedelta(days=-1)])
def test_a_margin_that_leaves_no_window_is_refused(margin):
    with pytest.raises(ValueError, match="margin"):
        due_query(NOW, margin=margin)


def test_run_document_sums_transform_rejects_and_keeps_the_counts():
    summary = {"mode": "window", "window_start": "2026-12-01T11:50:00+00:00", "window_end": "2026-12-01T12:00:00+00:00",
               "polled": 10, "transformed": 8, "rejected": {"missing_value": 1, "invalid_json": 1}, "loaded": 7,
               "unchanged": 1, "load_rejected": 0, "transform_engine": "native", "dry_run": False}
    doc = run_document(summary, dag_id="d", run_id="r", when=NOW)
    assert doc == {"@timestamp": "2026-12-01T12:00:00.000Z", "dag_id": "d", "run_id": "r", "mode": "window",
                   "transform_engine": "native", "dry_run": False, "polled": 10, "transformed": 8,
                   "transform_rejected": 2, "transform_rejected_by_reason": {"invalid_json": 1, "missing_value": 1},
                   "loaded": 7, "unchanged": 1, "load_rejected": 0,
                   "window_start": "2026-12-01T11:50:00+00:00", "window_end": "2026-12-01T12:00:00+00:00"}
