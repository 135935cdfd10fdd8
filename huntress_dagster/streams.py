"""Streams: one declaration per Huntress content type (plain Python: no Dagster).

Everything else is generated from these: the raw asset (`raw_<table>`), its lake paths (layout.py), the
walk or snapshot that collects it (collect.py), its parsed_syslog class (parsing), its checks and jobs.
Adding a content type means a `Stream` here, a normalizer in `parsing`, simulator data and golden cases.

Two ways to collect, chosen from the API's facts (swagger.json):
- `WALK`: an `updated_at`-descending walk down to per-day watermarks, for objects whose state changes over
  time and whose list can be sorted by `updated_at` (incident reports, signals, escalations, platform
  actions). Every version is kept, keyed by (id, updated_at), in daily partitions of `updated_at`.
- `SNAPSHOT`: the whole list, sorted by id, written as one file per collection (history kept), for
  inventories whose size is small and whose "gone" matters (agents, organizations, identities, ports).

Signals are walked by `updated_at`, not by the `investigated_at_min/max` filter the API offers: a signal's
status can change days after it was investigated, which moves its `updated_at` and not its
`investigated_at`, so a time-filtered collection would never see the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from .parsing import (AGENT_CLASS, ESCALATION_CLASS, EXTERNAL_PORT_CLASS, IDENTITY_CLASS, INCIDENT_CLASS,
                      ORGANIZATION_CLASS, PLATFORM_ACTION_CLASS, SIGNAL_CLASS)


class Strategy(str, Enum):
    WALK = "updated_at walk"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class Stream:
    name: str  # the API's list path and envelope key: /v1/<name> -> {"<name>": [...]}
    raw_table: str  # the raw asset and its lake directory
    label: str  # for people: logs, descriptions
    msg_class: str  # parsed_syslog.msg_class of its rows
    strategy: Strategy
    reseller_path: bool  # also served under /v1/accounts/{account_id}/<name> (per swagger)
    in_alerts: bool = False  # its latest versions are rows of `alerts`
    completes_remediations: bool = False  # incident reports embed 10 remediations; the walk fetches the rest
    fresh_within: timedelta = timedelta(minutes=30)  # the freshness check's window
    filters_by_organization: bool = True  # the list takes organization_id (HUNTRESS_ORGANIZATION_ID)
    default_cron: str = ""  # snapshot streams: when the inventory schedule takes one (HUNTRESS_<NAME>_CRON)
    description: str = ""

    @property
    def path(self) -> str:
        return f"/{self.name}"

    @property
    def is_walk(self) -> bool:
        return self.strategy is Strategy.WALK


INCIDENT_REPORTS = Stream(
    name="incident_reports", raw_table="raw_incidents", label="incident reports", msg_class=INCIDENT_CLASS,
    strategy=Strategy.WALK, reseller_path=True, in_alerts=True, completes_remediations=True,
    description="Huntress incident reports (the SOC's findings, with remediations beyond the embedded 10).")
SIGNALS = Stream(
    name="signals", raw_table="raw_signals", label="signals", msg_class=SIGNAL_CLASS,
    strategy=Strategy.WALK, reseller_path=True,
    description="Huntress signals: every detection the SOC investigated (EDR, ITDR, SIEM, Defender), with "
                "its details mapped into the entity columns of parsed_syslog.")
ESCALATIONS = Stream(
    name="escalations", raw_table="raw_escalations", label="escalations", msg_class=ESCALATION_CLASS,
    strategy=Strategy.WALK, reseller_path=False, in_alerts=True,
    description="Huntress escalations: requests for partner action (e.g. unexpected-country logins); an "
                "escalation affecting N organizations is N alerts.")
PLATFORM_ACTIONS = Stream(
    name="platform_actions", raw_table="raw_platform_actions", label="platform actions",
    msg_class=PLATFORM_ACTION_CLASS, strategy=Strategy.WALK, reseller_path=False, fresh_within=timedelta(hours=2),
    description="Huntress platform actions: what the Huntress side says is broken (Defender off, an "
                "integration down).")
AGENTS = Stream(
    name="agents", raw_table="raw_agents", label="agents", msg_class=AGENT_CLASS, strategy=Strategy.SNAPSHOT,
    reseller_path=True, fresh_within=timedelta(hours=26), default_cron="15 0 * * *",
    description="Huntress agent inventory snapshots; every snapshot is kept (history).")
ORGANIZATIONS = Stream(
    name="organizations", raw_table="raw_organizations", label="organizations", msg_class=ORGANIZATION_CLASS,
    strategy=Strategy.SNAPSHOT, reseller_path=True, fresh_within=timedelta(hours=2), default_cron="5 * * * *",
    filters_by_organization=False,
    description="Huntress organizations (the customers of an account): names, keys and counts; every snapshot "
                "is kept, so a rename shows everywhere after the next snapshot.")
IDENTITIES = Stream(
    name="identities", raw_table="raw_identities", label="identities", msg_class=IDENTITY_CLASS,
    strategy=Strategy.SNAPSHOT, reseller_path=False, fresh_within=timedelta(hours=26), default_cron="20 0 * * *",
    description="Huntress ITDR identities (Microsoft 365 / Google Workspace users): MFA, risk, enabled; every "
                "snapshot is kept, so MFA and risk changes are dated.")
EXTERNAL_PORTS = Stream(
    name="external_ports", raw_table="raw_external_ports", label="external ports", msg_class=EXTERNAL_PORT_CLASS,
    strategy=Strategy.SNAPSHOT, reseller_path=True, fresh_within=timedelta(hours=26), default_cron="25 0 * * *",
    description="Huntress external ports: what each organization exposes to the internet (ip, port, protocol, "
                "service, risky service); every snapshot is kept, so a closed port stays, marked.")

STREAMS: tuple[Stream, ...] = (INCIDENT_REPORTS, SIGNALS, ESCALATIONS, PLATFORM_ACTIONS, AGENTS, ORGANIZATIONS,
                               IDENTITIES, EXTERNAL_PORTS)
WALK_STREAMS = tuple(s for s in STREAMS if s.is_walk)
SNAPSHOT_STREAMS = tuple(s for s in STREAMS if not s.is_walk)
ALERT_STREAMS = tuple(s for s in STREAMS if s.in_alerts)
BY_NAME = {s.name: s for s in STREAMS}
BY_TABLE = {s.raw_table: s for s in STREAMS}
BY_CLASS = {s.msg_class: s for s in STREAMS}
