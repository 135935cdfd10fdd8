"""A production deployment in miniature: two "pods" (separate processes, each with its own temp dir and
DAGSTER_HOME working directory, sharing nothing but a real PostgreSQL and a real S3-compatible server)
backfill overlapping ranges at once. The lake must equal a clean single-process run, nothing lost or
duplicated, and the two together must stay within the key's rate budget (from the simulator's own log)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from huntress_dagster import catalog
from huntress_dagster.lake import Lake
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET
from huntress_dagster.streams import WALK_STREAMS

from .dagster_helpers import start_day, today
from .object_store import BUCKET, object_names

REPO = Path(__file__).resolve().parents[1]
BUDGET, WINDOW = 12, 2.0  # requests per window of the key, shared by both pods

# table -> key columns: what must be equal between the two-pod lake and the clean one. Walked streams only
# in parsed_syslog: each run takes its own snapshot of the snapshot streams (two pods, two snapshots).
WALKED_CLASSES = ", ".join(f"'{s.msg_class}'" for s in WALK_STREAMS)
TABLES = {
    "raw_incidents": "account, id, updated_at", "raw_signals": "account, id, updated_at",
    "raw_escalations": "account, id, updated_at", "raw_platform_actions": "account, id, updated_at",
    f"parsed_syslog WHERE msg_class IN ({WALKED_CLASSES})": "msg_class, huntress.id, huntress.updated_at",
    "alerts": "tenantid, msg_class, huntress_id, organization_id, account_id, updated_at, status",
}


def pod(name: str, tmp_path: Path, server, s3_env: dict, postgres_url: str, lake: str) -> dict[str, str]:
    """The environment of one pod: its own DAGSTER_HOME (the deployment's PostgreSQL dagster.yaml) and temp
    dir; shared: only PostgreSQL (instance, rate budget, locks) and the bucket."""
    home, tmp = tmp_path / name / "dagster_home", tmp_path / name / "tmp"
    home.mkdir(parents=True)
    tmp.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUNTRESS_", "AWS_"))}
    env.update(s3_env, DAGSTER_HOME=str(home), TMPDIR=str(tmp), DAGSTER_POSTGRES_URL=postgres_url,
               HUNTRESS_API_KEY=DEMO_API_KEY, HUNTRESS_API_SECRET=DEMO_API_SECRET, HUNTRESS_HOST_URL=server.url,
               HUNTRESS_LAKE_DIR=lake, HUNTRESS_RATE_LIMIT_STATE=postgres_url, HUNTRESS_RATE_LIMIT=str(BUDGET),
               HUNTRESS_RATE_WINDOW_SECONDS=str(WINDOW), HUNTRESS_START_DATE=start_day().isoformat())
    return env


def run(env: dict[str, str], first, last) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "huntress_dagster.cli", "run", "--start", str(first), "--end",
                             str(last)], env=env, cwd=Path(env["TMPDIR"]), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def rows(lake: Lake, table: str, columns: str) -> list[tuple]:
    with lake.connect() as con:
        catalog.register_views(lake, con, [table.split()[0]])  # one view: on the store, each is a listing and a footer
        return con.execute(f"SELECT {columns} FROM {table} ORDER BY {columns}").fetchall()


def most_in_any_window(times: list[float], window: float) -> int:
    times, most, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.slow
def test_two_pods_sharing_only_postgres_and_the_bucket_backfill_overlapping_ranges_losslessly(
        make_simulator, tmp_path, postgres_url, s3_server):
    server = make_simulator({"incidents": 80, "signals": 40, "agents": 20, "days": 6}, rate_limit=1_000)
    shared = f"s3://{BUCKET}/two-pods"
    first = today() - timedelta(days=6)  # the world's history; two overlapping halves of it
    env_a, env_b = (pod(name, tmp_path, server, s3_server, postgres_url, shared) for name in "ab")
    # A deployment creates the instance's schema once (`dagster instance migrate`) before its pods start: two
    # pods creating it at the same moment race inside dagster-postgres (a unique violation on pg_type).
    subprocess.run([sys.executable, "-m", "dagster", "instance", "migrate"], env=env_a, check=True, timeout=300,
                   capture_output=True)
    a = run(env_a, first, today() - timedelta(days=2))
    b = run(env_b, today() - timedelta(days=4), today())
    outputs = [p.communicate(timeout=900)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, "\n".join(o[-3000:] for o in outputs)
    together = list(server.request_log)

    server.request_log.clear()
    clean = f"s3://{BUCKET}/clean"
    single = run(pod("clean", tmp_path, server, s3_server, postgres_url, clean), first, today())
    output = single.communicate(timeout=900)[0]
    assert single.returncode == 0, output[-3000:]

    two_pods, one = Lake(shared), Lake(clean)
    for table, columns in TABLES.items():
        got, want = rows(two_pods, table, columns), rows(one, table, columns)
        assert want and got == want, table  # equal, hence 0 lost and 0 duplicated (the clean run has no repeat)
        assert len(set(got)) == len(got), table
    truth = {(r["id"]) for r in server.world.truth_incidents()}
    assert {r[1] for r in rows(two_pods, "raw_incidents", "account, id")} == truth
    # Both pods together never exceeded the key's budget, and the API never had to refuse one
    assert most_in_any_window([e["t"] for e in together], WINDOW) <= BUDGET
    assert not [e for e in together if e["status"] == 429]
    assert not [n for n in object_names(shared) if "/.tmp-" in n or "/_staging/" in n]
    # Both runs are in the shared Dagster instance (PostgreSQL), whichever pod ran them
    os.environ["DAGSTER_POSTGRES_URL"] = postgres_url
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(tmp_path / "a" / "dagster_home"))
    assert len(instance.get_runs()) >= 3
