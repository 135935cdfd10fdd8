"""`HuntressConnectorComponent`: the whole connector from a few lines of YAML.

    type: huntress_dagster.HuntressConnectorComponent
    attributes:
      lake_dir: /data/huntress
      tenant: acme
      organization_ids: [501, 502]
      rate_limit: 50

Credentials are never YAML values (`{{ env.VAR }}` is resolved at load time and shown in the UI):
the component reads HUNTRESS_API_KEY / HUNTRESS_API_SECRET through EnvVar, like the module entry point.
Several keys go in `connections:` (the schema of HUNTRESS_CONNECTIONS_FILE, secrets as variable names):

      connections:
        - name: msp
          api_key_env: HUNTRESS_MSP_API_KEY
          api_secret_env: HUNTRESS_MSP_API_SECRET
          tenants: {21: acme}

With no credentials of either kind it runs in demo mode on the bundled simulator.
`dg scaffold defs huntress_dagster.HuntressConnectorComponent huntress` writes a defs.yaml listing every
attribute (scaffolder.py).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import dagster as dg

from ..connections import missing_credentials, parse_connections
from ..definitions import build_definitions
from ..errors import HuntressConfigError
from ..settings import Settings
from .scaffolder import HuntressConnectorScaffolder


@dg.scaffold_with(HuntressConnectorScaffolder)
class HuntressConnectorComponent(dg.Component, dg.Model, dg.Resolvable):
    """Collects every Huntress stream (incident reports, signals, escalations, platform actions, agents) into a
    DuckDB/Parquet lake: a raw asset per stream, parsed_syslog, agent_inventory and alerts, checks, schedules and a
    sensor."""

    lake_dir: str | None = None
    tenant: str | None = None
    host_url: str | None = None
    organization_ids: list[int] | None = None
    rate_limit: int | None = None
    rate_window_seconds: float | None = None
    start_date: str | None = None
    incidents_cron: str | None = None
    agents_cron: str | None = None
    organizations_cron: str | None = None
    identities_cron: str | None = None
    external_ports_cron: str | None = None
    sensor_interval_seconds: int | None = None
    max_pages_per_walk: int | None = None
    max_response_bytes: int | None = None
    excluded_indicator_domains: list[str] | None = None
    sensor_requests_per_tick: int | None = None
    connections: list[dict[str, Any]] | None = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        overrides = {name: tuple(value) if isinstance(value, list) and name != "organization_ids" else value
                     for name, value in self.model_dump().items() if value is not None and name != "connections"}
        if self.connections:
            connections = parse_connections({"connections": self.connections}, "component attributes")
            problems = missing_credentials(connections, os.environ)
            if problems:
                raise HuntressConfigError("Invalid Huntress connections:\n  - " + "\n  - ".join(problems))
            overrides.update(connections=tuple(connections), demo=False)
        # validate(): YAML values get the same checks, and errors, as environment variables
        return build_definitions(dataclasses.replace(Settings.from_env(), **overrides).validate())
