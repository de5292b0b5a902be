"""One fault-plan schema, two servers: the same rule does the same thing on the ThreatQ simulator
and on the MISP double, over real HTTP; both serve ``/_sim/faults``; both turn Nagle off."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from threatq_simulators.faults import FaultPlan
from threatq_simulators.misp_double import MispDouble
from threatq_simulators.threatq_sim import ThreatQSimulator

from .conftest import api_session

pytestmark = pytest.mark.component

MISP_KEY = "shared-schema-test-key-0123456789abcdef"


@dataclass
class Server:
    """One running server, seen through what the tests need of it."""

    name: str
    url: str
    session: requests.Session
    read_path: str  # an authenticated GET that answers 200 with JSON
    write: Callable[[], requests.Response]  # a create
    written: Callable[[], int]  # how many objects the creates made so far
    faults: FaultPlan
    server: ThreatQSimulator | MispDouble


def _threatq(factory: Callable[..., ThreatQSimulator]) -> Server:
    sim = factory(indicators=50, events=2)
    session = api_session(sim)
    before = len(sim.corpus.event_ids())
    body = {"title": "Shared schema", "type": "Malware", "happened_at": "2026-02-01 10:00:00"}
    return Server("threatq-sim", sim.url, session, "/api/indicators",
                  lambda: session.post(f"{sim.url}/api/events", json=body, timeout=10),
                  lambda: len(sim.corpus.event_ids()) - before, sim.faults, sim)


def _misp(factory: Callable[..., MispDouble]) -> Server:
    double = factory(api_key=MISP_KEY)
    session = requests.Session()
    session.headers.update({"Authorization": MISP_KEY, "Accept": "application/json"})
    body = {"Event": {"info": "Shared schema", "distribution": 0, "threat_level_id": 4, "analysis": 0}}
    return Server("misp-double", double.url, session, "/servers/getVersion",
                  lambda: session.post(f"{double.url}/events/add", json=body, timeout=10),
                  lambda: len(double.events()), double.faults, double)


@pytest.fixture(params=["threatq-sim", "misp-double"])
def server(request, threatq_sim_factory, misp_double_factory) -> Iterator[Server]:
    srv = _threatq(threatq_sim_factory) if request.param == "threatq-sim" else _misp(misp_double_factory)
    with srv.session:
        yield srv


def test_status_rule_with_headers_and_body_then_recovers(server: Server) -> None:
    server.faults.add({"method": "GET", "path_regex": f"^{server.read_path}$", "nth": 2, "times": 1, "status": 503,
                       "headers": {"Retry-After": "7"}, "body": {"oops": True}})
    codes = [server.session.get(server.url + server.read_path, timeout=10) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 503, 200]
    assert codes[1].headers["Retry-After"] == "7" and codes[1].json() == {"oops": True}


def test_an_html_body_is_sent_as_html(server: Server) -> None:
    server.faults.add({"status": 502, "body": "<html><body>Bad Gateway</body></html>"})
    resp = server.session.get(server.url + server.read_path, timeout=10)
    assert resp.status_code == 502 and resp.headers["Content-Type"].startswith("text/html")


def test_path_regex_sees_the_decoded_query_string(server: Server) -> None:
    server.faults.add({"path_regex": r"probe=a\*b", "times": None, "status": 418})
    assert server.session.get(server.url + server.read_path, params={"probe": "zzz"}, timeout=10).status_code == 200
    assert server.session.get(server.url + server.read_path, params={"probe": "a*b"}, timeout=10).status_code == 418


def test_delay_then_a_correct_answer(server: Server) -> None:
    server.faults.add({"path_regex": f"^{server.read_path}$", "delay_s": 0.6})
    with pytest.raises(requests.exceptions.ReadTimeout):
        server.session.get(server.url + server.read_path, timeout=0.2)
    assert server.session.get(server.url + server.read_path, timeout=10).status_code == 200


@pytest.mark.parametrize("action", ["reset", "close"])
def test_a_dropped_connection_never_handles_the_request(server: Server, action: str) -> None:
    server.faults.add({"method": "POST", "action": action})
    with pytest.raises(requests.exceptions.ConnectionError):
        server.write()
    assert server.written() == 0
    assert server.write().status_code in (200, 201) and server.written() == 1


def test_commit_then_reset_makes_the_write_and_loses_its_answer(server: Server) -> None:
    server.faults.add({"method": "POST", "action": "commit_then_reset"})
    with pytest.raises(requests.exceptions.ConnectionError):
        server.write()
    assert server.written() == 1


def test_truncate_sends_half_the_announced_body(server: Server) -> None:
    server.faults.add({"path_regex": f"^{server.read_path}", "action": "truncate"})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        server.session.get(server.url + server.read_path, timeout=10)
    assert server.session.get(server.url + server.read_path, timeout=10).status_code == 200


def test_malformed_is_a_200_that_is_not_json(server: Server) -> None:
    server.faults.add({"path_regex": f"^{server.read_path}", "action": "malformed"})
    resp = server.session.get(server.url + server.read_path, timeout=10)
    assert resp.status_code == 200 and resp.content.endswith(b"502 Bad Gateway</body></html>")
    with pytest.raises(ValueError):
        json.loads(resp.content)


def test_one_plan_file_drives_both_servers(tmp_path, threatq_sim_factory, misp_double_factory) -> None:
    # The same JSON plan (shared keys only) loaded by each server: the same sequence of answers.
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"rules": [
        {"method": "GET", "nth": 2, "times": 2, "status": 429, "headers": {"Retry-After": "1"}},
        # A request an earlier rule answered does not reach this one: it counts requests 1, 4, 5…
        {"method": "GET", "nth": 3, "times": 1, "status": 500},
    ]}))
    seen = {}
    for srv in (_threatq(lambda **kw: threatq_sim_factory(faults=FaultPlan.from_json(plan), **kw)),
                _misp(lambda **kw: misp_double_factory(faults=FaultPlan.from_json(plan), **kw))):
        with srv.session:
            seen[srv.name] = [srv.session.get(srv.url + srv.read_path, timeout=10).status_code for _ in range(6)]
    assert seen == {"threatq-sim": [200, 429, 429, 200, 500, 200], "misp-double": [200, 429, 429, 200, 500, 200]}


def test_the_control_endpoint_is_the_same_on_both(server: Server) -> None:
    control = f"{server.url}/_sim/faults"
    added = requests.post(control, json={"rules": [{"path_regex": f"^{server.read_path}$", "times": None,
                                                    "status": 500}]}, timeout=10)
    assert added.status_code == 201 and added.json()["data"][0]["status"] == 500
    assert [server.session.get(server.url + server.read_path, timeout=10).status_code for _ in range(2)] == [500, 500]
    listed = requests.get(control, timeout=10).json()["data"]
    assert [(r["status"], r["triggered"]) for r in listed] == [(500, 2)]
    # All or none: a bad rule in a list adds nothing, and the error names it.
    bad = requests.post(control, json=[{"status": 503}, {"pathregex": "x"}], timeout=10)
    assert bad.status_code == 400 and "pathregex" in bad.json()["errors"][0]
    assert len(server.faults) == 1
    assert requests.delete(control, timeout=10).status_code == 204
    assert server.session.get(server.url + server.read_path, timeout=10).status_code == 200


def test_each_server_refuses_the_other_ones_extension(threatq_sim_factory, misp_double_factory) -> None:
    double = misp_double_factory(api_key=MISP_KEY)
    refused = requests.post(f"{double.url}/_sim/faults", json={"times": None, "page_cap": 10}, timeout=10)
    assert refused.status_code == 400 and "misp-double does not serve page_cap" in refused.json()["errors"][0]
    with pytest.raises(ValueError, match="misp-double does not serve the action 'expire_token'"):
        double.add_fault({"action": "expire_token"})
    with pytest.raises(ValueError, match="does not serve poison_indicator"):
        misp_double_factory(faults=[{"poison_indicator": 3}])
    sim = threatq_sim_factory(indicators=10, events=1)
    assert sim.faults.add({"times": None, "page_cap": 10}).page_cap == 10


class _NoDelaySeen:
    """Wraps a server's handler class to read TCP_NODELAY off the real accepted socket after setup."""

    def __init__(self, server: ThreatQSimulator | MispDouble) -> None:
        self.values: list[int] = []
        self._lock = threading.Lock()
        base = server._server.RequestHandlerClass
        seen = self

        class Probe(base):  # type: ignore[misc, valid-type]
            def setup(self) -> None:
                super().setup()
                with seen._lock:
                    seen.values.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server._server.RequestHandlerClass = Probe


def test_both_servers_turn_nagle_off_on_every_connection(server: Server) -> None:
    # Nagle on costs ~40 ms per keep-alive request (issue #17); bench/simulators_keepalive.py measures it.
    probe = _NoDelaySeen(server.server)
    fresh: Any = requests.Session()
    fresh.headers.update(server.session.headers)
    with fresh:
        for _ in range(3):
            assert fresh.get(server.url + server.read_path, timeout=10).status_code == 200
    assert probe.values == [1]  # one keep-alive connection, Nagle off
