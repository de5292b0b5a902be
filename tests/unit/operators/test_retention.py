"""StageRetentionOperator on real folders (aged with ``os.utime``) and on an S3-shaped store.

The local tests build the stage layout the indicators DAG writes (``<root>/<run_id>/*.ndjson``) in
``tmp_path``; the S3-shaped tests attach a small in-memory store that answers ``ls`` the way s3fs
does (``LastModified``, prefixes as directories, no links) to ``s3://`` for ObjectStoragePath.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from threatq_provider.operators.retention import MAX_NAMES, StageRetentionOperator, modified_at

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CONTEXT = {"data_interval_end": NOW}
STAGE_FILES = ("raw.ndjson", "ecs.ndjson", "rejects.ndjson", "dead_letter.ndjson")


def _age(path: Path, age: timedelta) -> None:
    stamp = (NOW - age).timestamp()
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def make_run(root: Path, name: str, age: timedelta, *, files: tuple[str, ...] = STAGE_FILES) -> Path:
    """A run folder whose files were all last written ``age`` before the run's clock."""
    folder = root / name
    folder.mkdir(parents=True)
    for file in files:
        (folder / file).write_text('{"id": 1}\n')
        _age(folder / file, age)
    return folder


def _op(root: Path | str, **kw: Any) -> StageRetentionOperator:
    uri = root if isinstance(root, str) else f"file://{root}"
    return StageRetentionOperator(task_id="stage_retention", stage_root=uri, **kw)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "stage" / "threatq_indicators_to_elasticsearch"
    path.mkdir(parents=True)
    return path


def test_folders_older_than_the_retention_are_deleted_and_younger_ones_kept(root: Path) -> None:
    old = [make_run(root, f"scheduled__2026-02-{d:02d}T00:00:00+00:00", timedelta(days=30 - d)) for d in (1, 2, 3)]
    young = make_run(root, "scheduled__2026-02-27T00:00:00+00:00", timedelta(days=2))
    edge = make_run(root, "scheduled__2026-02-22T12:00:00+00:00", timedelta(days=7) - timedelta(seconds=1))
    freed = sum(f.stat().st_size for folder in old for f in folder.iterdir())

    out = _op(root, retention="7d").execute(CONTEXT)

    assert [f.exists() for f in old] == [False, False, False]
    assert young.exists() and edge.exists()
    assert out == {
        "root": f"file://{root}", "retention": "7d", "cutoff": (NOW - timedelta(days=7)).isoformat(),
        "deleted": 3, "kept": 2, "unknown_age": 0, "failed": 0, "ignored": 0, "bytes_freed": freed,
        "dry_run": False, "deleted_names": sorted(f.name for f in old),
    }


def test_the_newest_file_decides_a_folder_age(root: Path) -> None:
    run = make_run(root, "manual__a", timedelta(days=30))
    _age(run / "dead_letter.ndjson", timedelta(hours=1))  # a late write keeps the whole folder
    out = _op(root, retention="7d").execute(CONTEXT)
    assert run.exists() and sorted(p.name for p in run.iterdir()) == sorted(STAGE_FILES)
    assert (out["deleted"], out["kept"]) == (0, 1)


def test_hours_and_minutes_count_too(root: Path) -> None:
    make_run(root, "a", timedelta(hours=3))
    make_run(root, "b", timedelta(minutes=20))
    assert _op(root, retention="2h").execute(CONTEXT)["deleted"] == 1
    assert not (root / "a").exists() and (root / "b").exists()
    assert _op(root, retention="15m").execute(CONTEXT)["deleted"] == 1
    assert not (root / "b").exists()


@pytest.mark.parametrize("keep", ["manual__current", "file://{root}/manual__current", "file://{root}/manual__current/"])
def test_the_keep_folder_survives_even_when_old(root: Path, keep: str) -> None:
    current = make_run(root, "manual__current", timedelta(days=365))
    other = make_run(root, "manual__other", timedelta(days=365))
    out = _op(root, retention="1d", keep=keep.format(root=root)).execute(CONTEXT)
    assert current.exists() and not other.exists()
    assert (out["deleted"], out["kept"]) == (1, 1)


