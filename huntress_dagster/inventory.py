"""Inventories built from snapshot streams (plain Python: no Dagster): one row per object of a snapshot stream
with its current state, first/last seen across snapshots and whether the latest snapshot still has it (an
object gone from the account stays, marked), plus columns dated from the snapshots' history (when MFA or
risk last changed). `agent_inventory` (agents, with staleness) also gets its OCSF Device Inventory Info form.

An inventory is a declaration (`Inventory`): its stream, its key, and the columns it selects from the
object's parsed row (`p`, the parsing layer's normalization of the latest snapshot of it) and from its
history (`s`). Rows are built in batches, so memory stays flat however many objects the account has.
Organization names come from the organizations inventory, so a rename shows after the next snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from . import catalog, layout, parsing
from .lake import Lake, parquet_writer, sql_literal
from .parsing import ocsf, ocsf_devices, ocsf_inventory
from .streams import AGENTS, EXTERNAL_PORTS, IDENTITIES, ORGANIZATIONS, Stream

STALE_AFTER_DAYS = 30
SEEN_COLUMNS = "s.first_seen_at, s.last_seen_at, s.snapshots_seen, s.in_latest_snapshot"


@dataclass(frozen=True)
class Inventory:
    table: str  # the lake table (and asset) name
    stream: Stream
    columns_sql: str  # SELECT list over `p` (parsed latest object), `s` (its history) and `o` (its organization)
    key_sql: str = "id"  # what one row is, over the raw snapshot row (default: the object's id)
    changes: dict[str, str] = field(default_factory=dict)  # <column>_changed_at: JSON path whose changes it dates
    spans_organizations: bool = False  # one object, several organizations: names by id (o.names), not one join
    description: str = ""


ORGANIZATIONS_INVENTORY = Inventory(
    table="organizations", stream=ORGANIZATIONS,
    columns_sql=f"""s.tenantid, p.huntress.id AS organization_id, p.huntress.account_id AS account_id,
        p.huntress.organization_name AS name, p.huntress.key AS key, p.huntress.agents_count AS agents_count,
        p.huntress.incident_reports_count AS incident_reports_count,
        p.huntress.logs_sources_count AS logs_sources_count,
        p.huntress.billable_identity_count AS billable_identity_count,
        p.huntress.sat_learner_count AS sat_learner_count,
        p.huntress.identity_provider_tenant_id AS identity_provider_tenant_id,
        p.huntress.created_at AS created_at, p.huntress.updated_at AS updated_at, {SEEN_COLUMNS}""",
    description="One row per organization (the customers of an account): name, key, the counts the API gives, "
                "first/last seen; alerts, agent_inventory and the other inventories take their organization_name from it.")

IDENTITIES_INVENTORY = Inventory(
    table="identities", stream=IDENTITIES,
    columns_sql=f"""s.tenantid, p.huntress.id AS identity_id, p.huntress.account_id AS account_id,
        p.huntress.organization_id AS organization_id, coalesce(o.name, p.huntress.organization_name)
            AS organization_name,
        p.huntress.username AS username, p.huntress.email AS email, p.huntress.enabled AS enabled,
        p.huntress.mfa_enabled AS mfa_enabled, p.huntress.risk_level AS risk_level,
        p.huntress.risk_state AS risk_state, p.huntress.billable AS billable, p.huntress.external AS external,
        p.huntress.enabled_products AS enabled_products, p.huntress.tenant_id AS tenant_id,
        p.huntress.tenant_type AS tenant_type, p.huntress.created_at AS created_at,
        p.huntress.updated_at AS updated_at, {SEEN_COLUMNS}, s.mfa_changed_at, s.risk_changed_at""",
    changes={"mfa_changed_at": "$.mfa_enabled", "risk_changed_at": "$.risk_level"},
    description="One row per ITDR identity: its current state (username, email, enabled, MFA, risk, billable, "
                "tenant), first/last seen, in_latest_snapshot (a gone identity stays, marked), and when MFA "
                "and risk last changed, derived from the snapshots.")

# one row per exposure: the same ip, port and protocol under a new id is the same exposure
EXPOSURE_KEY_SQL = ("concat_ws('|', try(json_extract_string(raw_json, '$.ip_address')), "
                    "try(json_extract_string(raw_json, '$.port')), try(json_extract_string(raw_json, '$.protocol')))")
EXTERNAL_PORTS_INVENTORY = Inventory(
    table="external_ports", stream=EXTERNAL_PORTS, key_sql=EXPOSURE_KEY_SQL, spans_organizations=True,
    columns_sql=f"""s.tenantid, p.huntress.ip_address AS ip_address, p.huntress.port AS port,
        p.huntress.protocol AS protocol, p.huntress.service AS service, p.huntress.risky_service AS risky_service,
        p.huntress.id AS port_id, p.huntress.organization_ids AS organization_ids,
        list_transform(p.huntress.organization_ids, lambda i: o.names[i]) AS organization_names,
        p.huntress.last_scan_at AS last_scan_at, p.huntress.last_external_scan_at AS last_external_scan_at,
        {SEEN_COLUMNS}""",
    description="One row per exposure (ip, port, protocol): service, risky_service, the organizations it "
                "belongs to, first/last seen, in_latest_snapshot (a closed port stays, marked).")

ASSETS_INVENTORY = Inventory(
    table="agent_inventory", stream=AGENTS,
    columns_sql=f"""s.tenantid, p.tenant_name, s.id AS agent_id,
           p.huntress.organization_id AS organization_id, o.name AS organization_name,
           p.huntress.account_id AS account_id,
           p.huntress.hostname AS hostname, p.huntress.domain_name AS domain_name,
           p.huntress.platform AS platform, p.huntress.os AS os,
           p.huntress.os_build_version AS os_build_version, p.huntress.arch AS arch,
           p.huntress.ipv4_address AS ipv4_address, p.huntress.external_ip AS external_ip,
           p.huntress.mac_addresses AS mac_addresses, p.huntress.serial_number AS serial_number,
           p.huntress.version AS agent_version, p.huntress.edr_version AS edr_version,
           p.huntress.defender_status AS defender_status,
           p.huntress.defender_substatus AS defender_substatus,
           p.huntress.defender_policy_status AS defender_policy_status,
           p.huntress.firewall_status AS firewall_status,
           p.huntress.tamper_protection_configured AS tamper_protection_configured,
           p.huntress.tamper_protection_actual AS tamper_protection_actual,
           p.huntress.tags AS tags, p.huntress.last_callback_at AS last_callback_at,
           p.huntress.created_at AS created_at, p.huntress.updated_at AS updated_at, {SEEN_COLUMNS},
           date_diff('day', p.huntress.last_callback_at, $now::TIMESTAMPTZ) AS days_since_callback,
           coalesce(date_diff('day', p.huntress.last_callback_at, $now::TIMESTAMPTZ) > {STALE_AFTER_DAYS}, true)
               OR NOT s.in_latest_snapshot AS is_stale,
           p.huntress AS huntress""",
    description="Asset inventory: one row per agent with its current state (hostname, OS and build, IPs, MACs, "
                "Defender / firewall / tamper protection, tags, last callback), first and last seen across "
                "snapshots, and staleness.")

# Organizations first: the others take their names from it.
INVENTORIES: tuple[Inventory, ...] = (ORGANIZATIONS_INVENTORY, ASSETS_INVENTORY, IDENTITIES_INVENTORY,
                                      EXTERNAL_PORTS_INVENTORY)


def _history_sql(inventory: Inventory) -> str:
    """Each key's latest snapshot row (raw JSON), its first/last seen, and the change columns."""
    raw = inventory.stream.raw_table
    values = "".join(f", try(json_extract(raw_json, '{path}'))::VARCHAR AS v_{name}"
                     for name, path in inventory.changes.items())
    changes = "".join(f", v_{name}, lag(v_{name}) OVER w AS prev_{name}" for name in inventory.changes)
    changed = "".join(f", max(collected_at) FILTER (WHERE n > 1 AND v_{name} IS DISTINCT FROM prev_{name}) AS {name}"
                      for name in inventory.changes)
    return f"""
WITH snapshots AS (SELECT tenantid, CAST(account AS VARCHAR) AS account, {inventory.key_sql} AS k, id, updated_at,
                          collected_at, raw_json {values}
                   FROM {raw}),
history AS (SELECT tenantid, account, k, collected_at, row_number() OVER w AS n {changes} FROM snapshots
            WINDOW w AS (PARTITION BY tenantid, account, k ORDER BY collected_at)),
seen AS (SELECT tenantid, account, k, min(collected_at) AS first_seen_at, max(collected_at) AS last_seen_at,
                count(DISTINCT collected_at) AS snapshots_seen {changed}
         FROM history GROUP BY ALL),
latest AS (SELECT * FROM snapshots
           QUALIFY row_number() OVER (PARTITION BY tenantid, account, k
                                      ORDER BY collected_at DESC, updated_at DESC) = 1)
SELECT latest.tenantid, latest.account, latest.id, latest.raw_json, seen.* EXCLUDE (tenantid, account, k),
       seen.last_seen_at = newest.newest AS in_latest_snapshot
FROM latest JOIN seen USING (tenantid, account, k) JOIN newest_snapshots newest USING (account)
ORDER BY latest.tenantid, latest.account, latest.k
"""


