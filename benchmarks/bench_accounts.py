"""7. Accounts: the steady-state API requests per hour of ONE reseller key as its customer accounts grow.

A reseller's key reaches its own account and every customer account `GET /v1/accounts` lists; customer
accounts are collected through `/v1/accounts/{id}/...`, which serves only the streams declared
`reseller_path=True` in streams.py (incident reports, signals, agents, organizations, external ports; not
escalations, platform actions or identities). What the deployment spends for the key is measured against
the simulator (its own process, `WorldConfig.customer_accounts=N`) through the project's own schedules,
jobs and sensor, executed in this process; requests come from the simulator's request log:

- the collect schedule (`huntress_collect_schedule`, HUNTRESS_INCIDENTS_CRON, every 5 minutes): its tick is
  evaluated (`build_schedule_context` + `evaluate_tick`) and its run request executed as the daemon would
  (the collect job over the range the schedule picks: yesterday + today);
- the inventory schedules, one per snapshot stream at its default cron (organizations hourly; agents,
  identities and external ports daily): each one's tick evaluated and its run (that stream's selection)
  executed;
- the sensor (`huntress_alert_sensor`, every 30 s): evaluated with its cursor carried over; per tick it makes
  at most HUNTRESS_SENSOR_REQUESTS_PER_TICK (6) requests, round robin over the (account, alert stream) pairs
  (`watch_list`: the own account's incident reports and escalations, each customer's incident reports),
  so one full cycle takes ceil(pairs / 6) ticks. The runs it requests are executed too: the first one
  in full (timed), the others only their raw steps (the only steps that call the API: every run's requests
  are checked against its raw steps' `api_requests` metadata; `--full-sensor-runs` runs them all in full).

Every run lists the key's accounts once (`GET /v1/account` + `GET /v1/accounts`); the sensor reuses a listing
younger than `account_discovery_seconds` (900 s), which the collect runs (every 5 minutes) keep fresh.

Steady state: after the initial load (and one sensor cycle that takes its first look at every pair, whose
runs are not executed: the initial load has it all), the world moves once (bench_api's `steady_changes`:
1 new incident + 1 status change, 5 new signals + 2 status changes, an escalation opened; the simulator
moves every customer account with the same counts, so EVERY account is as busy as bench_api's one), then
ONE tick of the collect schedule, ONE of each inventory schedule and one full sensor cycle are measured.
Per hour = each schedule's run x its fires per hour + sensor requests per evaluation x 120 + the sensor's
runs for one change x CHANGES_PER_HOUR (bench_api's rate: a change every 10 minutes). The sensor's runs
depend on how often alerts change (here: every account, every 10 minutes, the busy end); the total without
them (the fixed cost, the same whatever changes) is printed too.

Customer worlds are tiny (every list is one page): what grows with the accounts is the number of walks,
snapshots and sensor pairs, which is what this measures; a bigger account adds ceil(records / 500) pages.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/bench_accounts.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_api import (  # noqa: E402
    BUDGET_PER_HOUR,
    CHANGES_EVERY_MIN,
    cron_fires_per_day,
    steady_changes,
)
from benchmarks.common import (  # noqa: E402
    SimProcess,
    header,
    make_pipeline,
    materialization_metadata,
    request_kind,
    scratch,
    table,
)

HISTORY_DAYS = 2  # the worlds span 2 days: a short initial load; steady state reads yesterday + today
SIZES = (1, 10, 100)
QUICK_SIZES = (1, 10)
CHANGES_PER_HOUR = 60 // CHANGES_EVERY_MIN  # bench_api: a change every 10 minutes
LISTING_KINDS = ("account", "accounts")  # GET /v1/account, GET /v1/accounts (common.request_kind)
COLLECT_SCHEDULE = "huntress_collect_schedule"
SENSOR = "huntress_alert_sensor"


def world_config(customers: int) -> dict[str, Any]:
    """The reseller's own account (small), and `customers` tiny customer accounts (customer_scale 0.05:
    5 agents, 10 incidents, 20 signals, 1 organization, ~5 external ports each: every list one page)."""
    return dict(
        seed=23,
        organizations=5,
        agents=100,
        incidents=200,
        signals=300,
        escalations=20,
        platform_actions=10,
        identities=40,
        external_ports=20,
        days=HISTORY_DAYS,
        body_min_bytes=500,
        body_max_bytes=1_500,
        large_body_share=0.0,
        many_remediations_share=0.0,
        customer_accounts=customers,
        customer_scale=0.05,
    )


def mark() -> float:
    time.sleep(0.01)  # the log's timestamps are taken when a request arrives
    return time.time()


def is_customer(entry: dict[str, Any]) -> bool:
    """A request to a customer account's path (/v1/accounts/{id}/...)."""
    parts = entry["path"].strip("/").split("/")
    return len(parts) >= 4 and parts[1] == "accounts" and parts[2].isdigit()


