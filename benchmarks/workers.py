"""Subprocess entry points of the benchmarks (each prints one JSON line with its result on stdout).

    workers.py sim WORLD_JSON CONFIG_JSON          the simulator, until SIGTERM
    workers.py other-client URL REQUESTS WINDOW SECONDS [STATE_PATH]
                                                   another tool on the same account, spending its own budget
    workers.py ours URL WORKDIR HISTORY_DAYS       our pipeline end to end (inventory + collect jobs)
    workers.py dlt URL WORKDIR                     the peer: a dlt rest_api source into DuckDB
    workers.py lake-run URL WORKDIR HISTORY_DAYS LAKE POSTGRES_URL STAGE
                                                   one run of every asset (backfill, or the incremental window)
                                                   on a local or s3:// lake (bench_object_store.py)
    workers.py lake-rows LAKE                      rows per table of a lake

They run in their own processes so that each one's peak RSS and CPU time is its own.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    DEMO_API_KEY,
    DEMO_API_SECRET,
    PAGE,
    make_pipeline,
    materialization_metadata,
    quiet_dagster,
    self_peak_rss_bytes,
)

if os.environ.get("BENCH_S3_TRACE"):  # bench_object_store: log S3 calls, also in spawned parse workers
    from benchmarks.bench_object_store import install_s3_trace  # (they import this file as __mp_main__)

    install_s3_trace(os.environ["BENCH_S3_TRACE"])


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def sim(world_json: str, config_json: str) -> None:
    from huntress_dagster.simulator import SimulatorConfig, SimulatorServer, World, WorldConfig

    started = time.monotonic()
    world = World(WorldConfig(**json.loads(world_json)))
    build_seconds = time.monotonic() - started
    server = SimulatorServer(world, SimulatorConfig(**json.loads(config_json)))
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emit(
        {
            "url": server.url,
            "admin_url": server.admin_url,
            "build_seconds": round(build_seconds, 2),
            "incidents": len(world.incidents),
            "agents": len(world.agents),
            "rss_after_build_bytes": self_peak_rss_bytes(),
        }
    )
    stop.wait()
    server.stop()


class BothLimiters:
    """Acquire from each limiter in turn: the other tool's own pace, then the budget it shares with us."""

    def __init__(self, *limiters):
        self.limiters = limiters

    def acquire(self) -> float:
        return sum(limiter.acquire() for limiter in self.limiters)


def other_client(
    url: str,
    requests: str,
    window: str,
    seconds: str,
    shared_state_path: str = "",
    shared_requests: str = "0",
) -> None:
    """Another tool on the same account: `requests` per `window` seconds for `seconds`. With
    `shared_state_path` it also takes every request from the limiter file we use (a cooperating tool)."""
    from huntress_dagster.client import HuntressClient
    from huntress_dagster.errors import HuntressRateLimitError
    from huntress_dagster.ratelimit import RateLimiter, bucket_name_for

    limiters = [RateLimiter(int(requests), float(window))]
    if shared_state_path:
        limiters.append(
            RateLimiter(
                int(shared_requests),
                float(window),
                state_path=shared_state_path,
                bucket=bucket_name_for(DEMO_API_KEY, url),
            )
        )
    # No retries (of errors or of 429s): a 429 is counted, so the other tool keeps exactly its own pace.
    client = HuntressClient(
        DEMO_API_KEY,
        DEMO_API_SECRET,
        url,
        rate_limiter=BothLimiters(*limiters),
        max_attempts=1,
        max_throttle_seconds=0,
    )
    emit({"ready": True})
    sent = throttled = 0
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            client.get("/account")
        except HuntressRateLimitError:
            throttled += 1
        sent += 1
    client.close()
    emit({"requests": sent, "throttled": throttled})


class RssSampler:
    """Samples this process's RSS and CPU time (its own and its reaped children's, e.g. parse workers)
    every `interval` seconds, to attribute the peak and the CPU to a step."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.cpu_samples: list[tuple[float, float]] = []
        self.tree_samples: list[tuple[float, int]] = []  # RSS of this process plus its children (parse workers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(self.interval):
                statm.seek(0)
                now = time.time()
                self.samples.append((now, int(statm.read().split()[1]) * page))
                self.cpu_samples.append((now, cpu_seconds_with_children()))
                self.tree_samples.append((now, self.samples[-1][1] + children_rss_bytes(page)))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds spent between two instants (to the sampling interval)."""
        inside = [cpu for t, cpu in self.cpu_samples if start <= t <= end]
        before = [cpu for t, cpu in self.cpu_samples if t < start]
        after = [cpu for t, cpu in self.cpu_samples if t > end]
        first = before[-1] if before else (inside[0] if inside else 0.0)
        last = after[0] if after else (inside[-1] if inside else first)
        return last - first


