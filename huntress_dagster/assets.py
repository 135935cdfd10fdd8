"""The five assets. Thin: collection, parsing and lake I/O live in the plain modules."""


import json
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
from pydantic import Field

from . import parsing
from .client import HuntressClient
from .collect import WalkStats, snapshot_agents, walk_incident_reports
from .lake import CommitStats, Lake, day_start, sql_literal
from .quarantine import QuarantineWriter
from .resources import HuntressLakeResource, HuntressResource
from .transform import (AGENT_CLASS, INCIDENT_CLASS, build_alerts, build_asset_inventory, build_parsed_syslog_days,
                        preview)

GROUP = "huntress"
PROGRESS_EVERY_SECONDS = 10.0
ACCOUNT_CACHE_MAX_AGE = timedelta(hours=24)


class IncidentCollectConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Walk every day of the selected partitions in full, instead of only what changed since "
                    "each day's committed watermark")


def client_metadata(client: HuntressClient) -> dict[str, Any]:
    stats = client.stats
    return {
        "api_requests": stats.requests,
        "api_retries": stats.retries,
        "api_429_responses": stats.throttled_responses,
        "rate_limit_waits": stats.rate_limit_waits,
        "rate_limit_wait_seconds": round(stats.rate_limit_wait_seconds, 2),
    }


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> dg.MetadataValue:
    """A small preview table for the UI."""
    if not rows:
        return dg.MetadataValue.md("_no rows_")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(row.get(c, "")).replace("|", "\\|").replace("\n", " ")[:80] for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def log_progress(context: dg.AssetExecutionContext, rows: Iterable[dict], stats: WalkStats,
                 client: HuntressClient, what: str) -> Iterator[dict]:
    """Pass rows through, logging progress of long walks every few seconds."""
    last = time.monotonic()
    for row in rows:
        yield row
        if time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
            last = time.monotonic()
            context.log.info(
                f"{what}: {stats.records_walked} records walked in {stats.pages} pages "
                f"({stats.records_in_window} kept), at updated_at {stats.oldest_seen}; "
                f"{client.stats.requests} API requests, {client.stats.rate_limit_wait_seconds:.1f}s waiting for the rate budget")


def account_facts(huntress: HuntressResource, lake: Lake, client: HuntressClient | None = None) -> dict[str, Any]:
    """The account's name and subdomain (for tenant names and portal links), cached in the lake for a day
    so the parse step costs no API request."""
    path = lake.root / "_state" / "account.json"
    try:
        cached = json.loads(path.read_text())
        fresh = datetime.now(timezone.utc) - datetime.fromisoformat(cached["fetched_at"]) < ACCOUNT_CACHE_MAX_AGE
        if fresh and cached.get("host_url") == huntress.host_url:
            return cached
    except (OSError, ValueError, KeyError):
        pass
    if client is None:
        with huntress.get_client() as own_client:
            account = own_client.account()
    else:
        account = client.account()
    facts = {"id": account.get("id"), "name": account.get("name"), "subdomain": account.get("subdomain"),
             "host_url": huntress.host_url, "fetched_at": datetime.now(timezone.utc).isoformat()}
    with lake.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(facts))
    return facts


def prepare_lake(context: dg.AssetExecutionContext, lake: HuntressLakeResource) -> tuple[Lake, dict[str, int]]:
    """The lake, checked writable before any API request, with dead runs' leftovers removed."""
    store = lake.get_lake()
    store.check_writable()
    leftovers = store.clean_leftovers()
    if leftovers["staging_dirs"] or leftovers["tmp_files"]:
        context.log.warning(f"Removed leftovers of dead runs: {leftovers}")
    return store, leftovers


def walk_failure(stats: WalkStats, proven: set[date], days: list[date]) -> dg.Failure:
    """The run's failure after a walk the API broke: what was walked is committed, completeness is not."""
    unproven = sorted(d.isoformat() for d in set(days) - proven)
    return dg.Failure(
        description="The incident walk could not prove it saw everything: " + "; ".join(stats.anomalies)
                    + f". {stats.records_in_window} versions walked were committed; days left to re-read by the "
                    f"next run: {', '.join(unproven) or 'none'}.",
        metadata={"anomalies": "\n".join(stats.anomalies), "days_not_proven": ", ".join(unproven),
                  "versions_committed": stats.records_in_window, "pages": stats.pages})


