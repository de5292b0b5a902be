"""The poll's read-ahead (issue 17): order, bounded look-ahead, the source's errors raised in the
consumer after every earlier item, and a consumer that stops closes the source."""

from __future__ import annotations

import threading
import time

import pytest

from threatq_provider._prefetch import prefetch


def test_items_arrive_in_order_and_the_source_runs_in_another_thread():
    threads = set()

    def source():
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert list(prefetch(source(), name="pages")) == list(range(50))
    assert threads == {"pages"}


def test_the_next_item_is_fetched_while_the_consumer_works_on_the_current_one():
    fetched = []

    def source():
        for i in range(3):
            fetched.append(i)
            yield i

    feed = prefetch(source(), ahead=1)
    assert next(feed) == 0
    deadline = time.monotonic() + 5
    while len(fetched) < 2 and time.monotonic() < deadline:  # 1 is fetched while 0 is worked on
        time.sleep(0.01)
    time.sleep(0.1)
    assert fetched == [0, 1]  # and no further: one ahead
    assert list(feed) == [1, 2]


def test_look_ahead_is_bounded():
    fetched = []

    def source():
        for i in range(100):
            fetched.append(i)
            yield i

    feed = prefetch(source(), ahead=2)
    next(feed)
    time.sleep(0.3)
    # one held by the consumer, two fetched ahead; no third until the consumer takes one
    assert len(fetched) == 3
    next(feed)
    time.sleep(0.3)
    assert len(fetched) == 4
    feed.close()


def test_an_error_of_the_source_is_raised_in_the_consumer_after_the_items_before_it():
    class PageError(Exception):
        pass

    def source():
        yield 1
        yield 2
        raise PageError("page 3: HTTP 500")

    got = []
    with pytest.raises(PageError, match="page 3"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_closes_the_source_and_leaves_no_thread():
    closed = threading.Event()

    def source():
        try:
            for i in range(1_000_000):
                yield i
        finally:
            closed.set()

    before = threading.active_count()
    feed = prefetch(source(), name="pages-stop")
    with pytest.raises(RuntimeError, match="disk full"):
        for item in feed:
            if item == 3:
                raise RuntimeError("disk full")
    feed.close()
    assert closed.is_set()
    assert threading.active_count() == before
    assert "pages-stop" not in {t.name for t in threading.enumerate()}


def test_ahead_below_one_is_refused():
    with pytest.raises(ValueError, match="ahead"):
        next(prefetch([1], ahead=0))
