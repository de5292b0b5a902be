"""Read ahead of a consumer: an iterator driven by one background thread, a bounded number of items
ahead (the next ThreatQ page is fetched while the current one is written).

The source iterator runs entirely in the background thread (a generator is never resumed from two
threads); items reach the consumer in order. An exception the source raises is raised in the
consumer, at the point in the sequence where it happened, after every item before it. Closing the
consumer's generator (its ``for`` loop ending early or raising) stops the thread after the item it
is fetching, closes the source there and waits for it, so nothing outlives the caller (the HTTP
session it reads from is closed next). No Airflow import.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_END = object()
# How often a blocked hand-over looks whether the consumer went away.
_POLL_S = 0.1


def prefetch(items: Iterable[T], *, ahead: int = 1, name: str = "prefetch") -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``ahead`` items ahead of the consumer.

    :param items: the source (e.g. the client's page generator).
    :param ahead: items fetched or waiting at most (memory bound: ``ahead + 1`` items alive).
    :param name: the thread's name (seen in stack dumps and py-spy).
    :return: the same items, in order; the source's exception is re-raised here.
    """
    if ahead < 1:
        raise ValueError(f"ahead must be at least 1, not {ahead!r}")
    handover: queue.Queue[tuple[bool, object]] = queue.Queue()
    # A slot is taken before each fetch and given back when the consumer takes an item, so at most
    # ``ahead`` items are fetched or waiting besides the one the consumer holds (a page of 1,000
    # indicators is tens of MB as Python objects).
    slots = threading.Semaphore(ahead)
    stop = threading.Event()

    def slot() -> bool:
        while not stop.is_set():
            if slots.acquire(timeout=_POLL_S):
                return True
        return False

    def run() -> None:
        source = iter(items)
        try:
            while slot():
                try:
                    item = next(source)
                except StopIteration:
                    handover.put((True, _END))
                    return
                handover.put((True, item))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            handover.put((False, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    try:
        while True:
            ok, value = handover.get()
            slots.release()
            if not ok:
                assert isinstance(value, BaseException)
                raise value
            if value is _END:
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
