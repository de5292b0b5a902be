"""Turn the raw ThreatQ NDJSON stage file into ECS NDJSON (and a rejects file).

The operator is a short recipe around :func:`threatq_provider.ecs.transform.transform_stream`:
open the source, target and rejects ``ObjectStoragePath``s, stream, return the counts. It maps no
field itself.

``now`` (the clock of the pure transform: fallback ``@timestamp`` and the expiry of an indicator
without ``updated_at``) defaults to the run's ``data_interval_end``, so re-running a task over the
same staged file writes the same documents byte for byte. Without a data interval (a manual run
on some timetables) it falls back to ``logical_date``, then to the current time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.ecs.native import check_engine
from threatq_provider.ecs.options import EcsOptions
from threatq_provider.operators._common import as_bool, is_template, optional, resolve_now, sibling_ndjson_path

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def default_rejects_path(target_path: str) -> str:
    """``…/ecs.ndjson`` → ``…/ecs.rejects.ndjson`` (where rejects go when no path is given)."""
    return sibling_ndjson_path(target_path, "rejects")


class EcsTransformOperator(BaseOperator):
    """Transform staged raw ThreatQ indicators (NDJSON) into ECS documents (NDJSON).

    :param source_path: raw NDJSON written by the poll task (ObjectStoragePath URI, e.g.
        ``file:///…/raw.ndjson`` or ``s3://…``). (templated)
    :param target_path: where the ECS NDJSON goes (replaced on rerun); zstd-compressed when the
        name ends ``.zst``. The source may be plain, zstd or gzip (read from its first bytes). (templated)
    :param rejects_path: where rejected lines go, one ``{"reason", "message", "line_no", "raw"}``
        per line; default ``<target without .ndjson>.rejects.ndjson``. (templated)
    :param ioc_expiration_duration: default IOC lifetime after ``updated_at``, ``<n>d``, ``<n>h``
        or ``<n>m``. Checked when the DAG is parsed unless it is a template, and always before the
        task reads anything; an invalid value fails the task without retries. (templated)
    :param preserve_original_event: write the raw JSON to ``event.original``. (templated)
    :param threatq_url: ThreatQ UI base URL for ``threat.indicator.reference``. (templated)
    :param instance: ThreatQ instance name for ``threatq.instance`` (the DAG passes the poll's
        ``instance``); unset writes none. (templated)
    :param active_statuses: ThreatQ statuses that keep an IOC in the active index (the status
        policy): a list or a comma-separated string; unset = Active only. Whitelisted is refused;
        a bad value fails the task without retries. (templated)
    :param now: ISO-8601 clock of the transform; default the run's ``data_interval_end``
        (deterministic reruns). (templated)
    :param engine: ``auto`` (the compiled ``threatq_ecs_native`` mapper when installed, ~4x
        faster, same output), ``native`` (fail when it is not installed) or ``python``.
    :return: XCom ``{"path", "rejects_path", "read", "written", "rejected": {reason: n},
        "flagged", "engine", "native_lines", "now"}``.
    """

    template_fields: Sequence[str] = (
        "source_path",
        "target_path",
        "rejects_path",
        "ioc_expiration_duration",
        "preserve_original_event",
        "threatq_url",
        "active_statuses",
        "now",
        "instance",
    )
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        source_path: str,
        target_path: str,
        rejects_path: str | None = None,
        ioc_expiration_duration: str = "90d",
        preserve_original_event: bool = False,
        threatq_url: str | None = None,
        active_statuses: Any = None,
        now: str | None = None,
        engine: str = "auto",
        instance: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_path = source_path
        self.target_path = target_path
        self.rejects_path = rejects_path
        self.ioc_expiration_duration = ioc_expiration_duration
        self.preserve_original_event = preserve_original_event
        self.threatq_url = threatq_url
        self.active_statuses = active_statuses
        self.now = now
        self.instance = instance
        self.engine = engine
        # Pure checks of literal values at parse time (nothing is stored): a bad engine or duration
        # is a DAG import error naming the value (tests pin it; Airflow has no other parse-time
        # hook). Templates ("{{ params.x }}") are only known at run time and are checked in execute().
        try:
            check_engine(engine)
        except EcsConfigError as exc:
            raise EcsConfigError(f"task {self.task_id}: {exc}") from None
        if not is_template(ioc_expiration_duration) and not is_template(threatq_url):
            EcsOptions(ioc_expiration_duration=str(ioc_expiration_duration).strip(), threatq_url=threatq_url or None)

    def _options(self) -> EcsOptions:
        try:
            return EcsOptions(
                ioc_expiration_duration=str(self.ioc_expiration_duration).strip(),
                preserve_original_event=as_bool(self.preserve_original_event, "preserve_original_event"),
                threatq_url=optional(self.threatq_url, str),
                active_statuses=_statuses(self.active_statuses),
                instance=optional(self.instance, str),
            )
        except EcsConfigError as exc:
            # A configuration error will not heal on retry.
            raise AirflowFailException(f"task {self.task_id}: {exc}") from None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        from threatq_provider.ecs.transform import transform_stream
        from threatq_provider.stage_io import open_lines, open_text_writer

        options = self._options()
        now = resolve_now(self.now, context)
        source = ObjectStoragePath(str(self.source_path))
        target = ObjectStoragePath(str(self.target_path))
        rejects_uri = str(self.rejects_path) if self.rejects_path else default_rejects_path(str(self.target_path))
        rejects = ObjectStoragePath(rejects_uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        rejects.parent.mkdir(parents=True, exist_ok=True)
        # Block-buffered stage I/O (zstd where the name ends .zst): one call to the storage's file
        # per block, not two per line.
        with open_lines(source) as src, open_text_writer(target) as out, open_text_writer(rejects) as rej:
            try:
                counts = transform_stream(src, out, rej, now=now, options=options, engine=self.engine)
            except EcsConfigError as exc:  # engine="native" without the module: no retry heals that
                raise AirflowFailException(f"task {self.task_id}: {exc}") from None
        self.log.info(
            "Transformed %d indicators into %d ECS documents (%d flagged); rejected %s; engine %s (%d lines native)",
            counts.read, counts.written, counts.flagged, counts.rejected or "none", counts.engine, counts.native_lines,
        )
        return {"path": str(target), "rejects_path": str(rejects), **counts.as_dict(), "now": now.isoformat()}


def _statuses(value: Any) -> tuple[str, ...] | None:
    """A rendered ``active_statuses``: a list, a comma-separated string, or unset (``None``/empty)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return None
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip()) or None
    return tuple(value) or None
