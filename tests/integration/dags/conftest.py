"""Fixtures of the DAG tests: simulators built from a seeded corpus, connections as env vars.

The simulators come from the shared ``threatq_sim_factory`` (tests/fixtures/threatq.py) so the
DAG tests control corpus dates and fault plans; here they get a canary client secret that must
never reach logs, XCom or exception text, and the client-credentials grant.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests.fixtures.threatq import threatq_conn_json

CANARY_SECRET = "canary-client-secret-7d41b2"


def start_simulator(*, seed: int, indicators: int, events: int, start: Any, end: Any, faults: Any = None) -> Any:
    """Start a simulator with the canary secret; the caller stops it.

    For module-scoped fixtures (the scheduler test), which cannot use the function-scoped
    ``threatq_sim_factory``.
    """
    from threatq_simulators.corpus import Corpus
    from threatq_simulators.threatq_sim import ThreatQSimulator

    corpus = Corpus(seed=seed, indicators=indicators, events=events, start=start, end=end)
    sim = ThreatQSimulator(corpus, client_secret=CANARY_SECRET, faults=faults)
    sim.start()
    return sim


@pytest.fixture
def tq_sim_factory(threatq_sim_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``threatq_sim_factory`` with the canary client secret (corpus sizes, dates, ``faults=``)."""
    return partial(threatq_sim_factory, client_secret=CANARY_SECRET)


@pytest.fixture
def tq_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], None]:
    """Point ``threatq_default`` at a simulator (client-credentials grant) through
    ``AIRFLOW_CONN_THREATQ_DEFAULT``."""

    def use(sim: Any) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_THREATQ_DEFAULT", threatq_conn_json(sim, grant="client_credentials"))

    return use