def breakdown(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests by what they are for: the account listing, the own account, customer accounts."""
    listing = sum(1 for e in entries if request_kind(e) in LISTING_KINDS and not is_customer(e))
    customer = sum(1 for e in entries if is_customer(e))
    kinds: dict[str, int] = {}
    for e in entries:
        kinds[request_kind(e)] = kinds.get(request_kind(e), 0) + 1
    return {
        "total": len(entries),
        "listing": listing,
        "own": len(entries) - listing - customer,
        "customers": customer,
        "non_200": sum(1 for e in entries if e["status"] != 200),
        "kinds": kinds,
    }


def step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Wall seconds per step of a finished run, from its event log."""
    from dagster import DagsterEventType

    types = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    started: dict[str, float] = {}
    spent: dict[str, float] = {}
    for entry in instance.all_logs(run_id, of_type=types):
        key = entry.step_key or "?"
        if entry.dagster_event.event_type == DagsterEventType.STEP_START:
            started[key] = entry.timestamp
        elif key in started:
            spent[key] = round(entry.timestamp - started[key], 2)
    return spent


def step_groups(steps: dict[str, float]) -> dict[str, float]:
    """Step seconds grouped: raw steps (the API), parsed_syslog, alerts, other (inventories, checks)."""
    groups: dict[str, float] = {}
    for key, seconds in steps.items():
        name = "raw" if key.startswith("raw_") else key if key in ("parsed_syslog", "alerts") else "other"
        groups[name] = round(groups.get(name, 0.0) + seconds, 2)
    return groups


def raw_step_requests(result: Any, node: str) -> int:
    """The API requests a raw step reported (its materialization's `api_requests`); 0 if not in the run."""
    try:
        return int(materialization_metadata(result, node).get("api_requests", 0))
    except Exception:  # noqa: BLE001 - a node the run's job does not have
        return 0


def measure(customers: int, workdir: Path, full_sensor_runs: bool = False) -> dict[str, Any]:
    """Initial load, then one steady-state change and one tick of every source, for one key with
    `customers` customer accounts."""
    import dagster as dg

    from huntress_dagster.automation import COLLECT_JOB, INVENTORY_JOB, watch_list
    from huntress_dagster.connections import cached_accounts
    from huntress_dagster.lake import Lake
    from huntress_dagster.settings import Settings
    from huntress_dagster.streams import SNAPSHOT_STREAMS, STREAMS

    started = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - started - sum(phases.values()), 1)

    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)  # holds the limiter's state: private
    world = world_config(customers)
    defaults = Settings.from_env({})
    with SimProcess(world, log_path=workdir / "sim.log") as sim:
        pipeline = make_pipeline(sim.url, workdir, history_days=HISTORY_DAYS)
        defs, instance = pipeline.defs, pipeline.instance
        sensor = defs.get_sensor_def(SENSOR)
        interval = sensor.minimum_interval_seconds or defaults.sensor_interval_seconds
        connection = defs.resources["huntress"].connection_list()[0]

        def execute(job: str, request: Any, *, raw_only: bool = False) -> dict[str, Any]:
            """Execute a run request as the daemon would (its tags, selection, partition); its requests."""
            selection = request.asset_selection
            if raw_only and selection:  # the sensor's runs always name their assets
                selection = [k for k in selection if k.to_user_string().startswith("raw_")]
            since, t0 = mark(), time.monotonic()
            result = pipeline.execute(
                job, tags=request.tags, asset_selection=selection, partition_key=request.partition_key
            )
            seconds = time.monotonic() - t0
            counted = breakdown(sim.requests(since))
            raw_api = sum(raw_step_requests(result, s.raw_table) for s in STREAMS)
            return {
                "seconds": round(seconds, 2),
                "steps": step_groups(step_seconds(instance, result.run_id)),
                "raw_only": raw_only,
                "outside_raw_steps": counted["total"] - raw_api,  # requests no raw step accounts for
                **counted,
            }

        # Initial load: every snapshot stream, then every walked stream over the whole history (one run each).
        since = mark()
        pipeline.run_inventory()
        pipeline.run_collect()
        initial = breakdown(sim.requests(since))
        phase("initial_load")
        accounts = cached_accounts(Lake(pipeline.lake_dir), connection) or []
        pairs = len(watch_list(accounts))
        budget = defaults.sensor_requests_per_tick
        cycle_ticks = math.ceil(pairs / budget) if pairs else 1

        def evaluate_sensor(cursor: str | None) -> tuple[Any, dict[str, Any]]:
            since = mark()
            with dg.build_sensor_context(
                instance=instance, resources=defs.resources, cursor=cursor
            ) as context:
                result = sensor(context)
            return result, breakdown(sim.requests(since))

        # The sensor's first cycle looks at every pair for the first time (everything is new to its
        # cursor): not steady state; its runs are not executed (the initial load has collected it all).
        cursor = None
        for _ in range(cycle_ticks):
            result, _ = evaluate_sensor(cursor)
            cursor = result.cursor or cursor
        phase("sensor_first_cycle")

        # One steady-state change, in every account.
        changed = sim.tick(**steady_changes(0))
        moved_accounts = 1 + len(changed.get("accounts", {}))

        # One tick of each schedule, its run executed in full.
        now = datetime.now(timezone.utc)
        schedule_runs: list[dict[str, Any]] = []
        for name in [COLLECT_SCHEDULE, *(f"huntress_{s.name}_schedule" for s in SNAPSHOT_STREAMS)]:
            schedule = defs.get_schedule_def(name)
            with dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=now,
                resources=defs.resources,
                repository_def=defs.get_repository_def(),  # the inventory schedules select assets
            ) as context:
                requests = schedule.evaluate_tick(context).run_requests or []
            for request in requests:
                tags = request.tags
                first = tags.get("dagster/asset_partition_range_start", request.partition_key)
                last = tags.get("dagster/asset_partition_range_end", request.partition_key)
                schedule_runs.append(
                    {
                        "schedule": name,
                        "cron": schedule.cron_schedule,
                        "partitions": f"{first}..{last}",
                        **execute(COLLECT_JOB if name == COLLECT_SCHEDULE else INVENTORY_JOB, request),
                    }
                )
        phase("schedule_runs")

        # One full sensor cycle after the change: every pair looked at once; its run requests executed.
        evaluations: list[dict[str, Any]] = []
        sensor_runs: list[dict[str, Any]] = []
        for _ in range(cycle_ticks):
            result, counted = evaluate_sensor(cursor)
            cursor = result.cursor or cursor
            evaluations.append(counted)
            for request in result.run_requests or []:
                raw_only = bool(sensor_runs) and not full_sensor_runs
                sensor_runs.append(
                    {
                        "changed_pairs": len(request.run_key.split("|", 1)[1].split(";")),
                        "selected": sorted(k.to_user_string() for k in request.asset_selection or []),
                        **execute(COLLECT_JOB, request, raw_only=raw_only),
                    }
                )
        phase("sensor_cycle")
    return {
        "customers": customers,
        "accounts": len(accounts),
        "world": world,
        "moved_accounts": moved_accounts,
        "initial_load": initial,
        "pairs": pairs,
        "sensor_requests_per_tick": budget,
        "sensor_interval_seconds": interval,
        "cycle_ticks": cycle_ticks,
        "schedule_runs": schedule_runs,
        "sensor_evaluations": evaluations,
        "sensor_runs": sensor_runs,
        "phase_seconds": phases,
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def per_hour(m: dict[str, Any]) -> dict[str, Any]:
    """The measured ticks scaled to an hour: requests per hour by source."""
    parts = ("total", "listing", "own", "customers")
    rows: list[dict[str, Any]] = []
    for run in m["schedule_runs"]:
        fires = cron_fires_per_day(run["cron"]) / 24
        stream = run["schedule"].removeprefix("huntress_").removesuffix("_schedule")
        source = "collect schedule" if run["schedule"] == COLLECT_SCHEDULE else f"{stream} snapshot"
        rows.append(
            {
                "source": f"{source} ('{run['cron']}')",
                "runs_per_hour": fires,
                "requests_each": run["total"],
                **{p: run[p] for p in parts[1:]},
                "requests_per_hour": run["total"] * fires,
            }
        )
    evaluations_per_hour = 3600 / m["sensor_interval_seconds"]
    n = max(len(m["sensor_evaluations"]), 1)
    mean = {p: sum(e[p] for e in m["sensor_evaluations"]) / n for p in parts}
    rows.append(
        {
            "source": f"sensor polls (every {m['sensor_interval_seconds']} s)",
            "runs_per_hour": evaluations_per_hour,
            "requests_each": mean["total"],
            **{p: mean[p] for p in parts[1:]},
            "requests_per_hour": mean["total"] * evaluations_per_hour,
        }
    )
    fixed = sum(r["requests_per_hour"] for r in rows)
    runs = m["sensor_runs"]
    k = max(len(runs), 1)
    triggered = {p: sum(r[p] for r in runs) for p in parts}
    rows.append(
        {
            "source": f"sensor-triggered runs ({len(runs)} per change x {CHANGES_PER_HOUR} changes/h)",
            "runs_per_hour": len(runs) * CHANGES_PER_HOUR,
            "requests_each": triggered["total"] / k,
            **{p: triggered[p] / k for p in parts[1:]},
            "requests_per_hour": triggered["total"] * CHANGES_PER_HOUR,
        }
    )
    total = fixed + triggered["total"] * CHANGES_PER_HOUR
    collect = next(r for r in m["schedule_runs"] if r["schedule"] == COLLECT_SCHEDULE)
    sensor_per_minute = mean["total"] * 60 / m["sensor_interval_seconds"]
    return {
        "rows": rows,
        "fixed_per_hour": fixed,
        "total_per_hour": total,
        "fixed_share": fixed / BUDGET_PER_HOUR,
        "total_share": total / BUDGET_PER_HOUR,
        "by_source": {r["source"].split(" (")[0]: r["requests_per_hour"] for r in rows},
        "collect_requests": collect["total"],
        # At 60 requests/minute: the collect run alone, and next to the sensor's polls (the same key's budget).
        "collect_minutes_alone": collect["total"] / 60,
        "collect_minutes_with_sensor": collect["total"] / (60 - sensor_per_minute),
        "sensor_cycle_seconds": m["cycle_ticks"] * m["sensor_interval_seconds"],
        "sensor_changed_pairs": sum(r["changed_pairs"] for r in runs),
    }


def describe_run(run: dict[str, Any]) -> str:
    steps = ", ".join(f"{k} {v:.1f}" for k, v in run["steps"].items())
    return f"{run['seconds']:.1f} s ({steps})"


def report(results: list[dict[str, Any]]) -> None:
    for m in results:
        h = m["per_hour"]
        print(
            f"\n  {m['customers']} customer account(s) + the key's own = {m['accounts']} accounts "
            f"({m['moved_accounts']} moved by the change); sensor pairs {m['pairs']}: one cycle = "
            f"ceil({m['pairs']} / {m['sensor_requests_per_tick']}) = {m['cycle_ticks']} tick(s) x "
            f"{m['sensor_interval_seconds']} s = {h['sensor_cycle_seconds']} s; initial load "
            f"{m['initial_load']['total']:,} requests; measured in {m['wall_seconds']:.0f} s "
            f"({', '.join(f'{k} {v:.0f} s' for k, v in m['phase_seconds'].items())})"
        )
        table(
            h["rows"],
            ["source", "runs_per_hour", "requests_each", "listing", "own", "customers", "requests_per_hour"],
        )
        measured = m["schedule_runs"] + m["sensor_runs"]
        non_200 = sum(r["non_200"] for r in measured + m["sensor_evaluations"])
        outside = sum(r["outside_raw_steps"] for r in measured)
        collect = next(r for r in m["schedule_runs"] if r["schedule"] == COLLECT_SCHEDULE)
        organizations = next((r for r in m["schedule_runs"] if "organizations" in r["schedule"]), None)
        sensor_run = m["sensor_runs"][0] if m["sensor_runs"] else None
        print(
            f"  per hour: {h['total_per_hour']:,.1f} requests = {h['total_share']:.1%} of "
            f"{BUDGET_PER_HOUR:,}/h (fixed, without the sensor-triggered runs: {h['fixed_per_hour']:,.1f} = "
            f"{h['fixed_share']:.1%}); one collect tick = {h['collect_requests']} requests = "
            f"{h['collect_minutes_alone']:.1f} min at 60/min ({h['collect_minutes_with_sensor']:.1f} min next "
            f"to the sensor's polls); sensor runs covered {h['sensor_changed_pairs']} changed pairs; "
            f"non-200 answers {non_200}; requests outside raw steps {outside}\n"
            f"  run wall time here: collect {describe_run(collect)}"
            + (f"; organizations snapshot {describe_run(organizations)}" if organizations else "")
            + (f"; a sensor-triggered run {describe_run(sensor_run)}" if sensor_run else ""),
            flush=True,
        )
    rows = []
    for m in results:
        h, s = m["per_hour"], m["per_hour"]["by_source"]
        rows.append(
            {
                "customers": m["customers"],
                "collect": s.get("collect schedule", 0.0),
                "snapshots": sum(v for k, v in s.items() if k.endswith("snapshot")),
                "sensor_polls": s.get("sensor polls", 0.0),
                "sensor_runs": s.get("sensor-triggered runs", 0.0),
                "total_per_hour": h["total_per_hour"],
                "budget_share": f"{h['total_share']:.1%}",
                "fixed_per_hour": h["fixed_per_hour"],
                "fixed_share": f"{h['fixed_share']:.1%}",
                "collect_tick_requests": h["collect_requests"],
                "collect_tick_min": h["collect_minutes_alone"],
                "sensor_cycle_s": h["sensor_cycle_seconds"],
            }
        )
    print(
        "\n  Summary (requests per hour; fixed = without the sensor-triggered runs; collect tick at 60/min):"
    )
    table(rows)
    if len(results) >= 2:
        # The schedules grow with every account; the sensor's polls are capped (6 per tick) once the pairs
        # reach the cap. Per account: the schedules' growth between the two largest sizes.
        small, big = results[-2], results[-1]
        extra = big["customers"] - small["customers"]

        def schedules(m: dict[str, Any]) -> float:
            s = m["per_hour"]["by_source"]
            return sum(v for k, v in s.items() if not k.startswith("sensor"))

        each = (schedules(big) - schedules(small)) / extra
        base = schedules(small) - each * small["customers"]
        cap = big["sensor_requests_per_tick"] * 3600 / big["sensor_interval_seconds"]
        fits = (BUDGET_PER_HOUR - cap - base) / each if each > 0 else math.inf
        runs_each = (
            big["per_hour"]["by_source"].get("sensor-triggered runs", 0.0)
            - small["per_hour"]["by_source"].get("sensor-triggered runs", 0.0)
        ) / extra
        print(
            f"  each customer account adds {each:.2f} requests/h to the schedules ({small['customers']} -> "
            f"{big['customers']} accounts), and {runs_each:.2f} of sensor-triggered runs at this change rate; "
            f"the sensor's polls are capped at {cap:,.0f}/h; the fixed cost (schedules + capped polls) reaches "
            f"{BUDGET_PER_HOUR:,}/h at ~{fits:,.0f} customer accounts",
            flush=True,
        )


def run(quick: bool, sizes: tuple[int, ...] | None = None, full_sensor_runs: bool = False) -> dict[str, Any]:
    header(
        "7. Accounts: requests per hour of one reseller key by customer accounts (collect and inventory "
        "schedules, sensor polls, sensor-triggered runs)"
    )
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    print(
        f"  worlds: the key's own account ({world_config(0)['incidents']} incident reports, "
        f"{world_config(0)['agents']} agents, {world_config(0)['organizations']} organizations) + N tiny "
        f"customer accounts; one change (bench_api's steady_changes, in every account), then one tick of each "
        f"schedule and one full sensor cycle; sizes {', '.join(map(str, sizes))}",
        flush=True,
    )
    results = []
    with scratch("accounts") as workdir:
        for customers in sizes:
            m = measure(customers, workdir / f"n{customers}", full_sensor_runs)
            m["per_hour"] = per_hour(m)
            results.append(m)
            print(f"  measured {customers} customer account(s) in {m['wall_seconds']:.0f} s", flush=True)
    report(results)
    return {
        "sizes": list(sizes),
        "changes_per_hour": CHANGES_PER_HOUR,
        "budget_per_hour": BUDGET_PER_HOUR,
        "results": results,
        "per_hour": {str(m["customers"]): m["per_hour"]["total_per_hour"] for m in results},
        "per_hour_fixed": {str(m["customers"]): m["per_hour"]["fixed_per_hour"] for m in results},
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import logging

    from benchmarks.common import quiet_dagster

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} instead of {SIZES}")
    parser.add_argument("--sizes", type=int, nargs="+", help="customer accounts to measure")
    parser.add_argument(
        "--full-sensor-runs",
        action="store_true",
        help="execute every sensor-triggered run in full, not only the first",
    )
    parser.add_argument("--json", type=Path, help="also write every measured figure to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("huntress_dagster.client").setLevel(logging.ERROR)
    quiet_dagster()
    results = run(args.quick, tuple(args.sizes) if args.sizes else None, args.full_sensor_runs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
