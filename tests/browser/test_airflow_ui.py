"""The Airflow UI as a user meets it (issue #14), in Chromium against the real api-server.

Each DAG is triggered from its form, once with the defaults and once with values edited through
the form's own widgets (multi-select, date picker, drop-down, switch, one-per-line box); the run
must succeed and the counts it reports are read from the UI's XCom view and compared with the
ground truth (the simulator's corpus, the MISP double's events). Wrong values are refused with a
message naming the field, and a ``threatq`` connection is created through the form and tested
with the Test button. Every step leaves a screenshot under ``.artifacts/browser/``.

The services, users and connections are set up once (``conftest.py``); tests run in file order.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.browser.conftest import TODAY, YESTERDAY

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.airflow, pytest.mark.elasticsearch]

INDICATORS = "threatq_indicators_to_elasticsearch"
EVENTS = "threatq_events_to_misp"
SWEEP = "threatq_ioc_expiry_sweep"
RECONCILE = "threatq_deletion_reconcile"
ACTIONS = "example_threatq_actions"
FIELD = "div[data-scope=field][data-part=root]"


# ---------------------------------------------------------------- form helpers (Airflow 3.3's UI)

def trigger_form(page: Any, stack: Any, dag_id: str) -> Any:
    """Open the DAG's page and its Trigger dialog; return the dialog."""
    page.goto(f"{stack.url}/dags/{dag_id}")
    page.get_by_role("button", name=re.compile(r"^Trigger", re.I)).first.click()
    dialog = page.locator("[role=dialog][data-state=open]")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def row(dialog: Any, title: str) -> Any:
    """The form row whose label is ``title`` (the param's title, with the ``*`` of a required one)."""
    label = dialog.page.locator("label", has_text=re.compile(rf"^\s*{re.escape(title)}\s*\*?\s*$"))
    found = dialog.locator(FIELD, has=label)
    assert found.count() == 1, f"no single form row titled {title!r}"
    return found


def labels(dialog: Any) -> dict[str, bool]:
    """Title of every Run Parameters row → marked required."""
    out = {}
    params = dialog.locator('[data-part=item][id$="item:Run Parameters"]')
    for label in params.locator(f"{FIELD} label[data-part=label]").all():
        out[label.inner_text().replace("*", "").strip()] = label.get_attribute("data-required") is not None
    return out


def assert_titled(dialog: Any, stack: Any, dag_id: str, required: set[str]) -> None:
    """Every param shows its title (not its key), and only ``required`` carry the asterisk."""
    shown = labels(dialog)
    params = stack.api.get(f"/dags/{dag_id}/details")["params"]
    titles = {param["schema"].get("title") or name for name, param in params.items()}
    assert set(shown) == titles and not any("_" in title for title in shown), shown
    assert {title for title, req in shown.items() if req} == required


def choose(page: Any, field: Any, *options: str) -> None:
    """Pick options of a drop-down or multi-select (react-select) by their shown label."""
    for option in options:
        field.locator("input[role=combobox]").click()
        page.get_by_role("option", name=option, exact=True).click()


def pick_datetime(page: Any, field: Any, when: Any) -> None:
    """Fill the form's date-time picker (a popover with Date and Time boxes, times in UTC here)."""
    field.get_by_test_id("datetime-input").click()
    popover = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    popover.get_by_placeholder("YYYY/MM/DD").fill(when.strftime("%Y/%m/%d"))
    popover.get_by_placeholder("HH:mm").fill(when.strftime("%H:%M"))
    field.locator("label").first.click()  # close the popover (Escape would close the dialog)
    assert when.strftime("%H:%M") in field.inner_text()


def switch(field: Any) -> None:
    field.locator("label:has(input[type=checkbox])").click()


def submit(page: Any, dialog: Any) -> str:
    """Click Trigger; the UI opens the new run's page. Return its run id."""
    dialog.get_by_role("button", name=re.compile(r"^Trigger$")).click()
    page.wait_for_url(re.compile(r"/runs/[^/]+$"))
    return unquote(page.url.rsplit("/runs/", 1)[1])


