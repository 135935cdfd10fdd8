"""3. End-to-end throughput and memory, and 4. the peer (dlt's rest_api source into DuckDB).

For each size, one simulator process serves a world of N incident reports (2-20 KB bodies, a few over
500 KB) and the agents; then, each in its own subprocess (so each peak RSS is that process's alone):
- ours: the project's inventory job (agents -> assets) and collect job (incident reports and the world's
  default few signals, escalations and platform actions: raw -> parsed_syslog -> alerts), in process;
- dlt: `rest_api_source` (JSONResponseCursorPaginator on `pagination.next_page_token` / `page_token`,
  HTTP basic auth, limit 500) into a DuckDB file, extract + normalize + load, no parsing.
The simulator's CPU seconds while serving each consumer are reported separately.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    SimProcess,
    header,
    mib,
    run_worker,
    table,
    verdict,
)

HISTORY_DAYS = 30
ASSET_STEPS = (  # not the asset checks
    "raw_agents",
    "raw_incidents",
    "raw_signals",
    "raw_escalations",
    "raw_platform_actions",
    "parsed_syslog",
    "agent_inventory",
    "alerts",
)
LARGE_BODY_SHARE = 0.0005  # 500 KiB .. 5 MiB bodies: 5 per 10k incidents


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_error(log_path: Path) -> str:
    """The last exception line of a worker's log."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    errors = [line for line in lines if "Error" in line or "Exception" in line or "Killed" in line]
    return (errors or lines or ["(empty log)"])[-1][:500]


def measure(kind: str, sim: SimProcess, workdir: Path, timeout: float) -> dict[str, Any]:
    if kind == "dlt" and importlib.util.find_spec("dlt") is None:
        return {"ok": False, "skipped": "dlt is not installed (pip install -e '.[bench]')"}
    cpu_before = proc_cpu_seconds(sim.pid)
    since = time.time()
    args = (
        ["ours", sim.url, str(workdir), str(HISTORY_DAYS)]
        if kind == "ours"
        else ["dlt", sim.url, str(workdir)]
    )
    usage, result = run_worker(args, log_path=workdir / f"{kind}.log", timeout=timeout)
    row: dict[str, Any] = {
        "wall_s": usage.wall_seconds,
        "cpu_s": usage.cpu_seconds,
        # The worker's own VmHWM; wait4's figure only if it died before reporting (floored at our RSS).
        "peak_rss_mib": mib(result["peak_rss_bytes"] if result else usage.peak_rss_bytes),
        "sim_cpu_s": proc_cpu_seconds(sim.pid) - cpu_before,
        "ok": usage.returncode == 0 and result is not None,
    }
    if result:
        row["baseline_rss_mib"] = mib(result["baseline_rss_bytes"])
        row["result"] = result
    else:  # killed or failed: why (the log goes with the work directory), and how far it got
        row["error"] = last_error(workdir / f"{kind}.log")
        walked = [
            e for e in sim.requests(since) if e["path"] == "/v1/incident_reports" and e["status"] == 200
        ]
        row["reached"] = (
            f"{len(walked)} incident pages (~{len(walked) * 500:,} records) walked before it stopped"
        )
    return row


