"""Locate the project's ``include/`` folder (mapping tables, index templates, seed data).

``include/`` sits at the repository root (DESIGN.md). An editable install or a checkout finds it
beside ``plugins/``; a deployment that installs the wheel elsewhere points
``THREATQ_PROVIDER_INCLUDE_DIR`` at a copy of it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def include_dir() -> Path:
    override = os.environ.get("THREATQ_PROVIDER_INCLUDE_DIR")
    candidate = Path(override) if override else Path(__file__).resolve().parents[2] / "include"
    if not candidate.is_dir():
        raise FileNotFoundError(
            f"include/ folder not found at {candidate}; set THREATQ_PROVIDER_INCLUDE_DIR to the "
            "project's include/ directory"
        )
    return candidate


def include_path(*parts: str) -> Path:
    """Path of a file under ``include/``, e.g. ``include_path("mappings", "threatq_to_ecs.json")``."""
    return include_dir().joinpath(*parts)
