"""Provider metadata as data: modules, connection types and their form fields.

Airflow 3.2+ renders connection forms from ``conn-fields`` / ``ui-field-behaviour`` here; it
does not import the hooks to build the form (docs/reference/airflow.md §A.3).
"""

from __future__ import annotations

from threatq_provider import __version__

#: The same opt-in on every connection type (extra key ``allow_insecure_http``, see _conn_extras).
_ALLOW_INSECURE_HTTP = {
    "label": "Allow credentials over plain http",
    "description": "Send the credentials to an http:// URL in clear text. Off (default): such a URL is "
    "refused, 127.0.0.1 included. For labs and local simulators only.",
    "schema": {"type": "boolean", "default": False},
}

#: Port stays visible although the URL can carry the port: Airflow 3.3's Test button posts "port": 0
#: for an empty Port, and the API refuses that as "The host or port to test differs from the stored
#: connection" (fixed upstream by apache/airflow#73298, after 3.3.2). With Port filled in the Test
#: button works; the hooks use Port only for a URL without a port (a port in the URL wins).
_PORT_LABEL = "Port (for the Test button)"


def _port_placeholder(default: int) -> str:
    return f"{default}: the URL's port; Airflow 3.3's Test button needs it"


_THREATQ_FIELDS = {
    "client_id": {
        "label": "Client ID",
        "description": "OAuth client id of the ThreatQ instance (My Account > API Credentials).",
        "schema": {"type": ["string", "null"]},
    },
    "client_secret": {
        "label": "Client secret (deprecated)",
        "description": "Leave empty: put the OAuth client secret in Password and leave Username empty "
        "(client-credentials grant). A value here still selects that grant, but `airflow connections add` "
        "records extra values in plain text in Airflow's log table.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "verify_tls": {
        "label": "Verify TLS",
        "description": "Verify the server's TLS certificate.",
        "schema": {"type": "boolean", "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "Path to a PEM CA bundle used to verify the server (optional).",
        "schema": {"type": ["string", "null"]},
    },
    "proxy": {
        "label": "Proxy URL",
        "description": "HTTP(S) proxy for all calls, e.g. http://proxy:3128 (optional).",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Read timeout per request in seconds (connect timeout is 10 s).",
        "schema": {"type": ["number", "null"], "default": 60, "minimum": 1},
    },
    "page_size": {
        "label": "Page size",
        "description": "Indicators per API page when polling.",
        "schema": {"type": ["integer", "null"], "default": 1000, "minimum": 1, "maximum": 10000},
    },
    "allow_insecure_http": _ALLOW_INSECURE_HTTP,
    "ui_base_url": {
        "label": "ThreatQ UI base URL",
        "description": "Base URL of the ThreatQ web UI for links back from each IOC "
        "(threat.indicator.reference = <url>/indicators/<id>/details). Empty: the ThreatQ URL above.",
        "schema": {"type": ["string", "null"], "pattern": "^(https?://.+)?$"},
    },
    "instance": {
        "label": "Instance name",
        "description": "Short name of this ThreatQ instance (a-z, 0-9, '.', '_', '-'), needed when several "
        "instances feed one cluster: it prefixes the Elasticsearch document ids and keys MISP UUIDs and the "
        "sync state. Empty: derived from the host, documents keep _id = the ThreatQ id (one instance).",
        "schema": {"type": ["string", "null"], "pattern": "^([a-z0-9][a-z0-9._-]{0,62})?$"},
    },
}

_MISP_FIELDS = {
    "verify_tls": {
        "label": "Verify TLS",
        "description": "Verify the MISP server's TLS certificate.",
        "schema": {"type": "boolean", "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "Path to a PEM CA bundle used to verify MISP (optional).",
        "schema": {"type": ["string", "null"]},
    },
    "proxy": {
        "label": "Proxy URL",
        "description": "HTTP(S) proxy for MISP calls (optional).",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Timeout per MISP request in seconds.",
        "schema": {"type": ["number", "null"], "default": 60, "minimum": 1},
    },
    "allow_insecure_http": _ALLOW_INSECURE_HTTP,
}

_ES_FIELDS = {
    "api_key": {
        "label": "API key (deprecated)",
        "description": "Leave empty: put the API key in Password and leave Login empty. A value here still "
        "wins over Login/Password, but `airflow connections add` records extra values in plain text in "
        "Airflow's log table.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "cloud_id": {
        "label": "Cloud ID",
        "description": "Elastic Cloud deployment id; replaces Host.",
        "schema": {"type": ["string", "null"]},
    },
    "verify_certs": {
        "label": "Verify TLS",
        "description": "Verify the cluster's TLS certificate.",
        "schema": {"type": "boolean", "default": True},
    },
    "ca_certs": {
        "label": "CA bundle path",
        "description": "Path to a PEM CA bundle for the cluster (optional).",
        "schema": {"type": ["string", "null"]},
    },
    "request_timeout": {
        "label": "Request timeout (s)",
        "description": "Timeout per Elasticsearch request in seconds.",
        "schema": {"type": ["number", "null"], "default": 60, "minimum": 1},
    },
    "allow_insecure_http": _ALLOW_INSECURE_HTTP,
}

PROVIDER_INFO: dict = {
    "package-name": "airflow-provider-threatq",
    "name": "ThreatQ",
    "description": "ThreatQuotient (ThreatQ) API actions, ThreatQ indicators to Elasticsearch in ECS "
    "with IOC expiry sweeps, and ThreatQ events shared to MISP.",
    "versions": [__version__],
    "integrations": [
        {
            "integration-name": "ThreatQ",
            "external-doc-url": "https://www.threatq.com/",
            "tags": ["software"],
        },
        {
            "integration-name": "MISP",
            "external-doc-url": "https://www.misp-project.org/",
            "tags": ["software"],
        },
        {
            "integration-name": "Elasticsearch (ECS threat intel)",
            "external-doc-url": "https://www.elastic.co/docs/reference/ecs",
            "tags": ["software"],
        },
    ],
    "hooks": [
        {"integration-name": "ThreatQ", "python-modules": ["threatq_provider.threatq.hook"]},
        {"integration-name": "MISP", "python-modules": ["threatq_provider.misp.hook"]},
        {
            "integration-name": "Elasticsearch (ECS threat intel)",
            "python-modules": ["threatq_provider.elasticsearch.hook"],
        },
    ],
    "operators": [
        {
            "integration-name": "ThreatQ",
            "python-modules": [
                "threatq_provider.operators.actions",
                "threatq_provider.operators.poll",
                "threatq_provider.operators.transform",
                "threatq_provider.operators.report",
                "threatq_provider.operators.retention",
            ],
        },
        {
            "integration-name": "Elasticsearch (ECS threat intel)",
            "python-modules": ["threatq_provider.operators.load", "threatq_provider.operators.sweep",
                               "threatq_provider.operators.detection", "threatq_provider.operators.reconcile"],
        },
        {"integration-name": "MISP", "python-modules": ["threatq_provider.operators.share"]},
    ],
    "connection-types": [
        {
            "connection-type": "threatq",
            "hook-class-name": "threatq_provider.threatq.hook.ThreatQHook",
            "hook-name": "ThreatQ",
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "extra"],
                "relabeling": {"host": "ThreatQ URL", "login": "Username (email)",
                               "password": "Password or client secret", "port": _PORT_LABEL},
                "placeholders": {
                    "host": "https://threatq.example.com",
                    "port": _port_placeholder(443),
                    "login": "analyst@example.com; empty: client-credentials grant, Password = client secret",
                },
            },
            "conn-fields": _THREATQ_FIELDS,
        },
        {
            "connection-type": "misp",
            "hook-class-name": "threatq_provider.misp.hook.MispHook",
            "hook-name": "MISP",
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "login", "extra"],
                "relabeling": {"host": "MISP URL", "password": "API key", "port": _PORT_LABEL},
                "placeholders": {"host": "https://misp.example.com", "port": _port_placeholder(443)},
            },
            "conn-fields": _MISP_FIELDS,
        },
        {
            "connection-type": "elasticsearch_ecs",
            "hook-class-name": "threatq_provider.elasticsearch.hook.ElasticsearchEcsHook",
            "hook-name": "Elasticsearch (ECS threat intel)",
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "extra"],
                "relabeling": {"host": "Hosts (comma-separated URLs)", "login": "Username (basic auth)",
                               "password": "Password or API key", "port": _PORT_LABEL},
                "placeholders": {"host": "https://es1:9200,https://es2:9200", "port": _port_placeholder(9200),
                                 "login": "elastic; empty: Password is an API key (base64 id:key)"},
            },
            "conn-fields": _ES_FIELDS,
        },
    ],
}
