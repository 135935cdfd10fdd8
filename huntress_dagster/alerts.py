"""alerts: the triage queue of incident reports and escalations (plain Python: no Dagster).

One row per (tenantid, msg_class, huntress_id, organization_id, account_id): the latest version of each
incident report, and of each escalation once per organization it affects (the reference dedups per
organization), with OCSF severity and status ids, the portal link and the host context from agent_inventory; and
its OCSF Detection Finding form. Built incrementally from the parsed days that changed (see
`build_alerts`), written in parts (`alert_parts`), so memory stays flat.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from . import catalog, layout
from .alert_parts import (
    ALERT_PARTS,
    ALERTS_ROW_GROUP_ROWS,
    alerts_part,
    bucket_of,
    write_all_parts,
    write_findings_part,
)
from .lake import SOURCE_FINGERPRINT, Lake, footer_arrow_schema, parquet_copy_options, sql_literal
from .parsing.fields import alert_uid
from .streams import ALERT_STREAMS

# The key of an alert, and the version order that picks its row: the latest `updated_at`, then the latest
# collection. NULL organization/account ids are part of a key, hence IS NOT DISTINCT FROM in the joins.
VERSION_KEY_COLUMNS = ("tenantid", "cls", "hid", "oid", "aid")  # in the version tables (`versions`, `touched`)
TABLE_KEY_COLUMNS = ("tenantid", "msg_class", "huntress_id", "organization_id", "account_id")  # the same in alerts
OCSF_TABLE = "ocsf_detection_finding"  # the alerts' OCSF Detection Finding form: its view and asset name
ALERT_CLASSES = tuple(stream.msg_class for stream in ALERT_STREAMS)
ALERTS_FORMAT_VERSION = "7"  # bump when ALERT_ROWS_SQL changes: the next build is then a full one


def _key_match(left: str, right: str, left_columns: tuple[str, ...] = VERSION_KEY_COLUMNS) -> str:
    """`left` and `right` (a version table) hold the same alert key."""
    return " AND ".join(f"{left}.{lc} IS NOT DISTINCT FROM {right}.{rc}"
                        for lc, rc in zip(left_columns, VERSION_KEY_COLUMNS, strict=True))


# Every incident version's key and order columns: the cheap columns of parsed_syslog (no body, no
# entities), which is what makes a build from a handful of changed days cost little on a large lake.
# Each version once, with the position of the parsed row that holds it (src_file, src_row): a version
# the lake holds twice (a repeat an API served before repeats were dropped at commit) stays one alert.
# src_file is an ENUM of the parsed files (`parsed_file`): a path string per version was about half of
# the version tables, ~120 MB per million versions held through the whole build.
# An object spanning several organizations (an escalation) is one version per organization.
VERSION_KEYS_SQL = """
SELECT * FROM (
    SELECT tenantid, msg_class AS cls, huntress.id AS hid,
           unnest(CASE WHEN len(list_filter(huntress.organization_ids, lambda o: o IS NOT NULL)) > 0
                       THEN list_filter(huntress.organization_ids, lambda o: o IS NOT NULL)
                       ELSE [huntress.organization_id] END) AS oid,
           huntress.account_id AS aid, huntress.updated_at AS updated_at, collected_at,
           CAST(day AS VARCHAR) AS day, filename::parsed_file AS src_file, file_row_number AS src_row
    FROM read_parquet({files}, hive_partitioning = true, {union}filename = true, file_row_number = true))
QUALIFY row_number() OVER (PARTITION BY tenantid, cls, hid, oid, aid, updated_at
                           ORDER BY collected_at DESC, src_file, src_row) = 1
