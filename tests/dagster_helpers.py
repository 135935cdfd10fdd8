"""Helpers for tests that run the pipeline: real Dagster runs on a real simulator and a real lake."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb

from huntress_dagster import catalog
from huntress_dagster.alerts import OCSF_TABLE as ALERTS_OCSF_TABLE
from huntress_dagster.automation import COLLECT_JOB, INVENTORY_JOB, range_tags
from huntress_dagster.definitions import build_definitions
from huntress_dagster.inventory import INVENTORIES, OCSF_TABLES
from huntress_dagster.lake import Lake
from huntress_dagster.resources import HuntressLakeResource, HuntressResource
from huntress_dagster.settings import Settings
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET, SimulatorServer
from huntress_dagster.streams import STREAMS, Stream

HISTORY_DAYS = 12  # the test worlds span 10 days; partitions start a little earlier


def today() -> date:
    return datetime.now(timezone.utc).date()


def start_day() -> date:
    return today() - timedelta(days=HISTORY_DAYS)


@dataclasses.dataclass
class Pipeline:
    """Definitions wired to one simulator and one lake, plus shortcuts to run them."""

    server: SimulatorServer
    lake_dir: Path
    state_path: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_dir)

    @property
    def account(self) -> str:
        """The simulated account's id: its raw and parsed files live under account=<id>."""
        return str(self.server.world.config.account_id)

    def run_incidents(self, first: date | None = None, last: date | None = None,
                      full_refresh: bool = False, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        tags = range_tags(first or start_day(), last or today())
        config = {"ops": {"raw_incidents": {"config": {"full_refresh": full_refresh}}}}
        return self.defs.resolve_job_def(COLLECT_JOB).execute_in_process(
            tags=tags, instance=self.instance, run_config=config, raise_on_error=raise_on_error)

    def run_agents(self) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(INVENTORY_JOB).execute_in_process(partition_key=today().isoformat(),
                                                                        instance=self.instance)

    def query(self, sql: str) -> list[tuple]:
        with self.lake.connect() as con:
            catalog.register_views(self.lake, con)
            return con.execute(sql).fetchall()

# Every asset of the project: a raw table per stream, parsed_syslog, the inventories, alerts, and the OCSF forms.
ALL_ASSET_KEYS = {*(s.raw_table for s in STREAMS), "parsed_syslog", "alerts", ALERTS_OCSF_TABLE,
                  *(i.table for i in INVENTORIES), *OCSF_TABLES.values()}


def make_pipeline(server: SimulatorServer, tmp_path: Path, lake_dir: str | Path | None = None,
                  postgres_url: str | None = None, **huntress_overrides) -> Pipeline:
    """`lake_dir`: default tmp_path/lake; s3://bucket/prefix for a lake on the object store. `postgres_url`:
    the rate limiter's log and the partition locks in PostgreSQL (a production deployment's coordination)."""
    lake_dir = lake_dir or tmp_path / "lake"
    state_path = postgres_url or tmp_path / "ratelimit.sqlite"
    settings = dataclasses.replace(Settings.from_env({}), lake_dir=str(lake_dir), start_date=start_day().isoformat(),
                                   rate_limit_state=str(state_path))
    config = dict(host_url=server.url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                  rate_limit_requests=10_000, rate_limit_window_seconds=1.0,
                  rate_limit_state_path=str(state_path), backoff_base_seconds=0.05, backoff_max_seconds=0.5)
    config.update(huntress_overrides)
    defs = build_definitions(settings, huntress=HuntressResource(**config),
                             lake=HuntressLakeResource(lake_dir=str(lake_dir), locks_url=postgres_url or ""))
    return Pipeline(server, lake_dir, state_path, defs, dg.DagsterInstance.ephemeral())


def truth_records(server: SimulatorServer, stream: Stream) -> list[dict]:
    """The simulator's current state of every object of a stream (its /_sim/truth list)."""
    from .conftest import admin

    name = "incidents" if stream.name == "incident_reports" else stream.name
    return admin(server, f"truth/{name}")[stream.name]


def cli_env(server: SimulatorServer | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for `dagster` CLI subprocesses pointed at the test simulator and lake."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    # the project's instance settings (telemetry off, the run queue's 1 s dequeue, INFO logs), as a user has them
    (home / "dagster.yaml").write_text((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTRESS_")}
    env.update(DAGSTER_HOME=str(home), HUNTRESS_LAKE_DIR=str(tmp_path / "lake"),
               HUNTRESS_START_DATE=start_day().isoformat(),
               HUNTRESS_RATE_LIMIT_STATE=str(tmp_path / "ratelimit.sqlite"), HUNTRESS_RATE_LIMIT="10000",
               HUNTRESS_RATE_WINDOW_SECONDS="1")
    if server is not None:
        env.update(HUNTRESS_API_KEY=DEMO_API_KEY, HUNTRESS_API_SECRET=DEMO_API_SECRET, HUNTRESS_HOST_URL=server.url)
    env.update(extra)
    return env


def dagster_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.run([str(dagster), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def kill_mid_walk(server: SimulatorServer, args: tuple[str, ...], env: dict[str, str], cwd: Path, path: str,
                  slow_seconds: float = 0.3) -> None:
    """Start `dagster *args` on a slowed simulator and SIGKILL its process group once it has made two
    requests to `path`: a crash mid-walk, not a clean stop."""
    import os
    import signal
    import time

    from .conftest import admin

    admin(server, "faults", {"slow": 1_000, "slow_seconds": slow_seconds})
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    victim = subprocess.Popen([dagster, *args], env=env, cwd=cwd, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and sum(e["path"] == path for e in server.request_log) < 2:
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    admin(server, "faults", {"slow": 0})


def table_snapshot(lake_dir: Path, table: str, exclude: tuple[str, ...] = ()) -> list[tuple]:
    """A table's rows, sorted, without the columns that legitimately differ between runs."""
    lake = Lake(lake_dir)
    with lake.connect() as con:
        catalog.register_views(lake, con)
        columns = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description if d[0] not in exclude]
        return con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY ALL").fetchall()


def open_catalog_read_only(lake_dir: Path) -> duckdb.DuckDBPyConnection:
    """The catalog file as an analyst opens it: its views are relative to the lake (file_search_path)."""
    from huntress_dagster.catalog import open_catalog

    return open_catalog(lake_dir)


def _sigint_by_default() -> None:
    """In the child, before exec: SIGINT back to its default. A shell running the tests in the background
    without job control (a CI script started with `&`) makes them ignore SIGINT, children included, and
    `dagster dev` gives SIGTERM SIGINT's disposition: it would ignore SIGTERM too and never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_dagster_dev(env: dict[str, str], cwd: Path, log, port: int, timeout: float = 180) -> subprocess.Popen:
    """`dagster dev` on `port`, in a process group of its own (everything it starts can be stopped at once);
    returns once its webserver answers, fails the test with the log's tail if it exits or never answers."""
    import httpx
    import pytest

    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_sigint_by_default)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    log.flush()
    pytest.fail("dagster dev did not start: " + Path(log.name).read_text()[-3000:])

