"""The assets: a raw asset per stream (raw_assets.py), then parsed_syslog, assets and alerts. Thin: parsing,
inventories and alerts live in the plain modules."""


import json
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from . import catalog, parsing
from .alerts import OCSF_TABLE as ALERTS_OCSF_TABLE
from .alerts import build_alerts
from .connections import cached_accounts, discover_accounts, remember_accounts
from .errors import HuntressError
from .inventory import INVENTORIES, OCSF_TABLES, ORGANIZATIONS_INVENTORY, Inventory, build_inventory
from .lake import Lake
from .parsed import PREVIEW_COLUMNS, build_parsed_syslog_days, newest_incidents
from .raw_assets import GROUP, add_partition_metadata, run_result, snapshot_raw_asset, walked_raw_asset
from .resources import HuntressLakeResource, HuntressResource
from .streams import ALERT_STREAMS, INCIDENT_REPORTS, STREAMS
from .table_metadata import preview_table, table_metadata


def parse_contexts(huntress: HuntressResource, lake_resource: HuntressLakeResource, lake: Lake,
                   log: Callable[[str], None] = print) -> dict[str, parsing.ParseContext]:
    """The parse context (tenant, names, host) of every account the connections reach, by account id, from
    their last discovery (made by the raw assets; made here only if none is cached). "*": for an account
    no discovery lists any more, the first connection's own tenant."""
    contexts: dict[str, parsing.ParseContext] = {}
    for connection in huntress.connection_list():
        accounts = cached_accounts(lake, connection)
        if accounts is None:
            try:
                with huntress.get_client(connection) as client:
                    accounts = discover_accounts(client, connection)
                remember_accounts(lake, connection, accounts)
            except HuntressError as exc:
                log(f"Connection {connection.name}: accounts unknown, parsed with default names: {exc}")
                accounts = []
        for account in accounts:
            contexts[str(account.account_id)] = parsing.ParseContext(
                tenantid=account.tenantid, tenant_name=account.name or account.tenantid,
                host_url=connection.host_url, account_subdomain=account.subdomain,
                keep_max_bytes=lake_resource.keep_body_max_bytes, full_max_bytes=lake_resource.full_parse_max_bytes,
                excluded_indicator_domains=tuple(lake_resource.excluded_indicator_domains))
        if "*" not in contexts:
            first = next(iter(contexts.values()), None)
            contexts["*"] = first or parsing.ParseContext(
                tenantid=connection.tenant or connection.name, tenant_name=connection.tenant or connection.name,
                host_url=connection.host_url, account_subdomain=None,
                keep_max_bytes=lake_resource.keep_body_max_bytes, full_max_bytes=lake_resource.full_parse_max_bytes,
                excluded_indicator_domains=tuple(lake_resource.excluded_indicator_domains))
    return contexts