ORGANIZATION_NAMES_SQL = """(SELECT tenantid, organization_id, name,
    map_from_entries(list({'k': organization_id, 'v': name}) OVER (PARTITION BY tenantid)) AS names
    FROM organizations_now)"""
NO_ORGANIZATIONS_SQL = ("(SELECT NULL::VARCHAR AS tenantid, NULL::BIGINT AS organization_id, NULL::VARCHAR AS name, "
                        "NULL::MAP(BIGINT, VARCHAR) AS names WHERE false)")


def inventory_path(lake: Lake, inventory: Inventory) -> Path:
    return lake.root / layout.inventory_file(inventory.table)


def normalize_by_account(msg_class: str, batch: pa.RecordBatch, contexts: dict[str, parsing.ParseContext]
                         ) -> pa.Table:
    """The batch's records normalized each with its account's context (tenant names, host), in batch order."""
    accounts = batch.column("account").to_pylist()
    raws = batch.column("raw_json").cast(pa.large_binary()).to_pylist()  # bytes: no UTF-8 decode to a str
    groups: dict[str, list[int]] = {}
    for index, account in enumerate(accounts):
        groups.setdefault(account, []).append(index)
    order = [i for indexes in groups.values() for i in indexes]
    table = pa.concat_tables([
        parsing.normalize_records(msg_class, [raws[i] for i in indexes], contexts.get(account, contexts["*"]))
        for account, indexes in groups.items()])
    return table.take(pa.compute.sort_indices(pa.array(order)))


