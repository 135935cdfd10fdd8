"""What `dg scaffold defs huntress_dagster.HuntressConnectorComponent huntress` writes: a `defs.yaml` that
loads as is (no credentials: demo mode on the bundled simulator) and lists every attribute with what it does,
so going live is uncommenting lines rather than reading the source.

One attribute is set: `lake_dir`, to HUNTRESS_LAKE_DIR if set, else the project's `lake/` directory. The
component's own default, ./lake, is relative to the working directory, which differs between `dg`, the
webserver, the daemon and run workers started elsewhere; the project root does not. (A YAML mapping must have
at least one key, too: `dg check defs` refuses `attributes:` with only comments under it.) The others stay
comments at their defaults, because a value in YAML overrides its HUNTRESS_* variable.

`--lake-dir` and `--tenant` (or `--json-params '{"lake_dir": ..., "tenant": ...}'`) write those attributes as
plain values instead.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import dagster as dg
import yaml
from pydantic import BaseModel, Field

from ..settings import Settings

DEFAULT = object()  # an Attribute's example: the `Settings` default


class SetValue(str):
    """An Attribute's example that is YAML text written as the attribute's value, not as a comment."""


COMMENT_WIDTH = 104  # with the indent and "# ", lines stay within the project's 110 columns

HEADER = """\
# The Huntress connector: every Huntress stream (incident reports, signals, escalations, platform actions,
# agents, organizations, identities, external ports) into a DuckDB/Parquet lake, with the parsed_syslog,
# assets and alerts tables, checks, schedules and sensors.
#
# Credentials are never written here, not even as {{ env.HUNTRESS_API_KEY }}: a template is resolved when the
# definitions load and its value is shown in the UI. The component reads HUNTRESS_API_KEY and
# HUNTRESS_API_SECRET from the environment itself (through dg.EnvVar). With neither those nor `connections:`
# set, it runs in DEMO MODE: it starts the bundled Huntress API simulator on 127.0.0.1 and reads that.
#
# An attribute left out (commented) takes its HUNTRESS_* environment variable, else the default shown.
"""


@dataclass(frozen=True)
class Attribute:
    """One attribute in the scaffolded defs.yaml: why it is there (a comment), and its example: the `Settings`
    default where there is one (DEFAULT), so uncommenting the line changes nothing until the value is edited;
    else a typical value; or a SetValue, written as the attribute's value."""

    why: str
    example: object = DEFAULT


ATTRIBUTES: dict[str, Attribute] = {
    "lake_dir": Attribute(
        "Where the lake is written: a directory (created 0700) or s3://bucket/prefix. Here: "
        "HUNTRESS_LAKE_DIR if set, else lake/ in this project (without the attribute: HUNTRESS_LAKE_DIR, "
        "else ./lake in whatever directory Dagster runs in). E.g. /data/huntress.",
        # resolved when the definitions load (`env`, `context`: Dagster's template scopes)
        SetValue('"{{ env.HUNTRESS_LAKE_DIR or (context.project_root ~ \'/lake\') }}"')),
    "tenant": Attribute("The tenantid written on every row; it keys alert deduplication. HUNTRESS_TENANT."),
    "host_url": Attribute("The Huntress API. HUNTRESS_HOST_URL."),
    "organization_ids": Attribute(
        "Collect these organizations only (default: every one the key reaches). HUNTRESS_ORGANIZATION_ID.",
        [501, 502]),
    "rate_limit": Attribute(
        "Requests per window of the key (Huntress allows 60 a minute). HUNTRESS_RATE_LIMIT."),
    "rate_window_seconds": Attribute("The rate limit's window. HUNTRESS_RATE_WINDOW_SECONDS."),
    "start_date": Attribute(
        "The first daily partition (default: the 1st of the month 30 days ago). HUNTRESS_START_DATE.",
        "2024-01-01"),
    "incidents_cron": Attribute("When the alert streams are collected. HUNTRESS_INCIDENTS_CRON."),
    "agents_cron": Attribute("When agents are snapshotted. HUNTRESS_AGENTS_CRON."),
    "organizations_cron": Attribute(
        "When organizations are snapshotted (hourly: names follow renames). HUNTRESS_ORGANIZATIONS_CRON."),
    "identities_cron": Attribute("When ITDR identities are snapshotted. HUNTRESS_IDENTITIES_CRON."),
    "external_ports_cron": Attribute("When external ports are snapshotted. HUNTRESS_EXTERNAL_PORTS_CRON."),
    "sensor_interval_seconds": Attribute(
        "How often the alert sensor looks for changes (>= 5). HUNTRESS_SENSOR_INTERVAL_SECONDS."),
    "sensor_requests_per_tick": Attribute(
        "API requests the sensor may make per connection and tick. HUNTRESS_SENSOR_REQUESTS_PER_TICK."),
    "max_pages_per_walk": Attribute(
        "A walk past this many pages stops, incomplete. HUNTRESS_MAX_PAGES_PER_WALK."),
    "max_response_bytes": Attribute("A larger API response is refused. HUNTRESS_MAX_RESPONSE_BYTES."),
    "excluded_indicator_domains": Attribute(
        "Domains (and subdomains) never reported as indicators. HUNTRESS_EXCLUDED_INDICATOR_DOMAINS."),
}

