"""The Elasticsearch client's body serializers: orjson for JSON, and bulk bodies sent as built.

:func:`client_serializers` is what the hook gives the client (``serializers=``):

- ``application/json`` (and its compatibility type): the client's own ``OrjsonSerializer``, several
  times faster than the standard library on responses (bulk answers, scroll pages).
- ``application/x-ndjson``: :class:`BulkBodySerializer`. The loader builds each ``_bulk`` body
  as one ``bytes`` object (raw stage lines, never re-encoded); the client's NDJSON serializer would
  copy it into a ``bytearray`` and back into ``bytes`` (three copies of a 5 MiB body alive per
  request in flight). A complete body (``bytes`` ending in a newline) goes out as it is; anything
  else (the ``helpers`` functions' lists of actions) is serialized as the client does, with orjson.
"""

from __future__ import annotations

from typing import Any

import orjson
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer, Serializer

__all__ = ["BulkBodySerializer", "client_serializers"]


class BulkBodySerializer(NdjsonSerializer):
    """NDJSON with orjson; a ready ``bytes`` body passes through without a copy."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)  # type: ignore[no-any-return]

    def json_dumps(self, data: Any) -> bytes:
        return orjson.dumps(data, default=self.default)

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


def client_serializers() -> dict[str, Serializer]:
    """``serializers=`` for ``Elasticsearch(...)``: orjson JSON, pass-through bulk bodies."""
    return {"application/json": OrjsonSerializer(), "application/x-ndjson": BulkBodySerializer()}
