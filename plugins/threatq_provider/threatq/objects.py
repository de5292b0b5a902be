"""Single objects of the ThreatQ client that are neither listings nor plugin actions: an
investigation by id or name, one page of an event's related objects, and an attachment's content
(streamed under a size cap).

No Airflow import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests

from threatq_provider.threatq._fields import int_id, join
from threatq_provider.threatq.errors import (
    ThreatQConnectionError,
    ThreatQNotFound,
    ThreatQTooLarge,
    ThreatQValidationError,
)
from threatq_provider.threatq.listings import Listings
from threatq_provider.threatq.paging import rows_of, total_of
from threatq_provider.threatq.transport import _network_reason

__all__ = ["Objects"]


class Objects(Listings):
    """Investigations, an event's related objects, attachments."""

    def get_event_related(self, event_id: int, relation: str, *,
                          limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """The first ``limit`` objects of one relation of an event (``GET /api/events/{id}/{relation}``).

        For relations that ``with=`` cannot embed on every ThreatQ version (``attack_pattern``
        answers 500 there), read on their own.

        :param event_id: ThreatQ event id.
        :param relation: the related object collection, e.g. ``"malware"`` or ``"attack_pattern"``.
        :param limit: most objects read (one request).
        :return: ``(objects, total)``: the objects, and the server's count of them (``None`` if
            it sent none), so the caller can tell when there were more.
        """
        ident = int_id("event_id", event_id)
        if not isinstance(relation, str) or not relation.isidentifier():
            raise ThreatQValidationError("relation", relation, reason="an object collection name is required")
        path = f"/api/events/{ident}/{relation}"
        payload = self.request_json("GET", path, params={"limit": int_id("limit", limit)})
        return rows_of(payload), total_of(payload)

    def get_investigation(self, name_or_id: int | str, *, with_: Iterable[str] | str | None = None) -> dict[str, Any]:
        """One investigation, by id or by exact name.

        :param name_or_id: numeric id, or the investigation's name.
        :param with_: relations to embed.
        :return: the investigation object.
        :raises ThreatQNotFound: no investigation with that id or name.
        """
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.strip().isdigit()):
            ident = int_id("investigation", name_or_id)
            path = f"/api/investigations/{ident}"
            return self._data_object("GET", path, self._get(path, **{"with": join(with_)}))
        if not isinstance(name_or_id, str) or not name_or_id.strip():
            raise ThreatQValidationError("investigation", name_or_id, reason="an id or a name is required")
        path = "/api/investigations"
        rows = rows_of(self._get(path, name=name_or_id.strip(), limit=2, **{"with": join(with_)}))
        for row in rows:
            if isinstance(row, dict) and row.get("name") == name_or_id.strip():
                return row
        raise ThreatQNotFound(404, "GET", path, "", detail=f"no investigation named {name_or_id.strip()!r}")

    def download_attachment(self, attachment_id: int, *, max_bytes: int | None = None) -> bytes:
        """Content of an attachment (``GET /api/attachments/{id}/download``).

        :param attachment_id: ThreatQ attachment id.
        :param max_bytes: largest content accepted; a bigger file is abandoned while streaming
            (never held whole in memory). ``None``: no limit.
        :return: the file's bytes.
        :raises ThreatQTooLarge: the content is over ``max_bytes``.
        """
        ident = int_id("attachment_id", attachment_id)
        path = f"/api/attachments/{ident}/download"
        if max_bytes is None:
            return self._send("GET", path, headers={"Accept": "*/*"}, idempotent=True).content
        with self._send("GET", path, headers={"Accept": "*/*"}, idempotent=True, stream=True) as resp:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ThreatQTooLarge(path, max_bytes, int(declared))
            content = bytearray()
            try:
                for block in resp.iter_content(1 << 16):
                    content += block
                    if len(content) > max_bytes:
                        raise ThreatQTooLarge(path, max_bytes, len(content))
            except requests.exceptions.RequestException as exc:
                raise ThreatQConnectionError("GET", path, self._excerpt(_network_reason(exc))) from None
            return bytes(content)
