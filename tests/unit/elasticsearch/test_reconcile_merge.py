"""The merge at the heart of the deletion reconciliation: two ascending id streams, flat memory."""

from __future__ import annotations

import pytest

from threatq_provider.elasticsearch.errors import ReconcileLimitExceeded
from threatq_provider.elasticsearch.reconcile import ActiveDoc, instance_filter, missing_from


def docs(*ids: int) -> list[ActiveDoc]:
    return [ActiveDoc(i, "idx", str(i), 1, 0, 1) for i in ids]


@pytest.mark.parametrize(
    ("active", "threatq", "missing"),
    [
        ((1, 2, 3), [[1, 2, 3]], []),
        ((1, 2, 3), [[1], [3]], [2]),
        ((1, 2, 3), [], [1, 2, 3]),  # ThreatQ lists nothing: everything is missing (the safety limit's case)
        ((5, 9), [[1, 2, 3], [4, 6, 7, 8], [10]], [5, 9]),  # ThreatQ has many more than the index
        ((), [[1, 2]], []),
        ((1, 1, 4), [[1, 2]], [4]),  # the same id twice (two indices behind the alias during a rollover)
    ],
)
def test_missing_from_is_the_active_ids_that_threatq_does_not_list(active, threatq, missing):
    assert [d.threatq_id for d in missing_from(docs(*active), threatq)] == missing


def test_out_of_order_input_is_an_error_not_a_wrong_deletion():
    with pytest.raises(ValueError, match="ThreatQ ids out of order"):
        list(missing_from(docs(5), [[1, 3, 2]]))
    with pytest.raises(ValueError, match="active index ids out of order"):
        list(missing_from(docs(3, 2), [[1]]))


def test_the_merge_reads_lazily():
    def threatq():
        yield [1, 2]
        raise AssertionError("read past what the merge needed")

    assert [d.threatq_id for d in missing_from(iter(docs(1, 2)), threatq())] == []


def test_instance_filters_and_the_limit_message():
    assert instance_filter(None, explicit=False) is None
    assert instance_filter("partner", explicit=True) == {"term": {"threatq.instance": "partner"}}
    default = instance_filter("threatq.example.com", explicit=False)["bool"]["should"]
    assert {"bool": {"must_not": {"exists": {"field": "threatq.instance"}}}} in default
    text = str(ReconcileLimitExceeded(300, 1000, 10))
    assert "300 of 1000 active IOCs (30.0%)" in text and "nothing was removed" in text and "allow_mass_delete" in text
