"""Helpers shared by the benchmarks: simulator processes, measured subprocesses, Dagster wiring, output.

Every benchmark talks real HTTP to the bundled simulator. The simulator runs in its own process
(`workers.py sim`) so that what a benchmark measures in its own process (or in a pipeline subprocess)
is not mixed with the cost of serving the API.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORKERS = BENCH_DIR / "workers.py"
PAGE = 500  # the API's largest page: the lower bound of list requests is ceil(records / 500)
UNTHROTTLED = dict(rate_limit=10_000_000, rate_window_seconds=1.0)

if str(REPO_ROOT) not in sys.path:  # `python benchmarks/run.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET  # noqa: E402

# --- output ----------------------------------------------------------------------------------------


def header(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print rows as an aligned text table (floats with 3 significant decimals)."""
    if not rows:
        print("  (no rows)")
        return
    columns = columns or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return "" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in cells:
        print("  " + "  ".join(v.rjust(w) for v, w in zip(r, widths)), flush=True)


def verdict(
    name: str, measured: float, target: float, higher_is_better: bool, unit: str = ""
) -> dict[str, Any]:
    met = measured >= target if higher_is_better else measured <= target
    sign = ">=" if higher_is_better else "<="
    print(
        f"  TARGET {name}: {measured:.3f}{unit} (target {sign} {target:g}{unit}) -> "
        f"{'MET' if met else 'NOT MET'}",
        flush=True,
    )
    return {"target": name, "measured": round(measured, 4), "goal": f"{sign} {target:g}{unit}", "met": met}


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Iterable[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mib(n_bytes: float) -> float:
    return n_bytes / (1024 * 1024)


# --- processes ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class ProcessUsage:
    """What one finished child process cost (from wait4: that child alone, not earlier siblings; its
    peak_rss_bytes is floored at the parent's RSS when the child was started, see self_peak_rss_bytes)."""

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int


def wait_usage(proc: subprocess.Popen, started: float) -> ProcessUsage:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcessUsage(
        returncode=proc.returncode,
        wall_seconds=time.monotonic() - started,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=usage.ru_maxrss * 1024,
    )  # Linux: KiB


def worker_command(*args: str) -> list[str]:
    return [sys.executable, str(WORKERS), *args]


def bench_env(**extra: str) -> dict[str, str]:
    """Environment for worker subprocesses: no telemetry, no HUNTRESS_* leaking in from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTRESS_")}
    env.update(
        RUNTIME__DLTHUB_TELEMETRY="false",
        DAGSTER_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def run_worker(
    args: list[str], *, log_path: Path, timeout: float | None = None, env: dict[str, str] | None = None
) -> tuple[ProcessUsage, dict[str, Any] | None]:
    """Run `workers.py ARGS` to completion; returns its usage and the JSON object it printed last.

    stderr goes to `log_path`; on timeout the worker is killed and its usage still returned."""
    with open(log_path, "ab") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            worker_command(*args),
            stdout=subprocess.PIPE,
            stderr=log,
            env=env or bench_env(),
            start_new_session=True,
        )
        timer = None
        if timeout:
            import threading

            timer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
            timer.start()
        out = proc.stdout.read().decode()  # type: ignore[union-attr]
        usage = wait_usage(proc, started)
        if timer:
            timer.cancel()
    result = None
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    return usage, result


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def vm_hwm_bytes(pid: int) -> int | None:
    """Peak RSS of a live process (VmHWM in /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def self_peak_rss_bytes() -> int:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: on Linux that also carries the
    RSS of the parent at fork/exec time, so a worker started by a big parent would report the parent's."""
    return vm_hwm_bytes(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the simulator in its own process ---------------------------------------------------------------


class SimProcess:
    """`workers.py sim`: a SimulatorServer over World(WorldConfig(**world)) with SimulatorConfig(**config)."""

    def __init__(
        self,
        world: dict[str, Any],
        config: dict[str, Any] | None = None,
        *,
        log_path: Path,
        startup_timeout: float = 900,
    ):
        self.world, self.config = world, dict(config or UNTHROTTLED)
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.usage: ProcessUsage | None = None

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SimProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._started = time.monotonic()
        self.proc = subprocess.Popen(
            worker_command("sim", json.dumps(self.world), json.dumps(self.config)),
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=bench_env(),
            start_new_session=True,
        )
        line = self.proc.stdout.readline().decode()  # type: ignore[union-attr]  # one JSON line when listening
        if not line:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"simulator did not start; see {self.log_path}")
        self.info = json.loads(line)
        return self

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def admin_url(self) -> str:
        return self.info["admin_url"]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def admin(self, path: str, payload: dict[str, Any] | None = None, timeout: float = 600) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.admin_url}/{path}",
            data=data,
            method="POST" if data else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def tick(self, **changes: Any) -> dict[str, list[int]]:
        return self.admin("tick", changes)

    def requests(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The simulator's request log (API calls only) from `since` (epoch seconds)."""
        return self.admin(f"requests?since={since!r}")["requests"]

    def peak_rss_bytes(self) -> int | None:
        return vm_hwm_bytes(self.pid)

    def stop(self) -> ProcessUsage | None:
        if self.proc is None or self.usage is not None:
            return self.usage
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.usage = wait_usage(self.proc, self._started)
        except ChildProcessError:  # already reaped
            self.usage = ProcessUsage(self.proc.returncode or 0, time.monotonic() - self._started, 0.0, 0)
        self._log.close()
        return self.usage


def request_kind(entry: dict[str, Any]) -> str:
    """Group request-log paths: list calls by collection (`incident_reports`, `signals`, `escalations`,
    `platform_actions`, `agents`, ...), every per-record call by its shape (`remediations`, `<name>/{id}`).

    A reseller's per-account path (`/v1/accounts/{account_id}/<rest>`) counts as `<rest>` would: the same
    stream's list requests, whichever account they read."""
    path = entry["path"].split("?", 1)[0].removeprefix("/v1")
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "accounts" and parts[1].isdigit():
        parts = parts[2:]
    if len(parts) == 3 and parts[2] == "remediations":
        return "remediations"
    if len(parts) == 2 and parts[1].isdigit():
        return f"{parts[0]}/{{id}}"
    return parts[0] or "/"


def count_requests(entries: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = Counter(request_kind(e) for e in entries)
    statuses = Counter(e["status"] for e in entries)
    return {
        "total": len(entries),
        "by_kind": dict(kinds),
        "by_status": {str(k): v for k, v in statuses.items()},
    }


# --- Dagster wiring -----------------------------------------------------------------------------------


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


@dataclasses.dataclass
class Pipeline:
    """The project's Dagster definitions wired to one simulator and one lake, run in this process."""

    url: str
    lake_dir: Path | str  # str: s3://bucket/prefix
    start: date
    defs: Any
    instance: Any

    def run_collect(
        self, first: date | None = None, last: date | None = None, *, full_refresh: bool = False
    ) -> Any:
        """The collect job (every walked stream's raw asset -> parsed_syslog -> alerts) over a range of
        days in one run: one walk per stream. `full_refresh` walks every selected day of every stream."""
        from huntress_dagster.automation import COLLECT_JOB, range_tags
        from huntress_dagster.streams import WALK_STREAMS

        tags = range_tags(first or self.start, last or utc_today())
        config = (
            {"ops": {s.raw_table: {"config": {"full_refresh": True}} for s in WALK_STREAMS}}
            if full_refresh
            else None
        )
        return self.execute(COLLECT_JOB, tags=tags, run_config=config)

    def run_inventory(self) -> Any:
        """The inventory job (snapshot streams -> parsed_syslog -> assets -> alerts) for today."""
        from huntress_dagster.automation import INVENTORY_JOB

        return self.execute(INVENTORY_JOB, partition_key=utc_today().isoformat())

    def execute(self, job_name: str, *, run_config: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        run_config = {**(run_config or {}), **QUIET_RUN_CONFIG}
        result = self.defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance, run_config=run_config, **kwargs
        )
        if not result.success:
            raise RuntimeError(f"{job_name} failed: {failure_text(result)}")
        return result

    def query(self, sql: str) -> list[tuple]:
        from huntress_dagster import catalog
        from huntress_dagster.lake import Lake

        lake = Lake(self.lake_dir)
        with lake.connect() as con:
            catalog.register_views(lake, con)
            return con.execute(sql).fetchall()


# Runs log every step event at DEBUG to the console; the benchmarks print their own figures.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def failure_text(result: Any) -> str:
    for event in result.all_events:
        if event.is_failure and event.step_failure_data and event.step_failure_data.error:
            return event.step_failure_data.error.to_string()[:2000]
    return "unknown failure"


def make_pipeline(
    url: str,
    workdir: Path,
    *,
    history_days: int,
    rate_limit: int = 10_000_000,
    rate_window_seconds: float = 1.0,
    overlap_seconds: int = 300,
    lake_dir: str | Path | None = None,
    postgres_url: str | None = None,
    **huntress: Any,
) -> Pipeline:
    """Definitions built exactly as `definitions.py` builds them, but pointed at `url` and `workdir/lake`.

    `lake_dir`: another lake (s3://bucket/prefix for one on object storage); `postgres_url`: the rate
    limiter's log and the partition locks in PostgreSQL (as deployed across machines) instead of
    `workdir/ratelimit.sqlite` and file locks."""
    import dagster as dg

    from huntress_dagster.definitions import build_definitions
    from huntress_dagster.resources import HuntressLakeResource, HuntressResource
    from huntress_dagster.settings import Settings

    lake_dir = lake_dir or workdir / "lake"
    state_path = postgres_url or workdir / "ratelimit.sqlite"
    start = utc_today() - timedelta(days=history_days + 1)
    settings = dataclasses.replace(
        Settings.from_env({}),
        lake_dir=str(lake_dir),
        start_date=start.isoformat(),
        rate_limit_state=str(state_path),
    )
    config: dict[str, Any] = dict(
        host_url=url,
        api_key=DEMO_API_KEY,
        api_secret=DEMO_API_SECRET,
        rate_limit_requests=rate_limit,
        rate_limit_window_seconds=rate_window_seconds,
        rate_limit_state_path=str(state_path),
    )
    config.update(huntress)
    defs = build_definitions(
        settings,
        huntress=HuntressResource(**config),
        lake=HuntressLakeResource(
            lake_dir=str(lake_dir), overlap_seconds=overlap_seconds, locks_url=postgres_url or ""
        ),
    )
    return Pipeline(url, lake_dir, start, defs, dg.DagsterInstance.ephemeral())


def materialization_metadata(result: Any, node: str) -> dict[str, Any]:
    """The metadata values of a step's materializations, merged, as plain Python values. A partitioned run
    puts its own figures (records walked, API requests, ...) on its newest day only, and each day's row
    count on that day: the first materialization alone may hold no run figure at all."""
    merged: dict[str, Any] = {}
    for materialization in result.asset_materializations_for_node(node):
        merged.update({k: getattr(v, "value", v) for k, v in materialization.metadata.items()})
    return merged


def quiet_dagster() -> None:
    """Dagster logs every step event at INFO; benchmarks print their own figures."""
    import logging
    import warnings

    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    logging.getLogger("dagster").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="dagster")
    try:
        import dagster as dg

        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    except (ImportError, AttributeError):
        pass


# --- scratch space ------------------------------------------------------------------------------------


@contextmanager
def scratch(name: str, keep: bool = False) -> Iterator[Path]:
    """A fresh working directory under $BENCH_WORKDIR (default: the system temp dir)."""
    base = Path(os.environ.get("BENCH_WORKDIR") or tempfile.gettempdir()) / "huntress_bench"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
