"""Delete old run folders of the stage root, so the NDJSON stage files do not fill the disk.

The indicators DAG writes one folder per run (``<root>/<dag_id>/<run_id>/`` with ``raw.ndjson.zst``,
``ecs.ndjson.zst``, ``rejects.ndjson.zst``, ``dead_letter.ndjson.zst``; folders of earlier releases
hold plain ``.ndjson``, and go the same way: whole folders by age, whatever their files are called): 144 folders a day at the default
schedule. :class:`StageRetentionOperator` lists the folders directly under the root it is given and
deletes each one whose newest file is older than ``retention`` before the run's clock.

What it never touches: the folder named by ``keep`` (the current run's), anything that is not a
folder directly under the root (files, symbolic links — a link is neither followed nor removed —
or a name that does not sit under the root), and a folder whose age it cannot tell (a file without
a modification time): such a folder is kept and counted as ``unknown_age``.

The age comes from the modification times fsspec reports (``stat()``/``ls(detail=True)``): ``mtime``
on a local disk, ``LastModified`` on S3 (also ``last_modified``/``updated`` for Azure and GCS). The
clock is the run's ``data_interval_end`` (else ``logical_date``), so a rerun of an old run deletes
no more than that run deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator

from threatq_provider.coerce import CoercionError, is_unset, parse_duration, parse_iso
from threatq_provider.operators._common import as_bool, is_template, resolve_now

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

__all__ = ["MAX_NAMES", "StageRetentionOperator", "modified_at", "parse_retention"]

# At most this many folder names go to the XCom; the log names every folder.
MAX_NAMES = 20
# Modification-time keys of fsspec info dicts: local (mtime), S3 (LastModified), Azure
# (last_modified), GCS (updated). "created" is deliberately not one: it is not a modification.
_TIME_KEYS = ("mtime", "LastModified", "last_modified", "updated")
# Run folders are flat; a deeper tree is not ours to measure.
_MAX_DEPTH = 8


def parse_retention(value: Any) -> timedelta:
    """The retention as a duration greater than zero (``7d``, ``36h``, ``90m``; :func:`threatq_provider.coerce.parse_duration`).

    :param value: the raw or rendered value.
    :return: the duration.
    :raises ValueError: anything else; the message names the value.
    """
    try:
        return parse_duration(value, "stage retention")
    except CoercionError as exc:
        raise ValueError(f"invalid stage retention {value!r}: not {exc.expected}") from None


def modified_at(info: dict[str, Any]) -> datetime | None:
    """When an fsspec entry was last modified, from whichever key its filesystem reports.

    :param info: one ``fs.info()``/``fs.ls(detail=True)`` entry.
    :return: an aware UTC datetime, or ``None`` when no key holds a usable time.
    """
    for key in _TIME_KEYS:
        value = info.get(key)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        if isinstance(value, str):
            try:
                return parse_iso(value, key)
            except CoercionError:
                continue
    return None


@dataclass
class _Survey:
    """One run folder as listed: newest file time (None: unknown), bytes, what to delete."""

    newest: datetime | None = None
    unknown: bool = False
    size: int = 0
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)


def _survey(fs: Any, path: str, info: dict[str, Any]) -> _Survey:
    """Walk a folder without following links: the newest file time, the bytes, the file names.

    A folder with no file at all takes its own time (an empty local folder has one; an S3 prefix
    has none and stays unknown).
    """
    out = _Survey()
    stack = [(path, 0)]
    while stack:
        current, depth = stack.pop()
        out.dirs.append(current)
        for entry in fs.ls(current, detail=True):
            name = str(entry["name"]).rstrip("/")
            if name == current.rstrip("/") or entry.get("islink"):
                continue  # the prefix itself (object stores), or a link: removed with the folder, never followed
            if entry.get("type") == "directory":
                if depth + 1 >= _MAX_DEPTH:
                    out.unknown = True
                else:
                    stack.append((name, depth + 1))
                continue
            out.files.append(name)
            out.size += int(entry.get("size") or 0)
            when = modified_at(entry)
            if when is None:
                out.unknown = True
            elif out.newest is None or when > out.newest:
                out.newest = when
    if not out.files and not out.unknown:
        out.newest = modified_at(info)
    if out.newest is None:
        out.unknown = True
    return out


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return bool({"file", "local"} & set(protocol))


def _delete(fs: Any, path: str, survey: _Survey) -> None:
    """Delete one run folder.

    Local: ``rm(recursive=True)`` (``shutil.rmtree``: links inside are unlinked, never followed).
    Object stores: exactly the files listed, never a prefix (``run1`` must not take ``run10``
    along), then the folder markers where the store keeps any.
    """
    if _is_local(fs):
        fs.rm(path, recursive=True)
        return
    if survey.files:
        fs.rm(survey.files)
    for folder in sorted(survey.dirs, key=len, reverse=True):
        try:
            fs.rmdir(folder)
        except (OSError, NotImplementedError, ValueError):
            pass  # no marker to remove: the prefix vanished with its objects
    fs.invalidate_cache(path)


class StageRetentionOperator(BaseOperator):
    """Delete the stage run folders whose newest file is older than ``retention``.

    Every folder directly under ``stage_root`` ends up in exactly one count: ``deleted`` (in a dry
    run: would be deleted), ``kept`` (young enough, or the ``keep`` folder), ``unknown_age`` (kept:
    some file has no modification time) or ``failed`` (logged; the others go on, and the task fails
    at the end naming how many). Entries that are not plain folders are ``ignored``.

    :param stage_root: the folder holding one folder per run, e.g.
        ``file:///tmp/threatq-stage/<dag_id>`` or ``s3://bucket/stage/<dag_id>`` (ObjectStoragePath
        URI). A filesystem or bucket root is refused. (templated)
    :param retention: how long a run folder lives after its newest file, ``<n>d``, ``<n>h`` or
        ``<n>m``. Checked when the DAG is parsed unless it is a template; an invalid value fails
        the task without retries. (templated)
    :param keep: the folder never deleted, by name or URI (the current run's folder). (templated)
    :param dry_run: count and log only, delete nothing. (templated)
    :return: XCom ``{"root", "retention", "cutoff", "deleted", "kept", "unknown_age", "failed",
        "ignored", "bytes_freed", "dry_run", "deleted_names"}`` (``deleted_names``: at most
        :data:`MAX_NAMES` folder names; the log has them all).
    """

    template_fields: Sequence[str] = ("stage_root", "retention", "keep", "dry_run")
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        stage_root: str,
        retention: str = "7d",
        keep: str | None = None,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stage_root = stage_root
        self.retention = retention
        self.keep = keep
        self.dry_run = dry_run
        # A literal bad duration is a DAG import error naming the value; a template is checked in execute().
        if not is_template(retention):
            try:
                parse_retention(retention)
            except ValueError as exc:
                raise ValueError(f"task {self.task_id}: {exc}") from None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        try:
            retention = parse_retention(self.retention)
        except ValueError as exc:
            raise AirflowFailException(f"task {self.task_id}: {exc}") from None
        dry_run = as_bool(self.dry_run, "dry_run")
        cutoff = resolve_now(None, context) - retention
        root = ObjectStoragePath(str(self.stage_root))
        result = self._sweep(root, cutoff=cutoff, dry_run=dry_run)
        result.update(retention=str(self.retention).strip(), cutoff=cutoff.isoformat())
        self.log.info(
            "Stage retention under %s (cutoff %s): %s %d folders (%d bytes), kept %d, unknown age %d, "
            "failed %d, ignored %d%s", result["root"], result["cutoff"],
            "would delete" if dry_run else "deleted", result["deleted"], result["bytes_freed"], result["kept"],
            result["unknown_age"], result["failed"], result["ignored"], " (dry run)" if dry_run else "",
        )
        if result["failed"]:
            raise AirflowException(
                f"task {self.task_id}: {result['failed']} stage folder(s) under {result['root']} could not be "
                f"deleted (see the log); {result['deleted']} deleted"
            )
        return result

    def _sweep(self, root: ObjectStoragePath, *, cutoff: datetime, dry_run: bool) -> dict[str, Any]:
        fs, root_path = root.fs, root.path.rstrip("/")
        counts = {"deleted": 0, "kept": 0, "unknown_age": 0, "failed": 0, "ignored": 0, "bytes_freed": 0}
        result: dict[str, Any] = {"root": str(root), **counts, "dry_run": dry_run, "deleted_names": []}
        depth = len([p for p in root_path.split("/") if p])
        if depth < (1 if _is_local(fs) else 2):
            # The DAG passes <root>/<dag_id>; a bare "/" or bucket is a misconfiguration, not a stage root.
            raise AirflowFailException(f"task {self.task_id}: refusing to apply retention to {root}: "
                                       "it is a filesystem or bucket root, not a stage folder")
        if not fs.exists(root_path):
            self.log.info("Stage root %s does not exist yet: nothing to delete", root)
            return result
        if not fs.isdir(root_path):
            raise AirflowFailException(f"task {self.task_id}: stage root {root} is not a folder")
        keep = None if is_unset(self.keep) else str(self.keep).rstrip("/").rsplit("/", 1)[-1]
        for entry in sorted(fs.ls(root_path, detail=True), key=lambda e: str(e["name"])):
            path = str(entry["name"]).rstrip("/")
            if path == root_path:
                continue  # an object store's listing may include the prefix itself
            parent, _, name = path.rpartition("/")
            if parent != root_path or name in ("", ".", "..") or entry.get("islink") or entry.get("type") != "directory":
                self.log.info("Ignored %s: not a folder directly under the stage root (links are not followed)", path)
                result["ignored"] += 1
                continue
            if name == keep:
                result["kept"] += 1
                continue
            survey = _survey(fs, path, entry)
            if survey.unknown:
                self.log.warning("Kept %s: the age of its files cannot be determined", name)
                result["unknown_age"] += 1
            elif survey.newest >= cutoff:  # type: ignore[operator]  # known when not unknown
                result["kept"] += 1
            else:
                self._delete_one(fs, path, name, survey, dry_run, result)
        return result

    def _delete_one(self, fs: Any, path: str, name: str, survey: _Survey, dry_run: bool,
                    result: dict[str, Any]) -> None:
        newest = survey.newest.isoformat() if survey.newest else "?"
        if not dry_run:
            try:
                _delete(fs, path, survey)
            except Exception as exc:  # one folder's failure must not stop the others
                self.log.error("Could not delete stage folder %s: %s: %s", name, type(exc).__name__, exc)
                result["failed"] += 1
                return
        self.log.info("%s stage folder %s (newest file %s, %d bytes)",
                      "Would delete" if dry_run else "Deleted", name, newest, survey.size)
        result["deleted"] += 1
        result["bytes_freed"] += survey.size
        if len(result["deleted_names"]) < MAX_NAMES:
            result["deleted_names"].append(name)
