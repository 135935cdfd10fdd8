"""The pipeline in Dagster: real runs, a real simulator over loopback HTTP, real Parquet and DuckDB files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from huntress_dagster import alerts as alerts_module
from huntress_dagster import catalog
from huntress_dagster.alerts import build_alerts
from huntress_dagster.automation import COLLECT_JOB, connection_test_job
from huntress_dagster.checks import duplicate_alert_keys, missing_days
from huntress_dagster.collect import parse_api_time
from huntress_dagster.lake import Lake
from huntress_dagster.resources import HuntressResource
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET
from huntress_dagster.streams import INCIDENT_REPORTS

from .conftest import admin
from .dagster_helpers import (
    cli_env,
    dagster_cli,
    kill_mid_walk,
    make_pipeline,
    open_catalog_read_only,
    start_day,
    table_snapshot,
    today,
)

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")


def truth_alerts(server) -> dict[tuple, str]:
    """The simulator's alert truth: every incident report, and every escalation once per organization."""
    incidents = {("default", "huntress_incident_report", r["id"], r["organization_id"], r["account_id"]): r["status"]
                 for r in admin(server, "truth/incidents")["incident_reports"]}
    escalations = {("default", "huntress_escalation", r["id"], org, r["account_id"]): r["status"]
                   for r in admin(server, "truth/escalations")["escalations"] for org in r["organization_ids"]}
    return {**incidents, **escalations}


def lake_alerts(pipeline) -> dict[tuple, str]:
    rows = pipeline.query("SELECT tenantid, msg_class, huntress_id, organization_id, account_id, status FROM alerts")
    keys = [row[:5] for row in rows]
    assert len(keys) == len(set(keys)), "duplicate alert keys"
    return {row[:5]: row[5] for row in rows}


def test_full_materialization_then_sensor_run_makes_alerts_equal_the_truth(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success
    assert pipeline.run_incidents().success
    assert lake_alerts(pipeline) == truth_alerts(simulator)

    sensor = pipeline.defs.get_sensor_def("huntress_alert_sensor")
    resources = pipeline.defs.resources
    with dg.build_sensor_context(instance=pipeline.instance, resources=resources) as context:
        first = sensor(context)
    cursor = first.cursor
    seen = json.loads(cursor)["seen"]  # by connection/account/stream
    assert seen[f"default/{pipeline.account}/incident_reports"]["id"] and \
        seen[f"default/{pipeline.account}/escalations"]["id"]

    changed = admin(simulator, "tick", {"new_incidents": 5, "status_changes": 4, "agent_changes": 3})
    before = simulator.request_log[-1]["t"]
    with dg.build_sensor_context(instance=pipeline.instance, resources=resources, cursor=cursor) as context:
        result = sensor(context)
    sensor_requests = [e for e in simulator.request_log if e["t"] > before]
    # one small request per alert stream (incident reports, escalations)
    assert len(sensor_requests) == 2 and all("limit=1" in e["query"] for e in sensor_requests)
    assert len(result.run_requests) == 1
    run = result.run_requests[0]
    assert run.run_key.startswith(f"default|{pipeline.account}/incident_reports:") and "/escalations:" in run.run_key
    assert run.tags["huntress/connection"] == "default" and run.tags["huntress/account"] == pipeline.account
    assert {k.to_user_string() for k in run.asset_selection} == {"raw_incidents", "raw_escalations",
                                                                 "parsed_syslog", "alerts", "ocsf_detection_finding"}

    job = pipeline.defs.resolve_job_def(COLLECT_JOB)
    assert job.execute_in_process(tags=run.tags, instance=pipeline.instance,
                                  asset_selection=run.asset_selection).success
    alerts = lake_alerts(pipeline)
    assert alerts == truth_alerts(simulator)
    new_keys = {k for k in alerts if k[1] == "huntress_incident_report" and k[2] in changed["new_incidents"]}
    assert len(new_keys) == 5 and all(alerts[k] == "sent" for k in new_keys)

    # The same tick again is not a new event: the run key and the cursor prevent a duplicate run.
    with dg.build_sensor_context(instance=pipeline.instance, resources=resources,
                                 cursor=result.cursor) as context:
        assert not sensor(context).run_requests


def alerts_build_mode(pipeline) -> str:
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("alerts"))
    return event.asset_materialization.metadata["build"].value


