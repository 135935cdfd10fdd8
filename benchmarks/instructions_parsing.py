"""Instructions per incident normalized: `python benchmarks/instructions_parsing.py [--incidents N] [--repo DIR]`.

A shared host's speed moves by 15% between runs minutes apart, so a timed A/B cannot show a 5% change in
the parser. An instruction count can: this runs a process that normalizes N bench incidents (the bodies of
`bench_parsing.py`) under valgrind's callgrind, and the same process without them, and prints the
difference per incident, with the functions (C and Python's own) that spend it. `--repo` points at
another checkout (a `git worktree` of the commit to compare). Needs valgrind (`apt-get install valgrind`);
about a minute per run of 200 incidents.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WARM_UP = 20  # records normalized in both processes first: TLD list, compiled patterns, Arrow kernels

# Runs in the measured process: the records are built (and a warm-up batch normalized) in both.
WORKLOAD = """
import sys
sys.path.insert(0, sys.argv[1])
from benchmarks.bench_parsing import CONTEXT, incident_records
from huntress_dagster.parsing.syslog import normalize_incidents
count, warm_up = int(sys.argv[2]), int(sys.argv[3])
records = incident_records(count + warm_up)
normalize_incidents(records[:warm_up], CONTEXT)
if sys.argv[4] == "measure":
    normalize_incidents(records[warm_up:], CONTEXT)
"""
TOTALS = "PROGRAM TOTALS"
_COST_LINE = re.compile(r"\s*([\d,]+) \([^)]*\)\s+(\S.*?)(?: \[.*)?$")


def callgrind(repo: Path, count: int, mode: str, out: Path) -> dict[str, int]:
    """Instructions per function of one run (`mode` "measure" or "baseline")."""
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            WORKLOAD,
            str(repo),
            str(count),
            str(WARM_UP),
            mode,
        ],
        check=True,
        capture_output=True,
        # the same set orders every run, and no idle OpenBLAS threads (numpy, imported by pyarrow) spinning
        env={**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"},
    )
    report = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)], check=True, capture_output=True, text=True
    ).stdout
    costs: dict[str, int] = collections.Counter()
    for line in report.splitlines():
        match = _COST_LINE.match(line)
        if match:  # "PROGRAM TOTALS", then one line per file:function
            costs[match[2].rsplit("/", 1)[-1]] += int(match[1].replace(",", ""))
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose parser to measure")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_annotate")):
        sys.exit("valgrind is not installed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as scratch:
        measured = callgrind(args.repo, args.incidents, "measure", Path(scratch) / "measure.out")
        baseline = callgrind(args.repo, args.incidents, "baseline", Path(scratch) / "baseline.out")
    spent = collections.Counter({name: cost - baseline.get(name, 0) for name, cost in measured.items()})
    total = spent.pop(TOTALS)
    print(
        f"{args.repo}: {total / args.incidents / 1e6:.3f} M instructions per incident normalized "
        f"({args.incidents} bench incidents, callgrind)"
    )
    for name, cost in spent.most_common(args.top):
        print(f"  {cost / args.incidents / 1e3:9.1f} k  {100 * cost / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