def test_a_dry_run_deletes_nothing_and_counts_what_a_real_run_deletes(root: Path) -> None:
    make_run(root, "old1", timedelta(days=10))
    make_run(root, "old2", timedelta(days=9))
    make_run(root, "new", timedelta(days=1))
    before = sorted(str(p) for p in root.rglob("*"))

    dry = _op(root, retention="7d", dry_run="true").execute(CONTEXT)  # the DAG renders a Variable's text

    assert sorted(str(p) for p in root.rglob("*")) == before
    assert dry["dry_run"] is True and (dry["deleted"], dry["kept"]) == (2, 1) and dry["bytes_freed"] > 0
    real = _op(root, retention="7d").execute(CONTEXT)
    assert {k: v for k, v in real.items() if k != "dry_run"} == {k: v for k, v in dry.items() if k != "dry_run"}
    assert sorted(p.name for p in root.iterdir()) == ["new"]


@pytest.mark.parametrize("value", ["7x", "0d", "7 d", "7", "", "-1d", "1w", None])
def test_a_bad_retention_fails_when_the_dag_is_parsed_naming_the_value(value: Any) -> None:
    with pytest.raises(ValueError, match=rf"task stage_retention: invalid stage retention {value!r}") as err:
        _op("file:///tmp/stage/dag", retention=value)
    assert "e.g. 90d" in str(err.value)


def test_a_templated_retention_is_checked_when_the_task_runs(root: Path) -> None:
    old = make_run(root, "old", timedelta(days=30))
    op = _op(root, retention="{{ var.value.threatq_stage_retention }}")  # parses
    op.retention = "7days"  # what the template rendered
    with pytest.raises(AirflowFailException, match="invalid stage retention '7days'"):
        op.execute(CONTEXT)
    assert old.exists()


def test_a_file_at_the_root_is_ignored_even_when_old(root: Path) -> None:
    stray = root / "notes.ndjson"
    stray.write_text("x\n")
    _age(stray, timedelta(days=100))
    out = _op(root, retention="1d").execute(CONTEXT)
    assert stray.exists()
    assert (out["ignored"], out["deleted"]) == (1, 0)


def test_nothing_outside_the_root_is_touched(tmp_path: Path, root: Path) -> None:
    sibling_dag = make_run(root.parent, "threatq_other_dag", timedelta(days=100))  # beside the root
    above = make_run(tmp_path, "elsewhere", timedelta(days=100))
    inside = make_run(root, "old", timedelta(days=100))
    out = _op(root, retention="1d").execute(CONTEXT)
    assert not inside.exists()
    assert sibling_dag.exists() and above.exists()
    assert sorted(p.name for p in sibling_dag.iterdir()) == sorted(STAGE_FILES)
    assert out["deleted"] == 1


def test_a_symlinked_folder_at_the_root_is_neither_followed_nor_deleted(tmp_path: Path, root: Path) -> None:
    target = make_run(tmp_path, "outside", timedelta(days=100))
    link = root / "manual__link"
    link.symlink_to(target, target_is_directory=True)
    _age(link, timedelta(days=100))
    out = _op(root, retention="1d").execute(CONTEXT)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == sorted(STAGE_FILES)
    assert (out["ignored"], out["deleted"]) == (1, 0)


def test_a_link_inside_an_old_run_folder_goes_with_it_and_its_target_stays(tmp_path: Path, root: Path) -> None:
    target = make_run(tmp_path, "outside", timedelta(minutes=1))  # fresh: it must not make the folder look young
    run = make_run(root, "old", timedelta(days=30))
    (run / "more").symlink_to(target, target_is_directory=True)
    (run / "file_link.ndjson").symlink_to(target / "raw.ndjson")
    out = _op(root, retention="7d").execute(CONTEXT)
    assert not run.exists() and out["deleted"] == 1
    assert sorted(p.name for p in target.iterdir()) == sorted(STAGE_FILES)


