"""Share options: the settings of ThreatQ's MISP Operation, checked when built.

Every field keeps ThreatQ's meaning; docs/misp.md lists each one with its effect on
the MISP event. Values may arrive as strings from Airflow templates ("true", "1000", "High"),
so ``ShareOptions`` normalises them and raises ``MispConfigError`` naming the field and the
valid choices when a value is unusable. No Airflow import: the pure mapping uses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from threatq_provider.coerce import CoercionError, parse_bool, parse_int
from threatq_provider.misp.errors import MispConfigError
from threatq_provider.threatq.status_policy import StatusPolicy, StatusPolicyError

# MISP's numeric codes (pymisp.Distribution / ThreatLevel / Analysis) by our option spelling.
DISTRIBUTIONS: dict[str, int] = {
    "your_organisation_only": 0,
    "this_community_only": 1,
    "connected_communities": 2,
    "all_communities": 3,
    "sharing_group": 4,
}
#: How MISP's UI names each distribution (labels of the DAG's drop-down).
DISTRIBUTION_LABELS: dict[str, str] = {
    "your_organisation_only": "Your organisation only",
    "this_community_only": "This community only",
    "connected_communities": "Connected communities",
    "all_communities": "All communities",
    "sharing_group": "Sharing group",
}
ANALYSIS_LEVELS: dict[str, int] = {"initial": 0, "ongoing": 1, "completed": 2}
THREAT_LEVELS: dict[str, int] = {"high": 1, "medium": 2, "low": 3, "undefined": 4}
IP_TYPES: tuple[str, ...] = ("ip-dst", "ip-src")

# Spellings users type (ThreatQ's UI labels, US English, MISP's own words) → canonical choice.
_ALIASES: dict[str, str] = {
    "your_organization_only": "your_organisation_only",
    "organisation": "your_organisation_only",
    "organization": "your_organisation_only",
    "community": "this_community_only",
    "connected": "connected_communities",
    "all": "all_communities",
    "complete": "completed",
    "destination": "ip-dst",
    "source": "ip-src",
    "ip_dst": "ip-dst",
    "ip_src": "ip-src",
}


def _canon(value: Any) -> str:
    text = str(value).strip().lower().replace(" ", "_")
    return _ALIASES.get(text, text)


def _choice(field: str, value: Any, choices: Any) -> str:
    canon = _canon(value)
    if canon not in choices:
        raise MispConfigError(
            f"ShareOptions.{field}={value!r} is not valid; choose one of: {', '.join(choices)}"
        )
    return canon


def _boolean(field: str, value: Any, default: bool) -> bool:
    try:
        return parse_bool(value, f"ShareOptions.{field}", default=default)
    except CoercionError as exc:
        raise MispConfigError(str(exc)) from None


@dataclass(frozen=True)
class ShareOptions:
    """How a ThreatQ event is shared to MISP (ThreatQ's MISP Operation options).

    :param publish: publish the event after it is created or changed ("Publish Event").
    :param distribution: event distribution, one of ``DISTRIBUTIONS`` ("Distribution Level"). The
        default is organisation-only, not the MISP Operation's "Connected communities": the Operation
        is one analyst sharing one event from a form; here an hourly, unattended run publishes every
        matching event, and what MISP has synchronised to other organisations' servers cannot be
        called back. Widening the audience is a choice someone makes, never a default.
    :param sharing_group: sharing group *name*; required when distribution is ``sharing_group``.
    :param default_analysis: analysis level unless the event has an "Analysis Level" attribute.
    :param default_threat_level: threat level unless the event has a "Threat Level" attribute.
    :param to_ids: set MISP's IDS flag on indicators whose MISP type is IDS-worthy ("Send IOCs to IDS").
    :param attachments_to_ids: set the IDS flag on attachments ("Send Attachments to IDS").
    :param default_ip_type: MISP type for IP Address / IPv6 / CIDR indicators, ``ip-src`` (the MISP
        Operation's default, "Source IP") or ``ip-dst``.
    :param include_unmapped_attribution: send unmatched adversaries as ``threat-actor`` attributes
        and indicators of types MISP lacks as ``text`` attributes instead of skipping them.
    :param send_attachments: upload the event's ThreatQ attachments.
    :param send_description: send the ThreatQ description (HTML made Markdown) as a MISP event report.
    :param chunk_size: attributes per MISP request when adding many attributes.
    :param active_statuses: ThreatQ statuses whose indicators get the IDS flag (the status policy
        shared with the Elasticsearch side, ``threatq_provider.threatq.status_policy``): a list or a
        comma-separated string; ``None``/empty = the table's default (Active only). Whitelisted is
        refused.
    """

    publish: bool = True
    distribution: str = "your_organisation_only"
    sharing_group: str | None = None
    default_analysis: str = "completed"
    default_threat_level: str = "medium"
    to_ids: bool = True
    attachments_to_ids: bool = False
    default_ip_type: str = "ip-src"
    include_unmapped_attribution: bool = False
    send_attachments: bool = True
    chunk_size: int = 1000
    send_description: bool = True
    active_statuses: Any = None
    status_policy: StatusPolicy = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__  # frozen dataclass: normalise once, here
        for name in ("publish", "to_ids", "attachments_to_ids", "include_unmapped_attribution",
                     "send_attachments", "send_description"):
            setattr_(self, name, _boolean(name, getattr(self, name), _FIELDS[name].default))
        setattr_(self, "distribution", _choice("distribution", self.distribution, DISTRIBUTIONS))
        setattr_(self, "default_analysis", _choice("default_analysis", self.default_analysis, ANALYSIS_LEVELS))
        setattr_(self, "default_threat_level",
                 _choice("default_threat_level", self.default_threat_level, THREAT_LEVELS))
        setattr_(self, "default_ip_type", _choice("default_ip_type", self.default_ip_type, IP_TYPES))
        group = self.sharing_group.strip() if isinstance(self.sharing_group, str) else self.sharing_group
        setattr_(self, "sharing_group", group or None)
        if self.distribution == "sharing_group" and not self.sharing_group:
            raise MispConfigError("ShareOptions.sharing_group (a sharing group name) is required when "
                                  "distribution is 'sharing_group'")
        try:
            setattr_(self, "chunk_size", parse_int(self.chunk_size, "ShareOptions.chunk_size", minimum=1,
                                                   default=_FIELDS["chunk_size"].default))
        except CoercionError as exc:
            raise MispConfigError(str(exc)) from None
        try:
            policy = StatusPolicy.of(self.active_statuses)
        except StatusPolicyError as exc:
            raise MispConfigError(f"ShareOptions.active_statuses: {exc}") from None
        setattr_(self, "status_policy", policy)
        setattr_(self, "active_statuses", policy.active)

    @property
    def distribution_id(self) -> int:
        """MISP's numeric distribution (0–4)."""
        return DISTRIBUTIONS[self.distribution]

    @property
    def analysis_id(self) -> int:
        """MISP's numeric analysis level (0–2)."""
        return ANALYSIS_LEVELS[self.default_analysis]

    @property
    def threat_level_id(self) -> int:
        """MISP's numeric threat level (1–4)."""
        return THREAT_LEVELS[self.default_threat_level]

    def as_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict (for logs and XCom)."""
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(ShareOptions)}
OPTION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ShareOptions) if f.init)
