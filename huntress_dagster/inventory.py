"""Inventories built from snapshot streams (plain Python: no Dagster): `assets`, one row per agent with its
current state, first/last seen across snapshots and staleness, and its OCSF Device Inventory Info form.
Streamed in batches, so memory stays flat however many agents the account has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import layout, parsing
from .lake import Lake
from .parsing import ocsf

STALE_AFTER_DAYS = 30


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
    final = lake.root / layout.ASSETS_FILE
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


def write_ocsf(path: Path, batches: Iterator[pa.RecordBatch], schema: pa.Schema,
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


def _device_inventory(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    return [ocsf.device_inventory_info(row) for row in batch.to_pylist()]


def write_device_inventory(lake: Lake, batch_rows: int = 10_000) -> int:
    """OCSF Device Inventory Info events from assets, batch by batch."""
    source = lake.root / layout.ASSETS_FILE
    if not source.exists():
        return 0
    final = lake.root / layout.DEVICE_INVENTORY_FILE
    with lake.lock("ocsf/device_inventory_info"), lake.atomic_path(final) as tmp:
        batches = pq.ParquetFile(source).iter_batches(batch_size=batch_rows)
        return write_ocsf(tmp, batches, ocsf.DEVICE_INVENTORY_INFO_SCHEMA, _device_inventory)
