"""1. API efficiency: requests made versus the lower bound, and the steady-state budget per hour.

Everything runs through the project's own Dagster jobs, sensor and schedule (in this process) against the
simulator (its own process); request counts come from the simulator's request log.

Lower bounds: a list walk needs at least ceil(records walked / 500) requests (500 is the API's largest
page; /incident_reports has no time filter, so a walk reads down from the newest record to the bottom
of its window). An incident whose embedded remediations say `has_more` needs one more request for the
rest (`/incident_reports/{id}/remediations`): the API offers nothing cheaper. An agent snapshot needs
ceil(agents / 500).

Steady state is modelled in scaled time: one virtual minute takes PACE real seconds, the sensor is
evaluated at its default interval (`HUNTRESS_SENSOR_INTERVAL_SECONDS`, 30 s), the incident schedule fires every fifth, a
few changes happen on the simulator, and the lake's watermark overlap is scaled the same way (300 s
virtual), so every walk re-reads exactly what it would re-read in real time.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PAGE,
    SimProcess,
    count_requests,
    header,
    make_pipeline,
    materialization_metadata,
    scratch,
    table,
    utc_today,
    verdict,
)
from huntress_dagster.settings import Settings

HISTORY_DAYS = 45
BUDGET_PER_HOUR = 3600  # 60 requests per minute
SENSOR_INTERVAL_S = Settings.from_env({}).sensor_interval_seconds  # the default, HUNTRESS_SENSOR_INTERVAL_SECONDS
SCHEDULE_EVERY_MIN = 5
CHANGES_EVERY_MIN = 10  # one new incident and one status change every 10 minutes (~150 events a day)


def walk_row(
    name: str,
    entries: list[dict],
    raw_meta: dict | None = None,
    agents_meta: dict | None = None,
) -> dict[str, Any]:
    """Requests by kind against their lower bounds for one scenario."""
    counts = count_requests(entries)["by_kind"]
    walked = (raw_meta or {}).get("records_walked", 0)
    has_more = (raw_meta or {}).get("remediation_lists_completed", 0)
    agents = (agents_meta or {}).get("agents", 0)
    list_made = counts.get("incident_reports", 0) + counts.get("agents", 0)
    list_bound = math.ceil(walked / PAGE) + math.ceil(agents / PAGE)
    other = sum(v for k, v in counts.items() if k not in ("incident_reports", "agents", "remediations"))
    total_bound = list_bound + has_more
    return {
        "scenario": name,
        "incidents_walked": walked,
        "agents": agents,
        "list_requests": list_made,
        "agent_requests": counts.get("agents", 0),
        "list_bound": list_bound,
        "list_ratio": list_made / list_bound if list_bound else math.nan,
        "remediation_requests": counts.get("remediations", 0),
        "has_more_incidents": has_more,
        "other_requests": other,
        "total_requests": sum(counts.values()),
        "total_bound": total_bound,
        "total_ratio": sum(counts.values()) / total_bound if total_bound else math.nan,
    }


def mark() -> float:
    time.sleep(0.01)  # the log's timestamps are taken when a request arrives
    return time.time()


def one_shot_scenarios(sim: SimProcess, workdir: Path) -> tuple[list[dict[str, Any]], Any]:
    pipeline = make_pipeline(sim.url, workdir, history_days=HISTORY_DAYS)
    rows = []

    since = mark()
    agents = pipeline.run_agents()
    incidents = pipeline.run_incidents()
    rows.append(
        walk_row(
            f"initial load ({HISTORY_DAYS} days + agents)",
            sim.requests(since),
            materialization_metadata(incidents, "raw_incidents"),
            materialization_metadata(agents, "raw_agents"),
        )
    )

    sim.tick(new_incidents=3, status_changes=2, agent_changes=5)
    since = mark()
    today = utc_today()
    poll = pipeline.run_incidents(today - timedelta(days=1), today)
    rows.append(
        walk_row(
            "incremental poll (3 new, 2 changed)",
            sim.requests(since),
            materialization_metadata(poll, "raw_incidents"),
        )
    )

    since = mark()
    backfill = pipeline.run_incidents(today - timedelta(days=29), today, full_refresh=True)
    rows.append(
        walk_row(
            "30-day backfill (full refresh)",
            sim.requests(since),
            materialization_metadata(backfill, "raw_incidents"),
        )
    )
    return rows, pipeline


def steady_state(sim: SimProcess, workdir: Path, minutes: int, pace: float) -> dict[str, Any]:
    """`minutes` virtual minutes of sensor evaluations, sensor runs and schedule runs; requests per source."""
    import dagster as dg

    overlap = max(1, round(300 * pace / 60))  # 300 s of virtual time
    pipeline = make_pipeline(sim.url, workdir, history_days=HISTORY_DAYS, overlap_seconds=overlap)
    sensor = pipeline.defs.get_sensor_def("huntress_incident_sensor")
    schedule = pipeline.defs.get_schedule_def("huntress_incidents_schedule")
    resources = {"huntress": pipeline.defs.resources["huntress"]}
    with dg.build_sensor_context(instance=pipeline.instance, resources=resources) as context:
        cursor = sensor(context).cursor  # the sensor's first evaluation, before the measured hour
    spent = {"sensor evaluations": [], "sensor-triggered runs": [], "schedule runs": []}
    runs = {"sensor-triggered runs": 0, "schedule runs": 0}
    changes = 0
    started = time.monotonic()
    overruns = 0
    evaluations_per_minute = 60 // SENSOR_INTERVAL_S
    for evaluation in range(minutes * evaluations_per_minute):
        minute, within = divmod(evaluation, evaluations_per_minute)
        first_of_minute = within == 0
        wait = started + evaluation * pace / evaluations_per_minute - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            overruns += 1
        if first_of_minute and minute % CHANGES_EVERY_MIN == CHANGES_EVERY_MIN // 2:
            sim.tick(new_incidents=1, status_changes=1, agent_changes=0)
            changes += 2
        since = mark()
        with dg.build_sensor_context(
            instance=pipeline.instance, resources=resources, cursor=cursor
        ) as context:
            result = sensor(context)
        spent["sensor evaluations"] += sim.requests(since)
        cursor = result.cursor or cursor
        for request in result.run_requests or []:
            since = mark()
            pipeline.execute("huntress_incidents_job", tags=request.tags)
            spent["sensor-triggered runs"] += sim.requests(since)
            runs["sensor-triggered runs"] += 1
        if first_of_minute and minute % SCHEDULE_EVERY_MIN == 0:
            tick = datetime.now(timezone.utc)
            with dg.build_schedule_context(
                instance=pipeline.instance, scheduled_execution_time=tick
            ) as context:
                requests = schedule.evaluate_tick(context).run_requests
            for request in requests:
                since = mark()
                pipeline.execute("huntress_incidents_job", tags=request.tags)
                spent["schedule runs"] += sim.requests(since)
                runs["schedule runs"] += 1
    real = time.monotonic() - started
    per_hour = 60 / minutes
    rows = []
    for source, entries in spent.items():
        kinds = count_requests(entries)["by_kind"]
        rows.append(
            {
                "source": source,
                "runs_or_evals": runs.get(source, minutes * evaluations_per_minute),
                "requests": len(entries),
                "per_hour": len(entries) * per_hour,
                "of_which_remediations": kinds.get("remediations", 0),
                "429s": sum(1 for e in entries if e["status"] == 429),
            }
        )
    return {
        "rows": rows,
        "minutes": minutes,
        "pace": pace,
        "overlap_seconds": overlap,
        "changes": changes,
        "real_seconds": real,
        "late_evaluations": overruns,
    }


def run(quick: bool) -> dict[str, Any]:
    header("1. API efficiency (requests vs the lower bound ceil(records walked / 500); budget per hour)")
    world = dict(
        seed=11,
        organizations=20,
        agents=1_200 if quick else 12_000,
        incidents=3_000 if quick else 30_000,
        days=HISTORY_DAYS,
        body_min_bytes=500,
        body_max_bytes=2_000,
        large_body_share=0.0,
    )
    minutes, pace = (15, 1.5) if quick else (60, 3.0)
    with scratch("api") as workdir, SimProcess(world, log_path=workdir / "sim.log") as sim:
        rows, _ = one_shot_scenarios(sim, workdir)
        table(
            rows,
            [
                "scenario",
                "incidents_walked",
                "agents",
                "list_requests",
                "list_bound",
                "list_ratio",
                "remediation_requests",
                "has_more_incidents",
                "other_requests",
                "total_requests",
                "total_bound",
                "total_ratio",
            ],
        )
        print(
            "  list_bound = ceil(incidents walked / 500) + ceil(agents / 500); total_bound adds one request "
            "per has_more incident (its remediations past the embedded 10); other = /account (cached a day)."
        )
        steady = steady_state(sim, workdir, minutes, pace)
        initial = rows[0]
    agents_per_day = initial["agent_requests"]
    steady_rows = steady["rows"] + [
        {
            "source": f"agents job (daily, {world['agents']:,} agents)",
            "runs_or_evals": 1,
            "requests": agents_per_day,
            "per_hour": agents_per_day / 24,
        },
        {
            "source": "agents job (daily, 100,000 agents: 200 pages)",
            "runs_or_evals": 1,
            "requests": 200,
            "per_hour": 200 / 24,
        },
    ]
    print(
        f"\n  Steady state: {steady['minutes']} virtual minutes, 1 virtual minute = {steady['pace']:g} s "
        f"real (overlap {steady['overlap_seconds']} s = 300 s virtual), {steady['changes']} changes "
        f"({steady['real_seconds']:.0f} s real, {steady['late_evaluations']} sensor evaluations started late)"
    )
    table(steady_rows, ["source", "runs_or_evals", "requests", "per_hour", "of_which_remediations", "429s"])
    per_hour = sum(r["per_hour"] for r in steady["rows"]) + 200 / 24
    share = per_hour / BUDGET_PER_HOUR
    print(
        f"  total per hour (sensor + its runs + schedule + agents daily at 100k agents): "
        f"{per_hour:.1f} requests = {share:.1%} of the {BUDGET_PER_HOUR}/h budget"
    )
    targets = [
        verdict(f"list requests / lower bound, {r['scenario']}", r["list_ratio"], 1.05, False) for r in rows
    ]
    targets += [
        verdict(f"all requests / lower bound, {r['scenario']}", r["total_ratio"], 1.05, False) for r in rows
    ]
    return {
        "scenarios": rows,
        "steady_state": steady,
        "per_hour": per_hour,
        "budget_share": share,
        "targets": targets,
    }
