"""Which ThreatQ instance a connection reads: a short name for state keys, documents and UUIDs.

Several ThreatQ instances (production and a partner's, say) can feed one Elasticsearch cluster
and one MISP. Their indicator ids overlap (every instance counts from 1), so whatever is keyed by
a ThreatQ id must also carry the instance. The name comes from the connection's ``instance``
extra; without it, it is derived from the host (``threatq.example.com``, ``10.0.0.5:8443``), which
is stable as long as the URL is.

A connection **without** the extra is the *default instance*: its Elasticsearch documents keep
``_id`` = ``threatq.id`` and its MISP UUIDs stay derived from the host, exactly as before
instances existed, so existing deployments change nothing. A connection **with** the extra gets
``_id`` = ``<instance>:<threatq.id>`` and MISP UUIDs derived from the name; give every instance
but (at most) one a name. Imports no Airflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["INSTANCE_PATTERN", "ThreatQInstance", "derive_instance_name", "validate_instance_name"]

#: Lower-case letters, digits, ``.``, ``_``, ``-`` (and ``:`` before a port in derived names):
#: safe in a Variable key, an Elasticsearch ``_id`` prefix and a keyword field.
INSTANCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DERIVED = re.compile(r"^[a-z0-9][a-z0-9._:\[\]-]{0,127}$")


@dataclass(frozen=True, slots=True)
class ThreatQInstance:
    """A ThreatQ instance: its ``name``, and whether the connection named it (``explicit``).

    Only a named instance prefixes document ids and changes MISP UUIDs (see the module doc).
    """

    name: str
    explicit: bool = False

    def document_id(self, threatq_id: object) -> str:
        """The active index's ``_id`` of an indicator: ``threatq.id``, or ``<name>:<id>`` when named."""
        return f"{self.name}:{threatq_id}" if self.explicit else str(threatq_id)


def validate_instance_name(value: object) -> str:
    """A name given in the ``instance`` extra, lower-cased and checked.

    :raises ValueError: not 1-63 characters of ``a-z 0-9 . _ -`` starting with a letter or digit.
    """
    name = str(value).strip().lower()
    if not INSTANCE_PATTERN.match(name):
        raise ValueError(f"instance {value!r}: use 1-63 characters a-z, 0-9, '.', '_' or '-', starting with a "
                         "letter or digit (e.g. 'prod' or 'partner-a')")
    return name


def derive_instance_name(base_url: str) -> str:
    """The default name: the URL's host, with the port when one is given (``127.0.0.1:8480``).

    :raises ValueError: the URL has no host.
    """
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"cannot derive an instance name from {base_url!r}: no host")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    name = f"{host}:{parts.port}" if parts.port else host
    if not _DERIVED.match(name):
        raise ValueError(f"cannot derive an instance name from {base_url!r}; set the connection's 'instance' extra")
    return name
