"""From raw to refined: parsed_syslog partitions, alerts and assets (plain Python: no Dagster).

parsed_syslog is rebuilt per day from that day's raw files in streamed batches (bounded memory), and
skipped when its inputs have not changed since it was last built (the inputs' fingerprint is kept in
the output's Parquet footer). alerts and assets are small derived tables recomputed with DuckDB
from the whole lake, which makes them correct by construction: the latest version wins, one row per key.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import parsing
from .parsing import ocsf
from .lake import SOURCE_FINGERPRINT, Lake, as_date, sql_literal

INCIDENT_CLASS = "huntress_incident_report"
AGENT_CLASS = "huntress_agent"
STALE_AFTER_DAYS = 30
# Bump when parsing changes, so existing parsed partitions are rebuilt instead of skipped.
PARSED_FORMAT_VERSION = "1"


@dataclass
class ParsedDayStats:
    day: str
    rows: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # classes whose inputs had not changed
    parse_levels: dict[str, int] = field(default_factory=dict)


def parsed_path(lake: Lake, msg_class: str, day: date | str) -> Path:
    return lake.root / "parsed_syslog" / f"msg_class={msg_class}" / f"day={as_date(day).isoformat()}" / "data.parquet"


def _fingerprint(sources: list[Path], ctx: parsing.ParseContext) -> bytes:
    digest = hashlib.sha256(PARSED_FORMAT_VERSION.encode())
    digest.update(repr(ctx).encode())
    for path in sources:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest().encode()


def _raw_batches(sources: list[Path], columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    for path in sources:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)


def _write_parsed(lake: Lake, msg_class: str, day: date, sources: list[Path], ctx: parsing.ParseContext,
                  stats: ParsedDayStats, batch_rows: int) -> None:
    final = parsed_path(lake, msg_class, day)
    if not sources:
        return
    fingerprint = _fingerprint(sources, ctx)
    if final.exists() and lake.file_metadata(final).get(SOURCE_FINGERPRINT) == fingerprint:
        stats.skipped.append(msg_class)
        stats.rows[msg_class] = pq.read_metadata(final).num_rows
        return
    is_incident = msg_class == INCIDENT_CLASS
    columns = ["raw_json", "collected_at"] + (["remediations_json"] if is_incident else [])
    schema = parsing.PARSED_SYSLOG_SCHEMA.append(pa.field("collected_at", pa.timestamp("us", tz="UTC")))
    schema = schema.with_metadata({SOURCE_FINGERPRINT: fingerprint})
    count = 0
    with lake.lock(f"parsed_syslog/{msg_class}/{day.isoformat()}"), lake.atomic_path(final) as tmp, \
            pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for batch in _raw_batches(sources, columns, batch_rows):
            raws = batch.column("raw_json").to_pylist()
            if is_incident:
                raws = [parsing.with_all_remediations(raw, json.loads(rem)["remediations"]) if rem else raw
                        for raw, rem in zip(raws, batch.column("remediations_json").to_pylist(), strict=True)]
                table = parsing.normalize_incidents(raws, ctx)
            else:
                table = parsing.normalize_agents(raws, ctx)
            table = table.append_column("collected_at", batch.column("collected_at"))
            writer.write_table(table.cast(schema))
            count += table.num_rows
            for level in table.column("parse_level").to_pylist():
                if level:
                    stats.parse_levels[level] = stats.parse_levels.get(level, 0) + 1
    stats.rows[msg_class] = count


def build_parsed_syslog_day(lake: Lake, day: date | str, ctx: parsing.ParseContext,
                            batch_rows: int = 2_000) -> ParsedDayStats:
    """Normalize one day: incident versions updated that day and agent snapshots taken that day."""
    day = as_date(day)
    stats = ParsedDayStats(day=day.isoformat())
    incident_source = lake.incident_day_path(day)
    _write_parsed(lake, INCIDENT_CLASS, day, [incident_source] if incident_source.exists() else [], ctx, stats,
                  batch_rows)
    _write_parsed(lake, AGENT_CLASS, day, lake.agent_snapshot_files(day), ctx, stats, batch_rows)
    return stats


def build_parsed_syslog_days(lake: Lake, days: list[date | str], ctx: parsing.ParseContext,
                             workers: int = 1) -> Iterator[ParsedDayStats]:
    """Normalize several days, in parallel processes when `workers` > 1: parsing is CPU-bound and each day
    is an independent file, so a backfill scales with the cores (memory: one batch per worker)."""
    workers = min(workers, len(days))
    if workers <= 1:
        yield from (build_parsed_syslog_day(lake, day, ctx) for day in days)
        return
    # spawn, not fork: the caller may be a threaded Dagster run worker.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(build_parsed_syslog_day, [lake] * len(days), days, [ctx] * len(days))


ASSETS_SQL = """
WITH snapshots AS (
    SELECT tenantid, id, updated_at, collected_at, raw_json FROM raw_agents
),
seen AS (
    SELECT tenantid, id, min(collected_at) AS first_seen_at, max(collected_at) AS last_seen_at,
           count(DISTINCT collected_at) AS snapshots_seen
    FROM snapshots GROUP BY ALL
),
latest AS (
    SELECT * FROM snapshots
    QUALIFY row_number() OVER (PARTITION BY tenantid, id ORDER BY collected_at DESC, updated_at DESC) = 1
)
SELECT latest.tenantid, latest.id, latest.raw_json, seen.first_seen_at, seen.last_seen_at, seen.snapshots_seen,
       seen.last_seen_at = (SELECT max(collected_at) FROM snapshots) AS in_latest_snapshot