def test_incremental_alerts_equal_a_full_rebuild(simulator, tmp_path, monkeypatch):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success and pipeline.run_incidents().success
    assert alerts_build_mode(pipeline) == "full"  # the first build
    lake = Lake(pipeline.lake_dir)
    assert build_alerts(lake).mode == "unchanged"  # nothing parsed since: the table is left as it is
    # A re-walk that finds nothing new (the overlap of every scheduled run) rewrites no part of alerts.
    parts = {path: path.stat().st_mtime_ns for path in (pipeline.lake_dir / "alerts").rglob("*.parquet")}
    assert pipeline.run_incidents(today() - timedelta(days=1), today()).success
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("alerts"))
    assert event.asset_materialization.metadata["alerts_recomputed"].value == 0
    assert {path: path.stat().st_mtime_ns for path in parts} == parts

    # New incidents and status changes of old ones (their latest version moves to today's partition).
    admin(simulator, "tick", {"new_incidents": 6, "status_changes": 8})
    assert pipeline.run_incidents(today() - timedelta(days=1), today()).success
    assert alerts_build_mode(pipeline) == "incremental"
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("alerts"))
    recomputed = event.asset_materialization.metadata["alerts_recomputed"].value
    total = pipeline.query("SELECT count(*) FROM alerts")[0][0]
    assert 14 <= recomputed < total / 4  # the touched keys, not the table
    assert lake_alerts(pipeline) == truth_alerts(simulator)
    incremental = {t: table_snapshot(pipeline.lake_dir, t) for t in ("alerts", "ocsf_detection_finding")}

    assert build_alerts(lake, full=True).mode == "full"
    assert {t: table_snapshot(pipeline.lake_dir, t) for t in incremental} == incremental
    # A full build reads the parsed files a group at a time: groups of a few files give the same tables.
    monkeypatch.setattr(alerts_module, "FULL_BUILD_VERSIONS_PER_QUERY", 40)
    assert build_alerts(lake, full=True).mode == "full"
    assert {t: table_snapshot(pipeline.lake_dir, t) for t in incremental} == incremental
    monkeypatch.undo()
    # Parsed files of several schemas (one here rewritten by another writer: no Arrow schema in its footer)
    # are read by column name (union_by_name), which one schema does without: the same tables either way.
    assert alerts_module._alerts_sources(lake, alerts_module._parsed_alert_files(lake))[1]
    day_file = next((pipeline.lake_dir / "parsed_syslog" / "msg_class=huntress_incident_report").rglob("*.parquet"))
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM '{day_file}') TO '{day_file}.new' (FORMAT parquet)")
    os.replace(f"{day_file}.new", day_file)
    assert not alerts_module._alerts_sources(lake, alerts_module._parsed_alert_files(lake))[1]
    assert build_alerts(lake, full=True).mode == "full"
    assert {t: table_snapshot(pipeline.lake_dir, t) for t in incremental} == incremental

    # A new assets build: only the alerts whose host columns no longer match assets are recomputed.
    admin(simulator, "tick", {"new_incidents": 0, "status_changes": 0, "agent_changes": 12, "escalations_opened": 0,
                              "escalations_closed": 0})
    assert pipeline.run_agents().success
    assert alerts_build_mode(pipeline) == "incremental"
    assert lake_alerts(pipeline) == truth_alerts(simulator)
    # A host renamed (as a new assets file would say): its alerts, and only they, take the new name.
    [(agent_id, n)] = pipeline.query("SELECT agent_id, count(*) FROM alerts WHERE agent_id IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")
    assets_file = pipeline.lake_dir / "agent_inventory" / "data.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * REPLACE (CASE WHEN agent_id = {agent_id} THEN 'RENAMED-HOST' ELSE hostname END "
                    f"AS hostname) FROM '{assets_file}') TO '{assets_file}.new' (FORMAT parquet)")
    os.replace(f"{assets_file}.new", assets_file)
    build = build_alerts(lake)
    assert (build.mode, build.alerts_written) == ("incremental", n)
    assert pipeline.query("SELECT count(*) FROM alerts WHERE hostname = 'RENAMED-HOST'") == [(n,)]
    incremental = {t: table_snapshot(pipeline.lake_dir, t) for t in incremental}
    assert build_alerts(lake, full=True).mode == "full"
    assert {t: table_snapshot(pipeline.lake_dir, t) for t in incremental} == incremental