def run_page(page: Any, stack: Any, dag_id: str, run_id: str, shots: Any, step: str) -> dict[str, Any]:
    """Wait for the run to end, show its page; it must have succeeded."""
    run = stack.api.wait_run(dag_id, run_id)
    page.goto(f"{stack.url}/dags/{dag_id}/runs/{quote(run_id)}")
    page.get_by_text(run_id, exact=True).first.wait_for()
    page.get_by_text(re.compile(r"^(Success|Failed)$")).first.wait_for()
    shots(page, step)
    assert run["state"] == "success", stack.api.task_states(dag_id, run_id)
    return run


def xcom_in_ui(page: Any, stack: Any, dag_id: str, run_id: str, task_id: str, shots: Any, step: str,
               map_index: int | None = None) -> tuple[Any, str]:
    """The task's return value from the UI's XCom tab: parsed from what its Copy button copies,
    and the text the cell shows (its viewer shows the first lines; longer values scroll)."""
    mapped = "" if map_index is None else f"/mapped/{map_index}"
    page.goto(f"{stack.url}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}{mapped}/xcom")
    entry = page.locator("tr", has_text="return_value")
    entry.wait_for()
    page.get_by_role("button", name="Expand all extra JSON").click()
    shots(page, step)
    shown = entry.locator("td").nth(2).inner_text().replace("\xa0", " ")
    entry.get_by_role("button", name="Copy to clipboard").click()
    return json.loads(page.evaluate("navigator.clipboard.readText()")), shown


# ---------------------------------------------------------------------------------------- tests

def test_login_with_the_simple_auth_manager_shows_the_dags(browser, stack, shots):
    from tests.browser.conftest import login

    context = browser.new_context(viewport={"width": 1440, "height": 1000}, timezone_id="UTC")
    page = context.new_page()
    try:
        page.goto(f"{stack.url}/")
        page.get_by_label("Username").wait_for()
        shots(page, "login-form")
        login(page, stack.url)
        page.goto(f"{stack.url}/dags")
        for dag_id in (INDICATORS, EVENTS, SWEEP, RECONCILE, ACTIONS):
            page.get_by_text(dag_id, exact=True).first.wait_for()
        shots(page, "dag-list")
    finally:
        context.close()


def test_indicators_dag_with_its_defaults(page, stack, shots):
    dialog = trigger_form(page, stack, INDICATORS)
    shots(page, "form-defaults")
    # Titles, not raw keys; only what cannot be empty is required; the form is valid as it opens.
    assert_titled(dialog, stack, INDICATORS, {"Mode", "IOC expiration duration"})
    assert "Window (the run's data interval)" in row(dialog, "Mode").inner_text()
    run_id = submit(page, dialog)
    run = run_page(page, stack, INDICATORS, run_id, shots, "run-succeeded")

    report, shown = xcom_in_ui(page, stack, INDICATORS, run_id, "report", shots, "report-xcom")
    assert f'"polled": {report["polled"]}' in shown and f'"loaded": {report["loaded"]}' in shown
    # A manual run reads its data interval: yesterday (daily cron here), where the corpus lives.
    assert run["data_interval_start"].startswith(YESTERDAY.date().isoformat())
    truth = list(stack.sim.corpus.iter_indicators(YESTERDAY, TODAY))
    assert report["mode"] == "window" and report["dry_run"] is False
    assert report["polled"] == len(truth) == report["transformed"] > 0
    assert report["loaded"] + sum(report["withheld_by_reason"].values()) == len(truth)


def test_indicators_dag_with_values_edited_in_the_form(page, stack, shots):
    dialog = trigger_form(page, stack, INDICATORS)
    start, end = YESTERDAY + timedelta(hours=6), YESTERDAY + timedelta(hours=18)
    pick_datetime(page, row(dialog, "Window start (UTC)"), start)
    pick_datetime(page, row(dialog, "Window end (UTC)"), end)
    choose(page, row(dialog, "Indicator types"), "IP Address", "FQDN")
    row(dialog, "IOC expiration duration").locator("input").fill("30d")
    switch(row(dialog, "Dry run"))
    shots(page, "form-edited")
    run_id = submit(page, dialog)
    run_page(page, stack, INDICATORS, run_id, shots, "run-succeeded")
    assert stack.api.task_states(INDICATORS, run_id)["load"] == "skipped"  # dry run

    report, shown = xcom_in_ui(page, stack, INDICATORS, run_id, "report", shots, "report-xcom")
    assert f'"polled": {report["polled"]}' in shown
    truth = list(stack.sim.corpus.iter_indicators(start, end, types=["IP Address", "FQDN"]))
    assert report["dry_run"] is True and report["loaded"] == 0
    assert report["window_start"].startswith(start.strftime("%Y-%m-%dT%H:%M"))
    assert report["window_end"].startswith(end.strftime("%Y-%m-%dT%H:%M"))
    assert report["polled"] == len(truth) > 0