def build_assets(partitions_def: dg.DailyPartitionsDefinition, banner: str = "") -> list[dg.AssetsDefinition]:
    """Every asset over one daily partitioning. `banner` prefixes descriptions (demo mode)."""
    raw = [walked_raw_asset(s, partitions_def, banner) if s.is_walk else snapshot_raw_asset(s, banner)
           for s in STREAMS]
    classes = ", ".join(s.msg_class for s in STREAMS)
    alert_classes = " and ".join(s.label for s in ALERT_STREAMS)

    @dg.asset(
        name="parsed_syslog", group_name=GROUP, partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(), deps=[s.raw_table for s in STREAMS],
        kinds={"python", "parquet", "duckdb"}, tags={"huntress/layer": "normalized"},
        description=banner + "One normalized row per raw version of every stream, in the shape of the reference "
                    f"'Syslog index': msg_class ({classes}), msg_origin.{{source,vendor,category}}, tenantid, "
                    "domain, huntress.* and the entities parsed from incident bodies and signal details "
                    "(processes, files, users, hashes, IPs, domains, URLs, registry keys), with the body size "
                    "thresholds. A day holds the versions updated that day and the snapshots taken that day.",
    )
    def parsed_syslog(context: dg.AssetExecutionContext, huntress: HuntressResource,
                      lake: HuntressLakeResource) -> dg.MaterializeResult:
        store = lake.lake_for_step()
        contexts = parse_contexts(huntress, lake, store, context.log.warning)
        totals: dict[str, int] = {s.msg_class: 0 for s in STREAMS}
        levels: dict[str, int] = {}
        skipped = quarantined = parsed = carried_over = 0
        per_day: dict[str, dict[str, Any]] = {}
        for day_stats in build_parsed_syslog_days(store, list(context.partition_keys), contexts,
                                                  workers=lake.parse_worker_count()):
            per_day[day_stats.day] = {"dagster/row_count": sum(day_stats.rows.values()),
                                      **{f"{s.name}_rows": day_stats.rows.get(s.msg_class, 0) for s in STREAMS}}
            for msg_class, count in day_stats.rows.items():
                totals[msg_class] += count
            for level, count in day_stats.parse_levels.items():
                levels[level] = levels.get(level, 0) + count
            skipped += len(day_stats.skipped)
            quarantined += day_stats.quarantined
            parsed += day_stats.parsed
            carried_over += day_stats.carried_over
        catalog.refresh_catalog(store)
        context.log.info(f"parsed_syslog: {totals} over {len(context.partition_keys)} day(s), "
                         f"{skipped} unchanged part(s) skipped; {parsed} row(s) parsed, {carried_over} carried over "
                         "from versions parsed before")
        rows = newest_incidents(store, list(context.partition_keys)) if totals[INCIDENT_REPORTS.msg_class] else []
        add_partition_metadata(context, per_day)  # each day's rows; the run's figures on its newest day
        return run_result(context, {
            **{f"run_{s.name}_rows": totals[s.msg_class] for s in STREAMS},
            "parse_levels": json.dumps(levels), "unchanged_parts_skipped": skipped,
            "rows_parsed": parsed, "rows_carried_over": carried_over,
            "records_quarantined": quarantined,
            **table_metadata(store, "parsed_syslog", None),
            "preview": preview_table(rows, PREVIEW_COLUMNS),
        })

    @dg.multi_asset(specs=[
        dg.AssetSpec(
            "alerts", group_name=GROUP, deps=["parsed_syslog", "agent_inventory", ORGANIZATIONS_INVENTORY.table],
            kinds={"python", "parquet", "duckdb"}, tags={"huntress/layer": "refined"},
            description=banner + f"Alerts, the triage queue of {alert_classes}: one row per (tenantid, msg_class, "
                        "huntress_id, organization_id, account_id), the latest version of each (an escalation "
                        "affecting N organizations is N rows), with OCSF severity and status ids, the portal link "
                        "and the host context from agent_inventory."),
        ocsf_spec(ALERTS_OCSF_TABLE, "alerts", "Detection Finding (class 2004)", banner),
    ], name="alerts")
    def alerts(context: dg.AssetExecutionContext, lake: HuntressLakeResource) -> Iterator[dg.MaterializeResult]:
        store = lake.lake_for_step()
        build = build_alerts(store)
        count = build.rows
        catalog.refresh_catalog(store)
        by_severity = catalog.preview(store, "SELECT severity, count(*) AS n FROM alerts GROUP BY 1 ORDER BY 2 DESC", 10) \
            if count else []
        by_class = catalog.preview(store, "SELECT msg_class, count(*) AS n FROM alerts GROUP BY 1", 10) if count else []
        rows = catalog.preview(store, "SELECT msg_class, huntress_id, severity, status, subject, hostname, updated_at "
                             "FROM alerts ORDER BY updated_at DESC") if count else []
        context.log.info(f"alerts: {count} rows; {build.mode} build, {build.alerts_written} alerts recomputed "
                         f"from {len(build.changed_days)} changed parsed days")
        yield dg.MaterializeResult(asset_key="alerts", metadata={
            "alerts": count,
            "build": build.mode,
            "alerts_recomputed": build.alerts_written,
            "changed_days": ", ".join(build.changed_days[:10]) + (" ..." if len(build.changed_days) > 10 else ""),
            "by_severity": json.dumps({r["severity"]: r["n"] for r in by_severity}),
            "by_class": json.dumps({r["msg_class"]: r["n"] for r in by_class}),
            **table_metadata(store, "alerts", count),
            "preview": preview_table(rows, ["msg_class", "huntress_id", "severity", "status", "subject", "hostname",
                                             "updated_at"]),
        })
        yield ocsf_result(store, ALERTS_OCSF_TABLE)

    return [*raw, parsed_syslog, *(inventory_asset(i, banner) for i in INVENTORIES), alerts]


