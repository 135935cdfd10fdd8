"""Streams end to end: signals and escalations beside incident reports, real Dagster runs over real HTTP."""

from __future__ import annotations

import pytest

from huntress_dagster.checks import duplicate_alert_keys
from huntress_dagster.streams import ESCALATIONS, SIGNALS, STREAMS, WALK_STREAMS

from .conftest import admin
from .dagster_helpers import cli_env, dagster_cli, kill_mid_walk, make_pipeline, start_day, table_snapshot, today
from .test_pipeline import lake_alerts, truth_alerts

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")

STREAM_WORLD = {"signals": 400, "escalations": 40, "platform_actions": 12}


def lake_latest(pipeline, msg_class: str) -> dict[int, str]:
    """The latest status of every object of a class in parsed_syslog, after checking versions are unique."""
    rows = pipeline.query(f"""SELECT huntress.id, huntress.updated_at, huntress.status FROM parsed_syslog
                              WHERE msg_class = '{msg_class}'""")
    versions = [row[:2] for row in rows]
    assert len(versions) == len(set(versions)), f"a {msg_class} version stored twice"
    latest: dict[int, tuple] = {}
    for record_id, updated_at, status in rows:
        if record_id not in latest or updated_at > latest[record_id][0]:
            latest[record_id] = (updated_at, status)
    return {record_id: status for record_id, (_, status) in latest.items()}


def truth_status(server, name: str) -> dict[int, str]:
    return {r["id"]: r["status"] for r in admin(server, f"truth/{name}")[name]}


def test_signals_and_escalations_follow_late_changes_into_parsed_syslog_and_alerts(make_simulator, tmp_path):
    server = make_simulator(STREAM_WORLD)
    pipeline = make_pipeline(server, tmp_path)
    assert pipeline.run_agents().success
    assert pipeline.run_incidents().success  # the collect job: every walked stream, one walk each
    requests = [e for e in server.request_log if e["path"] in {f"/v1/{s.name}" for s in WALK_STREAMS}]
    for stream in WALK_STREAMS:  # the lower bound: ceil(records walked / 500) requests per stream
        truth_name = "incidents" if stream.name == "incident_reports" else stream.name
        walked = len(admin(server, f"truth/{truth_name}")[stream.name])
        made = sum(e["path"] == f"/v1/{stream.name}" for e in requests)
        assert made == max(1, -(-walked // 500)), (stream.name, made, walked)
    assert lake_latest(pipeline, SIGNALS.msg_class) == truth_status(server, "signals")
    assert lake_latest(pipeline, ESCALATIONS.msg_class) == truth_status(server, "escalations")

    changes = admin(server, "tick", {"signal_status_changes": 25, "new_signals": 10, "escalations_opened": 3,
                                     "escalations_closed": 4})
    assert changes  # late status changes of old signals, escalations opened and resolved
    assert pipeline.run_incidents().success  # incremental: back to each day's watermark only
    assert lake_latest(pipeline, SIGNALS.msg_class) == truth_status(server, "signals")
    assert lake_latest(pipeline, ESCALATIONS.msg_class) == truth_status(server, "escalations")
    assert lake_alerts(pipeline) == truth_alerts(server)
    assert duplicate_alert_keys(pipeline.lake) == 0
    multi = pipeline.query("""SELECT huntress_id, count(*) FROM alerts WHERE msg_class = 'huntress_escalation'
                              GROUP BY 1 HAVING count(*) > 1""")
    assert multi, "an escalation affecting several organizations is one alert per organization"
    # incident alert ids are what they were before escalations joined the queue (tenant, id, org, account)
    from huntress_dagster.parsing.fields import alert_uid
    row = pipeline.query("SELECT alert_id, tenantid, huntress_id, organization_id, account_id FROM alerts "
                         "WHERE msg_class = 'huntress_incident_report' LIMIT 1")[0]
    assert row[0] == alert_uid(*row[1:])

    exclude = ("collected_at", "last_collected_at", "first_collected_at")
    tables = ("raw_signals", "raw_escalations", "parsed_syslog", "alerts")
    before = {table: table_snapshot(pipeline.lake_dir, table, exclude) for table in tables}
    assert pipeline.run_incidents(full_refresh=True).success  # re-running partitions is idempotent
    for table in tables:
        assert table_snapshot(pipeline.lake_dir, table, exclude) == before[table], table


def test_every_stream_declares_its_parsed_class_and_lake_table():
    assert len({s.raw_table for s in STREAMS}) == len({s.msg_class for s in STREAMS}) == len(STREAMS)
    assert {s.name for s in STREAMS if s.in_alerts} == {"incident_reports", "escalations"}


@pytest.mark.slow
def test_collect_run_killed_mid_walk_then_rerun_equals_a_clean_run(make_simulator, tmp_path):
    server = make_simulator({"incidents": 1_500, "signals": 2_000, "escalations": 60, "agents": 20, "days": 10})
    env = cli_env(server, tmp_path)
    args = ("job", "execute", "-m", "huntress_dagster.definitions", "-j", "huntress_collect_job", "--tags",
            '{"dagster/asset_partition_range_start": "%s", "dagster/asset_partition_range_end": "%s"}'
            % (start_day(), today()))
    kill_mid_walk(server, args, env, tmp_path, "/v1/signals")
    rerun = dagster_cli(*args, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = dagster_cli(*args, env=cli_env(server, clean_dir), cwd=clean_dir)
    assert clean.returncode == 0, clean.stderr[-3000:]
    for table in ("raw_incidents", "raw_signals", "raw_escalations", "alerts"):
        exclude = ("collected_at", "first_collected_at", "last_collected_at")
        assert table_snapshot(tmp_path / "lake", table, exclude) == table_snapshot(clean_dir / "lake", table, exclude)
