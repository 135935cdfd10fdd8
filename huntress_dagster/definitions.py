"""Dagster definitions: `dagster dev -m huntress_dagster.definitions` (or the workspace.yaml).

With HUNTRESS_API_KEY unset this runs in DEMO MODE against the bundled simulator (one shared simulator
process for the code server and every run; see demo.py for who starts it and when it stops), and says so
once in the terminal and in the UI: asset descriptions, the `huntress` resource, and the run tag
`huntress/mode: demo` on every run that talks to the simulator.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path

import dagster as dg
from pydantic import Field

from .assets import build_assets
from .automation import (build_inbox_sensor, build_jobs, build_run_health_sensor, build_schedules, build_sensor,
                         connection_test_job)
from .checks import build_checks
from .connections import Connection
from .coordination import is_postgres_url
from .demo import (default_state_dir, demo_simulator_url, dev_cli_pid, ensure_demo_receiver, ensure_demo_simulator,
                   first_load_of_dev_session)
from .resources import HuntressConnection, HuntressLakeResource, HuntressResource
from .settings import Settings
from .simulator import DEMO_API_KEY, DEMO_API_SECRET

log = logging.getLogger("huntress_dagster")

DEMO_SECRET_ENV = "HUNTRESS_DEMO_API_SECRET"
DEMO_BANNER = ("**DEMO MODE** — HUNTRESS_API_KEY is not set, so this reads the bundled Huntress API simulator "
               "at {url}, not your Huntress account. ")
MODE_TAG = "huntress/mode"  # "demo" on every run against the bundled simulator


class DemoHuntressResource(HuntressResource):
    """DEMO MODE: the bundled Huntress API simulator, not a Huntress account (HUNTRESS_API_KEY is not set).
    The simulator is found (or started, if no `dagster dev` started it) when a run or sensor first uses the
    resource, never when the definitions load; every run that uses it is tagged huntress/mode=demo."""

    demo_state_dir: str = Field(description="The shared demo simulator's state and world (demo.py)")
    demo_tick_seconds: float = Field(default=60.0, description="How often the simulator's world moves "
                                     "(HUNTRESS_DEMO_TICK_SECONDS)")

    def connection_list(self) -> list[Connection]:
        # The live URL: host_url is where it was (or will be) when the definitions loaded.
        url = ensure_demo_simulator(Path(self.demo_state_dir), tick_seconds=self.demo_tick_seconds, start=True)
        return [dataclasses.replace(c, host_url=url) for c in super().connection_list()]

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # At resource init, so it covers every run using it however launched (schedule, sensor, UI, CLI).
        run = context.run
        if run is not None and context.instance is not None and run.tags.get(MODE_TAG) != "demo":
            context.instance.add_run_tags(run.run_id, {MODE_TAG: "demo"})


_said_demo_mode = False  # outside a dev CLI: DEMO MODE is said once per process


def demo_huntress(settings: Settings) -> tuple[DemoHuntressResource, str]:
    """The demo resource and where it points. Under `dagster dev` / `dg dev` the simulator and the webhook
    receiver start now, for the session (they stop with it); anywhere else nothing starts here."""
    global _said_demo_mode
    state_dir, dev_pid = default_state_dir(), dev_cli_pid()
    if dev_pid:
        url = ensure_demo_simulator(state_dir, tick_seconds=settings.demo_tick_seconds)
        try:  # the push path too: the simulator delivers signed webhooks to a receiver into the lake
            ensure_demo_receiver(url, settings.lake_dir, state_dir, exit_with=dev_pid)
        except (OSError, RuntimeError) as exc:  # the demo still works by polling
            log.warning("DEMO MODE: no webhook receiver (%s); collecting by polling only", exc)
        if first_load_of_dev_session(state_dir, dev_pid):  # not again in every run worker's load
            log.warning("DEMO MODE: HUNTRESS_API_KEY is not set; using the bundled Huntress simulator at %s "
                        "(world kept in %s; it stops with this dev server)", url, state_dir)
    else:
        url = demo_simulator_url(state_dir)
        if not _said_demo_mode:
            _said_demo_mode = True
            log.warning("DEMO MODE: HUNTRESS_API_KEY is not set; the definitions use the bundled Huntress "
                        "simulator (%s), which runs under `dagster dev` / `dg dev` or starts when a run needs it",
                        url)
    # The demo secret still goes through EnvVar, so the UI never displays a secret value.
    os.environ.setdefault(DEMO_SECRET_ENV, DEMO_API_SECRET)
    resource = DemoHuntressResource(
        host_url=url, api_key=DEMO_API_KEY, api_secret=dg.EnvVar(DEMO_SECRET_ENV), tenant=settings.tenant,
        demo_mode=True, demo_state_dir=str(state_dir), demo_tick_seconds=settings.demo_tick_seconds,
        rate_limit_requests=settings.rate_limit, rate_limit_window_seconds=settings.rate_window_seconds,
        rate_limit_state_path=settings.rate_limit_state, max_pages_per_walk=settings.max_pages_per_walk,
        max_response_bytes=settings.max_response_bytes)
    return resource, url


def build_definitions(settings: Settings, huntress: HuntressResource | None = None,
                      lake: HuntressLakeResource | None = None) -> dg.Definitions:
    """Everything Dagster needs, from settings (the component and the module entry point share this)."""
    banner = ""
    if huntress is None:
        if settings.demo:
            huntress, url = demo_huntress(settings)
            banner = DEMO_BANNER.format(url=url)
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
        assets=_assets(partitions, banner),
        asset_checks=build_checks(),
        jobs=[*build_jobs(), connection_test_job],
        schedules=build_schedules(settings, schedule_status),
        sensors=[build_sensor(settings, sensor_status), build_run_health_sensor(dg.DefaultSensorStatus.RUNNING),
                 build_inbox_sensor(settings, dg.DefaultSensorStatus.RUNNING)],  # no API cost: on
        resources={"huntress": huntress, "lake": lake},
        # Every job in process, the UI's "Materialize" (Dagster's implicit asset job) included: as for the
        # project's jobs (automation.build_jobs), a process per step costs ~3 s each and buys nothing here.
        executor=dg.in_process_executor,
        metadata={"huntress_mode": "demo (bundled simulator)" if settings.demo else "live",
                  # the configured names (the base method: the demo resource's would start a simulator)
                  "huntress_connections": ", ".join(c.name for c in HuntressResource.connection_list(huntress)),
                  "lake_dir": settings.lake_dir},
    )


def _assets(partitions: dg.PartitionsDefinition, banner: str) -> list:
    # The raw assets use backfill_policy on purpose (one run per range); Dagster's BetaWarning about it would
    # print five times at every load: in the code server and again in every run worker.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
        return build_assets(partitions, banner)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