def children_rss_bytes(page: int) -> int:
    """RSS of this process's live children (the parse step's worker processes), from /proc."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            except (OSError, IndexError, ValueError):
                pass
    return total


def cpu_seconds_with_children() -> float:
    """User + system CPU of this process and of its reaped children (the parse step's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def step_profile(instance, result, sampler: RssSampler) -> dict[str, dict[str, float]]:
    """Seconds and peak RSS (MiB) of each step of a finished in-process run, from its event log."""
    starts: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
            start = starts[entry.step_key]
            inside = [(t, rss) for t, rss in sampler.samples if start <= t <= entry.timestamp]
            tree_peak = max(((rss, t) for t, rss in sampler.tree_samples if start <= t <= entry.timestamp),
                            default=(0, start))
            steps[entry.step_key] = {
                # what the process held when the step began (carried from earlier steps), and when the
                # process tree peaked (the rest of that peak is the parse workers)
                "start_rss_mib": round(inside[0][1] / 2**20) if inside else 0,
                "rss_at_tree_peak_mib": round(next((rss for t, rss in inside if t >= tree_peak[1]), 0) / 2**20),
                "seconds": round(entry.timestamp - start, 2),
                "peak_rss_mib": round(sampler.peak_between(start, entry.timestamp) / 2**20),
                "cpu_s": round(sampler.cpu_between(start, entry.timestamp), 2),
                "peak_tree_rss_mib": round(max((rss for t, rss in sampler.tree_samples
                                                if start <= t <= entry.timestamp), default=0) / 2**20),
            }
    return steps


def ours(url: str, workdir: str, history_days: str) -> None:
    """The pipeline end to end, as a user's first materialization: the inventory job (agents), then the
    collect job over the whole history in one run (every walked stream's raw asset -> parsed_syslog ->
    alerts; incident reports are the bulk of the data)."""
    quiet_dagster()
    pipeline = make_pipeline(url, Path(workdir), history_days=int(history_days))
    baseline = self_peak_rss_bytes()  # Python + Dagster + the definitions, before any data
    phases = {}
    with RssSampler() as sampler:
        started = time.monotonic()
        inventory = pipeline.run_inventory()
        phases["inventory_job_seconds"] = time.monotonic() - started
        mark = time.monotonic()
        collect = pipeline.run_collect()
        phases["collect_job_seconds"] = time.monotonic() - mark
        wall = time.monotonic() - started
    steps = {
        "inventory_job": step_profile(pipeline.instance, inventory, sampler),
        "collect_job": step_profile(pipeline.instance, collect, sampler),
    }
    # The pipeline's peak, before the counts below: a query over the lake's views is the benchmark's, not the
    # pipeline's (a view over parsed_syslog's files of several schemas holds every footer: ~600 MiB at 1M).
    pipeline_peak = self_peak_rss_bytes()
    raw = materialization_metadata(collect, "raw_incidents")
    counts = dict(
        pipeline.query(
            "SELECT 'alerts', count(*) FROM alerts UNION ALL "
            "SELECT 'agent_inventory', count(*) FROM agent_inventory UNION ALL "
            "SELECT 'parsed_syslog', count(*) FROM parsed_syslog UNION ALL "
            "SELECT 'raw_records', (SELECT count(*) FROM raw_incidents) + (SELECT count(*) FROM raw_signals) "
            "+ (SELECT count(*) FROM raw_escalations) + (SELECT count(*) FROM raw_platform_actions) "
            "+ (SELECT count(*) FROM raw_agents)"
        )
    )
    emit(
        {
            "wall_seconds": wall,
            **phases,
            "baseline_rss_bytes": baseline,
            "peak_rss_bytes": pipeline_peak,
            # with the parse step's worker processes (what a pod's memory limit sees), sampled every 0.1 s
            "peak_tree_rss_bytes": max((rss for _, rss in sampler.tree_samples), default=0),
            "records_walked": raw.get("records_walked"),
            "versions": raw.get("versions_in_window"),
            "api_requests": raw.get("api_requests"),
            "agents": materialization_metadata(inventory, "raw_agents").get("agents"),
            **counts,
            "steps": steps,
        }
    )


def dlt_peer(url: str, workdir: str) -> None:
    """The natural hand-written alternative: dlt's rest_api source (token paging, basic auth) into DuckDB."""
    import os

    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.helpers.rest_client.auth import HttpBasicAuth
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
    from dlt.sources.rest_api import rest_api_source

    baseline = self_peak_rss_bytes()  # Python + dlt, before any data

    def resource(name: str, sort_field: str, direction: str) -> dict:
        return {
            "name": name,
            "endpoint": {
                "path": name,
                "data_selector": name,
                "params": {"limit": PAGE, "sort_field": sort_field, "sort_direction": direction},
            },
        }

    source = rest_api_source(
        {
            "client": {
                "base_url": url.rstrip("/") + "/",
                "auth": HttpBasicAuth(DEMO_API_KEY, DEMO_API_SECRET),
                "paginator": JSONResponseCursorPaginator(
                    cursor_path="pagination.next_page_token", cursor_param="page_token"
                ),
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "replace"},
            "resources": [
                resource("agents", "id", "asc"),
                resource("incident_reports", "updated_at", "desc"),
            ],
        }
    )
    work = Path(workdir)
    pipeline = dlt.pipeline(
        pipeline_name="huntress_peer",
        destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")),
        dataset_name="huntress",
        pipelines_dir=str(work / "dlt_pipelines"),
    )
    phases: dict[str, dict[str, float]] = {}
    started = time.monotonic()
    with RssSampler() as sampler:
        for name, step in (
            ("extract", lambda: pipeline.extract(source)),
            ("normalize", pipeline.normalize),
            ("load", pipeline.load),
        ):
            begin = time.time()
            step()
            phases[name] = {
                "seconds": round(time.time() - begin, 2),
                "peak_rss_mib": round(sampler.peak_between(begin, time.time()) / 2**20),
            }
    wall = time.monotonic() - started
    with pipeline.sql_client() as client:
        incidents = client.execute_sql("SELECT count(*) FROM incident_reports")[0][0]
        agents = client.execute_sql("SELECT count(*) FROM agents")[0][0]
    emit(
        {
            "wall_seconds": wall,
            "phases": phases,
            "baseline_rss_bytes": baseline,
            "peak_rss_bytes": self_peak_rss_bytes(),
            "incident_reports": incidents,
            "agents": agents,
        }
    )


def step_times(instance, result) -> dict[str, dict[str, float]]:
    """Start, end (epoch seconds) and seconds of each step of a finished in-process run, in start order."""
    starts: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
            start = starts[entry.step_key]
            steps[entry.step_key] = {"start": start, "end": entry.timestamp, "seconds": entry.timestamp - start}
    return dict(sorted(steps.items(), key=lambda kv: kv[1]["start"]))


def lake_run(url: str, workdir: str, history_days: str, lake_dir: str, postgres_url: str, stage: str) -> None:
    """One run of `huntress_all_job` (every asset), as `huntress_dagster.headless.run_range` launches it:
    over the whole history (stage "backfill"), or over the window the collect schedule picks
    (`headless.incremental_window`, stage "incremental"). Timed from the start of the run: imports and
    definitions are not in the figure."""
    quiet_dagster()
    from huntress_dagster.automation import ALL_JOB, range_tags
    from huntress_dagster.headless import incremental_window, utc_today
    from huntress_dagster.lake import Lake

    pipeline = make_pipeline(url, Path(workdir), history_days=int(history_days), lake_dir=lake_dir or None,
                             postgres_url=postgres_url or None)
    started = time.monotonic()
    run_started = time.time()
    if stage == "backfill":
        first, last = pipeline.start, utc_today()
    else:
        first, last = incremental_window(Lake(lake_dir))
        first = max(first, pipeline.start)
    window = time.monotonic() - started
    result = pipeline.execute(ALL_JOB, tags=range_tags(first, last))  # run_range, with a quiet console log
    wall = time.monotonic() - started
    steps = step_times(pipeline.instance, result)
    emit({"stage": stage, "first": first.isoformat(), "last": last.isoformat(), "days": (last - first).days + 1,
          "run_started": run_started, "run_wall_s": wall, "window_s": window, "steps": steps,
          "dagster_overhead_s": wall - window - sum(s["seconds"] for s in steps.values()),
          "metadata": {node: {k: v for k, v in materialization_metadata(result, node).items()
                              if isinstance(v, (int, float, str)) and len(str(v)) < 200}
                       for node in ("raw_incidents", "raw_signals", "raw_agents", "parsed_syslog", "alerts")}})


def lake_rows(lake_dir: str) -> None:
    from huntress_dagster import catalog
    from huntress_dagster.lake import Lake

    lake = Lake(lake_dir)
    with lake.connect() as con:
        tables = catalog.register_views(lake, con)
        emit({t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables})


COMMANDS = {"sim": sim, "other-client": other_client, "ours": ours, "dlt": dlt_peer, "lake-run": lake_run,
            "lake-rows": lake_rows}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