CONNECTIONS_COMMENT = """\
  # Several API keys (instead of HUNTRESS_API_KEY): secrets as environment variable NAMES, never values; a
  # connection whose variables are unset is refused at load time. Same schema as HUNTRESS_CONNECTIONS_FILE.
  # connections:
  #   - name: msp
  #     api_key_env: HUNTRESS_MSP_API_KEY
  #     api_secret_env: HUNTRESS_MSP_API_SECRET
  #     tenants: {21: acme}
"""


class HuntressConnectorScaffoldParams(BaseModel):
    """`dg scaffold defs ... --lake-dir DIR --tenant NAME`: attributes written as values, not comments."""

    lake_dir: str | None = Field(default=None, description="the lake: a directory or s3://bucket/prefix")
    tenant: str | None = Field(default=None, description="the tenantid written on every row")


def render_defs_yaml(type_name: str, params: HuntressConnectorScaffoldParams) -> str:
    """The defs.yaml text: the header, `type:`, then each attribute as a value (if given) or a comment."""
    given = params.model_dump(exclude_none=True)
    lines = [HEADER, f"type: {type_name}", "", "attributes:"]
    for name, attribute in ATTRIBUTES.items():
        lines += [f"  # {line}" for line in textwrap.wrap(attribute.why, width=COMMENT_WIDTH)]
        example = attribute.example
        if name in given:
            lines.append(f"  {name}: {yaml_value(given[name])}")
        elif isinstance(example, SetValue):
            lines.append(f"  {name}: {example}")
        else:
            lines.append(f"  # {name}: {yaml_value(default_of(name) if example is DEFAULT else example)}")
    return "\n".join(lines) + "\n" + CONNECTIONS_COMMENT


def default_of(name: str) -> object:
    return Settings.__dataclass_fields__[name].default


def yaml_value(value: object) -> str:
    """One line of YAML for a value: plain where that reads back the same, quoted where it would not
    (a path with ': ' or ' #', a cron's '*'), a list in flow style."""
    value = list(value) if isinstance(value, tuple) else value
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))
    return text.removesuffix("\n...\n").strip()


class HuntressConnectorScaffolder(dg.Scaffolder[HuntressConnectorScaffoldParams]):
    @classmethod
    def get_scaffold_params(cls) -> type[HuntressConnectorScaffoldParams]:
        return HuntressConnectorScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[HuntressConnectorScaffoldParams]) -> None:
        if request.scaffold_format == "python":  # `--format python`: Dagster's own component.py stub
            from dagster.components.component_scaffolding import scaffold_component

            scaffold_component(request)
            return
        text = render_defs_yaml(request.type_name, request.params)
        if request.append:  # `append`: one more document in an existing defs.yaml (its path is the target)
            with open(request.target_path, "a", encoding="utf-8") as defs_yaml:
                defs_yaml.write("---\n" + text)
        else:
            (request.target_path / "defs.yaml").write_text(text, encoding="utf-8")