"""

# The latest version of each touched key, with the version count and first collection over all versions.
# An object's organizations are those of its latest version: an organization an escalation no longer
# lists has no latest version here, so its alert row is dropped when its part is rewritten.
LATEST_VERSIONS_SQL = f"""
SELECT * EXCLUDE (object_updated_at, object_collected_at) FROM (
    SELECT v.tenantid, v.cls, v.hid, v.oid, v.aid, v.updated_at, v.collected_at, v.day, v.src_file, v.src_row,
           count(*) OVER keyed AS version_count, min(v.collected_at) OVER keyed AS first_collected_at,
           max(v.updated_at) OVER object AS object_updated_at,
           max(v.collected_at) FILTER (WHERE v.updated_at IS NOT DISTINCT FROM object_updated_at_inner) OVER object
               AS object_collected_at
    FROM (SELECT *, max(updated_at) OVER (PARTITION BY tenantid, cls, hid, aid) AS object_updated_at_inner
          FROM versions) v SEMI JOIN touched t ON {_key_match("v", "t")}
    WINDOW keyed AS (PARTITION BY v.tenantid, v.cls, v.hid, v.oid, v.aid),
           object AS (PARTITION BY v.tenantid, v.cls, v.hid, v.aid))
WHERE updated_at IS NOT DISTINCT FROM object_updated_at AND collected_at = object_collected_at
"""

# Alert rows of the touched keys: their latest parsed row, read only from the days that hold one.
ALERT_ROWS_SQL = """
WITH latest AS (
    SELECT p.*, l.oid, l.version_count, l.first_collected_at
    FROM read_parquet({files}, hive_partitioning = true, {union}filename = true, file_row_number = true) p
    JOIN {versions} l ON p.filename = l.src_file AND p.file_row_number = l.src_row  -- exactly one row
     -- and the right one: a file re-parsed since the versions were read yields no row, not another record
     AND p.huntress.id = l.hid AND p.huntress.updated_at IS NOT DISTINCT FROM l.updated_at
    {only_files}
)
SELECT coalesce(latest.alert_uid, huntress_alert_uid(latest.tenantid, latest.huntress.id, latest.oid,
                                                     latest.huntress.account_id, latest.msg_class)) AS alert_id,
       latest.tenantid, latest.tenant_name, latest.msg_class, latest.huntress.id AS huntress_id,
       latest.oid AS organization_id, latest.huntress.account_id AS account_id,
       -- the organizations inventory's name follows renames; the record's own is the fallback
       coalesce(og.name, latest.huntress.organization_name,
                latest.huntress.organization_names[list_position(latest.huntress.organization_ids, latest.oid)])
           AS organization_name,
       latest.huntress.type AS type, latest.huntress.subtype AS subtype,
       latest.huntress.agent_id AS agent_id,
       latest.huntress.severity AS severity, latest.severity_id,
       latest.huntress.status AS status, latest.status_id, latest.is_open,
       latest.huntress.subject AS subject, latest.huntress.summary AS summary,
       latest.huntress.platform AS platform, latest.huntress.indicator_types AS indicator_types,
       latest.security_product, latest.portal_url AS incident_report_url, latest.domain,
       latest.huntress.created_at AS created_at, latest.huntress.sent_at AS sent_at,
       coalesce(latest.huntress.closed_at, latest.huntress.resolved_at) AS closed_at,
       latest.huntress.status_updated_at AS status_updated_at, latest.huntress.updated_at AS updated_at,
       latest.version_count, latest.first_collected_at, latest.collected_at AS last_collected_at,
       a.hostname, a.os AS host_os, a.ipv4_address AS host_ipv4, a.external_ip AS host_external_ip,
       a.mac_addresses AS host_mac_addresses, a.domain_name AS host_domain_name,
       latest.* EXCLUDE (tenantid, tenant_name, msg_class, domain, body, alert_uid, severity_id,
                         status_id, is_open, security_product, portal_url, collected_at, version_count, first_collected_at,
                         filename, file_row_number, oid, account)
