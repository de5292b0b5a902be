"""Options of the ECS transform, checked when built.

``EcsOptions`` is the one object the operator and tests pass to :func:`indicator_to_ecs`. A bad
IOC expiration duration raises :class:`EcsConfigError` at construction; Elastic's pipeline instead
adds ``invalid ioc_expiration_duration: using default 90 days`` to every document and carries on
with 90 days, which hides the mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from threatq_provider.coerce import CoercionError, parse_duration
from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.threatq.status_policy import StatusPolicy, StatusPolicyError

__all__ = ["EcsOptions"]


@dataclass(frozen=True)
class EcsOptions:
    """How ThreatQ indicators become ECS documents.

    :param ioc_expiration_duration: default lifetime of an indicator without ``expired_at``/
        ``expires_at`` and not Expired, counted from its ``updated_at`` (Elastic's rule), in
        ``<n>d``, ``<n>h``, ``<n>m`` (Elastic's forms) or ``<n>s`` (:func:`threatq_provider.coerce.parse_duration`),
        greater than zero. Default ``90d``, Elastic's default.
    :param preserve_original_event: write the raw ThreatQ JSON to ``event.original`` and tag
        ``preserve_original_event``. Off by default (saves about half the index size); a document
        with an ``error.message`` always carries ``event.original``.
    :param threatq_url: base URL of the ThreatQ UI (e.g. ``https://threatq.example.com``); when
        set, ``threat.indicator.reference`` links to ``{threatq_url}/indicators/{id}/details``.
    :param preserve_duplicate_custom_fields: keep ``threatq.score``, ``threatq.description``,
        ``threatq.updated_at`` and ``threatq.sources[].provider``/``tlp_name`` next to the ECS
        fields that copy them, and tag ``preserve_duplicate_custom_fields`` (Elastic's option of
        the same name). On by default: the 0-10 score is finer than the confidence buckets.
    :param instance: name of the ThreatQ instance the indicator comes from, written to
        ``threatq.instance`` (``ThreatQHook.instance()``: several instances can share one index);
        ``None`` writes none.
    :param active_statuses: ThreatQ statuses that make an IOC active for detection (the status
        policy, ``threatq_provider.threatq.status_policy``); default ``None`` = the table's default
        (Active only). Whitelisted is refused. An indicator with another status expires at its
        ``updated_at`` (reason ``REASON_STATUS_POLICY``) and leaves the active index on that load.
    """

    ioc_expiration_duration: str = "90d"
    preserve_original_event: bool = False
    threatq_url: str | None = None
    preserve_duplicate_custom_fields: bool = True
    active_statuses: tuple[str, ...] | None = None
    instance: str | None = None
    expiration: timedelta = field(init=False, repr=False, compare=False)
    status_policy: StatusPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            expiration = parse_duration(self.ioc_expiration_duration, "ioc_expiration_duration")
        except CoercionError as exc:
            raise EcsConfigError(f"invalid IOC expiration duration: {exc}") from None
        object.__setattr__(self, "expiration", expiration)
        try:
            policy = StatusPolicy.of(self.active_statuses)
        except StatusPolicyError as exc:
            raise EcsConfigError(f"invalid active_statuses: {exc}") from None
        object.__setattr__(self, "status_policy", policy)
        object.__setattr__(self, "active_statuses", policy.active)
        if self.instance is not None and (not isinstance(self.instance, str) or not 0 < len(self.instance) <= 128
                                          or self.instance != self.instance.strip()):
            raise EcsConfigError(f"invalid instance {self.instance!r}: expected a name of 1-128 characters")
        if self.threatq_url is not None:
            if not isinstance(self.threatq_url, str) or not self.threatq_url.startswith(("http://", "https://")):
                raise EcsConfigError(
                    f"invalid threatq_url {self.threatq_url!r}: expected an http:// or https:// base URL"
                )
            object.__setattr__(self, "threatq_url", self.threatq_url.rstrip("/"))
