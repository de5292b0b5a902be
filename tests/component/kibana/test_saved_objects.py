"""The Kibana saved objects (``include/kibana/threatq_overview.ndjson``) hang together, name only
fields our indices map, and ``scripts/kibana-import`` sends them as Kibana's saved-objects import
API expects (checked against a local HTTP server standing in for Kibana: real HTTP, real script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.detection.kibana import NDJSON, load_objects, panel_search

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "kibana-import"
CANARY = "canary-kibana-secret-51c9"


def _mapped_fields() -> dict[str, set[str]]:
    from threatq_provider.elasticsearch.run_reports import RUNS_MAPPING
    from threatq_provider.elasticsearch.templates import IndexNames, field_mappings

    ioc = set(field_mappings("active"))
    runs = set(RUNS_MAPPING["properties"])
    return {IndexNames().active_alias: ioc, "threatq-provider-runs": runs}


def test_every_reference_resolves_and_every_panel_has_its_visualization():
    objects = load_objects()
    for (otype, oid), obj in objects.items():
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in objects, f"{otype} {oid} refers to missing {ref}"
    dashboard = objects[("dashboard", "threatq-provider-overview")]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    names = {r["name"] for r in dashboard["references"]}
    assert {f"{p['panelIndex']}:{p['panelRefName']}" for p in panels} == names
    assert len({p["panelIndex"] for p in panels}) == len(panels)
    for panel in panels:  # inside Kibana's 48-column grid
        grid = panel["gridData"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 48


def test_every_panel_aggregates_fields_our_indices_map():
    objects = load_objects()
    dashboard = objects[("dashboard", "threatq-provider-overview")]
    mapped = _mapped_fields()
    titles = set()
    for (otype, _), vis in objects.items():
        if otype != "visualization":
            continue
        index, body = panel_search(vis, objects, dashboard)
        titles.add(vis["attributes"]["title"])
        fields = set()

        def walk(node):
            if isinstance(node, dict):
                if isinstance(node.get("field"), str):
                    fields.add(node["field"])
                for child in node.values():
                    walk(child)
            elif isinstance(node, list):
                for child in node:
                    walk(child)

        walk(body["aggs"])
        walk(body["query"])
        assert fields <= mapped[index], (vis["attributes"]["title"], fields - mapped[index])
    assert titles == {"Active IOCs", "IOCs by type", "IOCs by provider (ThreatQ source)", "IOCs by confidence",
                      "IOCs by TLP", "IOCs expiring in the next 7 days", "Loads and rejects over time"}


class _FakeKibana(BaseHTTPRequestHandler):
    requests: list[dict] = []
    answer: dict = {}

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        type(self).requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": self.rfile.read(length)})
        data = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def kibana():
    _FakeKibana.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKibana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run(url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KIBANA_")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "KIBANA_URL": url, **env})


def test_import_posts_the_ndjson_as_kibana_expects(kibana):
    objects = load_objects()
    _FakeKibana.answer = {"success": True, "successCount": len(objects), "successResults": [
        {"type": t, "id": i, "meta": {"title": o["attributes"].get("title")}} for (t, i), o in objects.items()]}
    proc = _run(kibana, "--space", "soc")
    assert proc.returncode == 0, proc.stderr
    assert "imported dashboard threatq-provider-overview" in proc.stdout
    (request,) = _FakeKibana.requests
    assert request["path"] == "/s/soc/api/saved_objects/_import?overwrite=true"
    assert request["headers"]["kbn-xsrf"]
    assert "authorization" not in request["headers"]
    boundary = request["headers"]["content-type"].split("boundary=")[1]
    part = request["body"].split(f"--{boundary}".encode())[1]
    head, _, content = part.partition(b"\r\n\r\n")
    assert b'name="file"; filename="threatq_overview.ndjson"' in head
    assert content.removesuffix(b"\r\n") == NDJSON.read_bytes()


def test_import_fails_when_kibana_reports_errors(kibana):
    _FakeKibana.answer = {"success": False, "successCount": 0, "errors": [
        {"type": "dashboard", "id": "threatq-provider-overview", "error": {"type": "missing_references"}}]}
    proc = _run(kibana, "--no-overwrite")
    assert proc.returncode == 1
    assert "missing_references" in proc.stderr
    assert _FakeKibana.requests[0]["path"] == "/api/saved_objects/_import?overwrite=false"


def test_credentials_go_in_a_header_never_over_plain_http_unasked_and_never_printed(kibana):
    _FakeKibana.answer = {"success": True, "successCount": 0}
    refused = _run(kibana, KIBANA_API_KEY=CANARY)
    assert refused.returncode == 2 and not _FakeKibana.requests
    ok = _run(kibana, "--allow-insecure-http", KIBANA_API_KEY=CANARY)
    assert ok.returncode == 0
    assert _FakeKibana.requests[0]["headers"]["authorization"] == f"ApiKey {CANARY}"
    assert CANARY not in refused.stdout + refused.stderr + ok.stdout + ok.stderr