def builds_a_hash_table_from_parquet(node: dict) -> bool:
    """A DuckDB JSON plan node whose hash join holds (builds from: its second child) rows read from Parquet."""
    def reads_parquet(n: dict) -> bool:
        return n.get("name") == "READ_PARQUET" or any(map(reads_parquet, n.get("children", [])))
    children = node.get("children", [])
    if node.get("name") == "HASH_JOIN" and reads_parquet(children[1]):
        return True
    return any(map(builds_a_hash_table_from_parquet, children))


def test_a_full_alerts_build_streams_the_parsed_rows_through_its_joins(simulator, tmp_path, monkeypatch):
    """A full build's memory is bounded only if no join holds the parsed rows: a fleet far larger than its
    alerts is what made DuckDB (which underestimates a filtered Parquet scan) build its hash table from them."""
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success and pipeline.run_incidents().success
    assets_file = pipeline.lake_dir / "agent_inventory" / "data.parquet"
    with duckdb.connect() as con:  # ~20,000 more hosts, none with an alert
        con.execute(f"COPY (SELECT * FROM '{assets_file}' UNION ALL SELECT a.* REPLACE (a.agent_id + g.i * 1000000 "
                    f"AS agent_id) FROM '{assets_file}' a, range(1, 20000 // (SELECT count(*) FROM '{assets_file}') + 2)"
                    f" g(i)) TO '{assets_file}.new' (FORMAT parquet)")
    os.replace(f"{assets_file}.new", assets_file)
    plans, write_all_parts = [], alerts_module.write_all_parts

    def explained(lake, con, queries, *args):
        plans.extend(json.loads(con.sql(f"EXPLAIN (FORMAT json) {query}").fetchall()[0][1])[0] for query in queries)
        return write_all_parts(lake, con, queries, *args)

    monkeypatch.setattr(alerts_module, "write_all_parts", explained)
    monkeypatch.setattr(alerts_module, "FULL_BUILD_VERSIONS_PER_QUERY", 40)
    assert build_alerts(Lake(pipeline.lake_dir), full=True).alerts_written > 0
    assert len(plans) > 1 and not any(map(builds_a_hash_table_from_parquet, plans))
    assert lake_alerts(pipeline) == truth_alerts(simulator)