FROM latest
LEFT JOIN {assets} a ON a.tenantid = latest.tenantid AND a.agent_id = latest.huntress.agent_id
LEFT JOIN {organizations} og ON og.tenantid = latest.tenantid AND og.organization_id = latest.oid
"""

NO_ORGANIZATIONS_SQL = ("(SELECT NULL::VARCHAR AS tenantid, NULL::BIGINT AS organization_id, "
                        "NULL::VARCHAR AS name WHERE false)")
NO_ASSETS_SQL = ("(SELECT NULL::VARCHAR AS tenantid, NULL::BIGINT AS agent_id, NULL::VARCHAR AS hostname, "
                 "NULL::VARCHAR AS os, NULL::VARCHAR AS ipv4_address, NULL::VARCHAR AS external_ip, "
                 "NULL::VARCHAR[] AS mac_addresses, NULL::VARCHAR AS domain_name WHERE false)")


@dataclass
class AlertsBuild:
    rows: int
    mode: str  # "full", "incremental" or "unchanged"
    changed_days: list[str] = field(default_factory=list)  # parsed days (of any alert class) new or rebuilt
    alerts_written: int = 0  # alert rows (re)computed by this build


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(sql_literal(v) for v in values) + "]"


def _parsed_alert_files(lake: Lake) -> dict[str, Path]:
    """The parsed files of every alert class, by "<msg_class>/<account>/<day>"."""
    return {f"{msg_class}/{layout.account_of(path)}/{path.parent.name.removeprefix('day=')}": path
            for msg_class in ALERT_CLASSES for path in lake.glob(layout.parsed_glob(msg_class))}


def _day_of(source: str) -> str:
    return source.rsplit("/", 1)[1]


def _alerts_sources(lake: Lake, files: dict[str, Path]) -> tuple[dict[str, Any], bool]:
    """What the alerts would be built from now: the format, the assets file's signature (host context), and
    each parsed file's source fingerprint (which changes whenever its day is re-parsed); and whether every
    parsed file has the same schema (from the same footers)."""
    days, schemas = {}, set()
    for source, path in files.items():
        metadata = lake.file_metadata(path)
        fingerprint = metadata.get(SOURCE_FINGERPRINT)
        days[source] = fingerprint.decode() if fingerprint else lake.signature(path)
        schemas.add(footer_arrow_schema(metadata))
    assets = lake.root / layout.AGENT_INVENTORY_FILE
    organizations = lake.root / layout.inventory_file("organizations")
    return {"format": ALERTS_FORMAT_VERSION, "assets": lake.signature(assets) if assets.exists() else "",
            "organizations": lake.signature(organizations) if organizations.exists() else "",
            "days": days}, len(schemas) <= 1 and None not in schemas


def _union_option(same_schema: bool) -> str:
    """read_parquet's union_by_name, only for files of several schemas (written by different parser versions):
    with it, DuckDB opens every listed file before reading any and holds their metadata through the query.
    A day of 33k incidents has ~100 row groups, ~1.4 MB of footer: at 1M, reading one field of the version
    keys peaked at 650 MiB with it, 405 without."""
    return "" if same_schema else "union_by_name = true, "


# Host context in alerts, and where it comes from in assets.
HOST_CONTEXT_COLUMNS = {"hostname": "hostname", "host_os": "os", "host_ipv4": "ipv4_address",
                        "host_external_ip": "external_ip", "host_mac_addresses": "mac_addresses",
                        "host_domain_name": "domain_name"}


def _register_alert_uid(con: duckdb.DuckDBPyConnection) -> None:
    """`huntress_alert_uid(...)` in SQL: the alert id of one organization of an object spanning several
    (incident reports carry theirs from parsing; the same function makes both)."""
    con.create_function("huntress_alert_uid", alert_uid,
                        ["VARCHAR", "BIGINT", "BIGINT", "BIGINT", "VARCHAR"], "VARCHAR", null_handling="special")


def build_alerts(lake: Lake, full: bool = False) -> AlertsBuild:
    """alerts: one row per (tenantid, msg_class, huntress_id, organization_id, account_id), the latest
    version, with host context from agent_inventory; and its OCSF Detection Finding form.

    Both tables are split into ALERT_PARTS files by Huntress id, and built incrementally:
    `alerts/_built_from.json` records what they were built from (`_alerts_sources`), and a build
    recomputes only the touched keys: those with a version in a parsed day that changed since, those whose
    current row came from such a day, and, when assets were rebuilt, those whose host context differs from
    assets now. Only the parts holding a touched key whose row actually changed are rewritten (the changed
    rows plus the part's other rows copied over), so a sensor run that brings one incident costs a read of the version keys and a
    copy of one part, whatever the size of the lake. It is a full build when asked, on the first build,
    after a format change, or when a day disappeared. The record is written after the parts: a crash in
    between only makes the next build recompute more. Versions are never removed from a day (raw commits
    merge), so an untouched key's row cannot go stale.
    """
    state = lake.root / layout.ALERTS_STATE
    with lake.lock("alerts"):
        files = _parsed_alert_files(lake)
        sources, same_schema = _alerts_sources(lake, files)
        union = _union_option(same_schema)
        if not sources["days"]:
            return AlertsBuild(rows=0, mode="unchanged")
        previous = json.loads(state.read_text()) if state.exists() else None
        incremental = (not full and previous is not None and previous["format"] == sources["format"]
                       and set(previous["days"]) <= set(sources["days"])
                       and all(alerts_part(lake, b).exists() for b in range(ALERT_PARTS)))
        changed = sorted({_day_of(source) for source, fp in sources["days"].items()
                          if not incremental or previous["days"].get(source) != fp})
        assets_changed = incremental and previous["assets"] != sources["assets"]
        organizations_changed = incremental and previous.get("organizations") != sources["organizations"]
        if incremental and not changed and not assets_changed and not organizations_changed:
            return AlertsBuild(rows=_alert_rows(lake), mode="unchanged")
        with lake.connect_private() as con:
            if not incremental:
                _narrow_for_a_full_build(con)
            _register_alert_uid(con)
            # Streamed writes: no insertion order to keep (DuckDB would buffer rows for it)
            con.execute("SET preserve_insertion_order = false")
            views = catalog.register_views(lake, con, ["agent_inventory", "organizations"])
            assets = "agent_inventory" if "agent_inventory" in views else NO_ASSETS_SQL
            organizations = "organizations" if "organizations" in views else NO_ORGANIZATIONS_SQL
            paths = sorted(str(p) for p in files.values())  # (sorted: the ENUM orders as the paths do)
            con.execute(f"CREATE TYPE parsed_file AS ENUM ({_sql_values(paths)})")
            con.execute("CREATE TEMP TABLE versions AS " + VERSION_KEYS_SQL.format(files=_sql_list(paths), union=union))
            touched = f"SELECT DISTINCT {', '.join(VERSION_KEY_COLUMNS)} FROM versions"
            if incremental:
                parts = _sql_list([str(alerts_part(lake, b)) for b in range(ALERT_PARTS)])
                old = f"SELECT {', '.join('o.' + c for c in TABLE_KEY_COLUMNS)} FROM read_parquet({parts}) o"
                days = ", ".join(map(sql_literal, changed or [""]))
                # every organization of an object with a version in a changed day (one it no longer lists too)
                touched += (f" WHERE (tenantid, cls, hid, aid) IN (SELECT (tenantid, cls, hid, aid) FROM versions "
                            f"WHERE day IN ({days}))")
                # keys whose current row came from a changed day (its latest version may have moved on)
                touched += f" UNION {old} WHERE CAST(CAST(updated_at AS DATE) AS VARCHAR) IN ({days})"
                if assets_changed:  # keys whose host context is no longer what assets say
                    differs = " OR ".join(f"o.{mine} IS DISTINCT FROM a.{theirs}"
                                          for mine, theirs in HOST_CONTEXT_COLUMNS.items())
                    touched += (f" UNION {old} LEFT JOIN {assets} a ON a.tenantid = o.tenantid "
                                f"AND a.agent_id = o.agent_id WHERE {differs}")
                if organizations_changed:  # keys whose organization was renamed
                    touched += (f" UNION {old} JOIN {organizations} og ON og.tenantid = o.tenantid "
                                f"AND og.organization_id = o.organization_id WHERE og.name IS DISTINCT FROM "
                                f"o.organization_name")
            con.execute(f"CREATE TEMP TABLE touched AS {touched}")
            con.execute(f"CREATE TEMP TABLE latest_versions AS {LATEST_VERSIONS_SQL}")
            # From here on only the row queries run, and each must stream the wide parsed rows through its
            # joins. DuckDB underestimates a filtered Parquet scan (~5k rows for 100k) and would flip the host
            # context join to build its hash table from the rows: a whole group held (OOM at 256 MB).
            con.execute("SET disabled_optimizers = 'build_side_probe_side'")
            versions_per_file = con.execute("SELECT src_file, count(*) FROM latest_versions GROUP BY 1 "
                                            "ORDER BY 1").fetchall()
            row_files = [src for src, _ in versions_per_file]

            def rows_sql(only_files: list[str] | None = None) -> str:
                """The alert rows, or those whose latest version is in `only_files` (read from the union of
                every row file all the same, so each query has the same columns whatever parser wrote it)."""
                versions, only = "latest_versions", ""
                if only_files is not None:
                    versions = f"(SELECT * FROM latest_versions WHERE src_file IN ({_sql_values(only_files)}))"
                    only = f"WHERE p.filename IN ({_sql_values(only_files)})"  # (DuckDB then opens only those)
                # (no touched key: any file will do, the join with no latest version yields no row)
                return ALERT_ROWS_SQL.format(files=_sql_list(row_files or [str(next(iter(files.values())))]),
                                             versions=versions, only_files=only, assets=assets,
                                             organizations=organizations, union=union)

            if incremental:  # the touched rows, once, to compare with what alerts holds
                con.execute(f"CREATE TEMP TABLE new_alerts AS SELECT *, {bucket_of('huntress_id')} AS part "
                            f"FROM ({rows_sql()})")
                _keep_changed_rows(con, parts)
                written = con.execute("SELECT count(*) FROM changed").fetchall()[0][0]
                for (bucket,) in con.execute(f"SELECT DISTINCT {bucket_of('hid')} FROM changed").fetchall():
                    _write_alerts_part(lake, con, bucket)
            else:  # files a group at a time: one join with every latest version held 238 MB of hash table at 1M
                con.execute("DROP TABLE versions; DROP TABLE touched")  # all a full build needs is in latest_versions
                con.execute(f"CREATE TEMP TABLE host_context AS SELECT tenantid, agent_id, "
                            f"{', '.join(HOST_CONTEXT_COLUMNS.values())} FROM {assets}")
                con.execute(f"CREATE TEMP TABLE organization_names AS SELECT tenantid, organization_id, name "
                            f"FROM {organizations}")
                assets, organizations = "host_context", "organization_names"  # read once, not once per group
                groups = _file_groups(versions_per_file, FULL_BUILD_VERSIONS_PER_QUERY)
                written = write_all_parts(lake, con, [rows_sql(group) for group in groups] or [rows_sql()])
        with lake.atomic_path(state) as tmp:
            tmp.write_text(json.dumps(sources, separators=(",", ":")))
    return AlertsBuild(rows=_alert_rows(lake), mode="incremental" if incremental else "full",
                       changed_days=changed, alerts_written=written)


# A full build (the first, or after a format change: every alert of the lake at once) runs on one DuckDB thread
# within at most this memory limit (the lake's own if lower). Measured at 1M alerts, standalone from a process
# with Dagster imported: +783 MiB over its start with the lake's 2 threads and 512 MB, +685 with one thread,
# +699 with 256 MB, +632..648 with both (3 runs); CPU 80.0 -> 76.9-78.9 s (one thread coordinates less), wall
# ~60 -> ~75 s. DuckDB did not spill: what the limit trims is what it keeps cached between queries.
FULL_BUILD_THREADS = 1
FULL_BUILD_MEMORY_LIMIT_BYTES = 256 << 20
_SIZE_UNITS = {"bytes": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
               "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def _narrow_for_a_full_build(con: Any) -> None:
    con.execute(f"SET threads = {FULL_BUILD_THREADS}")
    (current,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    if (limit := _size_bytes(current)) is None or limit > FULL_BUILD_MEMORY_LIMIT_BYTES:
        con.execute(f"SET memory_limit = '{FULL_BUILD_MEMORY_LIMIT_BYTES >> 20}MiB'")


def _size_bytes(setting: str) -> int | None:
    """Bytes of a DuckDB size setting as DuckDB shows it ("488.2 MiB"); None if it is not one."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", setting)
    if not match or match[2].lower() not in _SIZE_UNITS:
        return None
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


