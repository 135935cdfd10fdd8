"""Demo mode through the real thing: `dagster dev` as the README starts it, driven over GraphQL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from huntress_dagster.demo import read_state, stop_demo_simulator

from .dagster_helpers import ALL_ASSET_KEYS, cli_env, start_dagster_dev, start_day, table_snapshot, today
from .object_store import free_port

REPO = Path(__file__).resolve().parents[1]

LOCATION_STATUS = """
query {
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation { repositories { name assetNodes { assetKey { path } description } } }
        }
      }
    }
  }
}
"""



@pytest.fixture
def dagster_dev(tmp_path):
    # No HUNTRESS_API_KEY: demo mode. The simulator's clock is stopped so the truth is stable to compare.
    env = cli_env(None, tmp_path, HUNTRESS_DEMO_TICK_SECONDS="0")
    port = free_port()
    log = open(tmp_path / "dagster_dev.log", "w")
    proc = start_dagster_dev(env, REPO, log, port)
    try:
        yield port, tmp_path, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        stop_demo_simulator(Path(env["DAGSTER_HOME"]) / ".huntress_demo")


def loaded_code_location(port: int, timeout: float) -> dict:
    """The webserver's code location once loaded (the UI shows a loading or an error state before)."""
    deadline = time.time() + timeout
    while True:
        entries = graphql(port, LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
        if all(e["loadStatus"] == "LOADED" for e in entries) or time.time() > deadline:
            break
        time.sleep(1)
    location = entries[0]["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    return location


def graphql(port: int, query: str) -> dict:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=60)
    response.raise_for_status()
    return response.json()["data"]


@pytest.mark.slow
def test_dagster_dev_in_demo_mode_shows_every_asset_and_materializes_everything(dagster_dev):
    port, tmp_path, env = dagster_dev
    location = loaded_code_location(port, 120)
    nodes = {"/".join(n["assetKey"]["path"]): n for n in location["repositories"][0]["assetNodes"]}
    assert set(nodes) == ALL_ASSET_KEYS
    assert all("DEMO MODE" in n["description"] for n in nodes.values())  # said loudly in the UI

    state = read_state(Path(env["DAGSTER_HOME"]) / ".huntress_demo")
    assert state and state["url"].startswith("http://127.0.0.1:")  # one shared simulator was started

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(
        "__ASSET_JOB", asset_selection=[[k] for k in nodes],
        tags={"dagster/asset_partition_range_start": str(start_day()),
              "dagster/asset_partition_range_end": str(today())})
    deadline = time.time() + 300
    status = None
    while time.time() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", (tmp_path / "dagster_dev.log").read_text()[-4000:]

    alerts = [row for row in table_snapshot(tmp_path / "lake", "alerts", ("alert_id",))
              if "huntress_incident_report" in row]
    assert alerts
    # The run worker used the same simulator the webserver started: one world, found again.
    assert read_state(Path(env["DAGSTER_HOME"]) / ".huntress_demo")["url"] == state["url"]
    truth = httpx.get(state["url"].replace("/v1", "/_sim/truth/incidents")).json()["incident_reports"]
    in_range = [r for r in truth if r["updated_at"][:10] >= str(start_day())]  # the materialized range
    assert 0 < len(in_range) < len(truth)
    assert len(alerts) == len(in_range)

    # The UI shows the health checks' results and the numeric metadata it plots over time
    # (this run's: the demo's schedules and sensor run too, and one may be under way)
    checks = graphql(port, """query { assetCheckExecutions(assetKey: {path: ["raw_incidents"]},
        checkName: "connector_healthy", limit: 50) { runId status evaluation { success severity description } } }""")
    executions = [e for e in checks["assetCheckExecutions"] if e["runId"] == run_id]
    evaluated = [e for e in executions if e["status"] != "SKIPPED"]  # (the run's other partitions: skipped)
    assert evaluated and all(e["status"] == "SUCCEEDED" and e["evaluation"]["success"] for e in evaluated)
    series = graphql(port, """query { assetOrError(assetKey: {path: ["raw_incidents"]}) { ... on Asset {
        assetMaterializations(limit: 1) { metadataEntries { label __typename
            ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue } } } } } }""")
    entries = {e["label"]: e for e in series["assetOrError"]["assetMaterializations"][0]["metadataEntries"]}
    assert entries["lag_seconds"]["__typename"] == "FloatMetadataEntry" and entries["lag_seconds"]["floatValue"] >= 0
    assert entries["records_collected"]["__typename"] == "IntMetadataEntry"
    assert entries["api_429_responses"]["__typename"] == "IntMetadataEntry"

    # Push in demo mode: the simulator delivers signed webhooks to the bundled receiver; the inbox sensor
    # (through the real daemon) runs a collect that brings the new incident into alerts
    new = httpx.post(state["url"].replace("/v1", "/_sim/tick"), json={"new_incidents": 1, "status_changes": 0}
                     ).json()["new_incidents"]
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    deadline, pushed = time.time() + 180, []
    while time.time() < deadline:
        pushed = [r for r in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
                  if "huntress/inbox" in r.tags]
        if pushed:
            break
        time.sleep(2)
    assert pushed, (tmp_path / "dagster_dev.log").read_text()[-3000:]
    ids = {row[0] for row in duckdb.sql(
        f"SELECT huntress_id FROM read_parquet('{tmp_path / 'lake'}/alerts/part-*.parquet')").fetchall()}
    assert set(new) <= ids