def test_an_empty_run_folder_takes_its_own_age(root: Path) -> None:
    empty_old, empty_new = root / "failed_early", root / "starting"
    empty_old.mkdir()
    empty_new.mkdir()
    _age(empty_old, timedelta(days=30))
    out = _op(root, retention="7d").execute(CONTEXT)
    assert not empty_old.exists() and empty_new.exists()
    assert (out["deleted"], out["kept"], out["bytes_freed"]) == (1, 1, 0)


def test_the_xcom_names_at_most_twenty_folders_and_the_log_names_all(root: Path, capsys: pytest.CaptureFixture) -> None:
    names = [f"scheduled__{i:03d}" for i in range(MAX_NAMES + 5)]
    for name in names:
        make_run(root, name, timedelta(days=30), files=("raw.ndjson",))
    out = _op(root, retention="7d").execute(CONTEXT)
    log = capsys.readouterr().out  # the task logger (structlog) prints to stdout
    assert out["deleted"] == len(names)
    assert out["deleted_names"] == names[:MAX_NAMES]
    assert len(json.dumps(out)) < 2000
    assert all(f"Deleted stage folder {name} " in log for name in names)


def test_a_missing_root_is_nothing_to_do_and_a_filesystem_root_is_refused(tmp_path: Path) -> None:
    out = _op(tmp_path / "never-written", retention="7d").execute(CONTEXT)
    assert (out["deleted"], out["kept"], out["ignored"]) == (0, 0, 0)
    with pytest.raises(AirflowFailException, match="refusing to apply retention to file:///"):
        _op("file:///", retention="7d").execute(CONTEXT)
    afile = tmp_path / "stage-file"
    afile.write_text("x")
    with pytest.raises(AirflowFailException, match="is not a folder"):
        _op(afile, retention="7d").execute(CONTEXT)


def test_the_clock_is_the_run_not_the_wall(root: Path) -> None:
    make_run(root, "old", timedelta(days=30))
    # A rerun of a run from 40 days before NOW: the folder was written after that run's clock.
    out = _op(root, retention="7d").execute({"data_interval_end": NOW - timedelta(days=40)})
    assert out["deleted"] == 0 and (root / "old").exists()


# --- S3-shaped store ---------------------------------------------------------------------------


class FakeS3:
    """Keys with sizes and LastModified, listed like s3fs: prefixes are directories, no links,
    no folder markers. ``rm`` takes exact keys only, so deleting by prefix would show."""

    protocol = ("s3", "s3a")

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.fail_on: set[str] = set()

    def put(self, key: str, when: datetime | None, size: int = 10) -> None:
        self.objects[key] = {"size": size, **({"LastModified": when} if when else {})}

    @staticmethod
    def _clean(path: str) -> str:
        return path.removeprefix("s3://").rstrip("/")

    def ls(self, path: str, detail: bool = True, **_: Any) -> list[dict[str, Any]]:
        prefix = self._clean(path) + "/"
        out: dict[str, dict[str, Any]] = {}
        for key, meta in self.objects.items():
            if key.startswith(prefix):
                head, sep, _rest = key[len(prefix):].partition("/")
                name = prefix + head
                if sep:
                    out[name] = {"name": name, "type": "directory", "size": 0, "StorageClass": "DIRECTORY"}
                else:
                    out[name] = {"name": name, "Key": name, "type": "file", **meta}
        return list(out.values())

    def exists(self, path: str) -> bool:
        return self.isdir(path) or self._clean(path) in self.objects

    def isdir(self, path: str) -> bool:
        return any(k.startswith(self._clean(path) + "/") for k in self.objects)

    def rm(self, paths: list[str], recursive: bool = False) -> None:
        assert not recursive and isinstance(paths, list), "delete exact keys, never a prefix"
        for path in paths:
            if any(path.startswith(f) for f in self.fail_on):
                raise PermissionError(f"AccessDenied: {path}")
            del self.objects[self._clean(path)]

    def rmdir(self, path: str) -> None:
        raise FileNotFoundError(path)  # s3fs: there is no folder object to remove

    def invalidate_cache(self, path: str | None = None) -> None:
        pass


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> FakeS3:
    from airflow.sdk.io import store

    fake = FakeS3()
    monkeypatch.setitem(store._STORE_CACHE, "s3", store.ObjectStore(protocol="s3", conn_id=None, fs=fake))
    return fake


