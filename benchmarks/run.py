"""Run the benchmarks and print every figure: `python benchmarks/run.py [--quick] [--only NAME ...]`.

--quick runs every benchmark at a small scale (a few minutes); the full run uses the sizes documented in
benchmarks/README.md (about an hour or more on 2 cores, most of it the 1M-incident end-to-end run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (  # noqa: E402
    bench_accounts,
    bench_api,
    bench_e2e,
    bench_latency,
    bench_object_store,
    bench_query,
    bench_ratelimit,
)
from benchmarks.common import BENCH_DIR, bench_env, header, quiet_dagster, scratch  # noqa: E402

SECTIONS = ["api", "ratelimit", "e2e", "query", "latency", "accounts", "object_store", "parsing"]


def machine() -> dict[str, str]:
    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": str(os.cpu_count()),
        "memory_gib": f"{int(meminfo['MemTotal'].split()[0]) / 1024**2:.1f}",
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_parsing(quick: bool) -> dict:
    """The parsing benchmark is its own script (benchmarks/bench_parsing.py); run it if it is there."""
    script = BENCH_DIR / "bench_parsing.py"
    header("Parsing (benchmarks/bench_parsing.py)")
    if not script.exists():
        print("  bench_parsing.py not present: skipped")
        return {"skipped": True}
    args = [sys.executable, str(script)] + (["--incidents", "500", "--agents", "5000"] if quick else [])
    code = subprocess.call(args, cwd=BENCH_DIR.parent, env=bench_env())
    return {"returncode": code}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small scale: every figure in a few minutes")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--sizes", nargs="+", choices=list(bench_e2e.SIZES),
                        help="e2e: these sizes (incidents; 10k-1M with 100k agents, 2k/8k with 1k agents)")
    parser.add_argument("--json", type=Path, help="also write every measured figure to this JSON file")
    parser.add_argument("--postgres-url", help="object_store: this PostgreSQL for the s3 side's rate limiter "
                        "and locks (default: a throwaway local cluster, if PostgreSQL is installed)")
    args = parser.parse_args(argv)
    sections = args.only or SECTIONS
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("huntress_dagster.client").setLevel(
        logging.ERROR
    )  # 429 retries are counted, not logged
    quiet_dagster()

    info = machine()
    print(
        f"huntress_dagster benchmarks ({'quick' if args.quick else 'full'}): {info['cores']} cores, "
        f"{info['memory_gib']} GiB, {info['cpu']}, Python {info['python']}",
        flush=True,
    )
    started = time.monotonic()
    results: dict = {"machine": info, "quick": args.quick}
    if "api" in sections:
        results["api"] = bench_api.run(args.quick)
    if "ratelimit" in sections:
        results["ratelimit"] = bench_ratelimit.run(args.quick)
    with scratch("e2e") as workdir:
        lake, incidents = None, 0
        if "e2e" in sections:
            results["e2e"] = bench_e2e.run(args.quick, workdir, args.sizes)
            lake, incidents = results["e2e"]["largest_lake"], results["e2e"]["largest_incidents"]
        if "query" in sections:
            results["query"] = bench_query.run(lake, incidents)
    if "latency" in sections:
        results["latency"] = bench_latency.run(args.quick)
    if "accounts" in sections:
        results["accounts"] = bench_accounts.run(args.quick)
    if "object_store" in sections:
        results["object_store"] = bench_object_store.run(args.quick, args.postgres_url)
    if "parsing" in sections:
        results["parsing"] = run_parsing(args.quick)

    header("Targets")
    targets = [
        t for section in results.values() if isinstance(section, dict) for t in section.get("targets", [])
    ]
    for t in targets:
        print(
            f"  {'MET    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['measured']} (target {t['goal']})"
        )
    elapsed = time.monotonic() - started
    print(f"\ndone in {elapsed:.0f} s", flush=True)
    results["elapsed_seconds"] = elapsed
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
