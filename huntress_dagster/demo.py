"""Demo mode: one shared simulator process for every process that loads the definitions.

Dagster loads definitions in the code server and in every run worker (and in `dg list defs`, `dg check
defs`, `huntress-dagster run`...). All those that talk to the API must see ONE simulated world, so the
simulator is a process of its own (simulator/demo_process.py) that records its URL in a state file under
`$DAGSTER_HOME/.huntress_demo/`, where every other process finds it (started under a file lock, so two
processes starting at once still get one simulator). Its world is kept in the same directory, so a restart
serves the same history (simulator/durable_world.py).

Who starts it:
- under `dagster dev` / `dg dev` (`dev_cli_pid`), the first definitions load starts it (and the webhook
  receiver) tied to the dev process: it exits when that process exits, however it ends;
- anywhere else, loading the definitions starts nothing; the demo resource starts it detached on first use
  (`start=True`, e.g. `huntress-dagster run` in demo mode), and it exits after 30 idle minutes;
- `ensure_demo_simulator()` with no `start` (`huntress-dagster test-connection`) starts it only under a dev
  CLI, else says it is not running (`DemoSimulatorNotRunning`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from filelock import FileLock

from .simulator.demo_process import STATE_FILE, process_alive

SESSION_FILE = "dev_session.json"
# Ports derived from the state directory come from here: below Linux's ephemeral range (32768+), so they are
# rarely taken by a client socket, and different DAGSTER_HOMEs rarely share one.
PORT_BASE, PORT_SPAN = 20_000, 10_000


class DemoSimulatorNotRunning(SystemExit):
    """No live demo simulator, and this process may not start one. A SystemExit, so a command that needs the
    simulator (`huntress-dagster test-connection`) ends with this message instead of a traceback."""

    def __init__(self, state_dir: Path):
        super().__init__(
            "DEMO MODE (no HUNTRESS_API_KEY or HUNTRESS_CONNECTIONS_FILE): the bundled Huntress simulator is not "
            f"running (no live simulator recorded in {state_dir}). It runs while `dagster dev` or `dg dev` runs "
            "in demo mode: start one (same DAGSTER_HOME) and try again, or set HUNTRESS_API_KEY and "
            "HUNTRESS_API_SECRET to test a real account.")


def default_state_dir() -> Path:
    base = os.environ.get("DAGSTER_HOME") or tempfile.gettempdir()
    return Path(base) / ".huntress_demo"


def read_state(state_dir: Path) -> dict | None:
    return read_state_file(state_dir / STATE_FILE)


def read_state_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(url: str, pid: int | None = None) -> bool:
    """Whether the simulator at `url` answers (and is process `pid`, not another one on a reused port)."""
    admin = url.rsplit("/v1", 1)[0] + "/_sim/info"
    try:
        with urllib.request.urlopen(admin, timeout=2) as response:
            info = json.load(response)
    except (OSError, ValueError):
        return False
    return pid is None or info.get("pid") == pid


def _live_url(state_dir: Path) -> str | None:
    state = read_state(state_dir)
    return state["url"] if state and _alive(state["url"], state.get("pid")) else None


def _usual_port(state_dir: Path) -> int:
    """The port the simulator of `state_dir` asks for: its last one, else one derived from the directory."""
    state = read_state(state_dir)
    if state and state.get("url"):
        return int(state["url"].rsplit(":", 1)[1].split("/", 1)[0])
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_SPAN


def demo_simulator_url(state_dir: Path | None = None) -> str:
    """Where the demo simulator is (or will be), starting nothing: for definitions loaded outside `dagster dev`."""
    state_dir = Path(state_dir or default_state_dir())
    return _live_url(state_dir) or f"http://127.0.0.1:{_usual_port(state_dir)}/v1"


def dev_cli_pid() -> int | None:
    """The pid of the `dagster dev` / `dg dev` process this process runs under, else None.

    Both set DAGSTER_IS_DEV_CLI=1, which their code servers and run workers inherit. But `dg` sets it for
    every subcommand (`dg list defs`, `dg check defs` too), so the variable only says "maybe": the process
    tree decides, by looking for a `dagster dev` / `dg dev` command line among this process's ancestors (the
    code server is its child, a run worker the code server's). That process is also the one to exit with."""
    if not os.environ.get("DAGSTER_IS_DEV_CLI"):
        return None
    pid = os.getpid()
    for _ in range(16):  # dev CLI > code server proxy > code server > run worker: a few levels at most
        found = _parent_and_command(pid)
        if found is None:
            return None
        parent, command = found
        if _is_dev_command(command):
            return pid
        if parent <= 1:
            return None
        pid = parent
    return None


def _parent_and_command(pid: int) -> tuple[int, list[str]] | None:
    try:  # Linux
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return int(stat.rsplit(")", 1)[1].split()[1]), [part.decode(errors="replace") for part in command if part]
    except OSError:
        pass
    try:  # macOS and other Unixes (arguments split on spaces: enough to recognize the command)
        out = subprocess.run(["ps", "-o", "ppid=", "-o", "command=", "-p", str(pid)], check=False,
                             capture_output=True, text=True, timeout=5).stdout.split()
        return (int(out[0]), out[1:]) if out else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _is_dev_command(command: list[str]) -> bool:
    """`dagster dev ...`, `dg dev ...`, `python -m dagster dev ...` (any options before `dev`)."""
    for index, part in enumerate(command):
        launched = os.path.basename(part) in ("dagster", "dg") or (
            index > 0 and command[index - 1] == "-m" and part in ("dagster", "dagster_dg_cli"))
        if launched:
            words = [word for word in command[index + 1:] if not word.startswith("-")]
            return words[:1] == ["dev"]
    return False


