"""Demo mode hygiene: nothing starts at a definitions load outside `dagster dev` / `dg dev`; under one, the
simulator and the webhook receiver start and stop with it; the demo world is the same after a restart; DEMO
MODE is said once; every run against the simulator carries the huntress/mode=demo tag."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import warnings
from pathlib import Path

import dagster as dg
import pytest

from huntress_dagster import definitions
from huntress_dagster.automation import CONNECTION_TEST_JOB
from huntress_dagster.cli import main as cli_main
from huntress_dagster.demo import (
    demo_simulator_url,
    first_load_of_dev_session,
    process_alive,
    read_state,
    read_state_file,
    stop_demo_simulator,
)
from huntress_dagster.settings import Settings
from huntress_dagster.simulator import WorldConfig
from huntress_dagster.simulator.durable_world import TICK_LOG, open_durable_world

from .conftest import SMALL_WORLD

LOAD_DEFINITIONS = "from huntress_dagster.definitions import defs; defs()"


@pytest.fixture
def demo_env(tmp_path, monkeypatch) -> dict[str, str]:
    """Demo mode (no HUNTRESS_* credentials) on a DAGSTER_HOME of the test's own, not under a dev CLI."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    for name in [n for n in os.environ if n.startswith("HUNTRESS_")] + ["DAGSTER_IS_DEV_CLI"]:
        monkeypatch.delenv(name, raising=False)
    values = {"DAGSTER_HOME": str(home), "HUNTRESS_LAKE_DIR": str(tmp_path / "lake"),
              "HUNTRESS_RATE_LIMIT_STATE": str(tmp_path / "ratelimit.sqlite"), "HUNTRESS_RATE_LIMIT": "10000",
              "HUNTRESS_RATE_WINDOW_SECONDS": "1"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def state_dir_of(env: dict[str, str]) -> Path:
    return Path(env["DAGSTER_HOME"]) / ".huntress_demo"


def listening(url: str) -> bool:
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("dev_cli_variable", ["", "1"])  # "1": what `dg list defs` / `dg check defs` set
def test_loading_the_demo_definitions_outside_a_dev_cli_starts_nothing(demo_env, dev_cli_variable):
    check = textwrap.dedent(f"""
        import json, os
        {LOAD_DEFINITIONS}
        from pathlib import Path
        children = [e for e in os.listdir("/proc") if e.isdigit() and Path(f"/proc/{{e}}/stat").exists()
                    and Path(f"/proc/{{e}}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(os.getpid())]
        defs()  # a second load in the same process: DEMO MODE is not said again
        print(json.dumps({{"children": children}}))
    """)
    env = {**demo_env, "DAGSTER_IS_DEV_CLI": dev_cli_variable}
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1])["children"] == []  # no simulator, no receiver
    assert not state_dir_of(demo_env).exists()  # no state written either
    assert not listening(demo_simulator_url(state_dir_of(demo_env)))  # where the resource points: nothing
    assert out.stderr.count("DEMO MODE") == 1 and "BetaWarning" not in out.stderr


