"""The one hook pattern (operators/_base.py): cached hooks, clients closed after execute and on kill."""

from __future__ import annotations

import inspect
from functools import cached_property

import pytest

from threatq_provider.operators import actions, detection, load, poll, reconcile, report, share, sweep
from threatq_provider.operators._base import HookOperator


class Hook:
    def __init__(self):
        self.opened = 0
        self.closed = 0

    def get_client(self):
        self.opened += 1
        return f"client {self.opened}"

    def close(self):
        self.closed += 1


class Op(HookOperator):
    @cached_property
    def hook(self):
        return Hook()

    def execute(self, context):
        with self.client(self.hook) as client:
            if context.get("fail"):
                raise RuntimeError("the service failed")
            return client


def test_the_client_is_closed_through_its_hook_after_execute_whether_it_succeeded_or_not():
    op = Op(task_id="t")
    assert op.execute({}) == "client 1" and op.hook.closed == 1
    with pytest.raises(RuntimeError, match="the service failed"):
        op.execute({"fail": True})
    assert op.hook.closed == 2
    assert op.execute({}) == "client 3"  # the hook is cached; each execute opens a fresh client


def test_on_kill_closes_the_hook_without_any_io():
    op = Op(task_id="t")
    op.on_kill()
    assert op.hook.closed == 1 and op.hook.opened == 0


OPERATORS = sorted(
    {cls for module in (actions, detection, load, poll, reconcile, report, share, sweep)
     for _, cls in inspect.getmembers(module, inspect.isclass)
     if issubclass(cls, HookOperator) and cls is not HookOperator and not cls.__name__.startswith("_")},
    key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", OPERATORS, ids=lambda cls: cls.__name__)
def test_every_operator_that_calls_a_service_names_cached_hooks_and_builds_them_without_io(cls, monkeypatch):
    for name in ("AIRFLOW_CONN_THREATQ_DEFAULT", "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT", "AIRFLOW_CONN_MISP_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    assert cls.hook_names and all(isinstance(inspect.getattr_static(cls, n), cached_property) for n in cls.hook_names)
    required = {name: 1 for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    op = cls(task_id="t", **required)
    op.on_kill()  # no connection exists: building and closing the hooks reads none
    assert all(getattr(op, n) is getattr(op, n) for n in cls.hook_names)