def build_inventory(lake: Lake, inventory: Inventory, contexts: dict[str, parsing.ParseContext],
                    now: datetime | None = None, batch_rows: int = 20_000) -> int:
    """One inventory table, from every snapshot of its stream; returns its rows (0 with no snapshot yet).
    `contexts`: the parse context of each account id ("*" for any other)."""
    now = now or datetime.now(timezone.utc)
    final = inventory_path(lake, inventory)
    count = 0
    # Under the table lock from read to rename, so concurrent builds cannot publish an older state last.
    with lake.lock(inventory.table), lake.connect() as con:
        views = catalog.register_views(lake, con, [inventory.stream.raw_table])
        raw = inventory.stream.raw_table
        accounts = lake.accounts(inventory.stream)
        if raw not in views or not accounts or not con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0]:
            return 0
        organizations = inventory_path(lake, ORGANIZATIONS_INVENTORY)
        with_names = organizations.exists() and inventory is not ORGANIZATIONS_INVENTORY
        orgs = ORGANIZATION_NAMES_SQL if with_names else NO_ORGANIZATIONS_SQL
        join = (f"(SELECT DISTINCT tenantid, names FROM {orgs}) o ON o.tenantid = s.tenantid"
                if inventory.spans_organizations else
                f"{orgs} o ON o.tenantid = s.tenantid AND o.organization_id = p.huntress.organization_id")
        select = f"SELECT {inventory.columns_sql} FROM history_batch s POSITIONAL JOIN parsed_batch p LEFT JOIN {join}"
        with lake.atomic_path(final) as tmp:
            writer = None
            # each account's newest snapshot from its file name: an empty one (everything gone) still counts
            newest = pa.table({"account": accounts, "newest": [
                layout.snapshot_time(lake.snapshots(inventory.stream, a).files()[-1]) for a in accounts]})
            con.register("newest_snapshots", newest)
            for batch in con.sql(_history_sql(inventory)).to_arrow_reader(batch_rows):
                with con.cursor() as batch_con:  # a second connection: `con` is busy streaming the reader
                    parsed = normalize_by_account(inventory.stream.msg_class, batch, contexts)
                    batch_con.register("parsed_batch", parsed)
                    batch_con.register("history_batch", batch.drop_columns(["raw_json", "account"]))
                    if with_names:
                        batch_con.execute(f"CREATE OR REPLACE TEMP VIEW organizations_now AS "
                                          f"SELECT * FROM read_parquet({sql_literal(str(organizations))})")
                    params = {"now": now} if "$now" in inventory.columns_sql else None
                    table = batch_con.sql(select, params=params).to_arrow_table()
                writer = writer or parquet_writer(tmp, table.schema)
                writer.write_table(table)
                count += table.num_rows
            writer.close()
    if inventory.table in OCSF_FORMS:
        write_ocsf_form(lake, inventory)
    return count


