"""Which copy of an indicator wins, on the real node: versions from ``updated_at`` and the poll's
time, tombstones left by the sweep, impossible dates refused (issue #18 items 3 and 5, #13 item 3).

Documents come from raw ThreatQ indicators through the real ECS transform. Each test states
what happened before the fix where it differs. Each runs on both nodes (``es``: bulk deletes and
prunes; ``os``: pinned ``_delete_by_query`` sweeps and by-query prunes).
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from threatq_provider.ecs.options import EcsOptions
from threatq_provider.ecs.transform import indicator_to_ecs
from threatq_provider.elasticsearch.loader import load_ndjson
from threatq_provider.elasticsearch.sweeper import sweep_expired, sweep_tombstones
from threatq_provider.elasticsearch.templates import IndexNames, install_templates
from threatq_provider.elasticsearch.tombstones import prune_tombstones
from threatq_simulators.corpus import Corpus

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

UTC = timezone.utc
SWEEP_NOW = datetime(2026, 12, 1, tzinfo=UTC)
P1 = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)  # a poll
P2 = datetime(2026, 11, 25, 9, 5, tzinfo=UTC)  # a later poll
OPTIONS = EcsOptions()


def raw(iid: int, updated: str | None, status: str = "Active", **extra) -> dict:
    out = {"id": iid, "value": f"198.51.100.{iid % 250}", "type": {"name": "IP Address"},
           "status": {"name": status}, "score": 7, **extra}
    if updated is not None:
        out["updated_at"] = updated
    return out


def ecs(indicator: dict, *, now: datetime = P1, options: EcsOptions = OPTIONS) -> str:
    return json.dumps(indicator_to_ecs(indicator, now=now, options=options))


@pytest.fixture
def names(search_client, search_index_prefix) -> IndexNames:
    install_templates(search_client, prefix=search_index_prefix)
    return IndexNames(search_index_prefix)


def load(client, names: IndexNames, lines, *, observed_at, **kwargs):
    return load_ndjson(client, lines, active_index=names.active_alias, history_prefix=names.history_prefix,
                       tombstone_index=names.tombstone_index, observed_at=observed_at, **kwargs)


def sweep(client, names: IndexNames, now: datetime = SWEEP_NOW) -> dict:
    return sweep_expired(client, now=now, index=names.active_alias, tombstone_index=names.tombstone_index)


def active(client, names: IndexNames) -> dict[str, dict]:
    client.indices.refresh(index=names.active_alias)
    hits = client.search(index=names.active_alias, body={"size": 10_000, "query": {"match_all": {}}},
                         version=True)["hits"]["hits"]
    return {h["_id"]: h for h in hits}


def forget_deletes_at_once(client, names: IndexNames) -> None:
    """``index.gc_deletes`` 0: the node forgets a delete's version at its next refresh, as it does
    60 s after the delete by default. Without this, a replay within the minute would be refused
    by the node itself and the tests would not reach what happens later."""
    client.indices.put_settings(index=names.active_alias, body={"index.gc_deletes": "0s"})


# ------------------------------------------------------------------ #18 item 3: no resurrection


def test_replaying_an_older_load_after_the_sweep_never_brings_the_ioc_back(search_client, names):
    forget_deletes_at_once(search_client, names)
    active_v1 = ecs(raw(1, "2026-11-20 10:00:00"))  # expires 2027-02-18 (90 days)
    expired_v2 = ecs(raw(1, "2026-11-25 09:00:00", status="Expired"))  # expired as of its edit
    load(search_client, names, [active_v1], observed_at=P1)
    load(search_client, names, [expired_v2], observed_at=P2)

    first = sweep(search_client, names)

    assert (first["deleted"], first["tombstones"]) == (1, 1)
    stone = search_client.get(index=names.tombstone_index, id="1")
    assert stone["_source"]["reason"] == "expired"
    # The swept copy's version: updated_at in seconds, then the poll's seconds since 2020.
    swept = int(datetime(2026, 11, 25, 9, tzinfo=UTC).timestamp()) << 31 | int(
        (P2 - datetime(2020, 1, 1, tzinfo=UTC)).total_seconds())
    assert stone["_version"] == stone["_source"]["version"] == swept
    assert stone["_source"]["updated_at"] == "2026-11-25T09:00:00.000Z"
    assert stone["_source"]["observed_at"] == "2026-11-25T09:05:00.000Z"
    time.sleep(1)
    search_client.indices.refresh(index=names.active_alias)

    # Clearing the old run's load task: its stage file, its poll's time.
    replay = load(search_client, names, [active_v1], observed_at=P1)
    again = sweep(search_client, names)

    assert (replay.skipped_deleted, replay.indexed, replay.skipped_stale) == (1, 0, 0)
    assert replay.history_existing == 1  # the history already had that version
    assert again["matched"] == 0
    assert "1" not in active(search_client, names)

    # Before the fix nothing but the node's memory of the delete stood in the way, and it is gone:
    # the same replay without tombstones brings the IOC back with its 2027 expiry.
    for _ in range(10):
        if load_ndjson(search_client, [active_v1], active_index=names.active_alias, history_prefix=None,
                       tombstone_index=None, observed_at=P1).indexed:
            break
        time.sleep(0.5)
        search_client.indices.refresh(index=names.active_alias)
    assert "1" in active(search_client, names)
    assert sweep(search_client, names)["matched"] == 0, "a resurrected IOC would stay: its old expiry is in 2027"


def test_a_genuinely_newer_version_wins_over_the_tombstone(search_client, names):
    load(search_client, names, [ecs(raw(2, "2026-11-25 09:00:00", status="Expired"))], observed_at=P2)
    sweep(search_client, names)
    assert "2" not in active(search_client, names)

    # Re-activated in ThreatQ: a new updated_at, read by a later poll.
    reactivated = load(search_client, names, [ecs(raw(2, "2026-11-28 12:00:00"))],
                       observed_at=datetime(2026, 11, 28, 12, 5, tzinfo=UTC))

    assert (reactivated.indexed, reactivated.skipped_deleted) == (1, 0)
    assert active(search_client, names)["2"]["_source"]["threatq"]["status"]["name"] == "Active"
    assert sweep(search_client, names)["matched"] == 0


def test_nothing_is_deleted_without_its_tombstone(search_client, names):
    load(search_client, names, [ecs(raw(i, "2026-11-25 09:00:00", status="Expired")) for i in range(3, 6)],
         observed_at=P2)
    search_client.indices.put_settings(index=names.tombstone_index, body={"index.blocks.write": True})
    try:
        result = sweep(search_client, names)
    finally:
        search_client.indices.put_settings(index=names.tombstone_index, body={"index.blocks.write": False})

    assert (result["matched"], result["deleted"], result["tombstone_failures"]) == (3, 0, 3 * result["passes"])
    assert result["remaining"] == 3
    assert set(active(search_client, names)) == {"3", "4", "5"}
    # The next sweep, with the tombstone index writable again, removes them.
    assert sweep(search_client, names)["deleted"] == 3


def test_old_tombstones_are_pruned_and_a_newer_one_is_kept(search_client, names):
    load(search_client, names, [ecs(raw(i, "2026-11-25 09:00:00", status="Expired")) for i in (6, 7)], observed_at=P2)
    sweep(search_client, names)
    search_client.indices.refresh(index=names.tombstone_index)
    later = datetime.now(UTC) + timedelta(days=31)

    dry = sweep_tombstones(search_client, now=later, retention="30d", dry_run=True, index=names.tombstone_index)
    kept = sweep_tombstones(search_client, now=datetime.now(UTC), retention="30d", index=names.tombstone_index)
    pruned = prune_tombstones(search_client, names.tombstone_index, before=later - timedelta(days=30))

    assert (dry["pruned"], kept["pruned"], pruned) == (2, 0, 2)
    assert search_client.count(index=names.tombstone_index)["count"] == 0
    assert prune_tombstones(search_client, names.tombstone_index + "-missing", before=later) == 0


# ------------------------------------------------------------------ #18 item 5: versions


def test_a_second_edit_in_the_same_second_wins_when_a_later_poll_reads_it(search_client, names):
    active_edit = ecs(raw(10, "2026-11-25 09:00:00"))
    expired_edit = ecs(raw(10, "2026-11-25 09:00:00", status="Expired"))  # same second, set Expired
    first_poll = datetime(2026, 11, 25, 9, 0, 0, 500_000, tzinfo=UTC)  # read between the two edits
    load(search_client, names, [active_edit], observed_at=first_poll)

    second = load(search_client, names, [expired_edit], observed_at=datetime(2026, 11, 25, 9, 10, tzinfo=UTC))

    assert (second.updated, second.skipped_stale) == (1, 0)  # before the fix: skipped_stale, stays Active
    assert active(search_client, names)["10"]["_source"]["threatq"]["status"]["name"] == "Expired"
    assert sweep(search_client, names)["deleted"] == 1
    assert load(search_client, names, [active_edit], observed_at=first_poll).skipped_deleted == 1


def test_an_undated_copy_loads_and_its_corrected_row_replaces_it(search_client, names):
    run_time = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    undated = ecs(raw(20, None), now=run_time)  # @timestamp = the run's time, flagged
    corrected = ecs(raw(20, "2026-11-22 08:00:00"))  # older than the run's time

    first = load(search_client, names, [undated], observed_at=run_time)
    fixed = load(search_client, names, [corrected], observed_at=run_time + timedelta(minutes=10))

    assert (first.indexed, fixed.updated, fixed.skipped_stale) == (1, 1, 0)  # before: skipped_stale
    stored = active(search_client, names)["20"]
    assert stored["_source"]["@timestamp"] == "2026-11-22T08:00:00.000Z" and "error" not in stored["_source"]
    # And the other way round: an undated copy read later never replaces a dated one.
    later_undated = load(search_client, names, [undated], observed_at=run_time + timedelta(days=1))
    assert later_undated.skipped_stale == 1


def test_an_impossible_updated_at_is_dead_lettered_and_does_not_freeze_the_indicator(search_client, names):
    dead = io.StringIO()
    poll = datetime(2026, 11, 26, tzinfo=UTC)
    clock = poll + timedelta(minutes=5)
    frozen = ecs(raw(30, "9999-12-31 23:59:59"))
    too_old = json.dumps({**json.loads(ecs(raw(31, "2026-11-20 10:00:00"))), "@timestamp": "1969-07-20T20:17:40Z"})

    bad = load(search_client, names, [frozen, too_old], observed_at=poll, now=clock, dead_letter=dead)
    good = load(search_client, names, [ecs(raw(30, "2026-11-25 10:00:00"))], observed_at=poll, now=clock)

    assert dict(bad.rejected) == {"timestamp_in_future": 1, "timestamp_before_1970": 1}
    assert bad.rejected_documents == 2 and bad.history_written == 0
    records = {r["id"]: r for r in map(json.loads, dead.getvalue().splitlines())}
    assert set(records) == {"30", "31"} and records["30"]["document"]["threatq"]["id"] == 30
    assert records["30"]["reason"].startswith("timestamp_in_future: @timestamp 9999-12-31T23:59:59+00:00")
    assert good.indexed == 1  # before the fix: 9999 was the stored version and this was skipped_stale
    assert active(search_client, names)["30"]["_source"]["@timestamp"] == "2026-11-25T10:00:00.000Z"


# ------------------------------------------------------------------ #13 item 3: re-mapping


def test_a_changed_ioc_expiration_duration_reaches_every_loaded_ioc_and_a_stale_replay_changes_nothing(
        search_client, names):
    # Status Active only: every one belongs in the active index whatever status policy is set.
    corpus = [r for r in Corpus(seed=5, indicators=600, events=0, start=datetime(2026, 10, 1, tzinfo=UTC),
                                end=datetime(2026, 11, 20, tzinfo=UTC)).iter_indicators()
              if r["status"]["name"] == "Active"]
    by_90 = [ecs(r, options=EcsOptions(ioc_expiration_duration="90d")) for r in corpus]
    by_30 = [ecs(r, options=EcsOptions(ioc_expiration_duration="30d")) for r in corpus]
    n = len({r["id"] for r in corpus})
    assert n > 100
    load(search_client, names, by_90, observed_at=P1)

    remap = load(search_client, names, by_30, observed_at=P2)  # the same rows, read again, new options

    assert (remap.updated, remap.skipped_stale, remap.rejected_total) == (n, 0, 0)  # before: 0 updated, n stale
    want = {str(json.loads(line)["threatq"]["id"]): json.loads(line) for line in by_30}
    got = {i: h["_source"] for i, h in active(search_client, names).items()}
    assert got == want, "a loaded IOC kept its old mapping"
    durations = [d for d in want.values() if d["threatq"].get("ioc_expiration_reason", "").endswith("Duration`")]
    assert durations and all(
        datetime.fromisoformat(d["threatq"]["ioc_expired_at"].replace("Z", "+00:00"))
        - datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00")) == timedelta(days=30) for d in durations)

    # The old run's load replayed: its poll is older, so nothing changes.
    replay = load(search_client, names, by_90, observed_at=P1)
    assert (replay.skipped_stale, replay.updated, replay.indexed) == (n, 0, 0)
    # A copy with an older updated_at never wins, even read by a later poll.
    first = corpus[0]
    older = dict(first, updated_at=(datetime.fromisoformat(first["updated_at"]) - timedelta(days=1))
                 .strftime("%Y-%m-%d %H:%M:%S"))
    stale = load(search_client, names, [ecs(older)], observed_at=P2 + timedelta(days=1))
    assert stale.skipped_stale == 1
    assert {i: h["_source"] for i, h in active(search_client, names).items()} == want
