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
    return read_state_file(state_dir / STATE_FILE)


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


RECEIVER_STATE = "receiver.json"
# The demo's webhook signing secret: between the bundled simulator and the bundled receiver only.
DEMO_WEBHOOK_SECRET = "whsec_aHVudHJlc3MtZGVtby13ZWJob29rcyEh"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_demo_receiver(simulator_url: str, lake_dir: str, state_dir: Path | None = None,
                         startup_timeout: float = 60.0) -> str:
    """Demo mode's webhook path: a receiver (`huntress-dagster webhooks`) into the demo lake, and the simulator
    told to deliver to it, signed with the demo secret. Started once, like the simulator, and gone with it."""
    state_dir = Path(state_dir or default_state_dir())
    with FileLock(str(state_dir / "receiver.lock"), timeout=startup_timeout + 10):
        state = read_state_file(state_dir / RECEIVER_STATE)
        if not (state and _receiver_alive(state["url"])):
            port = _free_port()
            simulator_pid = (read_state(state_dir) or {}).get("pid")
            log_file = open(state_dir / "receiver.log", "ab")  # noqa: SIM115 (handed to the child)
            process = subprocess.Popen(
                [sys.executable, "-m", "huntress_dagster.cli", "webhooks", "--port", str(port), "--lake-dir",
                 lake_dir, *(["--exit-with", str(simulator_pid)] if simulator_pid else [])],
                env={**os.environ, "HUNTRESS_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET}, stdout=log_file,
                stderr=log_file, stdin=subprocess.DEVNULL, start_new_session=True)
            state = {"url": f"http://127.0.0.1:{port}/webhooks/huntress", "pid": process.pid}
            deadline = time.monotonic() + startup_timeout
            while not _receiver_alive(state["url"]):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"The demo webhook receiver did not start; see {state_dir / 'receiver.log'}")
                time.sleep(0.1)
            (state_dir / RECEIVER_STATE).write_text(json.dumps(state))
        admin = simulator_url.rsplit("/v1", 1)[0] + "/_sim/webhooks"
        request = urllib.request.Request(admin, data=json.dumps({"url": state["url"], "secret": DEMO_WEBHOOK_SECRET})
                                         .encode(), method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10):
            pass
        return state["url"]


def read_state_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _receiver_alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rsplit("/webhooks/", 1)[0] + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
