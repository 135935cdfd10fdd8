"""The Dagster UI in a real browser, as a user meets it: `dagster dev` in demo mode from a clean DAGSTER_HOME,
driven with Playwright for Python in Debian's Chromium (/usr/bin/chromium, installed by .ci/run; Playwright's
own browser download is not used).

The flow: dismiss the first-run dialog, "Materialize all" in the asset graph, pick the partitions in the
launch dialog as a user does ("All"), launch the backfill and wait for every run of it to succeed; then the
`alerts` asset (row count, columns, its check) and the schedules and sensors. Any console error or uncaught
exception in the page fails the test.

Screenshots go to the test's tmp_path; with UI_SCREENSHOT_DIR set (e.g. `docs`) they are also copied
there, which is how docs/ui-*.png are refreshed:

    UI_SCREENSHOT_DIR=docs .venv/bin/python -m pytest -q tests/test_browser.py
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from huntress_dagster import catalog
from huntress_dagster.demo import stop_demo_simulator
from huntress_dagster.lake import Lake

from .dagster_helpers import cli_env, start_dagster_dev
from .object_store import free_port
from .test_demo_mode import loaded_code_location

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is a dev dependency")
expect = sync_api.expect

REPO = Path(__file__).resolve().parents[1]
# Debian's Chromium (.ci/run installs it); CHROMIUM_PATH points elsewhere (another distribution, a laptop).
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))

# Console messages of type "error" that are not the UI failing. Keep this minimal and specific: each entry is
# (a regular expression on the message text, why it is benign).
BENIGN_CONSOLE_ERRORS: list[tuple[str, str]] = []

BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status numPartitions } ... on PythonError { message } } }"""
BACKFILL_RUNS = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { runId status startTime endTime assetSelection { path }
                          tags { key value } } } } }"""
ASSET_NODES = """query { assetNodes { assetKey { path }
  assetMaterializations(limit: 1) { timestamp runId } } }"""


RUNS_IN_FLIGHT = """query { runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
  ... on Runs { results { runId } } } }"""


def query(port: int, text: str, **variables) -> dict:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": text, "variables": variables},
                          timeout=60)
    response.raise_for_status()
    return response.json()["data"]


STOP_GRACE_SECONDS = 150


def describe(pids: list[int]) -> list[str]:
    """pid and command line of each process, so a leftover says what it is."""
    described = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = "?"
        described.append(f"{pid}: {command[:200]}")
    return described


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            members.append(int(stat.parent.name))
    return members


@pytest.fixture
def dagster_ui(tmp_path):
    """`dagster dev` in demo mode (no HUNTRESS_API_KEY) from a clean DAGSTER_HOME, in its own process group
    with everything it starts (code servers, daemon, run workers, the demo simulator, the webhook receiver);
    all of it is stopped afterwards, and the test fails if any of it outlives the fixture.

    As tests/test_demo_mode.py's fixture; the simulator's clock is stopped so the lake is stable to compare."""
    env = cli_env(None, tmp_path, HUNTRESS_DEMO_TICK_SECONDS="0")
    port = free_port()
    log_path = tmp_path / "dagster_dev.log"
    with open(log_path, "w") as log:
        proc = start_dagster_dev(env, REPO, log, port)
        try:
            loaded_code_location(port, 180)
            yield port, tmp_path, env, log_path
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            # dagster dev itself waits up to 60 s for the webserver and then 60 s for the daemon before killing
            # them (dagster._cli.dev), so on a loaded machine a clean stop can take two minutes.
            deadline = time.time() + STOP_GRACE_SECONDS
            while group_members(proc.pid) and time.time() < deadline:
                time.sleep(0.5)
            leftovers = describe(group_members(proc.pid))
            if leftovers:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            stop_demo_simulator(Path(env["DAGSTER_HOME"]) / ".huntress_demo")
            assert not leftovers, f"still alive {STOP_GRACE_SECONDS} s after SIGTERM: {leftovers}"


def describe_page(page) -> str:
    """What a failure's log needs to tell a UI race from a defect: the URL, any open dialog, the buttons."""
    try:
        dialogs = page.get_by_role("dialog").all_inner_texts()
        buttons = page.get_by_role("button").evaluate_all("els => els.map(e => e.innerText.replace(/\\s+/g, ' '))")
        return f"page {page.url}\ndialogs: {dialogs}\nbuttons: {[b for b in buttons if b.strip()][:80]}"
    except Exception as error:  # noqa: BLE001 - a description only; the test's own failure is what counts
        return f"page not described: {error}"


