"""Connection-test messages that name the connection the user tested.

Airflow's Test button and ``POST /api/v2/connections/test`` do not test the stored connection
under its own id: the route copies it under a random id (``transient_conn_id`` in
``airflow.api_fastapi.core_api.routes.public.connections.test_connection``), exports it as
``AIRFLOW_CONN_<RANDOM>`` and builds the hook with that id. A hook message naming its conn id
would then show the user an id such as ``'eLPv2SQs'`` that exists nowhere.

The route calls ``Connection.test_connection()`` directly, so while the hook runs the route's
frame is on the same thread's stack, holding both ids (``transient_conn_id`` and the request
``test_body.connection_id``). :func:`requested_conn_id` finds it there; anywhere else (the CLI's
``airflow connections test``, a task, a newer Airflow that names its variables otherwise) nothing
matches and the hook's own id is kept, which is then the real one or, at worst, what Airflow
gave the hook.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

_MAX_FRAMES = 64  # the route is a few frames above the hook; never walk a deep stack for long

T = TypeVar("T")


def requested_conn_id(conn_id: str) -> str:
    """The connection id the user asked to test, when ``conn_id`` is Airflow's temporary copy.

    :param conn_id: the id the hook was built with.
    :return: the id from the test request when an Airflow connection-test route up the stack
        tested ``conn_id`` as its temporary id; otherwise ``conn_id`` unchanged.
    """
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        local = frame.f_locals
        if local.get("transient_conn_id") == conn_id:
            requested = getattr(local.get("test_body"), "connection_id", None)
            if isinstance(requested, str) and requested:
                return requested
        frame = frame.f_back
    return conn_id


def names_requested_connection(conn_id_attr: str) -> Callable[[Callable[[T], tuple[bool, str]]],
                                                               Callable[[T], tuple[bool, str]]]:
    """Decorate a hook's ``test_connection`` so its message names the connection the user tested.

    :param conn_id_attr: the hook attribute holding its connection id (e.g. ``"threatq_conn_id"``).
    :return: the decorator; the wrapped method returns ``(ok, message)`` with the temporary id in
        the message replaced by the requested one.
    """

    def decorate(test_connection: Callable[[T], tuple[bool, str]]) -> Callable[[T], tuple[bool, str]]:
        @functools.wraps(test_connection)
        def wrapper(self: Any) -> tuple[bool, str]:
            ok, message = test_connection(self)
            used = getattr(self, conn_id_attr)
            requested = requested_conn_id(used)
            if requested != used and used:
                message = message.replace(used, requested)
            return ok, message

        return wrapper

    return decorate