@pytest.mark.parametrize(
    ("dag_id", "title", "value", "param"),
    [(INDICATORS, "IOC expiration duration", "ninety days", "ioc_expiration_duration"),
     (EVENTS, "Event ids", "12\nnot-an-id", "event_ids"),
     (SWEEP, "History retention", "5 days", "history_retention")],
)
def test_a_wrong_value_is_refused_with_a_message_naming_the_field(page, stack, shots, dag_id, title, value, param):
    manual_runs = lambda: {r["dag_run_id"] for r in stack.api.runs(dag_id) if r["run_type"] == "manual"}  # noqa: E731
    before = manual_runs()
    was_paused = stack.api.get(f"/dags/{dag_id}")["is_paused"]
    assert was_paused or dag_id != SWEEP  # the sweep is still paused here: the case below is exercised
    dialog = trigger_form(page, stack, dag_id)
    field = row(dialog, title)
    box = field.locator("textarea") if field.locator("textarea").count() else field.locator("input")
    box.fill(value)
    dialog.get_by_role("button", name=re.compile(r"^Trigger$")).click()
    # The server's message reaches the dialog (an alert at its top); the toast only says "Bad Request".
    alert = dialog.get_by_text(re.compile(rf"Invalid input for param {param}\b"))
    alert.wait_for()
    alert.scroll_into_view_if_needed()
    shots(page, "refused")
    page.get_by_text("Failed to Trigger Dag").first.wait_for()  # the toast
    assert manual_runs() == before, "a refused trigger created a run"
    if was_paused:  # docs/dags.md: the UI unpauses before it triggers, so even a refused trigger unpauses
        assert stack.api.get(f"/dags/{dag_id}")["is_paused"] is False


def test_a_required_field_emptied_is_refused_in_the_browser(page, stack, shots):
    dialog = trigger_form(page, stack, ACTIONS)
    row(dialog, "Indicator value").locator("input").fill("")
    row(dialog, "Indicator value").get_by_text("This field is required").wait_for()
    shots(page, "required-field-empty")
    assert not dialog.get_by_role("button", name=re.compile(r"^Trigger$")).is_enabled()


def test_events_dag_with_its_defaults(page, stack, shots):
    dialog = trigger_form(page, stack, EVENTS)
    shots(page, "form-defaults")
    assert_titled(dialog, stack, EVENTS, {"Distribution"})  # issue #14 item 1: a valid form as it opens
    assert dialog.get_by_role("button", name=re.compile(r"^Trigger$")).is_enabled()
    run_id = submit(page, dialog)
    run_page(page, stack, EVENTS, run_id, shots, "run-succeeded")

    selected, _ = xcom_in_ui(page, stack, EVENTS, run_id, "select_events", shots, "selected-xcom")
    assert isinstance(selected, list)
    # MISP holds exactly the events the runs so far selected (this one, and the scheduled run that
    # unpausing started), each once.
    ids = set()
    for other in stack.api.runs(EVENTS):
        assert other["state"] == "success", stack.api.task_states(EVENTS, other["dag_run_id"])
        picked = stack.api.xcom(EVENTS, other["dag_run_id"], "select_events")
        ids |= {i for item in picked for i in (item if isinstance(item, list) else [item])}
    titles = sorted(stack.sim.corpus.event(i)["title"] for i in ids)
    assert sorted(e["info"] for e in stack.misp.events()) == titles