def write_ocsf(path: Path, batches: Iterator[pa.RecordBatch], schema: pa.Schema,
               events: Callable[[pa.RecordBatch], pa.Table]) -> int:
    """OCSF events (pinned version `ocsf.OCSF_VERSION`, recorded in the file) of each batch, into `path`."""
    count = 0
    schema = schema.with_metadata({b"ocsf_version": ocsf.OCSF_VERSION.encode()})
    with parquet_writer(path, schema) as writer:
        for batch in batches:
            table = events(batch)  # (the file's metadata is the writer's schema's)
            writer.write_table(table)
            count += table.num_rows
    return count


def _row_events(convert: Callable[[dict[str, Any]], dict[str, Any]], schema: pa.Schema
                ) -> Callable[[pa.RecordBatch], pa.Table]:
    """Batch -> events, one Python row at a time (for an inventory with few rows: identities)."""
    return lambda batch: ocsf.to_table([convert(row) for row in batch.to_pylist()], schema)


# An inventory's OCSF form: its file, Arrow schema and batch -> events function. External ports have none: OCSF
# 1.5.0 has no port attribute on devices or interfaces (1.6.0 adds network_interfaces[].open_ports).
# The OCSF table (its view and asset name) each inventory with an OCSF form is written beside.
OCSF_TABLES = {"agent_inventory": "ocsf_device_inventory_info", "identities": "ocsf_user_inventory_info"}
OCSF_FORMS = {  # file, schema, batch -> events, the columns the events read (None: all)
    "agent_inventory": (layout.DEVICE_INVENTORY_FILE, ocsf.DEVICE_INVENTORY_INFO_SCHEMA,
                        ocsf_devices.device_inventory_infos,  # column-wise: 100k agents and more
                        ["tenantid", *(f"huntress.{name}" for name in ocsf.DEVICE_INVENTORY_HUNTRESS_FIELDS)]),
    "identities": (layout.USER_INVENTORY_FILE, ocsf_inventory.USER_INVENTORY_INFO_SCHEMA,
                   _row_events(ocsf_inventory.user_inventory_info, ocsf_inventory.USER_INVENTORY_INFO_SCHEMA), None),
}


def write_ocsf_form(lake: Lake, inventory: Inventory, batch_rows: int = 10_000) -> int:
    """The OCSF events (Device Inventory Info for agents, User Inventory Info for identities) of an
    inventory, batch by batch."""
    source = inventory_path(lake, inventory)
    if not source.exists():
        return 0
    file, schema, events, columns = OCSF_FORMS[inventory.table]
    with lake.lock(file), lake.atomic_path(lake.root / file) as tmp, lake.open_read(source) as handle:
        # (a nested path reads only that field of the `huntress` struct)
        batches = pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=columns)
        return write_ocsf(tmp, batches, schema, events)

