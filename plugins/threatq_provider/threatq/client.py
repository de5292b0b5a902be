"""ThreatQ REST API client: OAuth2 token, retries, paging, the seven InsightConnect actions.

Plain ``requests``; no Airflow import (the hook in :mod:`threatq_provider.threatq.hook` turns a
Connection into the arguments of :class:`ThreatQClient`).

How the client is built
-----------------------
:class:`ThreatQClient` is the one public class; its parts live in one module per concern and are
joined by inheritance, each part a class over the one below it:

* :mod:`~threatq_provider.threatq.transport` (``Transport``): the session, the OAuth2 token
  (grants in :mod:`~threatq_provider.threatq.auth`), retries (:class:`RetryPolicy`; the rules are
  in that module's docstring), typed errors, JSON parsing and ``request_json``;
* :mod:`~threatq_provider.threatq.lookups` (``NameLookups``): type and status names to this
  instance's ids, cached;
* :mod:`~threatq_provider.threatq.listings` (``Listings``): paged reads (indicator windows, id
  streams, data collections, events), over the pure helpers of :mod:`~threatq_provider.threatq.paging`;
* :mod:`~threatq_provider.threatq.objects` (``Objects``): investigations and attachments;
* :mod:`~threatq_provider.threatq.actions` (``Actions``): the seven plugin actions and ``find_event``.

Inheritance rather than composition: every part shares the one session, token and name cache,
and callers (the hook, the operators, tests that read ``client.timeout`` or replace
``client._sleep``) keep seeing a single object, with no forwarding layer to keep in step. Each
part calls only the parts below it, so each module reads on its own. The names callers import
from here (``ThreatQClient``, ``RetryPolicy``, the field and relation tuples, the grants) stay
importable from here.
"""

from __future__ import annotations

from threatq_provider.threatq.actions import EVENT_FIELDS, INDICATOR_FIELDS, Actions
from threatq_provider.threatq.auth import ClientCredentials, PasswordGrant
from threatq_provider.threatq.errors import ThreatQError
from threatq_provider.threatq.listings import DEFAULT_COLLECTION_FIELDS, DEFAULT_EVENT_WITH, DEFAULT_WITH
from threatq_provider.threatq.objects import Objects
from threatq_provider.threatq.paging import CollectionPage
from threatq_provider.threatq.transport import RetryPolicy

__all__ = [
    "DEFAULT_COLLECTION_FIELDS",
    "DEFAULT_EVENT_WITH",
    "DEFAULT_WITH",
    "EVENT_FIELDS",
    "INDICATOR_FIELDS",
    "ClientCredentials",
    "CollectionPage",
    "PasswordGrant",
    "RetryPolicy",
    "ThreatQClient",
    "ThreatQError",
]


class ThreatQClient(Actions, Objects):
    """Client of one ThreatQ instance; one ``requests.Session`` and one cached token.

    :param base_url: instance URL, e.g. ``https://threatq.example.com`` (a trailing ``/api`` is
        accepted and removed).
    :param auth: :class:`PasswordGrant` or :class:`ClientCredentials`.
    :param verify: verify TLS (``True``/``False``) or the path of a CA bundle.
    :param proxies: ``requests`` proxies mapping, e.g. ``{"https": "http://proxy:3128"}``.
    :param timeout: ``(connect, read)`` seconds, or one number for both.
    :param retry: retry policy.
    :param page_size: rows per page when paging (1–1000 on ThreatQ; Elastic uses 1000).
    :param user_agent: ``User-Agent`` header.
    :param on_secret: called with every access and refresh token received, so a log masker
        (Airflow's ``mask_secret``) can hide them: the refresh grant sends its token in the query
        string, which urllib3 logs at DEBUG.
    """

    def __repr__(self) -> str:
        return f"ThreatQClient({self.base_url!r}, auth={self.auth.describe()!r})"
