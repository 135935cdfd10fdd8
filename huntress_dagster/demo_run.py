"""`huntress-dagster demo`: real Dagster runs of both jobs against a simulator, then a lake summary."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone

import dagster as dg

from .automation import AGENTS_JOB, INCIDENTS_JOB, range_tags
from .definitions import build_definitions
from .lake import Lake
from .resources import HuntressLakeResource, HuntressResource
from .settings import Settings
from .simulator import DEMO_API_KEY, DEMO_API_SECRET


def run_demo_pipeline(host_url: str, lake_dir: str) -> str:
    settings = dataclasses.replace(Settings.from_env({}), lake_dir=lake_dir)
    huntress = HuntressResource(host_url=host_url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                                demo_mode=True, rate_limit_requests=10_000)
    defs = build_definitions(settings, huntress=huntress, lake=HuntressLakeResource(lake_dir=lake_dir))
    today = datetime.now(timezone.utc).date()
    instance = dg.DagsterInstance.ephemeral()
    agents = defs.resolve_job_def(AGENTS_JOB).execute_in_process(partition_key=today.isoformat(), instance=instance)
    incidents = defs.resolve_job_def(INCIDENTS_JOB).execute_in_process(
        tags=range_tags(date.fromisoformat(settings.start_date), today), instance=instance)
    if not (agents.success and incidents.success):
        raise SystemExit("demo runs failed; see the logs above")
    return lake_summary(Lake(lake_dir))


def lake_summary(lake: Lake) -> str:
    lines = [f"Lake {lake.root}:"]
    with lake.connect() as con:
        tables = lake.register_views(con)
        for table in tables:
            lines.append(f"  {table:28s} {con.execute(f'SELECT count(*) FROM {table}').fetchone()[0]:>9,d} rows")
        if "alerts" in tables:
            rows = con.execute("SELECT severity, status, count(*) FROM alerts GROUP BY ALL ORDER BY 1, 3 DESC").fetchall()
            lines.append("  alerts by severity/status: " + ", ".join(f"{s}/{t}={n}" for s, t, n in rows))
    lines.append(f"Query it: duckdb {lake.catalog_path} -c \"select severity, count(*) from alerts group by 1\"")
    return "\n".join(lines)
