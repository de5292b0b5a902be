"""Transition alias for code written before the provider's data moved into its package.

``include_path("mappings", "threatq_to_ecs.json")`` now returns the packaged file, the same as
:func:`threatq_provider._resources.data_file`; new code calls that. Remove this module once
nothing imports it.
"""

from __future__ import annotations

from threatq_provider._resources import data_file as include_path

__all__ = ["include_path"]
