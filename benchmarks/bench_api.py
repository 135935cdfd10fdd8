"""1. API efficiency: requests made versus the lower bound, per stream, and the steady-state budget per hour.

Everything runs through the project's own Dagster jobs, sensor and schedule (in this process) against the
simulator (its own process); request counts come from the simulator's request log, records walked from
each raw asset's materialization metadata (`records_walked`).

The collect job walks four streams (incident reports, signals, escalations, platform actions), ONE
`updated_at`-descending walk each per run; the inventory job snapshots every snapshot stream (agents,
and whatever else streams.py declares as a snapshot).

Lower bounds, per stream: a walk needs at least ceil(records walked / 500) list requests (500 is the
API's largest page; a walk reads down from the newest record to the bottom of its window, since only
/signals and /reports have time filters and signals are walked by updated_at anyway), and at least one
request when it walks at all (an empty answer is still an answer). An incident whose embedded
remediations say `has_more` needs one more request for the rest (`/incident_reports/{id}/remediations`):
the API offers nothing cheaper. A snapshot needs ceil(objects / 500), at least 1.

Steady state is modelled in scaled time: one virtual minute takes PACE real seconds, the sensor (one
request per alert stream: incident reports and escalations) is evaluated at its default interval
(`HUNTRESS_SENSOR_INTERVAL_SECONDS`, 30 s), the collect schedule (four walks) fires every fifth virtual
minute, changes happen on the simulator every tenth, and the lake's watermark overlap is scaled the same
way (300 s virtual), so every walk re-reads exactly what it would re-read in real time. The inventory
schedules (one per snapshot stream, at its default HUNTRESS_<STREAM>_CRON) are added from the pages the
initial load measured, agents also at a 100,000-agent fleet.
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
from huntress_dagster.automation import COLLECT_JOB
from huntress_dagster.settings import Settings
from huntress_dagster.streams import AGENTS, ALERT_STREAMS, INCIDENT_REPORTS, SNAPSHOT_STREAMS, WALK_STREAMS

HISTORY_DAYS = 45
BUDGET_PER_HOUR = 3600  # 60 requests per minute
# The defaults: HUNTRESS_SENSOR_INTERVAL_SECONDS, HUNTRESS_<STREAM>_CRON.
DEFAULTS = Settings.from_env({})
SENSOR_INTERVAL_S = DEFAULTS.sensor_interval_seconds
SCHEDULE_EVERY_MIN = 5  # the collect schedule's default cron, */5 * * * *
CHANGES_EVERY_MIN = 10
WALK_KINDS = [s.name for s in WALK_STREAMS]  # request kinds (common.request_kind)
SNAPSHOT_KINDS = [s.name for s in SNAPSHOT_STREAMS]
LIST_KINDS = WALK_KINDS + SNAPSHOT_KINDS
BIG_AGENTS = 100_000  # the daily snapshot's cost at a large MSP's fleet


def snapshot_cron(stream: Any) -> str | None:
    """When the inventory schedules snapshot `stream` by default (None: not scheduled on its own)."""
    return getattr(DEFAULTS, f"{stream.name}_cron", None)


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        first, last = (low, high) if base == "*" else (int(base.split("-")[0]), int(base.split("-")[-1]))
        if step and base != "*" and "-" not in base:
            last = high
        values.update(range(first, last + 1, int(step or 1)))
    return values


def cron_fires_per_day(cron: str) -> float:
    """How often a 5-field cron fires per day on average (minute x hour, scaled by day restrictions)."""
    minute, hour, day_of_month, month, day_of_week = cron.split()
    per_day = len(_cron_field(minute, 0, 59)) * len(_cron_field(hour, 0, 23))
    if day_of_week != "*":
        per_day *= len(_cron_field(day_of_week, 0, 6)) / 7
    if day_of_month != "*":
        per_day *= len(_cron_field(day_of_month, 1, 31)) / 30.44
    if month != "*":
        per_day *= len(_cron_field(month, 1, 12)) / 12
    return per_day


# What changes on the simulator between the initial load and the incremental poll.
POLL_CHANGES = dict(
    new_incidents=3,
    status_changes=2,
    agent_changes=5,
    new_signals=20,
    signal_status_changes=10,
    escalations_opened=1,
    escalations_closed=1,
    platform_actions_opened=1,
    platform_actions_closed=1,
    identity_changes=0,
    port_scans=0,
)


def steady_changes(k: int) -> dict[str, int]:
    """The k-th change of the steady state (one every CHANGES_EVERY_MIN virtual minutes): per hour 6 new
    incidents and 6 status changes, 30 new signals and 12 status changes (~1,000 signal events a day),
    2 escalations opened and 2 resolved, 1 platform action opened and 1 resolved."""
    return dict(
        new_incidents=1,
        status_changes=1,
        agent_changes=0,
        new_signals=5,
        signal_status_changes=2,
        escalations_opened=int(k % 3 == 0),
        escalations_closed=int(k % 3 == 1),
        platform_actions_opened=int(k % 6 == 2),
        platform_actions_closed=int(k % 6 == 5),
        identity_changes=0,
        port_scans=0,
    )


def world_config(quick: bool) -> dict[str, Any]:
    """Signals outnumber incident reports ~10:1 on a real account (every detection the SOC investigated
    is a signal; a few become incidents); escalations and platform actions are a few a day."""
    return dict(
        seed=11,
        organizations=20,
        agents=1_200 if quick else 12_000,
        incidents=3_000 if quick else 30_000,
        signals=4_000 if quick else 40_000,
        escalations=100 if quick else 600,
        platform_actions=40 if quick else 200,
        identities=200 if quick else 1_000,
        days=HISTORY_DAYS,
        body_min_bytes=500,
        body_max_bytes=2_000,
        large_body_share=0.0,
    )


def walked_bound(meta: dict[str, Any]) -> int:
    """The least list requests the walk recorded in `meta` could have made."""
    walked = meta.get("records_walked", 0)
    did_walk = bool(meta) and not str(meta.get("walk_lower_bound", "")).startswith("none")
    return max(math.ceil(walked / PAGE), 1 if did_walk else 0)


def scenario_rows(
    name: str, entries: list[dict], collect: Any, inventory: Any | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per stream (walks, then the agent snapshot if any) and the scenario's totals."""
    kinds = count_requests(entries)["by_kind"]
    rows = []
    for stream in WALK_STREAMS:
        meta = materialization_metadata(collect, stream.raw_table)
        made, bound = kinds.get(stream.name, 0), walked_bound(meta)
        rows.append(
            {
                "scenario": name,
                "stream": stream.name,
                "records_walked": meta.get("records_walked", 0),
                "versions_in_window": meta.get("versions_in_window", 0),
                "list_requests": made,
                "bound": bound,
                "ratio": made / bound if bound else math.nan,
            }
        )
    agents = 0
    for stream in SNAPSHOT_STREAMS if inventory is not None else ():
        count = materialization_metadata(inventory, stream.raw_table).get(stream.name, 0)
        agents = count if stream is AGENTS else agents
        made, bound = kinds.get(stream.name, 0), max(1, math.ceil(count / PAGE))
        rows.append(
            {
                "scenario": name,
                "stream": f"{stream.name} (snapshot)",
                "records_walked": count,
                "versions_in_window": count,
                "list_requests": made,
                "bound": bound,
                "ratio": made / bound,
            }
        )
    incidents = materialization_metadata(collect, INCIDENT_REPORTS.raw_table)
    has_more = incidents.get("remediation_lists_completed", 0)
    list_made, list_bound = sum(r["list_requests"] for r in rows), sum(r["bound"] for r in rows)
    other = {k: v for k, v in kinds.items() if k not in LIST_KINDS and k != "remediations"}
    total = sum(kinds.values())
    totals = {
        "scenario": name,
        "list_requests": list_made,
        "list_bound": list_bound,
        "list_ratio": list_made / list_bound if list_bound else math.nan,
        "remediation_requests": kinds.get("remediations", 0),
        "has_more_incidents": has_more,
        "other_requests": sum(other.values()),
        "other_kinds": ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "-",
        "total_requests": total,
        "total_bound": list_bound + has_more,
        "total_ratio": total / (list_bound + has_more) if list_bound + has_more else math.nan,
        "agents": agents,
    }
    return rows, totals


