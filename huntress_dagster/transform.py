"""From raw to refined: parsed_syslog partitions, alerts and assets (plain Python: no Dagster).

parsed_syslog is rebuilt per day from that day's raw files in streamed batches (bounded memory), and
skipped when its inputs have not changed since it was last built (the inputs' fingerprint is kept in
the output's Parquet footer). alerts are updated incrementally from the parsed days that changed (the
latest version wins, one row per key; see `build_alerts`); assets are recomputed from the agent
snapshots, streamed in batches. Both are written by DuckDB or in batches, so memory stays flat.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import parsing
from .parsing import ocsf
from .lake import SOURCE_FINGERPRINT, Lake, as_date, parquet_copy_options, sql_literal

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
                    table = batch_con.sql(ASSET_COLUMNS_SQL, params={"now": now, "stale_after_days": STALE_AFTER_DAYS}
                                          ).to_arrow_table()
                writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                count += table.num_rows
            writer.close()
    write_device_inventory(lake)
    return count


# The key of an alert, and the version order that picks its row: the latest `updated_at`, then the latest
# collection. NULL organization/account ids are part of a key, hence IS NOT DISTINCT FROM in the joins.
VERSION_KEY_COLUMNS = ("tenantid", "hid", "oid", "aid")  # in the version tables below (`versions`, `touched`)
TABLE_KEY_COLUMNS = ("tenantid", "huntress_id", "organization_id", "account_id")  # the same key in alerts
ALERT_PARTS = 16  # alerts and findings files, by Huntress id: a run rewrites only the parts it touches
ALERTS_ROW_GROUP_ROWS = 16_384  # ~40 MB of alerts rows: see parquet_copy_options
ALERTS_FORMAT_VERSION = "4"  # bump when ALERT_ROWS_SQL changes: the next build is then a full one


def _key_match(left: str, right: str, left_columns: tuple[str, ...] = VERSION_KEY_COLUMNS) -> str:
    """`left` and `right` (a version table) hold the same alert key."""
    return " AND ".join(f"{left}.{lc} IS NOT DISTINCT FROM {right}.{rc}"
                        for lc, rc in zip(left_columns, VERSION_KEY_COLUMNS, strict=True))


# Every incident version's key and order columns: the cheap columns of parsed_syslog (no body, no
# entities), which is what makes a build from a handful of changed days cost little on a large lake.
# Each version once, with the position of the parsed row that holds it (src_file, src_row): a version
# the lake holds twice (a repeat an API served before repeats were dropped at commit) stays one alert.
VERSION_KEYS_SQL = """
SELECT tenantid, huntress.id AS hid, huntress.organization_id AS oid, huntress.account_id AS aid,
       huntress.updated_at AS updated_at, collected_at, CAST(day AS VARCHAR) AS day,
       filename AS src_file, file_row_number AS src_row
FROM read_parquet({files}, hive_partitioning = true, union_by_name = true, filename = true,
                  file_row_number = true)
QUALIFY row_number() OVER (PARTITION BY tenantid, hid, oid, aid, updated_at
                           ORDER BY collected_at DESC, src_file, src_row) = 1
"""

# The latest version of each touched key, with the version count and first collection over all versions.
LATEST_VERSIONS_SQL = f"""
SELECT v.tenantid, v.hid, v.oid, v.aid, v.updated_at, v.collected_at, v.day, v.src_file, v.src_row,
       count(*) OVER keyed AS version_count, min(v.collected_at) OVER keyed AS first_collected_at
FROM versions v SEMI JOIN touched t ON {_key_match("v", "t")}
WINDOW keyed AS (PARTITION BY v.tenantid, v.hid, v.oid, v.aid)
QUALIFY row_number() OVER (PARTITION BY v.tenantid, v.hid, v.oid, v.aid
                           ORDER BY v.updated_at DESC, v.collected_at DESC) = 1