OCSF_CLASSES = {"ocsf_device_inventory_info": "Device Inventory Info (class 5001)",
                "ocsf_user_inventory_info": "User Inventory Info (class 5003)"}


def ocsf_spec(table: str, source: str, ocsf_class: str, banner: str) -> dg.AssetSpec:
    """An OCSF table, written with its source table (same step), so lineage shows what a SIEM reads."""
    return dg.AssetSpec(table, group_name=GROUP, deps=[source], kinds={"python", "parquet"},
                        tags={"huntress/layer": "ocsf"},
                        description=banner + f"`{source}` as OCSF 1.5.0 {ocsf_class} events, one per row, "
                                    f"written by the same step as `{source}`.")


def ocsf_result(store: Lake, table: str) -> dg.MaterializeResult:
    try:
        rows = sum(store.num_rows(path) for path in store.files(table))
    except Exception:  # noqa: BLE001 - another run replaced a file as it was read: metadata only
        rows = None
    return dg.MaterializeResult(asset_key=table, metadata=table_metadata(store, table, rows))


# What each inventory's run metadata previews and counts.
INVENTORY_PREVIEWS = {
    "agent_inventory": ("hostname, platform, os, ipv4_address, last_callback_at, is_stale", "last_callback_at", "is_stale"),
    "organizations": ("organization_id, name, key, agents_count, incident_reports_count", "name", None),
    "identities": ("username, organization_name, mfa_enabled, risk_level, mfa_changed_at", "updated_at",
                   "NOT coalesce(mfa_enabled, false)"),
    "external_ports": ("ip_address, port, protocol, service, risky_service", "last_scan_at", "risky_service"),
}


def inventory_asset(inventory: Inventory, banner: str) -> dg.AssetsDefinition:
    """One inventory table from its snapshot stream (and organization names from the organizations one)."""
    deps = [inventory.stream.raw_table]
    if inventory is not ORGANIZATIONS_INVENTORY:
        deps.append(ORGANIZATIONS_INVENTORY.table)
    columns, order, flag = INVENTORY_PREVIEWS[inventory.table]

    ocsf_table = OCSF_TABLES.get(inventory.table)
    specs = [dg.AssetSpec(inventory.table, group_name=GROUP, deps=deps, kinds={"python", "parquet", "duckdb"},
                          tags={"huntress/layer": "refined"}, description=banner + inventory.description)]
    if ocsf_table:
        specs.append(ocsf_spec(ocsf_table, inventory.table, OCSF_CLASSES[ocsf_table], banner))

    @dg.multi_asset(specs=specs, name=inventory.table)
    def inventory_table(context: dg.AssetExecutionContext, huntress: HuntressResource,
                        lake: HuntressLakeResource) -> Iterator[dg.MaterializeResult]:
        store = lake.lake_for_step()
        count = build_inventory(store, inventory, parse_contexts(huntress, lake, store, context.log.warning))
        catalog.refresh_catalog(store)
        table = inventory.table
        rows = catalog.preview(store, f"SELECT {columns} FROM {table} ORDER BY {order} DESC NULLS LAST") if count else []
        gone = (catalog.preview(store, "SELECT count(*) FILTER (WHERE NOT in_latest_snapshot) AS gone"
                              + (f", count(*) FILTER (WHERE {flag}) AS flagged" if flag else "")
                              + f" FROM {table}", 1) or [{}])[0] if count else {}
        context.log.info(f"{table}: {count} rows, {gone.get('gone', 0)} gone from the latest snapshot")
        yield dg.MaterializeResult(asset_key=table, metadata={
            "rows": count, "gone_from_latest_snapshot": gone.get("gone", 0),
            **({f"flagged ({flag})": gone.get("flagged", 0)} if flag else {}),
            **table_metadata(store, table, count),
            "preview": preview_table(rows, [c.strip() for c in columns.split(",")]),
        })
        if ocsf_table:
            yield ocsf_result(store, ocsf_table)

    return inventory_table
