"""threatq_provider._conn_test: a test message names the connection the user asked to test."""

from __future__ import annotations

from types import SimpleNamespace

from threatq_provider._conn_test import names_requested_connection, requested_conn_id


class Hook:
    def __init__(self, conn_id: str) -> None:
        self.my_conn_id = conn_id

    @names_requested_connection("my_conn_id")
    def test_connection(self) -> tuple[bool, str]:
        return False, f"connection {self.my_conn_id!r}: refused (as {self.my_conn_id})"


def route(test_body: SimpleNamespace, hook_id: str) -> tuple[bool, str]:
    """Stands for Airflow's test route: its locals hold the temporary and the requested id."""
    transient_conn_id = "eLPv2SQs"  # noqa: F841 - read from this frame by requested_conn_id
    return Hook(hook_id).test_connection()


def test_the_message_names_the_requested_connection_under_airflows_test_route():
    assert route(SimpleNamespace(connection_id="threatq_prod"), "eLPv2SQs") == (
        False, "connection 'threatq_prod': refused (as threatq_prod)")


def test_anywhere_else_the_hooks_own_id_stays():
    assert Hook("threatq_default").test_connection() == (
        False, "connection 'threatq_default': refused (as threatq_default)")
    # a route testing another temporary id, or a request without a usable id, changes nothing
    assert route(SimpleNamespace(connection_id="threatq_prod"), "other123")[1].startswith("connection 'other123'")
    assert route(SimpleNamespace(connection_id=None), "eLPv2SQs")[1].startswith("connection 'eLPv2SQs'")
    assert requested_conn_id("x") == "x"
