"""The one way the provider's operators reach a service (ThreatQ, Elasticsearch/OpenSearch, MISP).

Modelled on the HTTP provider's ``HttpOperator`` (a ``hook`` property built from the connection id)
with the Slack provider's caching (``functools.cached_property``):

* An operator declares each hook it uses as a ``cached_property``: ``hook`` for the service the
  task writes to, or its only one; ``threatq_hook`` for the ThreatQ it reads from when it writes
  elsewhere. The property returns :func:`threatq_hook`, :func:`elasticsearch_hook` or
  :func:`misp_hook` of the operator's connection id. Building a hook does no I/O (our hooks read
  their connection when the client is first asked for), so DAG parsing and ``on_kill`` stay
  cheap. Tests may set a hook in place of the property (``op.__dict__["hook"] = fake``).
* ``execute`` takes each client in a ``with`` block: ``with self.client(self.hook) as client:``.
  Leaving the block, by return or by error, closes the client through its hook, and the hook
  forgets it, so a second ``execute`` of the same task object (a retry in one process) opens a
  new one instead of reusing a closed pool.
* ``on_kill`` closes the client of every hook the operator names in :attr:`HookOperator.hook_names`:
  a request in flight fails at once and ``execute`` unwinds, instead of the task waiting out its
  HTTP timeouts after a kill.
* ``__init__`` stores the arguments unchanged (an unset index name: the default it stands for).
  Values are read and checked in ``execute`` before
  the first call to a service, so a wrong value fails the task naming the option and nothing is
  sent. The only checks left at parse time are pure checks of literal values (no I/O, nothing
  stored), where a test pins that a wrong literal is a DAG import error; Airflow's
  ``BaseOperator`` offers no other parse-time hook for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from airflow.providers.common.compat.sdk import BaseOperator

if TYPE_CHECKING:
    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook
    from threatq_provider.misp.hook import MispHook
    from threatq_provider.threatq.hook import ThreatQHook


class ClosableHook(Protocol):
    """What :class:`HookOperator` needs of a hook: our three hooks all answer it."""

    def get_client(self) -> Any: ...

    def close(self) -> None: ...


class HookOperator(BaseOperator):
    """Base of the operators that call a service; see the module docstring for the pattern."""

    #: The ``cached_property`` hooks this operator uses, closed by :meth:`on_kill`.
    hook_names: ClassVar[tuple[str, ...]] = ("hook",)

    @contextmanager
    def client(self, hook: ClosableHook) -> Iterator[Any]:
        """The hook's client for the length of a ``with`` block; closed (through the hook) at its end.

        :param hook: one of this operator's hooks.
        :return: the client (``ThreatQClient``, ``Elasticsearch``/``OpenSearch``, ``PyMISP``).
        """
        try:
            yield hook.get_client()
        finally:
            hook.close()

    def on_kill(self) -> None:
        """Close every hook's client, so a call in flight ends now."""
        for name in self.hook_names:
            getattr(self, name).close()


# The hooks, imported when a task first asks for one: DAG files import the operators, and parsing
# them must not import requests, elasticsearch or PyMISP.


def threatq_hook(conn_id: str) -> ThreatQHook:
    """A ThreatQ hook for ``conn_id`` (no I/O)."""
    from threatq_provider.threatq.hook import ThreatQHook

    return ThreatQHook(threatq_conn_id=conn_id)


def elasticsearch_hook(conn_id: str) -> ElasticsearchEcsHook:
    """An Elasticsearch (or OpenSearch) hook for ``conn_id`` (no I/O)."""
    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook

    return ElasticsearchEcsHook(elasticsearch_conn_id=conn_id)


def misp_hook(conn_id: str) -> MispHook:
    """A MISP hook for ``conn_id`` (no I/O)."""
    from threatq_provider.misp.hook import MispHook

    return MispHook(misp_conn_id=conn_id)
