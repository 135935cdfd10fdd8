"""2. Rate-limit use: how much of the account's sliding-window budget we turn into requests, and whether
a walk still delivers every record exactly once when another tool spends half the budget.

The 60-per-minute window is time-scaled (60 requests per 2 s: 30x faster) on both sides: the simulator's
window and our `RateLimiter`; our client's backoff is scaled by the same factor (base 1 s -> 1/30 s,
max 60 s -> 2 s), so the dynamics are those of the real budget, 30 times faster.

Walks page through /incident_reports (updated_at desc, keyset `page_token`) with small pages so that a
few thousand records make enough requests to measure a sustained rate; the request log of the simulator
is the ground truth for rates and 429s.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    SimProcess,
    bench_env,
    header,
    scratch,
    table,
    verdict,
    worker_command,
)

LIMIT = 60  # requests per window, as Huntress allows per minute
WINDOW = 2.0  # seconds (the real window is 60 s: time scale 30x)
SCALE = 60.0 / WINDOW
COLLECTION = "incident_reports"
PAGE_SIZE = 10  # small pages: many requests per record, so the walk is long enough to measure a rate


def our_client(url: str, state_path: Path):
    from huntress_dagster.client import HuntressClient
    from huntress_dagster.ratelimit import RateLimiter, bucket_name_for

    limiter = RateLimiter(LIMIT, WINDOW, state_path=state_path, bucket=bucket_name_for(DEMO_API_KEY, url))
    return HuntressClient(
        DEMO_API_KEY,
        DEMO_API_SECRET,
        url,
        rate_limiter=limiter,
        backoff_base=1.0 / SCALE,
        backoff_max=60.0 / SCALE,
    )


def walk_ids(client, collection: str = COLLECTION) -> tuple[list[int], str | None]:
    """Every id a paginated walk delivers (duplicates kept, to count them), and the error that ended it."""
    from huntress_dagster.errors import HuntressError

    ids: list[int] = []
    params = {"limit": PAGE_SIZE, "sort_field": "updated_at", "sort_direction": "desc"}
    try:
        for page in client.iter_pages(f"/{collection}", collection, params):
            ids.extend(item["id"] for item in page.items)
    except HuntressError as exc:
        return ids, f"{type(exc).__name__}: {exc.detail}"
    return ids, None


def budget_share(times: list[float], t0: float | None = None) -> float:
    """Admitted requests per window as a fraction of LIMIT, over the whole windows of a walk.

    Windows are counted from the walk's first request: a walk of n requests spans k whole windows and a
    partial last one, and the share is (requests in the k whole windows) / (k * LIMIT). (Counting the
    partial window too would charge a 300-request walk a fifth of its budget for 2 straggling requests.)"""
    if len(times) < 2:
        return 0.0
    t0 = min(times) if t0 is None else t0
    whole = int((max(times) - t0) // WINDOW)
    if whole < 1:
        return len(times) / LIMIT
    return sum(1 for t in times if t < t0 + whole * WINDOW) / (whole * LIMIT)


def max_in_window(times: list[float]) -> int:
    """The most requests admitted inside any sliding window (must stay <= LIMIT)."""
    ordered, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - WINDOW:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def start_other(url: str, seconds: float, shared_state: Path | None) -> subprocess.Popen:
    """The other tool: half the budget (LIMIT/2 per window), in its own process."""
    args = ["other-client", url, str(LIMIT // 2), str(WINDOW), str(seconds)]
    if shared_state:
        args += [str(shared_state), str(LIMIT)]
    proc = subprocess.Popen(worker_command(*args), stdout=subprocess.PIPE, env=bench_env(), text=True)
    assert json.loads(proc.stdout.readline()).get("ready")  # type: ignore[union-attr]
    return proc


def run_case(
    sim: SimProcess, workdir: Path, name: str, truth: list[int], other: str | None
) -> dict[str, Any]:
    """One walk of the whole collection by our client, alone or next to another tool."""
    state = workdir / f"{re.sub(r'[^a-z]+', '-', name)}.sqlite"
    expected_requests = len(truth) / PAGE_SIZE
    other_proc = None
    if other:
        # The other tool runs for longer than our walk could take at half the budget.
        seconds = 2.5 * expected_requests / (LIMIT / WINDOW / 2) + 4 * WINDOW
        other_proc = start_other(sim.url, seconds, state if other == "shared" else None)
        time.sleep(WINDOW)  # it is already spending when we start
    since = time.time()
    client = our_client(sim.url, state)
    started = time.monotonic()
    ids, error = walk_ids(client)
    wall = time.monotonic() - started
    stats = client.stats
    client.close()
    log = sim.requests(since)
    mine = [e for e in log if e["path"] == f"/v1/{COLLECTION}"]
    others = [e for e in log if e["path"] == "/v1/account"]
    ok_times = [e["t"] for e in mine if e["status"] == 200]
    other_ok = [
        e["t"] for e in others if e["status"] == 200 and ok_times and ok_times[0] <= e["t"] <= ok_times[-1]
    ]
    if other_proc:
        other_proc.terminate()
        try:
            other_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            other_proc.kill()
            other_proc.wait()
    counts = Counter(ids)
    result = {
        "case": name,
        "records": len(truth),
        "delivered_once": sum(1 for i in truth if counts.get(i) == 1),
        "missing": sum(1 for i in truth if i not in counts),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "requests": len(mine),
        "our_429": sum(1 for e in mine if e["status"] == 429),
        "other_429": sum(1 for e in others if e["status"] == 429),
        "wall_s": wall,
        "our_share": budget_share(ok_times),
        "account_share": budget_share(ok_times + other_ok, ok_times[0]) if ok_times else 0.0,
        "max_in_window": max_in_window([e["t"] for e in log if e["status"] == 200]),
        "retries": stats.retries,
        "limiter_wait_s": stats.rate_limit_wait_seconds,
        "error": error,
    }
    return result


def run(quick: bool) -> dict[str, Any]:
    header(
        f"2. Rate-limit use (budget {LIMIT} requests per {WINDOW:g} s sliding window = 60/min time-scaled "
        f"{SCALE:g}x; pages of {PAGE_SIZE})"
    )
    records = 3_000 if quick else 12_000  # -> 300 / 1,200 requests
    world = dict(
        seed=5,
        organizations=5,
        agents=200,
        incidents=records,
        days=30,
        body_min_bytes=200,
        body_max_bytes=600,
        large_body_share=0.0,
        many_remediations_share=0.0,
    )
    config = dict(rate_limit=LIMIT, rate_window_seconds=WINDOW)
    with scratch("ratelimit") as workdir, SimProcess(world, config, log_path=workdir / "sim.log") as sim:
        truth = [r["id"] for r in sim.admin("truth/incidents")["incident_reports"]]
        cases = [run_case(sim, workdir, "alone", truth, None)]
        time.sleep(WINDOW)
        cases.append(run_case(sim, workdir, "other tool, own limiter (429s)", truth, "separate"))
        time.sleep(WINDOW)
        cases.append(run_case(sim, workdir, "other tool, shared limiter file", truth, "shared"))
    table(
        cases,
        [
            "case",
            "records",
            "delivered_once",
            "missing",
            "duplicates",
            "requests",
            "our_429",
            "other_429",
            "wall_s",
            "our_share",
            "account_share",
            "max_in_window",
            "retries",
        ],
    )
    for case in cases:
        if case["error"]:
            print(f"  {case['case']}: walk ended with {case['error']}")
    alone, contended, shared = cases
    print(
        "  our_share: our admitted requests per whole window of the walk / the limit; account_share: ours + "
        "the other tool's; max_in_window: most admitted requests in any sliding window (server side)."
    )
    targets = [
        verdict("sustained rate alone, fraction of the limit", alone["our_share"], 0.95, True),
        verdict("429s alone", alone["our_429"], 0, False),
        verdict(
            "records lost or duplicated next to an uncooperative tool",
            contended["missing"] + contended["duplicates"] + (1 if contended["error"] else 0),
            0,
            False,
        ),
        verdict(
            "records lost or duplicated next to a cooperating tool (shared limiter)",
            shared["missing"] + shared["duplicates"] + (1 if shared["error"] else 0),
            0,
            False,
        ),
    ]
    return {"cases": cases, "targets": targets}
