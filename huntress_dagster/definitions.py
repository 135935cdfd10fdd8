"""Dagster definitions: `dagster dev -m huntress_dagster.definitions` (or the workspace.yaml).

With HUNTRESS_API_KEY unset this runs in DEMO MODE against the bundled simulator (one shared
simulator process for the webserver, daemon and every run), and says so in the logs and the UI.
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from .assets import build_assets
from .automation import (build_inbox_sensor, build_jobs, build_run_health_sensor, build_schedules, build_sensor,
                         connection_test_job)
from .checks import build_checks
from .coordination import is_postgres_url
from .demo import ensure_demo_receiver, ensure_demo_simulator
from .resources import HuntressConnection, HuntressLakeResource, HuntressResource
from .settings import Settings
from .simulator import DEMO_API_KEY, DEMO_API_SECRET

log = logging.getLogger("huntress_dagster")

DEMO_SECRET_ENV = "HUNTRESS_DEMO_API_SECRET"
DEMO_BANNER = ("**DEMO MODE** — HUNTRESS_API_KEY is not set, so this reads the bundled Huntress API simulator "
               "at {url}, not your Huntress account. ")


def build_definitions(settings: Settings, huntress: HuntressResource | None = None,
                      lake: HuntressLakeResource | None = None) -> dg.Definitions:
    """Everything Dagster needs, from settings (the component and the module entry point share this)."""
    banner = ""
    if huntress is None:
        if settings.demo:
            url = ensure_demo_simulator(tick_seconds=settings.demo_tick_seconds)
            try:  # the push path too: the simulator delivers signed webhooks to a receiver into the lake
                ensure_demo_receiver(url, settings.lake_dir)
            except (OSError, RuntimeError) as exc:  # the demo still works by polling
                log.warning("DEMO MODE: no webhook receiver (%s); collecting by polling only", exc)
            banner = DEMO_BANNER.format(url=url)
            log.warning("DEMO MODE: HUNTRESS_API_KEY is not set; using the bundled Huntress simulator at %s", url)
            # The demo secret still goes through EnvVar, so the UI never displays a secret value.
            os.environ.setdefault(DEMO_SECRET_ENV, DEMO_API_SECRET)
            huntress = HuntressResource(host_url=url, api_key=DEMO_API_KEY, api_secret=dg.EnvVar(DEMO_SECRET_ENV),
                                        tenant=settings.tenant, demo_mode=True,
                                        rate_limit_requests=settings.rate_limit,
                                        rate_limit_window_seconds=settings.rate_window_seconds,
                                        rate_limit_state_path=settings.rate_limit_state,
                                        max_pages_per_walk=settings.max_pages_per_walk,
                                        max_response_bytes=settings.max_response_bytes)
        else:
            huntress = HuntressResource(
                host_url=settings.host_url, api_key=dg.EnvVar("HUNTRESS_API_KEY") if not settings.connections else "",
                api_secret=dg.EnvVar("HUNTRESS_API_SECRET") if not settings.connections else "",
                connections=[HuntressConnection.of(c) for c in settings.connections],
                organization_ids=settings.organization_ids,
                tenant=settings.tenant, rate_limit_requests=settings.rate_limit,
                rate_limit_window_seconds=settings.rate_window_seconds,
                rate_limit_state_path=settings.rate_limit_state, max_pages_per_walk=settings.max_pages_per_walk,
                max_response_bytes=settings.max_response_bytes)
    lake = lake or HuntressLakeResource(lake_dir=settings.lake_dir, umask=settings.lake_umask,
                                        locks_url=settings.rate_limit_state if is_postgres_url(
                                            settings.rate_limit_state) else "",
                                        excluded_indicator_domains=list(settings.excluded_indicator_domains))
    partitions = dg.DailyPartitionsDefinition(start_date=settings.start_date, timezone="UTC", end_offset=1)
    automation_on = settings.demo  # real accounts: the user switches schedules and the sensor on
    schedule_status = dg.DefaultScheduleStatus.RUNNING if automation_on else dg.DefaultScheduleStatus.STOPPED
    sensor_status = dg.DefaultSensorStatus.RUNNING if automation_on else dg.DefaultSensorStatus.STOPPED
    return dg.Definitions(
        assets=build_assets(partitions, banner),
        asset_checks=build_checks(),
        jobs=[*build_jobs(), connection_test_job],
        schedules=build_schedules(settings, schedule_status),
        sensors=[build_sensor(settings, sensor_status), build_run_health_sensor(dg.DefaultSensorStatus.RUNNING),
                 build_inbox_sensor(settings, dg.DefaultSensorStatus.RUNNING)],  # no API cost: on
        resources={"huntress": huntress, "lake": lake},
        metadata={"huntress_mode": "demo (bundled simulator)" if settings.demo else "live",
                  "huntress_connections": ", ".join(c.name for c in huntress.connection_list()),
                  "lake_dir": settings.lake_dir},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
