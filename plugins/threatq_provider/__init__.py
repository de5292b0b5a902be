"""Apache Airflow provider for ThreatQuotient (ThreatQ): ThreatQ API actions, ThreatQ → ECS in
Elasticsearch with IOC expiry sweeps, and ThreatQ events shared to MISP."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""
    from threatq_provider.provider_info import PROVIDER_INFO

    return PROVIDER_INFO
