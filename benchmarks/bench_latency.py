"""5. Latency: from an incident appearing on the simulator to its row in `alerts`, through the sensor path.

Each trial: POST /_sim/tick (one new incident) -> evaluate the project's sensor with
`dg.build_sensor_context` (one request per alert stream: incident reports and escalations) -> execute the run
it requests in process (the collect job, with the run request's asset selection: raw_incidents ->
parsed_syslog -> alerts) -> the incident is a row of `alerts`. That is the processing
latency. The Dagster daemon evaluates the sensor every `HUNTRESS_SENSOR_INTERVAL_SECONDS` (default 30 s),
so an incident first waits up to one interval for the next evaluation: the worst case adds the whole
interval, and the modelled distribution adds a uniform phase in [0, interval) to each trial.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.common import (
    REPO_ROOT,
    SimProcess,
    bench_env,
    header,
    make_pipeline,
    median,
    percentile,
    scratch,
    table,
    verdict,
)
from huntress_dagster.automation import COLLECT_JOB
from huntress_dagster.parsing import INCIDENT_CLASS
from huntress_dagster.settings import Settings

HISTORY_DAYS = 30
# One trial's change: one new incident and nothing else (the tick's defaults also move signals,
# escalations, platform actions, identities and ports), so each trial times one incident's way to alerts.
ONE_INCIDENT = dict(new_incidents=1, status_changes=0, agent_changes=0, new_signals=0,
                    signal_status_changes=0, escalations_opened=0, escalations_closed=0,
                    platform_actions_opened=0, platform_actions_closed=0, identity_changes=0, port_scans=0)
SENSOR_INTERVAL_S = float(Settings.from_env({}).sensor_interval_seconds)  # the default
DAEMON_TIMEOUT_S = 300  # one daemon trial: a sensor interval, a run launch and the run, with a wide margin


def _alert_present(lake_dir: Path, incident_id: int) -> bool:
    parts = sorted(str(path) for path in (lake_dir / "alerts").glob("part-*.parquet"))
    if not parts:
        return False
    with duckdb.connect() as con:  # runs replace each file by rename: every read sees a whole file
        return con.execute("SELECT count(*) FROM read_parquet(?) WHERE huntress_id = ? AND msg_class = ?",
                           [parts, incident_id, INCIDENT_CLASS]).fetchall()[0][0] == 1


def daemon_trials(sim: SimProcess, pipeline: Any, workdir: Path, trials: int) -> list[float]:
    """The real path: `dagster-daemon run` with the project's dagster.yaml evaluates the sensor at its
    default interval and launches each run in its own process, as a deployment does. Each trial starts at
    a random phase of the sensor's ticks; the clock stops when the incident is a row of alerts."""
    home = workdir / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET

    env = bench_env(
        DAGSTER_HOME=str(home),
        HUNTRESS_API_KEY=DEMO_API_KEY,
        HUNTRESS_API_SECRET=DEMO_API_SECRET,
        HUNTRESS_HOST_URL=sim.url,
        HUNTRESS_LAKE_DIR=str(pipeline.lake_dir),
        HUNTRESS_START_DATE=pipeline.start.isoformat(),
        HUNTRESS_RATE_LIMIT_STATE=str(workdir / "ratelimit.sqlite"),
    )
    bin_dir = Path(sys.executable).parent
    target = ["-m", "huntress_dagster.definitions"]
    subprocess.run([str(bin_dir / "dagster"), "sensor", "start", "huntress_alert_sensor", *target],
                   env=env, cwd=workdir, check=True, capture_output=True)
    log = (workdir / "daemon.log").open("w")
    daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", *target], env=env, cwd=workdir,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    samples = []
    try:
        for trial in range(trials + 1):  # the first one warms up (daemon start, first sensor cursor)
            if trial:
                time.sleep(random.uniform(0, SENSOR_INTERVAL_S))
            started = time.monotonic()
            [incident_id] = sim.tick(**ONE_INCIDENT)["new_incidents"]
            while not _alert_present(pipeline.lake_dir, int(incident_id)):
                if time.monotonic() - started > DAEMON_TIMEOUT_S or daemon.poll() is not None:
                    raise AssertionError(f"incident {incident_id} not in alerts after {DAEMON_TIMEOUT_S} s "
                                         f"(daemon log: {workdir / 'daemon.log'})")
                time.sleep(0.25)
            if trial:
                samples.append(time.monotonic() - started)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
    return samples