FROM latest JOIN seen USING (tenantid, id)
ORDER BY latest.tenantid, latest.id
"""


ASSET_COLUMNS_SQL = """
    SELECT s.tenantid, p.tenant_name, s.id AS agent_id,
           p.huntress.organization_id AS organization_id, p.huntress.account_id AS account_id,
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
           p.huntress.created_at AS created_at, p.huntress.updated_at AS updated_at,
           s.first_seen_at, s.last_seen_at, s.snapshots_seen, s.in_latest_snapshot,
           date_diff('day', p.huntress.last_callback_at, $now::TIMESTAMPTZ)
               AS days_since_callback,
           coalesce(date_diff('day', p.huntress.last_callback_at,
                              $now::TIMESTAMPTZ) > $stale_after_days, true)
               OR NOT s.in_latest_snapshot AS is_stale,
           p.huntress AS huntress
    FROM agents_seen s POSITIONAL JOIN agents_parsed p

"""


def build_asset_inventory(lake: Lake, ctx: parsing.ParseContext, now: datetime | None = None,
                          batch_rows: int = 20_000) -> int:
    """assets: one row per agent, its current state, first/last seen across inventory snapshots.
    Streamed in batches: memory stays flat however many agents the account has."""
    now = now or datetime.now(timezone.utc)
    final = lake.root / "assets" / "data.parquet"
    count = 0
    # Under the table lock from read to rename, so concurrent builds cannot publish an older state last.
    with lake.lock("assets"), lake.connect() as con:
        views = lake.register_views(con)
        if "raw_agents" not in views or not con.execute("SELECT count(*) FROM raw_agents").fetchall()[0][0]:
            return 0
        with lake.atomic_path(final) as tmp:
            writer = None
            for batch in con.sql(ASSETS_SQL).to_arrow_reader(batch_rows):
                with con.cursor() as batch_con:  # a second connection: `con` is busy streaming the reader
                    batch_con.register("agents_parsed",
                                       parsing.normalize_agents(batch.column("raw_json").to_pylist(), ctx))
                    batch_con.register("agents_seen", batch.drop_columns(["raw_json"]))
                    table = batch_con.execute(ASSET_COLUMNS_SQL, {"now": now, "stale_after_days": STALE_AFTER_DAYS}
                                              ).to_arrow_table()
                writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                count += table.num_rows
            writer.close()
    write_ocsf(lake, "device_inventory_info")
    return count


ALERTS_SQL = """
WITH versions AS (
    SELECT * FROM parsed_syslog WHERE msg_class = 'huntress_incident_report'
),
counted AS (
    SELECT tenantid, huntress.id AS hid, huntress.organization_id AS oid, huntress.account_id AS aid,
           count(*) AS version_count, min(collected_at) AS first_collected_at
    FROM versions GROUP BY ALL
),
latest AS (
    SELECT * FROM versions
    QUALIFY row_number() OVER (
        PARTITION BY tenantid, huntress.id, huntress.organization_id, huntress.account_id
        ORDER BY huntress.updated_at DESC, collected_at DESC) = 1
)
SELECT latest.alert_uid AS alert_id, latest.tenantid, latest.tenant_name, latest.huntress.id AS huntress_id,
       latest.huntress.organization_id AS organization_id, latest.huntress.account_id AS account_id,
       latest.huntress.agent_id AS agent_id,
       latest.huntress.severity AS severity, latest.severity_score, latest.severity_id,
       latest.huntress.status AS status, latest.status_id,
       latest.huntress.subject AS subject, latest.huntress.summary AS summary,
       latest.huntress.platform AS platform, latest.huntress.indicator_types AS indicator_types,
       latest.security_product, latest.portal_url AS incident_report_url, latest.domain,
       latest.huntress.sent_at AS sent_at, latest.huntress.closed_at AS closed_at,
       latest.huntress.status_updated_at AS status_updated_at, latest.huntress.updated_at AS updated_at,
       counted.version_count, counted.first_collected_at, latest.collected_at AS last_collected_at,
       a.hostname, a.os AS host_os, a.ipv4_address AS host_ipv4, a.external_ip AS host_external_ip,
       a.mac_addresses AS host_mac_addresses, a.domain_name AS host_domain_name,
       latest.* EXCLUDE (tenantid, tenant_name, domain, body, alert_uid, severity_score, severity_id, status_id,
                         security_product, portal_url, collected_at)
