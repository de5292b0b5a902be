"""``sorted_id_pages``: a data collection's ids (feed order, repeats) made strictly ascending for
the reconciliation's merge, in memory or by an external sort over temporary files."""

from __future__ import annotations

import random
import tempfile

import pytest

from threatq_provider.elasticsearch import reconcile
from threatq_provider.elasticsearch.reconcile import sorted_id_pages


def _flat(pages):
    return [i for page in pages for i in page]


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, 500_000])  # every id a run, several runs, one chunk
def test_ids_come_strictly_ascending_without_repeats_whatever_the_chunking(chunk_size):
    rng = random.Random(5)
    ids = [rng.randrange(1, 5000) for _ in range(3000)]
    ids += ids[:400]  # an indicator updated while the feed was read comes twice
    pages = list(sorted_id_pages(iter(ids), chunk_size=chunk_size, page_size=256))
    assert _flat(pages) == sorted(set(ids))
    assert all(0 < len(p) <= 256 for p in pages) and all(len(p) == 256 for p in pages[:-1])


def test_nothing_in_nothing_out():
    assert list(sorted_id_pages(iter(()))) == []


def test_runs_go_to_temporary_files_and_are_closed(monkeypatch):
    opened = []
    real = tempfile.TemporaryFile

    def spy(*args, **kwargs):
        handle = real(*args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(reconcile.tempfile, "TemporaryFile", spy)
    ids = list(range(10_000, 0, -1))
    assert _flat(sorted_id_pages(iter(ids), chunk_size=3000)) == list(range(1, 10_001))
    assert len(opened) == 4 and all(h.closed for h in opened)  # 3 full chunks and the rest


def test_a_failing_feed_yields_nothing_and_leaves_no_file_open(monkeypatch):
    opened = []
    real = tempfile.TemporaryFile
    monkeypatch.setattr(reconcile.tempfile, "TemporaryFile", lambda *a, **k: opened.append(real(*a, **k)) or opened[-1])

    def feed():
        yield from range(50)
        raise ConnectionError("ThreatQ went away")

    pages = sorted_id_pages(feed(), chunk_size=10)
    with pytest.raises(ConnectionError):
        next(pages)
    assert opened and all(h.closed for h in opened)
