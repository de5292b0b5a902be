"""Files the provider reads at run time, shipped inside its distribution as package data.

They live in ``threatq_provider/data/`` (mapping tables, index templates, ThreatQ enumerations,
the ECS field table) and are read with :mod:`importlib.resources`, so a wheel installed anywhere
finds them: no environment variable, no path from the repository. ``docs/packaging.md`` says
what lives where.
"""

from __future__ import annotations

import json
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

__all__ = ["data_file", "read_json"]


def data_file(*parts: str) -> Traversable:
    """A file of the provider's package data, e.g. ``data_file("mappings", "threatq_to_ecs.json")``.

    :param parts: path below ``threatq_provider/data/``.
    :return: a traversable (``read_text()``, ``open()``; a :class:`pathlib.Path` for an unzipped
        install); reading a missing file raises :class:`FileNotFoundError`.
    """
    return files(__package__ or "threatq_provider").joinpath("data", *parts)


def read_json(*parts: str) -> Any:
    """The JSON content of :func:`data_file` ``(*parts)``."""
    return json.loads(data_file(*parts).read_text(encoding="utf-8"))