def run_size(incidents: int, agents: int, workdir: Path, timeout: float, peer: bool) -> dict[str, Any]:
    world = dict(
        seed=7,
        organizations=50,
        agents=agents,
        incidents=incidents,
        days=HISTORY_DAYS,
        body_min_bytes=2_000,
        body_max_bytes=20_000,
        large_body_share=LARGE_BODY_SHARE,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    with SimProcess(world, log_path=workdir / "sim.log") as sim:
        out: dict[str, Any] = {
            "incidents": incidents,
            "agents": agents,
            "sim_build_s": sim.info["build_seconds"],
        }
        ours_dir = workdir / "ours"
        ours_dir.mkdir()
        out["ours"] = measure("ours", sim, ours_dir, timeout)
        if peer:
            dlt_dir = workdir / "dlt"
            dlt_dir.mkdir()
            out["dlt"] = measure("dlt", sim, dlt_dir, timeout)
        out["sim_peak_rss_mib"] = mib(sim.peak_rss_bytes() or 0)
    out["lake_dir"] = str(ours_dir / "lake")
    return out


# Named sizes (`run.py --sizes`): incidents + agents.
SIZES = {"2k": (2_000, 1_000), "8k": (8_000, 1_000), "10k": (10_000, 100_000), "100k": (100_000, 100_000),
         "1M": (1_000_000, 100_000)}
QUICK_SIZES, FULL_SIZES = ["2k", "8k"], ["10k", "100k", "1M"]
KEY_RATE = 500  # records/s one Huntress key delivers at most: 60 requests/min x 500 per page


def size_name(incidents: int) -> str:
    return next((name for name, (n, _) in SIZES.items() if n == incidents), str(incidents))


def efficiency(r: dict[str, Any]) -> dict[str, Any]:
    """Records per CPU-second end to end and per stage, keys at full rate per core, and peak RSS, of a size.

    Records: every version the raw tables hold (incident reports, the few signals, escalations and
    platform actions, and the agents); a stage's figure is those records over that stage's CPU (what it
    alone would sustain; sampled every 0.1 s, so small steps are rounded up). CPU: the pipeline process
    and its parse workers, not the simulator's."""
    m = r["ours"]
    res = m.get("result") or {}
    records = res.get("raw_records") or (r["incidents"] + r["agents"])
    out: dict[str, Any] = {"records": records, "ok": m["ok"], "cpu_s": m["cpu_s"], "wall_s": m["wall_s"],
                           "peak_rss_mib": m["peak_rss_mib"],
                           "peak_rss_with_workers_mib": mib(res.get("peak_tree_rss_bytes") or 0)}
    if m["ok"]:
        out["records_per_cpu_second"] = records / m["cpu_s"]
        out["keys_at_full_rate_per_core"] = out["records_per_cpu_second"] / KEY_RATE
        stages = {}
        for job, job_steps in res.get("steps", {}).items():
            for name, step in job_steps.items():
                if name in ASSET_STEPS and step.get("cpu_s"):  # both jobs have parsed_syslog and alerts
                    stages[f"{job.removesuffix('_job')}.{name}"] = {"cpu_s": step["cpu_s"], "records_per_cpu_second": records / step["cpu_s"],
                                    "share_of_cpu": step["cpu_s"] / m["cpu_s"],
                                    "peak_rss_mib": step["peak_rss_mib"],
                                    "peak_rss_with_workers_mib": step.get("peak_tree_rss_mib")}
        out["stages"] = stages
    dlt = r.get("dlt") or {}
    if dlt.get("ok"):
        out["dlt_records_per_cpu_second"] = (r["incidents"] + r["agents"]) / dlt["cpu_s"]
        out["dlt_peak_rss_mib"] = dlt["peak_rss_mib"]
    return out


def run(quick: bool, workdir: Path, size_names: list[str] | None = None) -> dict[str, Any]:
    """Returns the results, per size name the efficiency figures (`e2e.<size>.records_per_cpu_second`,
    `e2e.<size>.peak_rss_mib`, ...) and, under "largest_lake", the lake of the largest completed size (for
    queries)."""
    sizes = [SIZES[name] for name in size_names or (QUICK_SIZES if quick else FULL_SIZES)]
    # dlt at 1M incidents would take well over an hour more on 2 cores (it scales linearly: see README);
    # the peer comparison stops at 100k.
    peer_max = 1_000_000 if quick else 100_000
    timeout = 600 if quick else 2 * 3600
    header(
        "3. End-to-end throughput and memory (simulator unthrottled, each side in its own process) "
        "and 4. the peer: dlt rest_api -> DuckDB"
    )
    results = []
    for incidents, agents in sizes:
        print(f"  running {incidents:,} incidents + {agents:,} agents ...", flush=True)
        results.append(
            run_size(incidents, agents, workdir / f"size-{incidents}", timeout, peer=incidents <= peer_max)
        )
    rows = []
    for r in results:
        for kind in ("ours", "dlt"):
            m = r.get(kind)
            if not m:
                continue
            if m.get("skipped"):
                print(f"  {kind} at {r['incidents']:,}: skipped, {m['skipped']}")
                continue
            records = r["incidents"] + r["agents"]
            res = m.get("result") or {}
            rows.append(
                {
                    "size": f"{r['incidents']:,} inc + {r['agents']:,} ag",
                    "pipeline": kind,
                    "ok": m["ok"],
                    "wall_s": m["wall_s"],
                    "records_per_s": records / m["wall_s"] if m["ok"] else None,
                    "incidents_per_s": r["incidents"] / res["collect_job_seconds"]
                    if res.get("collect_job_seconds")
                    else None,
                    "peak_rss_mib": m["peak_rss_mib"],
                    "baseline_rss_mib": m.get("baseline_rss_mib"),
                    "cpu_s": m["cpu_s"],
                    "sim_cpu_s": m["sim_cpu_s"],
                    "rows": f"{res.get('alerts', res.get('incident_reports', '?'))} / "
                    f"{res.get('agent_inventory', res.get('agents', '?'))}",
                }
            )
            if m.get("reached"):
                print(f"  {kind} at {r['incidents']:,} failed: {m['error']}\n    {m['reached']}")
    table(
        rows,
        [
            "size",
            "pipeline",
            "ok",
            "wall_s",
            "records_per_s",
            "incidents_per_s",
            "peak_rss_mib",
            "baseline_rss_mib",
            "cpu_s",
            "sim_cpu_s",
            "rows",
        ],
    )
    print(
        "  rows: alerts / assets for ours, incident_reports / agents loaded for dlt; baseline = RSS after "
        "imports and definitions, before any data; sim_cpu_s = the simulator's CPU serving that pipeline."
    )
    for r in results:
        print(
            f"  simulator at {r['incidents']:,}: built in {r['sim_build_s']:.1f} s, peak RSS "
            f"{r['sim_peak_rss_mib']:.0f} MiB"
        )
    print("  ours, per step (seconds / peak RSS MiB while the step ran):")
    for r in results:
        steps = (r["ours"].get("result") or {}).get("steps", {})
        parts = [
            f"{job.removesuffix('_job')}.{name} {m['seconds']:.1f}s/{m['peak_rss_mib']:.0f}"
            for job, job_steps in steps.items()
            for name, m in job_steps.items()
            if name in ASSET_STEPS
        ]
        print(f"    {r['incidents']:>9,}: " + ", ".join(parts))
    print("  dlt, per phase (seconds / peak RSS MiB):")
    for r in results:
        phases = (r.get("dlt", {}).get("result") or {}).get("phases", {})
        if phases:
            print(
                f"    {r['incidents']:>9,}: "
                + ", ".join(
                    f"{name} {m['seconds']:.1f}s/{m['peak_rss_mib']:.0f}" for name, m in phases.items()
                )
            )

    ok = [r for r in results if r["ours"]["ok"]]
    targets = []
    growth = {}
    if len(ok) >= 2:
        small, big = ok[0], ok[-1]
        factor = big["incidents"] / small["incidents"]
        growth = {
            "size_factor": factor,
            "rss_factor": big["ours"]["peak_rss_mib"] / small["ours"]["peak_rss_mib"],
            "seconds_per_incident_factor": (big["ours"]["result"]["collect_job_seconds"] / big["incidents"])
            / (small["ours"]["result"]["collect_job_seconds"] / small["incidents"]),
        }
        print(
            f"  growth {small['incidents']:,} -> {big['incidents']:,} incidents (x{factor:g}): peak RSS "
            f"x{growth['rss_factor']:.2f}, time per incident x{growth['seconds_per_incident_factor']:.2f}"
        )
        targets.append(
            verdict(
                f"peak RSS growth over a x{factor:g} size increase (flat = streaming)",
                growth["rss_factor"],
                1.5,
                False,
                "x",
            )
        )
    ratios = []
    for r in results:
        if r["ours"]["ok"] and r.get("dlt", {}).get("ok"):
            ratio = {
                "incidents": r["incidents"],
                "wall_ours_over_dlt": r["ours"]["wall_s"] / r["dlt"]["wall_s"],
                "rss_ours_over_dlt": r["ours"]["peak_rss_mib"] / r["dlt"]["peak_rss_mib"],
            }
            ratios.append(ratio)
    if ratios:
        print("  ours / dlt (below 1 = ours is faster / leaner):")
        table(ratios)
        last = ratios[-1]
        targets.append(
            verdict(f"wall time ours/dlt at {last['incidents']:,}", last["wall_ours_over_dlt"], 1.0, False)
        )
        targets.append(
            verdict(f"peak RSS ours/dlt at {last['incidents']:,}", last["rss_ours_over_dlt"], 1.0, False)
        )
    by_size = {size_name(r["incidents"]): efficiency(r) for r in results}
    print("  efficiency (records per CPU-second: every raw version over the pipeline's CPU, parse workers "
          "included; keys = records/CPU-s / 500):")
    for name, e in by_size.items():
        if not e["ok"]:
            print(f"    {name}: failed")
            continue
        stages = ", ".join(f"{stage} {f['cpu_s']:.1f} CPU-s ({f['records_per_cpu_second']:,.0f}/s)"
                           for stage, f in e["stages"].items())
        peer = (f"; dlt {e['dlt_records_per_cpu_second']:,.0f} records/CPU-s"
                if "dlt_records_per_cpu_second" in e else "")
        print(f"    {name}: {e['records']:,} records, {e['cpu_s']:.1f} CPU-s = {e['records_per_cpu_second']:,.0f} "
              f"records/CPU-s = {e['keys_at_full_rate_per_core']:.2f} keys at full rate per core; peak RSS "
              f"{e['peak_rss_mib']:.0f} MiB ({e['peak_rss_with_workers_mib']:.0f} with parse workers){peer}")
        print(f"      per stage: {stages}")
        targets.append(verdict(f"records per CPU-second end to end at {name}", e["records_per_cpu_second"],
                               2_000, True))
        if name in ("1M", "8k"):
            targets.append(verdict(f"peak RSS MiB at {name} (with parse workers)",
                                   e["peak_rss_with_workers_mib"], 1024, False))
    largest = ok[-1]["lake_dir"] if ok else None
    return {
        **by_size,
        "sizes": results,
        "growth": growth,
        "peer_ratios": ratios,
        "targets": targets,
        "largest_lake": largest,
        "largest_incidents": ok[-1]["incidents"] if ok else 0,
        "rows": rows,
        "note": None if len(ok) == len(results) else "not every size completed",
    }
