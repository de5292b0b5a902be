"""Fixtures of the DAG tests: simulators built from a seeded corpus, connections as env vars.

These build the ThreatQ simulator directly (``ThreatQSimulator(Corpus(...))``) so the DAG tests
control corpus dates and fault plans; credentials carry a canary secret that must never reach
logs, XCom or exception text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Callable

import pytest

CANARY_SECRET = "canary-client-secret-7d41b2"


def connection_json(sim: Any) -> str:
    """``AIRFLOW_CONN_THREATQ_DEFAULT`` for a running simulator (client-credentials grant)."""
    return json.dumps({
        "conn_type": "threatq",
        "host": sim.url,
        "extra": {"client_id": sim.client_id, "client_secret": sim.client_secret, "verify_tls": False},
    })


def start_simulator(*, seed: int, indicators: int, events: int, start: Any, end: Any, faults: Any = None) -> Any:
    from threatq_provider.simulators.corpus import Corpus
    from threatq_provider.simulators.threatq_sim import ThreatQSimulator

    corpus = Corpus(seed=seed, indicators=indicators, events=events, start=start, end=end)
    sim = ThreatQSimulator(corpus, client_secret=CANARY_SECRET, faults=faults)
    sim.start()
    return sim


@pytest.fixture
def tq_sim_factory() -> Iterator[Callable[..., Any]]:
    """Start simulators on free ports; all are stopped at teardown."""
    started: list[Any] = []

    def factory(**kwargs: Any) -> Any:
        sim = start_simulator(**kwargs)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def tq_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], None]:
    """Point ``threatq_default`` at a simulator through ``AIRFLOW_CONN_THREATQ_DEFAULT``."""

    def use(sim: Any) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", connection_json(sim))

    return use
