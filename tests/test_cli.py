"""The `huntress-dagster` command line: test-connection and the headless demo."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from huntress_dagster.cli import main
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET, FORBIDDEN_API_KEY


def test_test_connection_reports_ok_and_guidance(simulator, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HUNTRESS_HOST_URL", simulator.url)
    monkeypatch.setenv("HUNTRESS_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("HUNTRESS_API_SECRET", DEMO_API_SECRET)
    monkeypatch.setenv("HUNTRESS_RATE_LIMIT_STATE", str(tmp_path / "rl.sqlite"))
    assert main(["test-connection"]) == 0
    assert "OK [default]: account 'Acme MSSP'" in capsys.readouterr().out
    monkeypatch.setenv("HUNTRESS_API_KEY", FORBIDDEN_API_KEY)
    assert main(["test-connection"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 403" in err and "permissions" in err and DEMO_API_SECRET not in err


def test_headless_demo_materializes_everything_and_summarizes(tmp_path):
    out = subprocess.run([sys.executable, "-m", "huntress_dagster.cli", "demo", "--lake-dir", str(tmp_path / "lake"),
                          "--agents", "40", "--incidents", "150", "--days", "5"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "alerts" in out.stdout and "agent_inventory" in out.stdout and "parsed_syslog" in out.stdout
    summary = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()
               if line.startswith("  ") and line.split()[-1] == "rows"}
    assert summary["agent_inventory"] == "40"
    by_class = next(line for line in out.stdout.splitlines() if "alerts by class/status" in line)
    incident_alerts = sum(int(part.split("=")[1]) for part in by_class.split(": ", 1)[1].split(", ")
                          if part.startswith("incident_report/"))
    assert incident_alerts == 150 and "escalation/" in by_class
    assert int(summary["alerts"]) > 150  # escalations join the queue, one alert per organization
    assert (tmp_path / "lake" / "huntress.duckdb").exists()

    # every SQL example of the README, and the one the summary suggests, runs on this lake
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    examples = [shlex.split(line)[1:] for line in readme.splitlines() if line.startswith(".venv/bin/huntress-dagster sql")]
    suggested = next(line for line in out.stdout.splitlines() if line.startswith("Query it: "))
    examples.append(shlex.split(suggested.removeprefix("Query it: "))[1:])
    assert len(examples) >= 6
    for example in examples:
        ran = subprocess.run([sys.executable, "-m", "huntress_dagster.cli", *example], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
        assert ran.returncode == 0 and "│" in ran.stdout, (example, ran.stderr[-2000:])

    # the catalog file's views are relative to the lake: moved elsewhere, it answers the README's ATTACH snippet
    import duckdb

    moved = tmp_path / "elsewhere" / "huntress"
    moved.parent.mkdir()
    (tmp_path / "lake").rename(moved)
    snippet = readme.split("-- duckdb (2.0) from anywhere:\n", 1)[1].split("```", 1)[0]
    with duckdb.connect() as con:
        for statement in filter(str.strip, snippet.replace("/data/huntress", str(moved)).split(";")):
            result = con.execute(statement).fetchall()
    assert result[0][0] == int(summary["alerts"])


def test_run_command_materializes_every_stream_on_the_instance_and_fails_loudly(simulator, tmp_path):
    import dagster as dg

    from .dagster_helpers import cli_env, start_day, today

    env = cli_env(simulator, tmp_path)
    command = [sys.executable, "-m", "huntress_dagster.cli", "run", "--start", str(start_day()), "--end", str(today())]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "SUCCESS" in out.stdout
    for table in ("raw_incidents", "raw_signals", "raw_escalations", "raw_platform_actions", "raw_agents",
                  "parsed_syslog", "alerts", "agent_inventory"):
        assert f"materialized {table}" in out.stdout or f"  {table} " in out.stdout, table
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:  # the run shows in the UI
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].job_name == "huntress_all_job"

    bad = subprocess.run(command[:4] + ["--start", "garbage"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "--start 'garbage' is not a date" in bad.stderr
    env["HUNTRESS_API_SECRET"] = "revoked"
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert failed.returncode == 1 and "FAILURE" in failed.stdout and "HTTP 401" in failed.stdout
    assert "revoked" not in failed.stdout + failed.stderr


def test_output_cut_short_by_its_reader_ends_quietly_as_a_piped_tool_does(tmp_path):
    """`huntress-dagster sql ... | head`: the reader closes the pipe early; no traceback, exit 141 (SIGPIPE)."""
    (tmp_path / "lake").mkdir()
    command = [sys.executable, "-m", "huntress_dagster.cli", "sql", "--lake-dir", str(tmp_path / "lake"),
               "--max-rows", "300000", "select range from range(300000)"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path) as proc:
        assert proc.stdout.readline()  # the first line, then the reader goes away
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
