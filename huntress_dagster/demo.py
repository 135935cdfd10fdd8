"""Demo mode: one shared simulator process for every process that loads the definitions.

Dagster loads definitions in the webserver, the daemon, the code server and every run worker. They
must all see ONE simulated world, or the sensor, schedules and runs disagree about what exists. The
first process to need it starts `huntress-dagster simulator` detached, on a free loopback port, and
the simulator writes its URL to a state file; every other process finds it there (under a file lock,
so two processes starting at once still get one simulator). The simulator exits by itself after an
idle period, so nothing lingers once Dagster stops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from filelock import FileLock

STATE_FILE = "simulator.json"


def default_state_dir() -> Path:
    base = os.environ.get("DAGSTER_HOME") or tempfile.gettempdir()
    return Path(base) / ".huntress_demo"


def _alive(url: str) -> bool:
    admin = url.rsplit("/v1", 1)[0] + "/_sim/info"
    try:
        with urllib.request.urlopen(admin, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def read_state(state_dir: Path) -> dict | None:
    path = state_dir / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ensure_demo_simulator(state_dir: Path | None = None, *, tick_seconds: float = 60.0,
                          idle_exit_seconds: float = 1800.0, startup_timeout: float = 60.0) -> str:
    """The URL of the shared demo simulator, starting it if no live one is recorded."""
    state_dir = Path(state_dir or default_state_dir())
    state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(state_dir / "simulator.lock"), timeout=startup_timeout + 10):
        state = read_state(state_dir)
        if state and _alive(state["url"]):
            return state["url"]
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        log_file = open(state_dir / "simulator.log", "ab")  # noqa: SIM115 (handed to the child)
        subprocess.Popen(
            [sys.executable, "-m", "huntress_dagster.simulator", "--port", "0",
             "--state-file", str(state_dir / STATE_FILE), "--tick-seconds", str(tick_seconds),
             "--idle-exit", str(idle_exit_seconds)],
            stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the process that started it; shared by all
        )
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            state = read_state(state_dir)
            if state and _alive(state["url"]):
                return state["url"]
            time.sleep(0.1)
        raise RuntimeError(f"The demo Huntress simulator did not start; see {state_dir / 'simulator.log'}")


def stop_demo_simulator(state_dir: Path | None = None) -> bool:
    """Stop the shared demo simulator if one is recorded (tests and `huntress-dagster demo`)."""
    state_dir = Path(state_dir or default_state_dir())
    state = read_state(state_dir)
    if not state:
        return False
    try:
        os.kill(int(state["pid"]), 15)
    except (OSError, KeyError, ValueError):
        pass
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return True
