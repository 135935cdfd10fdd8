"""Connector health over real HTTP: a revoked key, a denied endpoint, a run killed with SIGKILL, and what the
connector_health table, the connector_healthy checks and `huntress-dagster status` say about each."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import dagster as dg
import pyarrow.parquet as pq
import pytest

from huntress_dagster.automation import RUN_HEALTH_SENSOR
from huntress_dagster.cli import main
from huntress_dagster.definitions import build_definitions
from huntress_dagster.health import current_status
from huntress_dagster.lake import Lake
from huntress_dagster.settings import Settings
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET
from huntress_dagster.streams import INCIDENT_REPORTS

from .conftest import admin
from .dagster_helpers import cli_env, kill_mid_walk, make_pipeline, start_day, today, truth_records

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")


def status_of(pipeline, stream: str) -> dict:
    [row] = [r for r in current_status(pipeline.lake) if r["stream"] == stream]
    return row


def check_result(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations()
                if e.check_name == "connector_healthy" and e.asset_key.to_user_string() == asset)


def test_a_revoked_key_shows_failing_with_its_guidance_and_a_restored_one_closes_the_lag(simulator, tmp_path,
                                                                                        capsys):
    pipeline = make_pipeline(simulator, tmp_path)
    first = pipeline.run_incidents()
    assert first.success and check_result(first, "raw_incidents").passed
    assert status_of(pipeline, "incident_reports")["status"] == "ok"
    metadata = first.asset_materializations_for_node("raw_incidents")[-1].metadata
    assert {"lag_seconds", "records_collected", "api_429_responses", "api_requests"} <= set(metadata)

    admin(simulator, "keys/revoke", {"api_key": DEMO_API_KEY})
    admin(simulator, "tick", {"new_incidents": 3})
    failed = pipeline.run_incidents(today() - timedelta(days=1), today(), raise_on_error=False)
    assert not failed.success
    row = status_of(pipeline, "incident_reports")
    assert (row["status"], row["http_status"], row["error_class"]) == ("failing", 401, "HuntressAuthenticationError")
    assert "Did you enter your credentials correctly?" in row["guidance"]
    check = check_result(failed, "raw_incidents")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "HTTP 401" in check.description and "credentials" in check.description
    assert main(["status", "--lake-dir", str(pipeline.lake_dir)]) == 1  # monitoring scripts see it
    assert "failing" in capsys.readouterr().out

    admin(simulator, "keys/restore", {"api_key": DEMO_API_KEY})
    again = pipeline.run_incidents(today() - timedelta(days=1), today())
    assert again.success and check_result(again, "raw_incidents").passed
    row = status_of(pipeline, "incident_reports")
    assert row["status"] == "ok" and row["lag_seconds"] < 120  # the lag closed
    stored = {r[0] for r in pipeline.query("SELECT id FROM raw_incidents")}
    assert stored == {r["id"] for r in truth_records(simulator, INCIDENT_REPORTS)}  # nothing missing
    assert main(["status", "--lake-dir", str(pipeline.lake_dir)]) == 0
    # the history: when it broke, and when it was back
    history = pipeline.query("SELECT status FROM connector_health WHERE stream = 'incident_reports' "
                             "ORDER BY evaluated_at")
    assert [s for (s,) in history] == ["ok", "failing", "ok"]


def test_a_denied_endpoint_fails_its_stream_only_and_the_connection_test_names_it(simulator, tmp_path, capsys,
                                                                                   monkeypatch):
    pipeline = make_pipeline(simulator, tmp_path)
    admin(simulator, "deny", {"paths": ["/v1/signals"]})
    result = pipeline.run_incidents(raise_on_error=False)
    assert not result.success
    signals, incidents = status_of(pipeline, "signals"), status_of(pipeline, "incident_reports")
    assert (signals["status"], signals["http_status"]) == ("failing", 403) and "permission" in signals["guidance"]
    assert incidents["status"] == "ok"
    assert not check_result(result, "raw_signals").passed and check_result(result, "raw_incidents").passed

    monkeypatch.setenv("HUNTRESS_HOST_URL", simulator.url)
    monkeypatch.setenv("HUNTRESS_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("HUNTRESS_API_SECRET", DEMO_API_SECRET)
    monkeypatch.setenv("HUNTRESS_RATE_LIMIT_STATE", str(tmp_path / "rl.sqlite"))
    assert main(["test-connection"]) == 2
    out = capsys.readouterr().out
    assert "incident_reports   readable" in out and "signals            NOT readable: HuntressPermissionError HTTP 403" in out


def test_days_read_again_after_an_outage_are_in_the_health_history(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    first_walked_today = today()
    assert pipeline.run_incidents().success
    partitions = pipeline.lake.walked(INCIDENT_REPORTS, pipeline.account)
    day = today() - timedelta(days=3)
    path = partitions.day_path(day)  # as if collection stopped at noon that day
    table = pq.read_table(path)
    noon = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=12)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata,
                                                  b"complete_as_of": noon.isoformat().encode()}), path)
    assert pipeline.run_incidents(day, today()).success
    [(days,)] = pipeline.query("SELECT days_recollected FROM connector_status WHERE stream = 'incident_reports'")
    # (a test running across midnight UTC also reads again the day that was today, partial, in the first walk)
    also_partial = [first_walked_today + timedelta(days=n) for n in range((today() - first_walked_today).days)]
    assert days == sorted(d.isoformat() for d in [day, *also_partial])


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_recorded_as_failed(make_simulator, tmp_path, monkeypatch):
    server = make_simulator({"incidents": 2_000, "agents": 20, "days": 10})
    env = cli_env(server, tmp_path)
    args = ("asset", "materialize", "-m", "huntress_dagster.definitions", "--select", "raw_incidents",
            "--partition-range", f"{start_day()}...{today()}")
    kill_mid_walk(server, args, env, tmp_path, "/v1/incident_reports", slow_seconds=0.4)
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    [killed] = instance.get_runs()
    assert killed.status == dg.DagsterRunStatus.STARTED  # Dagster alone would show it running forever
    for name in ("HUNTRESS_API_KEY", "HUNTRESS_API_SECRET"):  # the sensor's resources read them (EnvVar)
        monkeypatch.setenv(name, env[name])
    settings = dataclasses.replace(Settings.from_env(env), lake_dir=env["HUNTRESS_LAKE_DIR"])
    defs = build_definitions(settings)
    sensor = defs.get_sensor_def(RUN_HEALTH_SENSOR)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        sensor(context)
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    [row] = [r for r in current_status(Lake(env["HUNTRESS_LAKE_DIR"])) if r["stream"] == "incident_reports"]
    assert (row["status"], row["error_class"], row["source"], row["run_id"]) == (
        "failing", "RunWorkerDied", "run_failure", killed.run_id)
    assert "killed" in row["error"] and "next scheduled run" in row["guidance"]


def test_an_open_platform_action_fails_its_check_with_what_to_do(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    result = pipeline.run_incidents()
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_open_platform_action"]
    unresolved = [a for a in admin(simulator, "truth/platform_actions")["platform_actions"] if a["status"] != "resolved"]
    assert unresolved and not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert f"{len(unresolved)} platform action(s) open" in check.description
    first = unresolved[0]
    kind = " / ".join(filter(None, [first["type"], first["subtype"]]))
    assert f"{kind} ({first['severity']}, {first['status']})" in check.description or len(unresolved) > 10
