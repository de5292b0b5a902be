"""Errors of the ECS transform.

One base class and a few subclasses, as in the rest of the provider. Messages name the cause and
the object (option value, indicator id, line number); they never carry secrets, and they quote
indicator values only shortened.
"""

from __future__ import annotations


class EcsError(Exception):
    """Base class of every error raised by :mod:`threatq_provider.ecs`."""


class EcsConfigError(EcsError, ValueError):
    """An option of the transform is invalid (e.g. an IOC expiration duration such as ``"90x"``)."""


class EcsTableError(EcsError):
    """The mapping table in ``threatq_provider/data/mappings/`` is missing or inconsistent."""


class IndicatorRejected(EcsError):
    """One ThreatQ record cannot become an ECS document; it goes to the reject stream.

    :param reason: short machine-readable reason, counted per reason (``missing_value``,
        ``missing_type``, ``missing_id``, ``invalid_value``, ``not_an_object``, ``invalid_json``).
    :param message: human sentence naming the cause.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