# A full build joins the parsed rows with this many latest versions at a time (~25 MB of hash table), one day
# file or a few: a query per file would scan latest_versions once per file, thousands of times for an MSSP.
# Measured at 1M alerts (standalone): peak RSS 1,390 MiB with one join of all, 1,114 with groups of 100k
# (1,345 with DuckDB's Parquet metadata cache on: it holds every file's footer), CPU the same; 1,043 since the
# joins stream the parsed rows (`build_alerts`).
FULL_BUILD_VERSIONS_PER_QUERY = 100_000


def _file_groups(versions_per_file: list[tuple[str, int]], versions_per_group: int) -> list[list[str]]:
    """Consecutive files grouped so that a group holds about `versions_per_group` versions (a larger file
    alone)."""
    groups: list[list[str]] = []
    held = 0
    for file, versions in versions_per_file:
        if not groups or held + versions > versions_per_group:
            groups.append([])
            held = 0
        groups[-1].append(file)
        held += versions
    return groups


def _sql_values(values: list[str]) -> str:
    return ", ".join(sql_literal(value) for value in values)


def _keep_changed_rows(con: Any, parts: str) -> None:
    """Narrow an incremental build to the keys whose row differs from the one alerts holds (new, changed
    or gone): `changed`, and `new_alerts` to their rows. A touched key is only a candidate: a day re-walked
    and re-parsed with nothing new in it touches every key of the day, and rewriting their parts would
    cost as much as a full build for no change."""
    columns = [name for (name, *_) in con.execute("DESCRIBE new_alerts").fetchall() if name != "part"]
    listed = ", ".join(f'"{c}"' for c in columns)
    con.execute(f"CREATE TEMP TABLE old_alerts AS SELECT {listed} "
                f"FROM read_parquet({parts}) o SEMI JOIN touched t ON {_key_match('o', 't', TABLE_KEY_COLUMNS)}")
    keys = ", ".join(f"{table} AS {version}" for table, version in zip(TABLE_KEY_COLUMNS, VERSION_KEY_COLUMNS,
                                                                        strict=True))
    con.execute(f"""CREATE TEMP TABLE changed AS
        SELECT DISTINCT {keys} FROM (
            (SELECT {listed} FROM new_alerts EXCEPT SELECT {listed} FROM old_alerts)
            UNION ALL (SELECT {listed} FROM old_alerts EXCEPT SELECT {listed} FROM new_alerts))""")
    con.execute(f"DELETE FROM new_alerts n WHERE NOT EXISTS (SELECT 1 FROM changed c "
                f"WHERE {_key_match('n', 'c', TABLE_KEY_COLUMNS)})")


def _alert_rows(lake: Lake) -> int:
    return sum(lake.num_rows(path) for path in lake.files("alerts"))


def _write_alerts_part(lake: Lake, con: Any, bucket: int, batch_rows: int = 10_000) -> None:
    """In an incremental build, one part of alerts and of its findings: the touched rows of the bucket
    (`new_alerts`), plus the part's other rows carried over from its previous file."""
    alerts_file = alerts_part(lake, bucket)
    with lake.atomic_path(alerts_file) as tmp:
        query = (f"SELECT * EXCLUDE (part) FROM new_alerts WHERE part = {bucket} UNION ALL BY NAME "
                 f"SELECT * FROM read_parquet({sql_literal(str(alerts_file))}) o "
                 f"ANTI JOIN changed c ON {_key_match('o', 'c', TABLE_KEY_COLUMNS)}")
        con.execute(f"COPY ({query}) TO {sql_literal(str(tmp))} {parquet_copy_options(ALERTS_ROW_GROUP_ROWS)}")
    write_findings_part(lake, con, bucket, f"new_alerts WHERE part = {bucket}", batch_rows)