def ensure_demo_simulator(state_dir: Path | None = None, *, tick_seconds: float = 60.0,
                          idle_exit_seconds: float = 1800.0, startup_timeout: float = 60.0,
                          start: bool | None = None) -> str:
    """The URL of the shared demo simulator. If none is live, one is started when `start` is true, or when
    `start` is None and this process runs under `dagster dev` / `dg dev`; otherwise DemoSimulatorNotRunning.
    Under a dev CLI it exits with the dev process; elsewhere after `idle_exit_seconds` without a request."""
    state_dir = Path(state_dir or default_state_dir())
    if url := _live_url(state_dir):
        return url
    dev_pid = dev_cli_pid()
    if not (start if start is not None else dev_pid is not None):
        raise DemoSimulatorNotRunning(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(state_dir / "simulator.lock"), timeout=startup_timeout + 10):
        if url := _live_url(state_dir):
            return url
        port = _usual_port(state_dir)
        lifetime = (["--exit-with", str(dev_pid)] if dev_pid else ["--idle-exit", str(idle_exit_seconds)])
        with open(state_dir / "simulator.log", "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "huntress_dagster.simulator.demo_process", "--state-dir", str(state_dir),
                 "--port", str(port), "--tick-seconds", str(tick_seconds), *lifetime],
                stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL,
                # Under a dev CLI: in its process group, so Ctrl-C in its terminal stops the simulator at once
                # (--exit-with covers every other end). Elsewhere: detached, shared by later processes.
                start_new_session=dev_pid is None)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and process.poll() is None:
            if url := _live_url(state_dir):
                return url
            time.sleep(0.1)
        raise RuntimeError(f"The demo Huntress simulator did not start; see {state_dir / 'simulator.log'}")


def first_load_of_dev_session(state_dir: Path, dev_pid: int) -> bool:
    """True once per `dagster dev` process (what says DEMO MODE once, not in every run worker's load)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(state_dir / "simulator.lock"), timeout=70):
        if (read_state_file(state_dir / SESSION_FILE) or {}).get("dev_pid") == dev_pid:
            return False
        (state_dir / SESSION_FILE).write_text(json.dumps({"dev_pid": dev_pid}))
        return True


def stop_demo_simulator(state_dir: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop the shared demo simulator if one is live (tests); True if one was. Its record stays (the port)."""
    state_dir = Path(state_dir or default_state_dir())
    state = read_state(state_dir)
    if not (state and _alive(state["url"], state.get("pid"))):  # never signal a pid that is not the simulator
        return False
    os.kill(int(state["pid"]), 15)
    deadline = time.monotonic() + timeout
    while process_alive(int(state["pid"])) and time.monotonic() < deadline:
        time.sleep(0.1)
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
                         startup_timeout: float = 60.0, *, exit_with: int | None = None) -> str:
    """Demo mode's webhook path: a receiver (`huntress-dagster webhooks`) into the demo lake, and the simulator
    told to deliver to it, signed with the demo secret. Started once, like the simulator; it exits with
    process `exit_with` (the dev CLI, which its shell reaps: a watched process that exits but is never reaped
    by its parent still looks alive to the receiver), else with the simulator."""
    state_dir = Path(state_dir or default_state_dir())
    with FileLock(str(state_dir / "receiver.lock"), timeout=startup_timeout + 10):
        state = read_state_file(state_dir / RECEIVER_STATE)
        if not (state and _receiver_alive(state["url"])):
            port = _free_port()
            watched = exit_with or (read_state(state_dir) or {}).get("pid")
            with open(state_dir / "receiver.log", "ab") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "huntress_dagster.cli", "webhooks", "--port", str(port), "--lake-dir",
                     lake_dir, *(["--exit-with", str(watched)] if watched else [])],
                    env={**os.environ, "HUNTRESS_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET}, stdout=log_file,
                    stderr=log_file, stdin=subprocess.DEVNULL,
                    start_new_session=exit_with is None)  # with a dev CLI: in its group, as the simulator
            state = {"url": f"http://127.0.0.1:{port}/webhooks/huntress", "pid": process.pid}
            deadline = time.monotonic() + startup_timeout
            while not _receiver_alive(state["url"]):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"The demo webhook receiver did not start; see {state_dir / 'receiver.log'}")
                time.sleep(0.1)
            (state_dir / RECEIVER_STATE).write_text(json.dumps(state))
        admin = simulator_url.rsplit("/v1", 1)[0] + "/_sim/webhooks"
        request = urllib.request.Request(admin, data=json.dumps({"url": state["url"], "secret": DEMO_WEBHOOK_SECRET})
                                         .encode(), method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10):
            pass
        return state["url"]


def _receiver_alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rsplit("/webhooks/", 1)[0] + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


__all__ = ["DEMO_WEBHOOK_SECRET", "DemoSimulatorNotRunning", "default_state_dir", "demo_simulator_url",
           "dev_cli_pid", "ensure_demo_receiver", "ensure_demo_simulator", "first_load_of_dev_session",
           "process_alive", "read_state", "read_state_file", "stop_demo_simulator"]
