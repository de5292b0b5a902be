"""Unit tests of the Elasticsearch layer run on fake clients that answer only what each test needs:
no capability probe may reach a cluster. Each fake counts as a cluster without the full-cluster
features (Elastic's minimal test node); the probes themselves are tested on the real nodes
(tests/integration/elasticsearch/test_cluster.py)."""

from __future__ import annotations

import pytest

from threatq_provider.elasticsearch.cluster import Capabilities, Cluster


@pytest.fixture(autouse=True)
def _no_capability_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Cluster, "_probe", lambda self: Capabilities(self.flavor))