def test_events_dag_with_values_edited_in_the_form(page, stack, shots):
    chosen = stack.sim.corpus.event_ids()[:2]
    dialog = trigger_form(page, stack, EVENTS)
    row(dialog, "Event ids").locator("textarea").fill("\n".join(map(str, chosen)) + "\n")
    choose(page, row(dialog, "Distribution"), "This community only")
    switch(row(dialog, "Publish"))
    shots(page, "form-edited")
    run_id = submit(page, dialog)
    run_page(page, stack, EVENTS, run_id, shots, "run-succeeded")

    totals = [xcom_in_ui(page, stack, EVENTS, run_id, "share_event", shots, f"share-xcom-{i}", map_index=i)[0]
              for i in range(len(chosen))]
    assert sum(t["events"] for t in totals) == len(chosen)
    assert sum(t["published"] for t in totals) == 0
    titles = {stack.sim.corpus.event(i)["title"] for i in chosen}
    in_misp = {e["info"]: e for e in stack.misp.events()}
    for title in titles:
        assert in_misp[title]["distribution"] == "1" and in_misp[title]["published"] is False, in_misp[title]


def test_sweep_dag_with_its_defaults_and_edited_values(page, stack, shots):
    dialog = trigger_form(page, stack, SWEEP)
    assert_titled(dialog, stack, SWEEP, {"History retention"})
    run_id = submit(page, dialog)
    run_page(page, stack, SWEEP, run_id, shots, "defaults-run-succeeded")
    swept, _ = xcom_in_ui(page, stack, SWEEP, run_id, "sweep_expired_iocs", shots, "defaults-sweep-xcom")
    assert swept == stack.api.xcom(SWEEP, run_id, "sweep_expired_iocs") and swept["dry_run"] is False

    dialog = trigger_form(page, stack, SWEEP)
    switch(row(dialog, "Dry run"))
    row(dialog, "History retention").locator("input").fill("30d")
    shots(page, "form-edited")
    run_id = submit(page, dialog)
    run_page(page, stack, SWEEP, run_id, shots, "edited-run-succeeded")
    swept, _ = xcom_in_ui(page, stack, SWEEP, run_id, "sweep_expired_iocs", shots, "edited-sweep-xcom")
    assert swept["dry_run"] is True
    assert stack.api.task_states(SWEEP, run_id)["trim_history"] == "skipped"  # dry run


def test_reconcile_dag_removes_what_threatq_deleted_and_its_dry_run_only_counts(page, stack, shots):
    from tests.integration.dags.helpers import es_active_docs

    loaded = sorted(es_active_docs(stack.es), key=int)  # what the indicators DAG's runs above loaded
    assert len(loaded) > 10
    gone = loaded[:3]
    for iid in gone:  # deleted in ThreatQ (the simulator's corpus, as DELETE /api/indicators/{id} does)
        assert stack.sim.corpus.delete_indicator(int(iid))

    dialog = trigger_form(page, stack, RECONCILE)
    assert_titled(dialog, stack, RECONCILE, set())  # every field may stay as it opens
    shots(page, "form-defaults")
    run_id = submit(page, dialog)
    run_page(page, stack, RECONCILE, run_id, shots, "defaults-run-succeeded")
    result, shown = xcom_in_ui(page, stack, RECONCILE, run_id, "reconcile_deletions", shots, "defaults-xcom")
    assert f'"missing": {result["missing"]}' in shown and result["dry_run"] is False
    # Unpausing on trigger may have queued the schedule's own run too: together they removed the three.
    runs = stack.api.wait_all_runs(RECONCILE)
    assert all(run["state"] == "success" for run in runs), runs
    removed = [stack.api.xcom(RECONCILE, run["dag_run_id"], "reconcile_deletions") for run in runs]
    assert sum(r["deleted"] for r in removed) == 3
    assert {k: v for r in removed for k, v in r["by_reason"].items()} == {"deleted_in_threatq": 3}
    assert sorted(es_active_docs(stack.es), key=int) == loaded[3:]

    more = loaded[3:5]
    for iid in more:
        assert stack.sim.corpus.delete_indicator(int(iid))
    dialog = trigger_form(page, stack, RECONCILE)
    switch(row(dialog, "Dry run"))
    row(dialog, "Safety limit (% of the active IOCs)").locator("input").fill("50")
    shots(page, "form-edited")
    run_id = submit(page, dialog)
    run_page(page, stack, RECONCILE, run_id, shots, "dry-run-succeeded")
    result, _ = xcom_in_ui(page, stack, RECONCILE, run_id, "reconcile_deletions", shots, "dry-run-xcom")
    assert (result["dry_run"], result["missing"], result["deleted"]) == (True, 2, 0)
    assert sorted(es_active_docs(stack.es), key=int) == loaded[3:], "a dry run removed something"


