"""`huntress-dagster demo`: one real Dagster run of everything against a private simulator, then a summary."""

from __future__ import annotations

import dataclasses
from datetime import date

import dagster as dg

from .definitions import MODE_TAG, build_definitions
from .headless import lake_summary, run_range, run_summary, utc_today
from .lake import Lake
from .resources import HuntressLakeResource, HuntressResource
from .settings import Settings
from .simulator import DEMO_API_KEY, DEMO_API_SECRET


def run_demo_pipeline(host_url: str, lake_dir: str) -> str:
    settings = dataclasses.replace(Settings.from_env({}), lake_dir=lake_dir)
    huntress = HuntressResource(host_url=host_url, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                                demo_mode=True, rate_limit_requests=10_000)
    defs = build_definitions(settings, huntress=huntress, lake=HuntressLakeResource(lake_dir=lake_dir))
    result = run_range(defs, dg.DagsterInstance.ephemeral(), date.fromisoformat(settings.start_date), utc_today(),
                       {MODE_TAG: "demo"})
    if not result.success:
        raise SystemExit("demo run failed:\n" + run_summary(result))
    return (lake_summary(Lake(lake_dir)) + f"\nQuery it: .venv/bin/huntress-dagster sql --lake-dir {lake_dir} "
            "\"select msg_class, severity, count(*) from alerts group by all order by all\"")