def test_a_re_walked_day_parses_only_its_new_versions_and_equals_a_full_parse(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_incidents().success
    admin(simulator, "tick", {"new_incidents": 2, "status_changes": 3, "agent_changes": 0, "escalations_opened": 0,
                              "escalations_closed": 0, "new_signals": 0, "signal_status_changes": 0,
                              "platform_actions_opened": 0, "platform_actions_closed": 0})
    result = pipeline.run_incidents(today() - timedelta(days=1), today())
    metadata = result.asset_materializations_for_node("parsed_syslog")[-1].metadata
    # the 5 new versions (2 incidents, 3 status changes) and nothing else is normalized again
    assert metadata["rows_parsed"].value == 5 and metadata["rows_carried_over"].value > 0
    incremental = table_snapshot(pipeline.lake_dir, "parsed_syslog")

    for day in (today() - timedelta(days=1), today()):  # parse those days from scratch
        for path in (pipeline.lake_dir / "parsed_syslog").rglob(f"day={day.isoformat()}/*.parquet"):
            path.unlink()
    result = pipeline.run_incidents(today() - timedelta(days=1), today())
    assert result.asset_materializations_for_node("parsed_syslog")[-1].metadata["rows_carried_over"].value == 0
    assert table_snapshot(pipeline.lake_dir, "parsed_syslog") == incremental


def test_each_partition_s_metadata_describes_that_day_and_the_run_s_figures_only_the_newest(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    result = pipeline.run_incidents()
    raw = {m.partition: m.metadata for m in result.asset_materializations_for_node("raw_incidents")}
    parsed = {m.partition: m.metadata for m in result.asset_materializations_for_node("parsed_syslog")}
    per_day = dict(pipeline.query("SELECT CAST(day AS VARCHAR), count(*) FROM raw_incidents GROUP BY 1"))
    parsed_per_day = dict(pipeline.query("SELECT CAST(day AS VARCHAR), count(*) FROM parsed_syslog "
                                         "WHERE msg_class = 'huntress_incident_report' GROUP BY 1"))
    assert len(raw) > 2 and len(set(per_day.values())) > 1  # days of different sizes: a repeated total shows
    for day, metadata in raw.items():
        assert metadata["dagster/row_count"].value == per_day.get(day, 0)
        assert parsed[day]["incident_reports_rows"].value == parsed_per_day.get(day, 0)
    newest = max(raw)
    assert [day for day, metadata in raw.items() if "lag_seconds" in metadata] == [newest]
    assert [day for day, metadata in parsed.items() if "parse_levels" in metadata] == [newest]


def test_alerts_carry_host_context_links_and_ocsf_ids(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success and pipeline.run_incidents().success
    rows = pipeline.query("""
        SELECT a.hostname, s.hostname, a.severity, a.severity_id, a.incident_report_url
        FROM alerts a JOIN agent_inventory s ON s.agent_id = a.agent_id""")
    assert rows and all(row[0] == row[1] for row in rows)
    assert {(r[2], r[3]) for r in rows} <= {("low", 2), ("high", 4), ("critical", 5)}
    assert all(r[4].startswith("https://acme-mssp.huntress.io/org/") for r in rows if r[4])
    # Analyst columns: is_open from the status (the truth's labels), created_at a column of its own.
    truth = {r["id"]: r for r in admin(simulator, "truth/incidents")["incident_reports"]}
    incidents = pipeline.query("SELECT huntress_id, status, is_open, created_at FROM alerts "
                               "WHERE msg_class = 'huntress_incident_report'")
    assert {status for _, status, _, _ in incidents} >= {"sent", "closed"}
    for incident_id, status, is_open, created_at in incidents:
        assert status == truth[incident_id]["status"]
        assert is_open == (status not in ("closed", "dismissed", "partner_dismissed", "deleting"))
        assert created_at == parse_api_time(truth[incident_id]["created_at"])


def test_incremental_runs_walk_only_from_the_committed_watermark(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_incidents().success
    first_walk = [e for e in simulator.request_log if e["path"] == "/v1/incident_reports"]
    total = len(admin(simulator, "truth/incidents")["incident_reports"])
    assert len(first_walk) == math.ceil(total / 500)

    mark = simulator.request_log[-1]["t"]
    result = pipeline.run_incidents(today() - timedelta(days=1), today())
    assert result.success
    walk = [e for e in simulator.request_log if e["t"] > mark and e["path"] == "/v1/incident_reports"]
    assert len(walk) == 1  # nothing changed: one page reaches below the watermark
    lower = result.asset_materializations_for_node("raw_incidents")[-1].metadata["walk_lower_bound"].value
    assert parse_api_time(lower) > parse_api_time(f"{today()}T00:00:00Z") - timedelta(days=1)


def test_rerunning_partitions_is_idempotent(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success and pipeline.run_incidents().success
    varying = ("collected_at", "first_collected_at", "last_collected_at")
    before = {t: table_snapshot(pipeline.lake_dir, t, varying) for t in ("raw_incidents", "parsed_syslog", "alerts")}
    middle = today() - timedelta(days=4)
    mark = simulator.request_log[-1]["t"]
    assert pipeline.run_incidents(middle, middle).success  # complete through its end: no walk at all
    assert not [e for e in simulator.request_log if e["t"] > mark and e["path"] == "/v1/incident_reports"]
    assert pipeline.run_incidents(middle, middle, full_refresh=True).success  # re-walked and replaced
    assert pipeline.run_incidents(full_refresh=True).success
    after = {t: table_snapshot(pipeline.lake_dir, t, varying) for t in before}
    assert after == before


def test_checks_pass_and_catalog_answers_the_reference_queries(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success
    result = pipeline.run_incidents()
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["alerts_key_unique"] and checks["raw_incidents_no_missing_partition"]
    assert checks["raw_incidents_fresh"]
    assert duplicate_alert_keys(pipeline.lake) == 0
    assert missing_days(pipeline.lake, INCIDENT_REPORTS)[1] == []
    con = open_catalog_read_only(pipeline.lake_dir)
    try:
        by_severity = dict(con.execute("select severity, count(*) from alerts group by 1").fetchall())
        assert set(by_severity) <= {"low", "high", "critical"} and sum(by_severity.values()) > 0
        incidents = con.execute("select count(*) from parsed_syslog where msg_class = 'huntress_incident_report' "
                                "and msg_origin.source = 'huntress' and msg_origin.category = 'mdr'").fetchone()[0]
        assert incidents == con.execute("select count(*) from raw_incidents").fetchone()[0]
        org_rows = con.execute("select huntress.organization_id, count(*) from parsed_syslog "
                               "where huntress.organization_id is not null group by 1").fetchall()
        assert org_rows
        # an incident alert's organization is its own; an escalation's is one of those it affects
        assert con.execute("select count(*) from alerts where huntress.organization_id is not distinct from "
                           "organization_id or list_contains(huntress.organization_ids, organization_id)"
                           ).fetchone()[0] == sum(by_severity.values())
        assert con.execute("select count(*) from agent_inventory").fetchone()[0] == len(simulator.world.agents)
        # OCSF: one Detection Finding per alert, one Device Inventory Info per agent
        assert con.execute("select count(*) from ocsf_detection_finding where class_uid = 2004 and "
                           "type_uid = 200400 + activity_id and metadata.version = '1.5.0'").fetchone()[0] == \
            sum(by_severity.values())
        assert con.execute("select count(*) from ocsf_device_inventory_info where class_uid = 5001").fetchone()[0] \
            == len(simulator.world.agents)
    finally:
        con.close()


def test_connection_test_job_reports_success_and_typed_guidance(simulator):
    good = HuntressResource(host_url=simulator.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                            rate_limit_requests=10_000, rate_limit_window_seconds=1)
    result = connection_test_job.execute_in_process(resources={"huntress": good})
    assert result.success
    bad = HuntressResource(host_url=simulator.url, api_key=DEMO_API_KEY, api_secret="wrong",
                           rate_limit_requests=10_000, rate_limit_window_seconds=1)
    result = connection_test_job.execute_in_process(resources={"huntress": bad}, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "Did you enter your credentials correctly?" in failure
    assert "wrong" not in failure


@pytest.mark.slow
def test_cli_partition_range_is_one_walk_and_writes_every_partition(make_simulator, tmp_path):
    server = make_simulator({"incidents": 1_600, "agents": 30, "days": 10})
    first, last = today() - timedelta(days=6), today() - timedelta(days=3)
    out = dagster_cli("asset", "materialize", "-m", "huntress_dagster.definitions", "--select", "raw_incidents",
                      "--partition-range", f"{first}...{last}", env=cli_env(server, tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lake = Lake(tmp_path / "lake")
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    account = str(server.world.config.account_id)
    assert all(lake.walked(INCIDENT_REPORTS, account).day_path(d).exists() for d in days)
    assert not lake.walked(INCIDENT_REPORTS, account).day_path(last + timedelta(days=1)).exists()
    truth = admin(server, "truth/incidents")["incident_reports"]
    newer_than_first = sum(1 for r in truth if parse_api_time(r["updated_at"]).date() >= first)
    walk = [e for e in admin(server, "requests")["requests"] if e["path"] == "/v1/incident_reports"]
    assert len(walk) <= math.ceil(newer_than_first / 500) + 1
    in_range = sorted(r["id"] for r in truth if first <= parse_api_time(r["updated_at"]).date() <= last)
    stored = [row[0] for row in table_rows(lake, "SELECT id FROM raw_incidents ORDER BY id")]
    assert stored == in_range


def table_rows(lake: Lake, sql: str) -> list[tuple]:
    with lake.connect() as con:
        catalog.register_views(lake, con)
        return con.execute(sql).fetchall()


@pytest.mark.slow
def test_run_killed_half_way_then_rerun_equals_a_clean_run(make_simulator, tmp_path):
    server = make_simulator({"incidents": 2_500, "agents": 20, "days": 10})
    env = cli_env(server, tmp_path)
    args = ("asset", "materialize", "-m", "huntress_dagster.definitions", "--select", "raw_incidents",
            "--partition-range", f"{start_day()}...{today()}")
    kill_mid_walk(server, args, env, tmp_path, "/v1/incident_reports", slow_seconds=0.4)
    staging = tmp_path / "lake" / "_staging"
    assert [p for p in staging.iterdir() if p.is_dir()], "the killed walk left its staging directory"
    assert dagster_cli(*args, env=env, cwd=tmp_path).returncode == 0
    assert list(staging.iterdir()) == []  # the next run removed what the dead one left
    assert list((tmp_path / "lake").rglob(".tmp-*")) == []

    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = dagster_cli(*args, env=cli_env(server, clean_dir), cwd=clean_dir)
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert table_snapshot(tmp_path / "lake", "raw_incidents", ("collected_at",)) == \
        table_snapshot(clean_dir / "lake", "raw_incidents", ("collected_at",))


@pytest.mark.slow
def test_three_concurrent_runs_and_a_reader_never_hit_a_lock_error(make_simulator, tmp_path):
    server = make_simulator({"incidents": 1_200, "agents": 100, "days": 10})
    env = cli_env(server, tmp_path)
    first = dagster_cli("job", "execute", "-m", "huntress_dagster.definitions", "-j", "huntress_inventory_job",
                        "--tags", json.dumps({"dagster/partition": str(today())}), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    reader = open_catalog_read_only(tmp_path / "lake")  # an analyst's session holds the catalog open
    try:
        dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
        commands = [
            ["job", "execute", "-m", "huntress_dagster.definitions", "-j", COLLECT_JOB, "--tags",
             json.dumps({"dagster/asset_partition_range_start": str(start_day()),
                         "dagster/asset_partition_range_end": str(today())})],
            ["job", "execute", "-m", "huntress_dagster.definitions", "-j", COLLECT_JOB, "--tags",
             json.dumps({"dagster/asset_partition_range_start": str(today() - timedelta(days=1)),
                         "dagster/asset_partition_range_end": str(today())})],
            ["job", "execute", "-m", "huntress_dagster.definitions", "-j", "huntress_inventory_job", "--tags",
             json.dumps({"dagster/partition": str(today())})],
        ]
        procs = [subprocess.Popen([dagster, *c], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for c in commands]
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        assert reader.execute("select count(*) from raw_agents").fetchone()[0] > 0
    finally:
        reader.close()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
        # The reader's hold on the catalog is met by design: the view refresh is skipped, nothing fails.
        lock_lines = [line for line in output.splitlines() if "conflicting lock" in line.lower()]
        assert all("not refreshed" in line for line in lock_lines), lock_lines
    pipeline_lake = Lake(tmp_path / "lake")
    keys = table_rows(pipeline_lake, "SELECT tenantid, msg_class, huntress_id, organization_id, account_id FROM alerts")
    assert len(keys) == len(set(keys)) == len(truth_alerts(server))


def test_schedules_request_the_right_partitions(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    incidents = pipeline.defs.get_schedule_def("huntress_collect_schedule")
    agents = pipeline.defs.get_schedule_def("huntress_agents_schedule")
    assert incidents.cron_schedule == "*/5 * * * *" and agents.cron_schedule == "15 0 * * *"
    tick = datetime.combine(today(), datetime.min.time(), tzinfo=timezone.utc) + timedelta(minutes=5)
    with dg.build_schedule_context(instance=pipeline.instance, scheduled_execution_time=tick,
                                   repository_def=pipeline.defs.get_repository_def(),
                                   resources=pipeline.defs.resources) as ctx:
        [request] = incidents.evaluate_tick(ctx).run_requests  # one run per connection: here one key
        assert request.tags["huntress/connection"] == "default"
        assert request.tags["dagster/asset_partition_range_start"] == str(today() - timedelta(days=1))
        assert request.tags["dagster/asset_partition_range_end"] == str(today())
        [request] = agents.evaluate_tick(ctx).run_requests
        assert request.partition_key == str(today())
        organizations = pipeline.defs.get_schedule_def("huntress_organizations_schedule")
        assert organizations.cron_schedule == "5 * * * *"  # hourly: renames show within the hour
        [request] = organizations.evaluate_tick(ctx).run_requests
        assert {k.to_user_string() for k in request.asset_selection} >= {
            "raw_organizations", "organizations", "agent_inventory", "identities", "external_ports", "alerts"}


def test_a_day_an_outage_left_incomplete_is_flagged_and_read_again_by_the_next_scheduled_run(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_incidents().success
    partitions = pipeline.lake.walked(INCIDENT_REPORTS, pipeline.account)
    day = today() - timedelta(days=4)
    path = partitions.day_path(day)
    # as if collection stopped at noon that day and resumed days later: the watermark stops mid-day
    noon = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=12)
    table = pq.read_table(path)
    metadata = {**(table.schema.metadata or {}), b"complete_as_of": noon.isoformat().encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    assert partitions.incomplete_days(today()) == [day]

    schedule = pipeline.defs.get_schedule_def("huntress_collect_schedule")
    with dg.build_schedule_context(instance=pipeline.instance, scheduled_execution_time=datetime.now(timezone.utc),
                                   resources=pipeline.defs.resources) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.tags["dagster/asset_partition_range_start"] == day.isoformat()  # not only yesterday
    result = pipeline.defs.resolve_job_def(COLLECT_JOB).execute_in_process(tags=request.tags,
                                                                          instance=pipeline.instance)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["raw_incidents_days_complete"]
    assert partitions.incomplete_days(today()) == []
    assert lake_alerts(pipeline) == truth_alerts(simulator)


def test_widening_the_organization_filter_reads_the_other_organizations_history(simulator, tmp_path):
    first_org = admin(simulator, "truth/organizations")["organizations"][0]["id"]
    narrow = make_pipeline(simulator, tmp_path, organization_ids=[first_org])
    assert narrow.run_incidents().success
    assert {row[0] for row in narrow.query("SELECT DISTINCT organization_id FROM raw_incidents")} == {first_org}
    # the same lake, every organization: the watermarks proven for one organization do not count
    wide = make_pipeline(simulator, tmp_path)
    assert wide.run_incidents().success
    assert lake_alerts(wide) == truth_alerts(simulator)