@pytest.fixture
def browser_page(dagster_ui, request):
    """A Chromium page (Debian's binary) that records console errors and uncaught page exceptions. After
    dagster_ui, so it is closed before the server stops (its reconnect attempts would be console errors)."""
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        args = ["--disable-dev-shm-usage"]  # containers: a small /dev/shm crashes tabs
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US",
                                      timezone_id="UTC")
        context.set_default_timeout(30_000)
        page = context.new_page()

        def on_console(message) -> None:
            if message.type == "error":
                errors.append(f"console.error: {message.text} ({message.location.get('url')})")

        page.on("console", on_console)
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        try:
            yield page, errors
            if getattr(request.node, "call_failed", False):
                print(describe_page(page))
                page.screenshot(path=str(dagster_ui[1] / "failure.png"))
        finally:
            context.close()
            browser.close()


def unexpected(errors: list[str]) -> list[str]:
    return [e for e in errors if not any(re.search(pattern, e) for pattern, _ in BENIGN_CONSOLE_ERRORS)]


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("UI_SCREENSHOT_DIR"):
        target = Path(os.environ["UI_SCREENSHOT_DIR"])
        target = target if target.is_absolute() else REPO / target
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)


def dismiss_first_run_dialogs(page) -> None:
    """A fresh browser on a fresh instance gets "Join the Dagster community" (newsletter sign-up): Skip it,
    whenever it shows. On a loaded machine it can open well after the page, so a locator handler skips it
    before any later action or auto-waiting assertion, as a user would (and does nothing if a Dagster
    version never shows it)."""
    skip = page.get_by_role("dialog").get_by_role("button", name="Skip", exact=True)
    page.add_locator_handler(skip, lambda button: button.click())


def lake_alerts(lake_dir: Path) -> tuple[int, list[str]]:
    lake = Lake(lake_dir)
    with lake.connect() as con:
        catalog.register_views(lake, con, ["alerts"])
        columns = [d[0] for d in con.execute("SELECT * FROM alerts LIMIT 0").description]
        return con.execute("SELECT count(*) FROM alerts").fetchone()[0], columns


def automations(port: int) -> dict[str, tuple[str, str]]:
    """Every schedule and sensor: name -> (kind, status)."""
    data = query(port, """query { repositoriesOrError { ... on RepositoryConnection { nodes {
        schedules { name scheduleState { status } } sensors { name sensorState { status } } } } } }""")
    [repository] = data["repositoriesOrError"]["nodes"]
    return {**{s["name"]: ("schedules", s["scheduleState"]["status"]) for s in repository["schedules"]},
            **{s["name"]: ("sensors", s["sensorState"]["status"]) for s in repository["sensors"]}}


def wait_for_runs_to_settle(port: int, timeout: float = 180) -> None:
    """Demo mode starts the schedules and sensors, so a run may be materializing or checking an asset while
    the flow looks at it (a page then shows that run "In progress" until it is loaded again): wait until no
    run is queued or running."""
    deadline = time.time() + timeout
    while query(port, RUNS_IN_FLIGHT)["runsOrError"]["results"]:
        assert time.time() < deadline, f"runs still in flight after {timeout} s"
        time.sleep(1)


def first_failure(log: str) -> str:
    """The log from the first failed step on (its error and stack trace), else its end."""
    at = log.find("STEP_FAILURE")
    return log[at:at + 4000] if at >= 0 else log[-4000:]


def nav(page, label: str) -> None:
    """Click an entry of the left navigation (its accessible name is its icon's name, then its label)."""
    page.get_by_role("navigation").get_by_role("link", name=re.compile(rf"\b{label}$")).click()


