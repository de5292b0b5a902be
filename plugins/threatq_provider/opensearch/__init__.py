"""OpenSearch as a second target: Airflow's own ``opensearch`` connection type builds the client.

The loader, templates, sweeps and tombstones are the ones of :mod:`threatq_provider.elasticsearch`
(one contract for both targets, :mod:`threatq_provider.elasticsearch.cluster`); this package only
turns an Airflow OpenSearch connection into an ``opensearchpy.OpenSearch`` client.
"""