"""

# Alert rows of the touched keys: their latest parsed row, read only from the days that hold one.
ALERT_ROWS_SQL = """
WITH latest AS (
    SELECT p.*, l.version_count, l.first_collected_at
    FROM read_parquet({files}, hive_partitioning = true, union_by_name = true, filename = true,
                      file_row_number = true) p
    JOIN latest_versions l ON p.filename = l.src_file AND p.file_row_number = l.src_row  -- exactly one row
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
       latest.version_count, latest.first_collected_at, latest.collected_at AS last_collected_at,
       a.hostname, a.os AS host_os, a.ipv4_address AS host_ipv4, a.external_ip AS host_external_ip,
       a.mac_addresses AS host_mac_addresses, a.domain_name AS host_domain_name,
       latest.* EXCLUDE (tenantid, tenant_name, domain, body, alert_uid, severity_score, severity_id, status_id,
                         security_product, portal_url, collected_at, version_count, first_collected_at,
                         filename, file_row_number)
FROM latest
LEFT JOIN {assets} a ON a.tenantid = latest.tenantid AND a.agent_id = latest.huntress.agent_id
"""

NO_ASSETS_SQL = ("(SELECT NULL::VARCHAR AS tenantid, NULL::BIGINT AS agent_id, NULL::VARCHAR AS hostname, "
                 "NULL::VARCHAR AS os, NULL::VARCHAR AS ipv4_address, NULL::VARCHAR AS external_ip, "
                 "NULL::VARCHAR[] AS mac_addresses, NULL::VARCHAR AS domain_name WHERE false)")


@dataclass
class AlertsBuild:
    rows: int
    mode: str  # "full", "incremental" or "unchanged"
    changed_days: list[str] = field(default_factory=list)  # parsed incident days new or rebuilt since last build
    alerts_written: int = 0  # alert rows (re)computed by this build


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(sql_literal(v) for v in values) + "]"


def _file_signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _alerts_sources(lake: Lake) -> dict[str, Any]:
    """What the alerts would be built from now: the format, the assets file's signature (host context), and
    each parsed incident day's source fingerprint (which changes whenever the day is re-parsed)."""
    days = {}
    for path in lake.root.glob(f"parsed_syslog/msg_class={INCIDENT_CLASS}/day=*/data.parquet"):
        fingerprint = lake.file_metadata(path).get(SOURCE_FINGERPRINT)
        days[path.parent.name.removeprefix("day=")] = (fingerprint.decode() if fingerprint
                                                       else _file_signature(path))
    assets = lake.root / "assets" / "data.parquet"
    return {"format": ALERTS_FORMAT_VERSION, "assets": _file_signature(assets) if assets.exists() else "",
            "days": days}


# Host context in alerts, and where it comes from in assets.
HOST_CONTEXT_COLUMNS = {"hostname": "hostname", "host_os": "os", "host_ipv4": "ipv4_address",
                        "host_external_ip": "external_ip", "host_mac_addresses": "mac_addresses",
                        "host_domain_name": "domain_name"}


def alerts_part(lake: Lake, bucket: int) -> Path:
    return lake.root / "alerts" / f"part-{bucket:02d}.parquet"


def findings_part(lake: Lake, bucket: int) -> Path:
    return lake.root / "ocsf" / "detection_finding" / f"part-{bucket:02d}.parquet"


def _bucket_of(id_sql: str) -> str:
    """SQL for the part an alert lives in: a function of its Huntress id alone, so a key never moves."""
    return f"((coalesce({id_sql}, 0) % {ALERT_PARTS} + {ALERT_PARTS}) % {ALERT_PARTS})"


def build_alerts(lake: Lake, full: bool = False) -> AlertsBuild:
    """alerts: one row per (tenantid, huntress_id, huntress.organization_id, huntress.account_id),
    the latest version, with host context from assets; and its OCSF Detection Finding form.

    Both tables are split into ALERT_PARTS files by Huntress id, and built incrementally:
    `alerts/_built_from.json` records what they were built from (`_alerts_sources`), and a build
    recomputes only the touched keys: those with a version in a parsed day that changed since, those whose
    current row came from such a day, and, when assets were rebuilt, those whose host context differs from
    assets now. Only the parts holding a touched key are rewritten (the touched rows plus the part's other
    rows copied over), so a sensor run that brings one incident costs a read of the version keys and a
    copy of one part, whatever the size of the lake. It is a full build when asked, on the first build,
    after a format change, or when a day disappeared. The record is written after the parts: a crash in
    between only makes the next build recompute more. Versions are never removed from a day (raw commits
    merge), so an untouched key's row cannot go stale.
    """
    state = lake.root / "alerts" / "_built_from.json"
    with lake.lock("alerts"):
        sources = _alerts_sources(lake)
        if not sources["days"]:
            return AlertsBuild(rows=0, mode="unchanged")
        previous = json.loads(state.read_text()) if state.exists() else None
        incremental = (not full and previous is not None and previous["format"] == sources["format"]
                       and set(previous["days"]) <= set(sources["days"])
                       and all(alerts_part(lake, b).exists() for b in range(ALERT_PARTS)))
        changed = sorted(day for day, fp in sources["days"].items()
                         if not incremental or previous["days"].get(day) != fp)
        assets_changed = incremental and previous["assets"] != sources["assets"]
        if incremental and not changed and not assets_changed:
            return AlertsBuild(rows=_alert_rows(lake), mode="unchanged")
        paths = {day: parsed_path(lake, INCIDENT_CLASS, day) for day in sources["days"]}
        with lake.connect() as con:
            # Streamed writes: no insertion order to keep (DuckDB would buffer rows for it)
            con.execute("SET preserve_insertion_order = false")
            views = lake.register_views(con)
            assets = "assets" if "assets" in views else NO_ASSETS_SQL
            con.execute("CREATE TEMP TABLE versions AS "
                        + VERSION_KEYS_SQL.format(files=_sql_list([str(p) for p in paths.values()])))
            touched = "SELECT DISTINCT tenantid, hid, oid, aid FROM versions"
            if incremental:
                parts = _sql_list([str(alerts_part(lake, b)) for b in range(ALERT_PARTS)])
                old = f"SELECT {', '.join('o.' + c for c in TABLE_KEY_COLUMNS)} FROM read_parquet({parts}) o"
                days = ", ".join(map(sql_literal, changed or [""]))
                touched += f" WHERE day IN ({days})"
                # keys whose current row came from a changed day (its latest version may have moved on)
                touched += f" UNION {old} WHERE CAST(CAST(updated_at AS DATE) AS VARCHAR) IN ({days})"
                if assets_changed:  # keys whose host context is no longer what assets say
                    differs = " OR ".join(f"o.{mine} IS DISTINCT FROM a.{theirs}"
                                          for mine, theirs in HOST_CONTEXT_COLUMNS.items())
                    touched += (f" UNION {old} LEFT JOIN {assets} a ON a.tenantid = o.tenantid "
                                f"AND a.agent_id = o.agent_id WHERE {differs}")
            con.execute(f"CREATE TEMP TABLE touched AS {touched}")
            con.execute(f"CREATE TEMP TABLE latest_versions AS {LATEST_VERSIONS_SQL}")
            row_days = [day for (day,) in con.execute("SELECT DISTINCT day FROM latest_versions").fetchall()]
            # (no touched key: any file will do, the join with no latest version yields no row)
            rows_sql = ALERT_ROWS_SQL.format(files=_sql_list([str(paths[d]) for d in sorted(row_days or paths)]),
                                             assets=assets)
            # The touched rows, once (a full build's spill to disk past DuckDB's memory limit).
            con.execute(f"CREATE TEMP TABLE new_alerts AS SELECT *, {_bucket_of('huntress_id')} AS part "
                        f"FROM ({rows_sql})")
            written = con.execute("SELECT count(*) FROM new_alerts").fetchall()[0][0]
            buckets = range(ALERT_PARTS) if not incremental else sorted(
                b for (b,) in con.execute(f"SELECT DISTINCT {_bucket_of('hid')} FROM touched").fetchall())
            for bucket in buckets:
                _write_alerts_part(lake, con, bucket, incremental)
            if not incremental:  # the single-file layout of earlier versions
                (lake.root / "alerts" / "data.parquet").unlink(missing_ok=True)
                (lake.root / "ocsf" / "detection_finding" / "data.parquet").unlink(missing_ok=True)
        with lake.atomic_path(state) as tmp:
            tmp.write_text(json.dumps(sources, separators=(",", ":")))
    return AlertsBuild(rows=_alert_rows(lake), mode="incremental" if incremental else "full",
                       changed_days=changed, alerts_written=written)


def _alert_rows(lake: Lake) -> int:
    return sum(pq.read_metadata(path).num_rows for path in lake.files("alerts"))


def _write_alerts_part(lake: Lake, con: Any, bucket: int, incremental: bool, batch_rows: int = 10_000) -> None:
    """One part of alerts and of its findings: the touched rows of the bucket (`new_alerts`), plus, in an
    incremental build, the part's other rows carried over from its previous file."""
    alerts_file, findings_file = alerts_part(lake, bucket), findings_part(lake, bucket)
    with lake.atomic_path(alerts_file) as tmp:
        query = f"SELECT * EXCLUDE (part) FROM new_alerts WHERE part = {bucket}"
        if incremental:
            query += (f" UNION ALL BY NAME SELECT * FROM read_parquet({sql_literal(str(alerts_file))}) o "
                      f"ANTI JOIN touched t ON {_key_match('o', 't', TABLE_KEY_COLUMNS)}")
        con.execute(f"COPY ({query}) TO {sql_literal(str(tmp))} {parquet_copy_options(ALERTS_ROW_GROUP_ROWS)}")
    carry_over = incremental and findings_file.exists()
    with lake.lock("ocsf/detection_finding"), lake.atomic_path(findings_file) as tmp:
        fresh = tmp.with_name(tmp.name + ".new") if carry_over else tmp
        try:
            rows = con.sql(f"SELECT {', '.join(OCSF_ALERT_COLUMNS)} FROM new_alerts WHERE part = {bucket}")
            with rows.to_arrow_reader(batch_rows) as reader:
                _write_ocsf(fresh, reader, ocsf.DETECTION_FINDING_SCHEMA, _detection_findings)
            if carry_over:  # the findings of the part's other alerts, by finding_info.uid (the alert id)
                options = parquet_copy_options(ALERTS_ROW_GROUP_ROWS, ocsf_version=ocsf.OCSF_VERSION)
                con.execute(
                    f"COPY (SELECT * FROM read_parquet({sql_literal(str(fresh))}) UNION ALL BY NAME "
                    f"SELECT o.* FROM read_parquet({sql_literal(str(findings_file))}) o "
                    f"ANTI JOIN (SELECT alert_id FROM new_alerts WHERE part = {bucket}) n "
                    f"ON o.finding_info.uid = n.alert_id) TO {sql_literal(str(tmp))} {options}")
        finally:
            if carry_over:
                fresh.unlink(missing_ok=True)


# alerts names the parsed row's alert_uid / portal_url for what they are
_ALERTS_RENAMED = {"alert_uid": "alert_id", "portal_url": "incident_report_url"}
# The alerts columns the OCSF findings need (Python rows of only these: to_pylist is half the cost).
OCSF_ALERT_COLUMNS = [_ALERTS_RENAMED.get(c, c) for c in ocsf.DETECTION_FINDING_INPUTS]


def _detection_findings(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    batch = batch.select(OCSF_ALERT_COLUMNS).rename_columns(list(ocsf.DETECTION_FINDING_INPUTS))
    return [ocsf.detection_finding(row) for row in batch.to_pylist()]


def _device_inventory(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    return [ocsf.device_inventory_info(row) for row in batch.to_pylist()]


def _write_ocsf(path: Path, batches: Iterator[pa.RecordBatch], schema: pa.Schema,
                events: Callable[[pa.RecordBatch], list[dict[str, Any]]]) -> int:
    """OCSF events (pinned version `ocsf.OCSF_VERSION`, recorded in the file) of each batch, into `path`."""
    count = 0
    schema = schema.with_metadata({b"ocsf_version": ocsf.OCSF_VERSION.encode()})
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in batches:
            table = ocsf.to_table(events(batch), schema)
            writer.write_table(table)
            count += table.num_rows
    return count


def write_device_inventory(lake: Lake, batch_rows: int = 10_000) -> int:
    """OCSF Device Inventory Info events from assets, batch by batch."""
    source = lake.root / "assets" / "data.parquet"
    if not source.exists():
        return 0
    final = lake.root / "ocsf" / "device_inventory_info" / "data.parquet"
    with lake.lock("ocsf/device_inventory_info"), lake.atomic_path(final) as tmp:
        batches = pq.ParquetFile(source).iter_batches(batch_size=batch_rows)
        return _write_ocsf(tmp, batches, ocsf.DEVICE_INVENTORY_INFO_SCHEMA, _device_inventory)


def preview(lake: Lake, sql: str, limit: int = 5) -> list[dict[str, Any]]:
    """A few rows for run metadata."""
    with lake.connect() as con:
        lake.register_views(con)
        return con.sql(f"SELECT * FROM ({sql}) LIMIT {limit}").to_arrow_table().to_pylist()
