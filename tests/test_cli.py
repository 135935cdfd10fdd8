"""The `huntress-dagster` command line: test-connection and the headless demo."""

from __future__ import annotations

import subprocess
import sys

from huntress_dagster.cli import main
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET, FORBIDDEN_API_KEY


def test_test_connection_reports_ok_and_guidance(simulator, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HUNTRESS_HOST_URL", simulator.url)
    monkeypatch.setenv("HUNTRESS_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("HUNTRESS_API_SECRET", DEMO_API_SECRET)
    monkeypatch.setenv("HUNTRESS_RATE_LIMIT_STATE", str(tmp_path / "rl.sqlite"))
    assert main(["test-connection"]) == 0
    assert "OK: account 'Acme MSSP'" in capsys.readouterr().out
    monkeypatch.setenv("HUNTRESS_API_KEY", FORBIDDEN_API_KEY)
    assert main(["test-connection"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 403" in err and "permissions" in err and DEMO_API_SECRET not in err


def test_headless_demo_materializes_everything_and_summarizes(tmp_path):
    out = subprocess.run([sys.executable, "-m", "huntress_dagster.cli", "demo", "--lake-dir", str(tmp_path / "lake"),
                          "--agents", "40", "--incidents", "150", "--days", "5"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "alerts" in out.stdout and "assets" in out.stdout and "parsed_syslog" in out.stdout
    summary = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()
               if line.startswith("  ") and line.split()[-1] == "rows"}
    assert summary["alerts"] == "150" and summary["assets"] == "40"
    assert (tmp_path / "lake" / "huntress.duckdb").exists()