FROM latest
JOIN counted ON counted.tenantid = latest.tenantid AND counted.hid = latest.huntress.id
     AND counted.oid IS NOT DISTINCT FROM latest.huntress.organization_id
     AND counted.aid IS NOT DISTINCT FROM latest.huntress.account_id
LEFT JOIN {assets} a ON a.tenantid = latest.tenantid AND a.agent_id = latest.huntress.agent_id
ORDER BY updated_at DESC, huntress_id
"""


def build_alerts(lake: Lake) -> int:
    """alerts: one row per (tenantid, huntress_id, huntress.organization_id, huntress.account_id),
    the latest version, with host context from assets."""
    with lake.connect() as con:
        views = lake.register_views(con)
        if "parsed_syslog" not in views or not any(
                p.exists() for p in (lake.root / "parsed_syslog").glob(f"msg_class={INCIDENT_CLASS}/day=*/data.parquet")):
            return 0
        assets = "assets" if "assets" in views else (
            "(SELECT NULL::VARCHAR AS tenantid, NULL::BIGINT AS agent_id, NULL::VARCHAR AS hostname, "
            "NULL::VARCHAR AS os, NULL::VARCHAR AS ipv4_address, NULL::VARCHAR AS external_ip, "
            "NULL::VARCHAR[] AS mac_addresses, NULL::VARCHAR AS domain_name WHERE false)")
        final = lake.root / "alerts" / "data.parquet"
        # DuckDB streams the query into the file (spilling under its memory limit): flat memory at any size.
        with lake.lock("alerts"), lake.atomic_path(final) as tmp:
            con.execute(f"COPY ({ALERTS_SQL.format(assets=assets)}) TO {sql_literal(str(tmp))} "
                        "(FORMAT parquet, COMPRESSION zstd)")
    write_ocsf(lake, "detection_finding")
    return pq.read_metadata(final).num_rows


OCSF_TABLES = {
    "detection_finding": ("alerts", ocsf.DETECTION_FINDING_SCHEMA),
    "device_inventory_info": ("assets", ocsf.DEVICE_INVENTORY_INFO_SCHEMA),
}


def _ocsf_event(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    if kind == "detection_finding":
        # alerts names the parsed row's alert_uid / portal_url for what they are
        return ocsf.detection_finding({**row, "alert_uid": row["alert_id"], "portal_url": row["incident_report_url"]})
    return ocsf.device_inventory_info(row)


def write_ocsf(lake: Lake, kind: str, batch_rows: int = 10_000) -> int:
    """OCSF events (pinned version `ocsf.OCSF_VERSION`) from alerts or assets, streamed batch by batch."""
    source_table, schema = OCSF_TABLES[kind]
    source = lake.root / source_table / "data.parquet"
    if not source.exists():
        return 0
    final = lake.root / "ocsf" / kind / "data.parquet"
    count = 0
    schema = schema.with_metadata({b"ocsf_version": ocsf.OCSF_VERSION.encode()})
    with lake.lock(f"ocsf/{kind}"), lake.atomic_path(final) as tmp, \
            pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_rows):
            events = [_ocsf_event(kind, row) for row in batch.to_pylist()]
            writer.write_table(ocsf.to_table(events, schema))
            count += len(events)
    return count


def preview(lake: Lake, sql: str, limit: int = 5) -> list[dict[str, Any]]:
    """A few rows for run metadata."""
    with lake.connect() as con:
        lake.register_views(con)
        return con.sql(f"SELECT * FROM ({sql}) LIMIT {limit}").to_arrow_table().to_pylist()
