"""The demo mode simulator process: `python -m huntress_dagster.simulator.demo_process --state-dir DIR`.

demo.py starts it (never by hand). It serves the durable world kept in DIR (durable_world.py: the same
history after every restart), on the port asked for when that port is free (the URL, and so the lake's
watermark scope, stays the same across restarts), and records `{url, pid}` in DIR/simulator.json for the
other processes. It ends on SIGTERM/SIGINT, when the process given by --exit-with is gone (`dagster dev`:
the simulator lives exactly as long as it), or after --idle-exit seconds without an API request (when
started outside `dagster dev`). One process per world: a second one for the same DIR exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from filelock import FileLock, Timeout

from ..processes import process_alive
from .durable_world import open_durable_world
from .server import SimulatorConfig, SimulatorServer

STATE_FILE = "simulator.json"
WORLD_DIR = "world"


def serve(state_dir: Path, port: int, tick_seconds: float, idle_exit: float, exit_with: int | None) -> int:
    lock = FileLock(str(state_dir / "world.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"another simulator already serves the world in {state_dir}: exiting", flush=True)
        return 3
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    world = open_durable_world(state_dir / WORLD_DIR)
    config = SimulatorConfig(tick_seconds=tick_seconds)
    try:
        server = SimulatorServer(world, config, port=port)
    except OSError:  # the usual port is taken: any free one (the URL changes, which is safe)
        server = SimulatorServer(world, config, port=0)
    server.start()
    state, tmp = state_dir / STATE_FILE, state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps({"url": server.url, "pid": os.getpid(), "exit_with": exit_with}))
    os.replace(tmp, state)
    print(f"Huntress API simulator (demo mode) listening on {server.url}; world in {state_dir / WORLD_DIR} "
          f"(anchor {world.anchor}, {world.tick_count} ticks replayed)", flush=True)
    try:
        while not stop.wait(1.0):
            if exit_with and not process_alive(exit_with):
                print(f"process {exit_with} has exited: exiting", flush=True)
                break
            if idle_exit and time.monotonic() - server.last_request_at > idle_exit:
                print(f"no request for {idle_exit:.0f}s: exiting", flush=True)
                break
    finally:
        server.stop()
        world.close()
        lock.release()  # simulator.json stays: its URL is the port to ask for next time (its pid is gone)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m huntress_dagster.simulator.demo_process",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="the port to use when free (else any)")
    parser.add_argument("--tick-seconds", type=float, default=60.0)
    parser.add_argument("--idle-exit", type=float, default=0.0, help="exit after N seconds without API requests")
    parser.add_argument("--exit-with", type=int, help="exit when this process has exited")
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    return serve(args.state_dir, args.port, args.tick_seconds, args.idle_exit, args.exit_with)


if __name__ == "__main__":
    sys.exit(main())
