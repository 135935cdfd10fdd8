"""Where the end-to-end run's CPU goes: `python benchmarks/profile_e2e.py [--incidents N] [--agents N]`.

Runs `workers.py ours` (the inventory job, then the collect job over 30 days, as benchmark 3 does) under
py-spy (sampling, `--subprocesses`, so the parse step's worker processes count too; idle frames left
out) against the simulator in its own process, then prints the CPU samples per stage (the asset whose
function is on the stack) and, per stage, the functions that spend them (self time, ours and the
libraries'). Needs `py-spy` (in the `bench` extra). The folded stacks are kept with `--keep DIR` (for
a flame graph: `flamegraph.pl DIR/profile.folded`).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_e2e import HISTORY_DAYS, LARGE_BODY_SHARE  # noqa: E402
from benchmarks.common import SimProcess, bench_env, scratch, worker_command  # noqa: E402

# The frame (function name) that says which stage a sample belongs to; the first match from the root wins.
STAGES = {
    "raw_walked": "raw walk + commit (walked streams)",
    "raw_snapshot": "raw snapshot (agents, ...)",
    "inventory_table": "inventories (agent_inventory, ...)",
    "parsed_syslog": "parsed_syslog (the step itself)",
    "build_parsed_syslog_day": "parsed_syslog (per day, parent or parse workers)",
    "alerts": "alerts + OCSF findings",
}


def stage_of(frames: list[str]) -> str:
    for frame in frames:
        name = frame.split(" (", 1)[0].rsplit(".", 1)[-1]  # "inventory_asset.<locals>.inventory_table"
        if name in STAGES:
            return STAGES[name]
    return "other (imports, Dagster, run setup)"


def leaf(frames: list[str]) -> str:
    """The innermost frame, as `function (module:line)` with the path cut to its package."""
    name, _, where = frames[-1].partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "huntress_dagster/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where.rsplit(':', 1)[0]})"


def summarize(folded: Path, top: int) -> dict[str, dict]:
    stages: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if frames:
            stages[stage_of(frames)][leaf(frames)] += int(count)
    total = sum(sum(c.values()) for c in stages.values())
    out = {}
    for stage, counter in sorted(stages.items(), key=lambda kv: -sum(kv[1].values())):
        samples = sum(counter.values())
        out[stage] = {
            "share": samples / total,
            "top": [(fn, n / samples) for fn, n in counter.most_common(top)],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="keep the folded stacks here")
    parser.add_argument("--folded", type=Path, help="only summarize these folded stacks (of an earlier run)")
    args = parser.parse_args()
    if args.folded:
        report(args.folded, args.top)
        return 0
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        print("py-spy is not installed (pip install -e '.[bench]')")
        return 2
    world = dict(seed=7, organizations=50, agents=args.agents, incidents=args.incidents, days=HISTORY_DAYS,
                 body_min_bytes=2_000, body_max_bytes=20_000, large_body_share=LARGE_BODY_SHARE)
    with scratch("profile") as workdir, SimProcess(world, log_path=workdir / "sim.log") as sim:
        (workdir / "ours").mkdir()
        folded = workdir / "profile.folded"
        command = [py_spy, "record", "--subprocesses", "--format", "raw", "--rate", str(args.rate),
                   "--output", str(folded), "--"] + worker_command("ours", sim.url, str(workdir / "ours"),
                                                                  str(HISTORY_DAYS))
        print(f"profiling {args.incidents:,} incidents + {args.agents:,} agents ...", flush=True)
        with open(workdir / "ours.log", "ab") as log:
            code = subprocess.call(command, stdout=subprocess.DEVNULL, stderr=log, env=bench_env())
        if code != 0 or not folded.exists():
            print(f"the profiled run failed (exit {code}); see {workdir / 'ours.log'}")
            print((workdir / "ours.log").read_text(errors="replace")[-3000:])
            return 1
        report(folded, args.top, args.keep)
    return 0


def report(folded: Path, top: int, keep: Path | None = None) -> None:
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(folded, keep / "profile.folded")
    for stage, figures in summarize(folded, top).items():
        print(f"\n{stage}: {figures['share']:.1%} of CPU samples")
        for fn, share in figures["top"]:
            print(f"    {share:6.1%}  {fn}")


if __name__ == "__main__":
    sys.exit(main())
