"""Shared helpers for the MISP component tests: the real PyMISP client against the double."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pymisp import PyMISP

from tests.fixtures.misp import MISP_CANARY_KEY

DATA = Path(__file__).resolve().parents[2] / "data" / "misp"
THREATQ_HOST = "https://threatq.example.com"


def load_case(name: str = "event_spearphish") -> dict[str, Any]:
    """A hand-written ThreatQ event with indicators and attachments (bytes) from tests/data/misp/."""
    case = json.loads((DATA / f"{name}.json").read_text())
    case["attachments"] = [(a["attachment"], a["content_text"].encode()) for a in case["attachments"]]
    return case


@pytest.fixture
def case() -> dict[str, Any]:
    """A fresh copy of the spearphish case per test."""
    return copy.deepcopy(load_case())


@pytest.fixture
def double(misp_double):
    """The session double, emptied."""
    misp_double.reset()
    return misp_double


@pytest.fixture
def pymisp_client(double) -> PyMISP:
    """The real PyMISP client connected to the double."""
    return PyMISP(double.url, MISP_CANARY_KEY, ssl=False, timeout=(5, 60), tool="tests")