S3_ROOT = "s3://bucket/stage/threatq_indicators_to_elasticsearch"
S3_KEY = "bucket/stage/threatq_indicators_to_elasticsearch"


def test_s3_age_comes_from_last_modified_and_only_the_listed_keys_go(s3: FakeS3) -> None:
    for file in STAGE_FILES:
        s3.put(f"{S3_KEY}/run1/{file}", NOW - timedelta(days=30))
        s3.put(f"{S3_KEY}/run10/{file}", NOW - timedelta(hours=1))  # shares the prefix "run1"
    s3.put("bucket/stage/other_dag/run1/raw.ndjson", NOW - timedelta(days=30))
    out = _op(S3_ROOT, retention="7d", keep="run_current").execute(CONTEXT)
    assert sorted(s3.objects) == sorted([f"{S3_KEY}/run10/{f}" for f in STAGE_FILES] + ["bucket/stage/other_dag/run1/raw.ndjson"])
    assert (out["deleted"], out["kept"], out["bytes_freed"], out["root"]) == (1, 1, 40, S3_ROOT)


def test_a_folder_whose_age_is_unknown_is_kept_and_counted(s3: FakeS3) -> None:
    s3.put(f"{S3_KEY}/run_a/raw.ndjson", NOW - timedelta(days=30))
    s3.put(f"{S3_KEY}/run_a/ecs.ndjson", None)  # no modification time reported
    s3.put(f"{S3_KEY}/run_b/raw.ndjson", NOW - timedelta(days=30))
    out = _op(S3_ROOT, retention="7d").execute(CONTEXT)
    assert f"{S3_KEY}/run_a/ecs.ndjson" in s3.objects and f"{S3_KEY}/run_a/raw.ndjson" in s3.objects
    assert (out["unknown_age"], out["deleted"], out["kept"]) == (1, 1, 0)


def test_a_failed_delete_is_counted_the_others_go_on_and_the_task_fails_at_the_end(
    s3: FakeS3, capsys: pytest.CaptureFixture
) -> None:
    for run in ("run_a", "run_b", "run_c"):
        s3.put(f"{S3_KEY}/{run}/raw.ndjson", NOW - timedelta(days=30))
    s3.fail_on = {f"{S3_KEY}/run_b/"}
    with pytest.raises(AirflowException, match=r"1 stage folder\(s\) under s3://.* could not be deleted.*2 deleted"):
        _op(S3_ROOT, retention="7d").execute(CONTEXT)
    assert sorted(s3.objects) == [f"{S3_KEY}/run_b/raw.ndjson"]
    assert "Could not delete stage folder run_b: PermissionError" in capsys.readouterr().out


def test_a_bucket_root_is_refused(s3: FakeS3) -> None:
    s3.put("bucket/anything/raw.ndjson", NOW - timedelta(days=30))
    with pytest.raises(AirflowFailException, match="bucket root"):
        _op("s3://bucket", retention="7d").execute(CONTEXT)
    assert "bucket/anything/raw.ndjson" in s3.objects


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"mtime": NOW.timestamp()}, NOW),
        ({"LastModified": NOW}, NOW),
        ({"LastModified": NOW.replace(tzinfo=None)}, NOW),  # naive: UTC
        ({"last_modified": "2026-03-01T12:00:00Z"}, NOW),
        ({"updated": "2026-03-01T13:00:00+01:00"}, NOW),
        ({"created": NOW.timestamp()}, None),  # creation is not modification
        ({"mtime": True}, None),
        ({"LastModified": "yesterday"}, None),
        ({}, None),
    ],
)
def test_modification_time_from_each_filesystem_key(info: dict[str, Any], expected: datetime | None) -> None:
    assert modified_at(info) == expected