def run(quick: bool) -> dict[str, Any]:
    import dagster as dg

    trials = 10 if quick else 20
    world = dict(
        seed=13,
        organizations=20,
        agents=500 if quick else 5_000,
        incidents=2_000 if quick else 20_000,
        days=HISTORY_DAYS,
        large_body_share=0.0005,
    )
    header(
        f"5. Latency: new incident on the simulator -> row in alerts via the sensor ({trials} trials, "
        f"lake of {world['incidents']:,} incidents)"
    )
    with scratch("latency") as workdir, SimProcess(world, log_path=workdir / "sim.log") as sim:
        pipeline = make_pipeline(sim.url, workdir, history_days=HISTORY_DAYS)
        pipeline.run_inventory()
        pipeline.run_collect()
        sensor = pipeline.defs.get_sensor_def("huntress_alert_sensor")
        resources = pipeline.defs.resources
        with dg.build_sensor_context(instance=pipeline.instance, resources=resources) as context:
            cursor = sensor(context).cursor
        samples = []
        for _ in range(trials):
            started = time.monotonic()
            [incident_id] = sim.tick(**ONE_INCIDENT)["new_incidents"]
            with dg.build_sensor_context(
                instance=pipeline.instance, resources=resources, cursor=cursor
            ) as context:
                result = sensor(context)
            sensed = time.monotonic()
            cursor = result.cursor or cursor
            for request in result.run_requests or []:
                pipeline.execute(COLLECT_JOB, tags=request.tags, asset_selection=request.asset_selection)
            ran = time.monotonic()
            found = pipeline.query(
                f"SELECT count(*) FROM alerts WHERE huntress_id = {int(incident_id)} "
                f"AND msg_class = '{INCIDENT_CLASS}'"
            )[0][0]
            done = time.monotonic()
            if found != 1:
                raise AssertionError(f"incident {incident_id} is not exactly once in alerts ({found})")
            samples.append({"sensor_s": sensed - started, "run_s": ran - sensed, "total_s": done - started})
        daemon = [] if quick else daemon_trials(sim, pipeline, workdir, trials)
    processing = [s["total_s"] for s in samples]
    # Arrival uniformly within the sensor interval: each trial combined with 100 phases.
    modelled = [p + SENSOR_INTERVAL_S * k / 100 for p in processing for k in range(100)]
    rows = [
        {
            "latency": "processing (tick -> sensor -> run -> alerts)",
            "median_s": median(processing),
            "p95_s": percentile(processing, 95),
            "max_s": max(processing),
        },
        {
            "latency": "  of which the sensor evaluation",
            "median_s": median(s["sensor_s"] for s in samples),
            "p95_s": percentile([s["sensor_s"] for s in samples], 95),
            "max_s": max(s["sensor_s"] for s in samples),
        },
        {
            "latency": "  of which the collect job run (the selected streams)",
            "median_s": median(s["run_s"] for s in samples),
            "p95_s": percentile([s["run_s"] for s in samples], 95),
            "max_s": max(s["run_s"] for s in samples),
        },
        {
            "latency": f"with a uniform wait for the {SENSOR_INTERVAL_S:g} s sensor tick",
            "median_s": median(modelled),
            "p95_s": percentile(modelled, 95),
            "max_s": max(modelled),
        },
        {
            "latency": "worst case (arrives just after a tick)",
            "median_s": median(processing) + SENSOR_INTERVAL_S,
            "p95_s": percentile(processing, 95) + SENSOR_INTERVAL_S,
            "max_s": max(processing) + SENSOR_INTERVAL_S,
        },
    ]
    if daemon:
        rows.append({
            "latency": "measured: dagster-daemon, sensor at its interval, run in its own process",
            "median_s": median(daemon),
            "p95_s": percentile(daemon, 95),
            "max_s": max(daemon),
        })
    table(rows)
    if not daemon:
        print("  (--quick: no daemon trials; the modelled rows add the interval to in-process runs, without the "
              "start of a run worker process)")
    targets = [verdict("p95 processing latency", rows[0]["p95_s"], 60, False, " s"),
               verdict("p95 latency incl. the wait for the sensor tick" + (" (daemon)" if daemon else " (modelled)"),
                       rows[-1 if daemon else 3]["p95_s"], 60, False, " s")]
    return {"trials": samples, "daemon_trials": daemon, "rows": rows, "targets": targets}