def test_test_connection_says_the_simulator_is_not_running(demo_env, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli_main(["test-connection"])
    assert "simulator is not running" in str(stopped.value.code) and "dagster dev" in str(stopped.value.code)
    assert not state_dir_of(demo_env).exists()


FAKE_DEV_CLI = f"""\
# Stands in for `dagster dev`: sets what it sets, loads the definitions in a child (its code server), waits.
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started with SIGINT ignored
os.environ["DAGSTER_IS_DEV_CLI"] = "1"
subprocess.run([sys.executable, "-c", {LOAD_DEFINITIONS!r}], check=True)
print("loaded", flush=True)
time.sleep(600)
"""


def start_fake_dev_cli(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    script = tmp_path / "bin" / "dagster"  # its command line reads `python .../dagster dev`
    script.parent.mkdir(exist_ok=True)
    script.write_text(FAKE_DEV_CLI)
    with open(tmp_path / "dev.err", "a") as stderr:
        process = subprocess.Popen([sys.executable, str(script), "dev"], env=env, stdout=subprocess.PIPE,
                                   stderr=stderr, text=True, start_new_session=True)
    assert process.stdout.readline().strip() == "loaded", (tmp_path / "dev.err").read_text()[-3000:]
    return process


def truth(url: str, name: str) -> list[dict]:
    with urllib.request.urlopen(url.replace("/v1", f"/_sim/truth/{name}"), timeout=10) as response:
        return json.load(response)


def admin_tick(url: str, **counts) -> dict:
    request = urllib.request.Request(url.replace("/v1", "/_sim/tick"), data=json.dumps(counts).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_under_a_dev_cli_the_simulator_starts_and_stops_with_it_and_comes_back_the_same(tmp_path, demo_env):
    env = {**demo_env, "HUNTRESS_DEMO_TICK_SECONDS": "0"}
    state_dir, started = state_dir_of(demo_env), []
    try:
        dev = start_fake_dev_cli(tmp_path, env)
        simulator, receiver = read_state(state_dir), read_state_file(state_dir / "receiver.json")
        started += [simulator["pid"], receiver["pid"]]
        assert simulator["exit_with"] == dev.pid and process_alive(receiver["pid"])
        assert (tmp_path / "dev.err").read_text().count("DEMO MODE") == 1  # the load said so
        for counts in ({"new_incidents": 4}, {"status_changes": 3, "new_signals": 2}, {}):
            admin_tick(simulator["url"], **counts)
        before = {name: truth(simulator["url"], name) for name in ("incidents", "signals", "escalations")}

        dev.kill()  # however the dev process ends (here: SIGKILL, no cleanup of its own)
        dev.wait()
        wait_for(lambda: not process_alive(simulator["pid"]), 15, "the simulator to exit with the dev process")
        wait_for(lambda: not process_alive(receiver["pid"]), 15, "the receiver to exit with the dev process")

        again = start_fake_dev_cli(tmp_path, env)  # `dagster dev` restarted: the same URL, the same world
        restarted, receiver = read_state(state_dir), read_state_file(state_dir / "receiver.json")
        started += [restarted["pid"], receiver["pid"]]
        assert restarted["pid"] != simulator["pid"] and restarted["url"] == simulator["url"]
        assert {name: truth(restarted["url"], name) for name in before} == before
        assert (tmp_path / "dev.err").read_text().count("DEMO MODE") == 2  # once per dev session
        os.killpg(again.pid, signal.SIGINT)  # Ctrl-C in its terminal: to its whole process group
        again.wait(timeout=30)
        wait_for(lambda: not process_alive(restarted["pid"]), 15, "the restarted simulator to exit")
        wait_for(lambda: not process_alive(receiver["pid"]), 15, "the restarted receiver to exit")
    finally:
        for pid in started:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def served(world) -> dict:
    """Every record as the API serves it (single-record answers, with bodies and detail-only fields)."""
    collections = {"incident_reports": world.incidents, "agents": world.agents, "organizations":
                   world.organizations, "signals": world.signals, "escalations": world.escalations,
                   "platform_actions": world.platform_actions, "identities": world.identities,
                   "external_ports": world.external_ports}
    return {name: {str(i): world.get_json(name, i) for i in sorted(records)}
            for name, records in collections.items()}


def test_the_durable_world_serves_the_same_history_after_a_restart(tmp_path):
    directory = tmp_path / "world"
    world = open_durable_world(directory, WorldConfig(**SMALL_WORLD))
    anchor = world.anchor
    # Ticks a few minutes ahead of the wall clock, so "now" is the latest tick's time in both worlds.
    world.tick(now=anchor + 60, new_incidents=5, new_agents=2)
    world.tick(2, 1, now=anchor + 120)  # positional counts are logged by name
    with pytest.raises(TypeError):
        world.tick(no_such_count=1)  # refused before it is logged
    created = world.tick(now=anchor + 180, new_signals=4, escalations_opened=2)
    after_three = served(world)
    world.close()

    time.sleep(1.1)  # a restart later: the anchor stays the first one, not this process's "now"
    restarted = open_durable_world(directory, WorldConfig(seed=99))  # the config given is ignored now
    assert restarted.anchor == anchor and restarted.tick_count == 3
    assert served(restarted) == after_three
    assert all(str(i) in after_three["incident_reports"] for i in created["new_incidents"])
    # and it goes on from there: the same next tick in a rebuilt world of another process (and hash seed)
    changes = restarted.tick(now=anchor + 240, new_incidents=3, status_changes=2)
    after_four = served(restarted)
    restarted.close()
    assert len((directory / TICK_LOG).read_text().splitlines()) == 4

    dump = tmp_path / "served.json"
    script = (f"import json; from pathlib import Path; from tests.test_demo_hygiene import served; "
              f"from huntress_dagster.simulator.durable_world import open_durable_world; "
              f"w = open_durable_world(Path({str(directory)!r})); "
              f"Path({str(dump)!r}).write_text(json.dumps(served(w)))")
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": "4242"},
                         cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(dump.read_text()) == json.loads(json.dumps(after_four))
    assert changes["new_incidents"]
    assert all(str(i) in after_four["incident_reports"] for i in changes["new_incidents"])


def test_a_log_line_cut_short_by_a_crash_is_dropped(tmp_path):
    directory = tmp_path / "world"
    world = open_durable_world(directory, WorldConfig(**SMALL_WORLD))
    world.tick(now=world.anchor + 60)
    expected = served(world)
    world.close()
    with open(directory / TICK_LOG, "a") as log:
        log.write('{"now": 17')  # the process died mid-write: that tick never applied
    assert served(open_durable_world(directory)) == expected


def test_demo_mode_is_said_once(demo_env, monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(definitions, "_said_demo_mode", False)
    settings = Settings.from_env()
    with (caplog.at_level(logging.WARNING, logger="huntress_dagster"),
          warnings.catch_warnings(record=True) as caught):
        warnings.simplefilter("always")
        definitions.build_definitions(settings)
        definitions.build_definitions(settings)
    assert sum("DEMO MODE" in r.getMessage() for r in caplog.records) == 1
    assert not [w for w in caught if "backfill_policy" in str(w.message)]
    # under a dev CLI: once per dev process, not in each run worker's load
    assert first_load_of_dev_session(tmp_path, 4242) and not first_load_of_dev_session(tmp_path, 4242)
    assert first_load_of_dev_session(tmp_path, 4243)


def test_a_demo_run_is_tagged_and_starts_the_simulator_on_first_use(demo_env, capsys):
    defs = definitions.build_definitions(Settings.from_env())
    assert not state_dir_of(demo_env).exists()  # loading started nothing
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = defs.resolve_job_def(CONNECTION_TEST_JOB).execute_in_process(instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id).tags[definitions.MODE_TAG] == "demo"
        state = read_state(state_dir_of(demo_env))  # started by the run (outside dev: detached, idle exit)
        assert state and process_alive(state["pid"])
        assert cli_main(["test-connection"]) == 0  # now there is one to test
        assert "OK [default]: account 'Acme MSSP'" in capsys.readouterr().out
    finally:
        stop_demo_simulator(state_dir_of(demo_env))
    assert not process_alive(state["pid"])