def quarantine_metadata(quarantine: QuarantineWriter) -> dict[str, Any]:
    return {"records_quarantined": quarantine.count,
            "quarantined": "\n".join(quarantine.named) if quarantine.named else "none"}


def parse_context(huntress: HuntressResource, lake_resource: HuntressLakeResource, lake: Lake) -> parsing.ParseContext:
    account = account_facts(huntress, lake)
    return parsing.ParseContext(
        tenantid=huntress.tenant, tenant_name=account.get("name") or huntress.tenant, host_url=huntress.host_url,
        account_subdomain=account.get("subdomain"), keep_max_bytes=lake_resource.keep_body_max_bytes,
        full_max_bytes=lake_resource.full_parse_max_bytes)


def build_assets(partitions_def: dg.DailyPartitionsDefinition, banner: str = "") -> list[dg.AssetsDefinition]:
    """The five assets over one daily partitioning. `banner` prefixes descriptions (demo mode)."""
    @dg.asset(
        name="raw_incidents", group_name=GROUP, partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(), kinds={"python", "parquet"},
        tags={"huntress/layer": "raw"},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2),
                                                        warn_window=timedelta(minutes=30)),
        description=banner + "Huntress incident reports, verbatim JSON plus key columns, one partition per day "
                    "of updated_at (UTC). A run over a range of days makes ONE walk of /incident_reports "
                    "(updated_at desc, 500 per page) and commits each day atomically; an incident updated "
                    "several times keeps every version. Incremental: walks only back to each day's committed "
                    "watermark minus an overlap.",
    )
    def raw_incidents(context: dg.AssetExecutionContext, config: IncidentCollectConfig,
                      huntress: HuntressResource, lake: HuntressLakeResource) -> dg.MaterializeResult:
        store, leftovers = prepare_lake(context, lake)
        window = context.partition_time_window
        days = [date.fromisoformat(key) for key in context.partition_keys]
        overlap = timedelta(seconds=lake.overlap_seconds)
        # From when each day must be read (None: complete through its end); the walk covers the earliest.
        needs = {d: day_start(d) if config.full_refresh else store.incident_day_need(d, overlap) for d in days}
        lower = min(filter(None, needs.values()), default=None)
        walk_started = datetime.now(timezone.utc)
        stats = WalkStats()
        proven = set(days)
        with huntress.get_client() as client, \
                QuarantineWriter(store, "incident_reports", huntress.tenant, walk_started) as quarantine:
            if lower is None:
                context.log.info("Every selected day is complete through its end: no walk needed")
                commit = CommitStats()
            else:
                context.log.info(f"Walking incident reports updated in [{lower.isoformat()}, "
                                 f"{window.end.isoformat()}) for {len(days)} day partition(s) ({huntress.describe()})")
                known = store.stored_remediations(days)
                rows = walk_incident_reports(client, tenantid=huntress.tenant, lower_bound=lower,
                                             upper_bound=window.end, organization_ids=huntress.organization_ids,
                                             known_complete=lambda i, u: known.get((i, u)),
                                             collected_at=walk_started, stats=stats, on_poison=quarantine)
                with store.staging() as stage_dir:
                    staged = store.stage_incident_rows(log_progress(context, rows, stats, client, "raw_incidents"),
                                                       stage_dir)
                    # A day is complete as of this walk only if the walk proved everything it needed.
                    floor = stats.proven_down_to
                    proven = {d for d in days if needs[d] is None or (floor is not None and floor <= needs[d]
                                                                       and d.isoformat() not in stats.poisoned_days)}
                    commit = store.commit_incident_days(days, staged, walk_started, proven)
            account_facts(huntress, store, client)
            api = client_metadata(client)
        store.refresh_catalog()
        if stats.anomalies:
            raise walk_failure(stats, proven, days)
        context.log.info(f"Committed {len(days)} day(s): {stats.records_in_window} versions walked "
                         f"({commit.new} new, {commit.updated} updated, {commit.unchanged} unchanged) with "
                         f"{api['api_requests']} API requests")
        # try(): raw JSON keeps a lone surrogate escape (\ud800) as the API sent it, which DuckDB's JSON
        # functions reject; parsed_syslog holds such strings with U+FFFD instead.
        newest = preview(store, f"""
            SELECT id, updated_at, try(json_extract_string(raw_json, '$.status')) AS status,
                   try(json_extract_string(raw_json, '$.severity')) AS severity, organization_id
            FROM raw_incidents WHERE day BETWEEN '{days[0]}' AND '{days[-1]}' ORDER BY updated_at DESC""")
        return dg.MaterializeResult(metadata={
            "walk_lower_bound": lower.isoformat() if lower else "none (complete)",
            "walk_upper_bound": window.end.isoformat(),
            "records_walked": stats.records_walked, "versions_in_window": stats.records_in_window,
            "new": commit.new, "updated": commit.updated, "unchanged": commit.unchanged,
            "rows_in_partitions": commit.rows_written, "pages": stats.pages,
            "page_boundary_duplicates_skipped": stats.duplicates_skipped,
            "remediation_lists_completed": stats.remediation_completions, **quarantine_metadata(quarantine),
            "leftovers_removed_bytes": leftovers["bytes"],
            "demo_mode": huntress.demo_mode, **api,
            "preview": markdown_table(newest, ["id", "updated_at", "status", "severity", "organization_id"]),
        })

    @dg.asset(
        name="raw_agents", group_name=GROUP, kinds={"python", "parquet"}, tags={"huntress/layer": "raw"},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26)),
        description=banner + "Huntress agent inventory snapshots, verbatim JSON plus key columns; every "
                    "snapshot is kept (history). A snapshot costs ceil(agents / 500) API requests.",
    )
    def raw_agents(context: dg.AssetExecutionContext, huntress: HuntressResource,
                   lake: HuntressLakeResource) -> dg.MaterializeResult:
        store, leftovers = prepare_lake(context, lake)
        collected_at = datetime.now(timezone.utc)
        stats = WalkStats()
        with huntress.get_client() as client, \
                QuarantineWriter(store, "agents", huntress.tenant, collected_at) as quarantine:
            rows = snapshot_agents(client, tenantid=huntress.tenant, organization_ids=huntress.organization_ids,
                                   collected_at=collected_at, stats=stats, on_poison=quarantine)
            path, count = store.write_agent_snapshot(log_progress(context, rows, stats, client, "raw_agents"),
                                                     collected_at)
            account_facts(huntress, store, client)
            api = client_metadata(client)
        store.refresh_catalog()
        changes = store.compare_agent_snapshot(path)
        context.log.info(f"Agent snapshot of {count} agents written to {path.name} with {api['api_requests']} "
                         f"requests; versus the previous snapshot: {changes}")
        newest = preview(store, f"""
            SELECT id, try(json_extract_string(raw_json, '$.hostname')) AS hostname,
                   try(json_extract_string(raw_json, '$.platform')) AS platform, organization_id, updated_at
            FROM read_parquet({sql_literal(str(path))}) ORDER BY updated_at DESC""")
        return dg.MaterializeResult(metadata={
            "agents": count, **changes, "snapshot": str(path.relative_to(store.root)), "pages": stats.pages,
            "snapshots_kept": len(store.agent_snapshot_files()), "demo_mode": huntress.demo_mode, **api,
            **quarantine_metadata(quarantine), "leftovers_removed_bytes": leftovers["bytes"],
            "preview": markdown_table(newest, ["id", "hostname", "platform", "organization_id", "updated_at"]),
        })

    @dg.asset(
        name="parsed_syslog", group_name=GROUP, partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(), deps=["raw_incidents", "raw_agents"],
        kinds={"python", "parquet", "duckdb"}, tags={"huntress/layer": "normalized"},
        description=banner + "One normalized row per raw record, in the shape of the reference 'Syslog index': "
                    "msg_class (huntress_incident_report | huntress_agent), msg_origin.{source,vendor,category}, "
                    "tenantid, domain, huntress.* and the entities parsed from incident bodies (processes, "
                    "files, users, hashes, IPs, domains, URLs, registry keys), with the body size thresholds.",
    )
    def parsed_syslog(context: dg.AssetExecutionContext, huntress: HuntressResource,
                      lake: HuntressLakeResource) -> dg.MaterializeResult:
        store = lake.get_lake()
        ctx = parse_context(huntress, lake, store)
        totals: dict[str, int] = {INCIDENT_CLASS: 0, AGENT_CLASS: 0}
        levels: dict[str, int] = {}
        skipped = 0
        for day_stats in build_parsed_syslog_days(store, list(context.partition_keys), ctx,
                                                  workers=lake.parse_worker_count()):
            for msg_class, count in day_stats.rows.items():
                totals[msg_class] += count
            for level, count in day_stats.parse_levels.items():
                levels[level] = levels.get(level, 0) + count
            skipped += len(day_stats.skipped)
        store.refresh_catalog()
        context.log.info(f"parsed_syslog: {totals} over {len(context.partition_keys)} day(s), "
                         f"{skipped} unchanged part(s) skipped")
        days = f"'{context.partition_keys[0]}' AND '{context.partition_keys[-1]}'"
        rows = preview(store, f"""
            SELECT msg_class, huntress.id AS id, huntress.severity AS severity, parse_level,
                   len(processes) AS processes, len(sha256) AS sha256, len(domains) AS domains
            FROM parsed_syslog WHERE day BETWEEN {days} AND msg_class = '{INCIDENT_CLASS}'
            ORDER BY timestamp DESC""") if totals[INCIDENT_CLASS] else []
        return dg.MaterializeResult(metadata={
            "incident_rows": totals[INCIDENT_CLASS], "agent_rows": totals[AGENT_CLASS],
            "parse_levels": json.dumps(levels), "unchanged_parts_skipped": skipped,
            "preview": markdown_table(rows, ["msg_class", "id", "severity", "parse_level", "processes", "sha256",
                                             "domains"]),
        })

    @dg.asset(
        name="assets", group_name=GROUP, deps=["raw_agents"], kinds={"python", "parquet", "duckdb"},
        tags={"huntress/layer": "refined"},
        description=banner + "Asset inventory: one row per agent with its current state (hostname, OS and "
                    "build, IPs, MACs, Defender / firewall / tamper protection, tags, last callback), first and "
                    "last seen across snapshots, and staleness.",
    )
    def asset_inventory(context: dg.AssetExecutionContext, huntress: HuntressResource,
                        lake: HuntressLakeResource) -> dg.MaterializeResult:
        store = lake.get_lake()
        count = build_asset_inventory(store, parse_context(huntress, lake, store))
        store.refresh_catalog()
        rows = preview(store, "SELECT hostname, platform, os, ipv4_address, last_callback_at, is_stale FROM assets "
                              "ORDER BY last_callback_at DESC") if count else []
        stale = preview(store, "SELECT count(*) FILTER (WHERE is_stale) AS n FROM assets", 1)[0]["n"] if count else 0
        context.log.info(f"assets: {count} agents, {stale} stale")
        return dg.MaterializeResult(metadata={
            "agents": count, "stale_agents": stale,
            "preview": markdown_table(rows, ["hostname", "platform", "os", "ipv4_address", "last_callback_at",
                                             "is_stale"]),
        })

    @dg.asset(
        name="alerts", group_name=GROUP, deps=["parsed_syslog", "assets"], kinds={"python", "parquet", "duckdb"},
        tags={"huntress/layer": "refined"},
        description=banner + "Alerts: one row per (tenantid, huntress_id, huntress.organization_id, "
                    "huntress.account_id), the latest version of each incident report, with OCSF severity and "
                    "status ids, the incident report's portal link and the host context from assets.",
    )
    def alerts(context: dg.AssetExecutionContext, lake: HuntressLakeResource) -> dg.MaterializeResult:
        store = lake.get_lake()
        build = build_alerts(store)
        count = build.rows
        store.refresh_catalog()
        by_severity = preview(store, "SELECT severity, count(*) AS n FROM alerts GROUP BY 1 ORDER BY 2 DESC", 10) \
            if count else []
        rows = preview(store, "SELECT huntress_id, severity, status, subject, hostname, updated_at FROM alerts "
                              "ORDER BY updated_at DESC") if count else []
        context.log.info(f"alerts: {count} rows; {build.mode} build, {build.alerts_written} alerts recomputed "
                         f"from {len(build.changed_days)} changed parsed days")
        return dg.MaterializeResult(metadata={
            "alerts": count,
            "build": build.mode,
            "alerts_recomputed": build.alerts_written,
            "changed_days": ", ".join(build.changed_days[:10]) + (" ..." if len(build.changed_days) > 10 else ""),
            "by_severity": json.dumps({r["severity"]: r["n"] for r in by_severity}),
            "preview": markdown_table(rows, ["huntress_id", "severity", "status", "subject", "hostname",
                                             "updated_at"]),
        })

    return [raw_incidents, raw_agents, parsed_syslog, asset_inventory, alerts]