def test_actions_dag_a_run_of_a_paused_dag_waits_and_edited_values_reach_threatq(page, stack, shots):
    dialog = trigger_form(page, stack, ACTIONS)
    unpause = dialog.locator("label", has_text=re.compile("Unpause .* on trigger"))
    assert unpause.locator("input").is_checked()  # ticked by default (docs/dags.md: Manual triggers)
    unpause.click()  # untick: the DAG stays paused, so the run waits
    assert not unpause.locator("input").is_checked()
    row(dialog, "Indicator value").locator("input").fill("198.51.100.23")
    choose(page, row(dialog, "Indicator status"), "Active")
    shots(page, "form-edited-unpause-unticked")
    run_id = submit(page, dialog)
    page.wait_for_timeout(6_000)  # the scheduler would have started it by now
    assert stack.api.get(f"/dags/{ACTIONS}/dagRuns/{run_id}")["state"] == "queued"
    page.reload()
    page.get_by_text("Queued").first.wait_for()
    shots(page, "run-queued-while-paused")

    page.goto(f"{stack.url}/dags/{ACTIONS}")
    page.get_by_test_id("toggle-pause").click()  # unpause: the queued run starts
    run_page(page, stack, ACTIONS, run_id, shots, "run-succeeded-after-unpause")
    created, _ = xcom_in_ui(page, stack, ACTIONS, run_id, "create_indicator", shots, "create-indicator-xcom")
    indicator = stack.sim.corpus.indicator(created["id"])
    assert indicator["value"] == "198.51.100.23"
    assert stack.sim.corpus.status_by_id(indicator["status_id"])["name"] == "Active"

    dialog = trigger_form(page, stack, ACTIONS)  # the defaults, now that the DAG is unpaused
    run_id = submit(page, dialog)
    run_page(page, stack, ACTIONS, run_id, shots, "defaults-run-succeeded")
    created, _ = xcom_in_ui(page, stack, ACTIONS, run_id, "create_indicator", shots, "defaults-create-indicator-xcom")
    assert stack.sim.corpus.indicator(created["id"])["value"] == "203.0.113.77"


def test_a_threatq_connection_made_in_the_form_is_tested_by_the_test_button(page, stack, shots):
    sim = stack.sim
    port = int(sim.url.rsplit(":", 1)[1])
    page.goto(f"{stack.url}/connections")
    page.get_by_role("button", name=re.compile("Add Connection", re.I)).click()
    dialog = page.locator("[role=dialog][data-state=open]")
    dialog.locator("input[name=connection_id]").fill("threatq_ui")
    dialog.get_by_role("combobox").first.click()
    page.get_by_role("option", name="ThreatQ", exact=True).click()
    dialog.locator("input[name=host]").fill("http://127.0.0.1")
    dialog.locator("input[name=port]").fill(str(port))  # shown for the Test button (docs/connections.md)
    dialog.locator("input[name=password]").fill(sim.client_secret)
    shots(page, "standard-fields-with-port")
    dialog.get_by_text("Extra Fields", exact=True).click()
    dialog.locator("#element_client_id").fill(sim.client_id)
    shots(page, "form-filled")
    dialog.get_by_role("button", name="Save").click()
    table_row = page.locator("tr", has_text="threatq_ui")
    table_row.wait_for()

    # Plain http without the opt-in is refused; the message names this connection, not a temporary id.
    table_row.get_by_role("button", name="Test Connection").click()
    failed = page.locator("[data-scope=toast][data-part=root]", has_text="Test Connection Failed").first
    failed.wait_for()
    shots(page, "test-refused-plain-http")
    assert "ThreatQ connection 'threatq_ui'" in failed.inner_text()
    assert "allow_insecure_http" in failed.inner_text()

    table_row.get_by_role("button", name="Edit Connection").click()
    dialog = page.locator("[role=dialog][data-state=open]")
    dialog.get_by_text("Extra Fields", exact=True).click()
    switch(dialog.locator(FIELD, has=page.locator("input[name=element_allow_insecure_http]")))
    shots(page, "edit-allow-insecure-http")
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="detached")

    table_row.get_by_role("button", name="Test Connection").click()
    passed = page.get_by_text(re.compile(rf"^Connected to ThreatQ at http://127\.0\.0\.1:{port} as ")).first
    passed.wait_for()
    shots(page, "test-passed")