def zoom_graph_to_fit(page) -> None:
    """The graph opens at a fixed zoom that leaves part of it out of view: zoom out until every node shows."""
    nodes = page.locator('[class*="AssetNode_assetName"]')
    height = page.viewport_size["height"]
    for _ in range(8):
        boxes = [nodes.nth(i).bounding_box() for i in range(nodes.count())]
        if all(b and b["y"] > 100 and b["y"] + b["height"] < height - 10 for b in boxes):
            return
        page.get_by_role("button", name="zoom_out", exact=True).click()
        page.wait_for_timeout(400)


@pytest.mark.slow
@pytest.mark.timeout(540)
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (.ci/run installs Debian's: "
                                                   "apt-get install chromium; or set CHROMIUM_PATH)")
def test_the_ui_in_demo_mode_materializes_everything_and_shows_alerts_and_automation(dagster_ui, browser_page):
    port, tmp_path, _env, log_path = dagster_ui
    page, errors = browser_page
    base = f"http://127.0.0.1:{port}"
    assets = sorted("/".join(n["assetKey"]["path"]) for n in query(port, ASSET_NODES)["assetNodes"])
    started = time.time()

    # --- the asset graph, and "Materialize all" as a user does it
    wait_for_runs_to_settle(port)  # the sensors' and schedules' first runs, started with the daemon
    page.goto(base + "/")
    dismiss_first_run_dialogs(page)
    nav(page, "Lineage")
    for name in assets:  # the sidebar lists every asset (an assertion, so a late first-run dialog is skipped)
        expect(page.get_by_role("button", name=re.compile(rf" {name} {name}$"))).to_be_visible(timeout=30_000)
    page.get_by_role("button", name=re.compile(r"Materialize all")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Launch runs to materialize {len(assets)} assets").wait_for()
    dialog.get_by_text(re.compile(r"^Showing \d+ of \d+ partitions")).wait_for()  # partitions loaded

    def selected() -> int:
        return int(re.search(r"Partition selection\s+(\d+) partitions?", dialog.inner_text())[1])

    # Partitioned and unpartitioned assets together: Dagster asks which partitions. The whole range, "All",
    # is what fills the lake (the walked streams and parsed_syslog take it in a single run each: their
    # backfill policy); the unpartitioned assets are materialized once.
    opened_with = (selected(), dialog.get_by_role("button", name="Launch backfill", exact=True).is_enabled())
    dialog.get_by_role("button", name="All", exact=True).click()
    partitions = selected()
    assert partitions > 1
    launched_at = time.time()
    dialog.get_by_role("button", name="Launch backfill", exact=True).click()
    toast = page.get_by_text(re.compile(r"^Created backfill \w+$"))
    backfill_id = toast.inner_text().split()[-1]
    print(f"\n'Materialize all': dialog opened on {opened_with[0]} partitions (Launch "
          f"{'enabled' if opened_with[1] else 'disabled'}); 'All' selected {partitions}; backfill {backfill_id}")
    page.get_by_role("link", name="View", exact=True).click()  # the toast's link: the backfill's page

    # Wait for the backfill: the daemon launches its runs layer by layer (GraphQL, to stop at a failure)
    deadline, status, runs = launched_at + 330, None, []
    while time.time() < deadline:
        status = query(port, BACKFILL, id=backfill_id)["partitionBackfillOrError"].get("status")
        runs = query(port, BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]
        if status not in ("REQUESTED", "CANCELING", "FAILING") or any(r["status"] == "FAILURE" for r in runs):
            break
        time.sleep(2)
    took = time.time() - launched_at
    for run in sorted(runs, key=lambda r: r["startTime"] or launched_at):
        print(f"  run {run['runId'][:8]} {run['status']}: started "
              f"+{(run['startTime'] or launched_at) - launched_at:.0f} s, took "
              f"{(run['endTime'] or time.time()) - (run['startTime'] or launched_at):.0f} s: "
              f"{sorted('/'.join(a['path']) for a in run['assetSelection'] or [])}")
    print(f"  backfill {status} {took:.0f} s after launch, {len(runs)} runs")
    assert status == "COMPLETED_SUCCESS" and runs and all(r["status"] == "SUCCESS" for r in runs), \
        (status, [r["status"] for r in runs], first_failure(log_path.read_text()))
    never = [n["assetKey"]["path"] for n in query(port, ASSET_NODES)["assetNodes"] if not n["assetMaterializations"]]
    assert not never, never
    # ... and the backfill's page says so: every asset 100% completed
    page.reload()
    expect(page.get_by_text("100% completed", exact=True)).to_have_count(len(assets), timeout=30_000)

    # The graph again, every asset materialized: no sidebar entry "missing" (never materialized) or failed
    nav(page, "Lineage")
    sidebar = [page.get_by_role("button", name=re.compile(rf" {name} {name}$")) for name in assets]
    for entry in sidebar:
        entry.wait_for()
    expect(page.get_by_role("button", name=re.compile(r"^(missing|run_failed|failed) "))).to_have_count(
        0, timeout=30_000)
    zoom_graph_to_fit(page)
    page.wait_for_timeout(1000)
    screenshot(page, tmp_path, "ui-asset-graph.png")

    # --- the alerts asset: its row count, its columns, its check
    count, columns = lake_alerts(tmp_path / "lake")
    assert count > 0
    page.goto(base + "/assets/alerts")
    page.get_by_text("Latest materialization", exact=True).wait_for()
    page.get_by_text("Metadata", exact=True).first.wait_for()
    # The row count, wherever the asset reports it: Dagster's "Row count" (dagster/row_count metadata) in the
    # status, and/or the asset's own `alerts` metadata entry. At least one must show, and each the lake's count.
    shown = {str(count), f"{count:,}"}
    sources = {
        "Row count": page.get_by_text("Row count", exact=True).locator("xpath=.."),
        "alerts entry": page.locator("tr").filter(has=page.get_by_text("alerts", exact=True)),
    }
    found = {label: loc.first.inner_text() for label, loc in sources.items() if loc.count()}
    assert found, "no row count on the alerts page"
    for label, text in found.items():
        assert shown & set(re.findall(r"[\d,]+", text)), (label, text, count)
    # The column schema (dagster/column_schema): when the asset reports one, every column of the lake's view
    if page.get_by_text("Columns", exact=True).count():
        table = page.locator("table").filter(has=page.get_by_role("cell", name=columns[0], exact=True))
        shown_columns = [c for c in columns if table.get_by_role("cell", name=c, exact=True).count()]
        assert shown_columns == columns, set(columns) - set(shown_columns)
    print(f"  alerts: {count} rows ({', '.join(found)}); "
          + (f"{len(columns)} columns shown" if page.get_by_text("Columns", exact=True).count()
             else "no Columns section (no dagster/column_schema)"))
    screenshot(page, tmp_path, "ui-alerts.png")

    wait_for_runs_to_settle(port)  # a scheduled run's check in progress shows so until the page reloads
    page.reload()
    page.get_by_role("tab", name="Checks", exact=True).click()
    page.get_by_text("alerts_key_unique", exact=True).first.wait_for()
    page.get_by_text("Succeeded", exact=True).first.wait_for()  # the check list: the latest execution
    page.get_by_text("Passed", exact=True).first.wait_for()  # the check's evaluation result
    expect(page.get_by_role("row", name="duplicate_keys 0")).to_have_count(1)

    # --- the schedules and sensors: every one listed and running (demo mode starts them), each page opens
    expected = automations(port)
    assert {"huntress_collect_schedule", "huntress_alert_sensor"} <= set(expected), expected
    assert all(status == "RUNNING" for _, status in expected.values()), expected
    nav(page, "Automation")
    for name, (kind, _) in expected.items():
        page.locator(f'a[href$="/{kind}/{name}"]').wait_for()
    page.wait_for_timeout(1000)
    screenshot(page, tmp_path, "ui-automation.png")
    for name, (kind, _) in expected.items():
        page.locator(f'a[href$="/{kind}/{name}"]').click()
        page.wait_for_url(re.compile(rf"/{kind}/{name}$"))
        running = page.get_by_role("row", name="Running", exact=True).get_by_role("checkbox")
        expect(running).to_be_checked()
        page.go_back()
    print(f"  {len(expected)} schedules and sensors opened; UI flow {time.time() - started:.0f} s")

    bad = unexpected(errors)
    assert not bad, "the UI logged errors:\n" + "\n".join(bad)