def mark() -> float:
    time.sleep(0.01)  # the log's timestamps are taken when a request arrives
    return time.time()


def one_shot_scenarios(sim: SimProcess, workdir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pipeline = make_pipeline(sim.url, workdir, history_days=HISTORY_DAYS)
    rows, totals = [], []

    def add(result: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
        rows.extend(result[0])
        totals.append(result[1])

    since = mark()
    inventory = pipeline.run_inventory()
    collect = pipeline.run_collect()
    add(
        scenario_rows(
            f"initial load ({HISTORY_DAYS} days + inventories)", sim.requests(since), collect, inventory
        )
    )

    sim.tick(**POLL_CHANGES)
    since = mark()
    today = utc_today()
    poll = pipeline.run_collect(today - timedelta(days=1), today)
    add(scenario_rows("incremental poll (yesterday + today)", sim.requests(since), poll))

    since = mark()
    backfill = pipeline.run_collect(today - timedelta(days=29), today, full_refresh=True)
    add(scenario_rows("30-day backfill (full refresh, one run)", sim.requests(since), backfill))
    return rows, totals


def steady_state(sim: SimProcess, workdir: Path, minutes: int, pace: float) -> dict[str, Any]:
    """`minutes` virtual minutes of sensor evaluations, sensor runs and schedule runs; requests per source
    and stream."""
    import dagster as dg

    overlap = max(1, round(300 * pace / 60))  # 300 s of virtual time
    pipeline = make_pipeline(sim.url, workdir, history_days=HISTORY_DAYS, overlap_seconds=overlap)
    sensor = pipeline.defs.get_sensor_def("huntress_alert_sensor")
    schedule = pipeline.defs.get_schedule_def("huntress_collect_schedule")
    resources = pipeline.defs.resources
    with dg.build_sensor_context(instance=pipeline.instance, resources=resources) as context:
        cursor = sensor(context).cursor  # the sensor's first evaluation, before the measured hour
    spent: dict[str, list[dict]] = {
        "sensor evaluations": [],
        "sensor-triggered runs": [],
        "schedule runs": [],
    }
    runs = {"sensor-triggered runs": 0, "schedule runs": 0}
    sensor_streams: dict[str, int] = {}  # stream -> sensor runs that selected it
    changes: dict[str, int] = {}
    ticks = 0
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
            counts = steady_changes(ticks)
            ticks += 1
            for key, values in sim.tick(**counts).items():
                if isinstance(values, list):
                    changes[key] = changes.get(key, 0) + len(values)
        since = mark()
        with dg.build_sensor_context(
            instance=pipeline.instance, resources=resources, cursor=cursor
        ) as context:
            result = sensor(context)
        spent["sensor evaluations"] += sim.requests(since)
        cursor = result.cursor or cursor
        for request in result.run_requests or []:
            since = mark()
            pipeline.execute(COLLECT_JOB, tags=request.tags, asset_selection=request.asset_selection)
            spent["sensor-triggered runs"] += sim.requests(since)
            runs["sensor-triggered runs"] += 1
            for key in request.asset_selection or []:
                sensor_streams[key.to_user_string()] = sensor_streams.get(key.to_user_string(), 0) + 1
        if first_of_minute and minute % SCHEDULE_EVERY_MIN == 0:
            tick = datetime.now(timezone.utc)
            with dg.build_schedule_context(
                instance=pipeline.instance, scheduled_execution_time=tick,
                resources=pipeline.defs.resources,
            ) as context:
                requests = schedule.evaluate_tick(context).run_requests
            for request in requests:
                since = mark()
                pipeline.execute(COLLECT_JOB, tags=request.tags, asset_selection=request.asset_selection)
                spent["schedule runs"] += sim.requests(since)
                runs["schedule runs"] += 1
    real = time.monotonic() - started
    per_hour = 60 / minutes
    rows = []
    for source, entries in spent.items():
        kinds = count_requests(entries)["by_kind"]
        row: dict[str, Any] = {
            "source": source,
            "per_hour_runs": runs.get(source, minutes * evaluations_per_minute) * per_hour,
        }
        for kind in WALK_KINDS:
            row[kind] = kinds.get(kind, 0) * per_hour
        row["snapshots"] = sum(kinds.get(kind, 0) for kind in SNAPSHOT_KINDS) * per_hour
        row["remediations"] = kinds.get("remediations", 0) * per_hour
        row["other"] = (
            sum(v for k, v in kinds.items() if k not in LIST_KINDS and k != "remediations") * per_hour
        )
        row["total_per_hour"] = len(entries) * per_hour
        row["429s"] = sum(1 for e in entries if e["status"] == 429)
        rows.append(row)
    return {
        "rows": rows,
        "minutes": minutes,
        "pace": pace,
        "overlap_seconds": overlap,
        "changes": changes,
        "change_ticks": ticks,
        "sensor_runs_by_asset": sensor_streams,
        "real_seconds": real,
        "late_evaluations": overruns,
    }


def run(quick: bool) -> dict[str, Any]:
    header(
        "1. API efficiency (requests vs the lower bound ceil(records walked / 500), per stream; "
        "budget per hour)"
    )
    world = world_config(quick)
    minutes, pace = (20, 1.5) if quick else (60, 3.0)
    with scratch("api") as workdir, SimProcess(world, log_path=workdir / "sim.log") as sim:
        print(
            f"  world: {world['incidents']:,} incident reports, {world['signals']:,} signals, "
            f"{world['escalations']:,} escalations, {world['platform_actions']:,} platform actions over "
            f"{HISTORY_DAYS} days; {world['agents']:,} agents; {world['organizations']} organizations",
            flush=True,
        )
        rows, totals = one_shot_scenarios(sim, workdir)
        print(
            "  incremental poll: yesterday + today after one change: 3 new incidents + 2 status changes, "
            "20 new signals + 10 status changes, 1 escalation opened + 1 resolved, 1 platform action "
            "opened + 1 resolved"
        )
        table(
            rows,
            ["scenario", "stream", "records_walked", "versions_in_window", "list_requests", "bound", "ratio"],
        )
        print(
            "  bound = ceil(records walked / 500), at least 1 for a walk that ran (records walked: every "
            "object the API served the walk, including those below its window on its last page); "
            "snapshots: ceil(objects / 500), at least 1."
        )
        table(
            totals,
            [
                "scenario",
                "list_requests",
                "list_bound",
                "list_ratio",
                "remediation_requests",
                "has_more_incidents",
                "other_kinds",
                "total_requests",
                "total_bound",
                "total_ratio",
            ],
        )
        print(
            "  total_bound = list bound + one request per has_more incident (its remediations past the "
            "embedded 10); other = /account (cached a day) and anything not a list or remediation request."
        )
        steady = steady_state(sim, workdir, minutes, pace)
    # The inventory schedules, one per snapshot stream at its default cron, at this world's sizes (pages as
    # the initial load measured them); agents also at a large fleet's size.
    blank = {kind: 0.0 for kind in WALK_KINDS} | {"remediations": 0.0, "other": 0.0, "429s": 0}
    inventory_rows, at_scale = [], []
    for stream in SNAPSHOT_STREAMS:
        cron = snapshot_cron(stream)
        pages = next(r["list_requests"] for r in rows if r["stream"] == f"{stream.name} (snapshot)")
        fires = cron_fires_per_day(cron) / 24 if cron else 0.0
        row = blank | {
            "source": f"{stream.name} snapshot ({pages} pages, cron '{cron}')"
            if cron
            else f"{stream.name} snapshot ({pages} pages, no schedule of its own)",
            "stream": stream.name,
            "per_hour_runs": fires,
            "snapshots": pages * fires,
            "total_per_hour": pages * fires,
        }
        inventory_rows.append(row)
        if stream is AGENTS:
            big_pages = math.ceil(BIG_AGENTS / PAGE)
            big = row | {
                "source": f"{stream.name} snapshot at {BIG_AGENTS:,} ({big_pages} pages, cron '{cron}')",
                "snapshots": big_pages * fires,
                "total_per_hour": big_pages * fires,
            }
            inventory_rows.append(big)
            at_scale.append(big)
        else:
            at_scale.append(row)
    steady_rows = steady["rows"] + inventory_rows
    change_text = ", ".join(f"{v} {k}" for k, v in sorted(steady["changes"].items()) if v)
    print(
        f"\n  Steady state: {steady['minutes']} virtual minutes, 1 virtual minute = {steady['pace']:g} s "
        f"real (overlap {steady['overlap_seconds']} s = 300 s virtual); "
        f"{steady['change_ticks']} change ticks "
        f"({change_text}); sensor runs selected {steady['sensor_runs_by_asset'] or 'nothing'}; "
        f"{steady['real_seconds']:.0f} s real, {steady['late_evaluations']} sensor evaluations started late. "
        f"Figures are requests per hour."
    )
    table(
        steady_rows,
        [
            "source",
            "per_hour_runs",
            *WALK_KINDS,
            "snapshots",
            "remediations",
            "other",
            "total_per_hour",
            "429s",
        ],
    )
    per_hour = sum(r["total_per_hour"] for r in steady["rows"] + at_scale)
    share = per_hour / BUDGET_PER_HOUR
    by_stream = {kind: sum(r[kind] for r in steady["rows"]) for kind in WALK_KINDS}
    by_stream |= {r["stream"]: r["total_per_hour"] for r in at_scale}
    by_source = {r["source"]: r["total_per_hour"] for r in steady["rows"]}
    by_source["inventory schedules"] = sum(r["total_per_hour"] for r in at_scale)
    print(
        f"  total per hour (sensor: {len(ALERT_STREAMS)} requests per evaluation, its runs, the collect "
        f"schedule's {len(WALK_STREAMS)} walks, the inventory schedules with agents at {BIG_AGENTS:,}): "
        f"{per_hour:.1f} requests = {share:.1%} of the {BUDGET_PER_HOUR}/h budget\n  by source: "
        + ", ".join(f"{k} {v:.1f}" for k, v in by_source.items())
        + "\n  by stream: "
        + ", ".join(f"{k} {v:.1f}" for k, v in by_stream.items())
    )
    targets = [
        verdict(f"list requests / lower bound, {r['stream']}, {r['scenario']}", r["ratio"], 1.05, False)
        for r in rows
        if r["bound"]
    ]
    targets += [
        verdict(f"all requests / lower bound, {t['scenario']}", t["total_ratio"], 1.05, False) for t in totals
    ]
    return {
        "world": world,
        "streams": rows,
        "scenarios": totals,
        "steady_state": steady,
        "per_hour": per_hour,
        "per_hour_by_stream": by_stream,
        "per_hour_by_source": by_source,
        "budget_share": share,
        "targets": targets,
    }
