"""Every path of the lake, relative to its root: files, globs, state and working directories (plain Python).

    raw_<stream>/account=<id>/day=YYYY-MM-DD/data.parquet           walked streams: every version, by day
    raw_<stream>/account=<id>/day=YYYY-MM-DD/snapshot-<ts>.parquet  snapshot streams: one file per snapshot
    parsed_syslog/msg_class=<class>/account=<id>/day=YYYY-MM-DD/data.parquet

Every raw and parsed file belongs to one Huntress account (its id), so accounts never mix.
    alerts/part-NN.parquet, ocsf/detection_finding/part-NN.parquet   16 parts by Huntress id
    agent_inventory/data.parquet, ocsf/device_inventory_info/data.parquet
    _quarantine/stream=<stream>/<ts>-<id>.parquet         poison records, verbatim, with the reason
    _state/, _staging/, _locks/, _tmp/                    working state (never read by the catalog)
    huntress.duckdb                                       views over all of the above
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from pathlib import Path

from .streams import STREAMS, Stream

CATALOG_FILE = "huntress.duckdb"
SNAPSHOT_STAMP = "%Y%m%dT%H%M%S%fZ"  # snapshot and quarantine file names: <collected_at>
ALERT_PARTS = 16  # alerts and findings files, by Huntress id: a run rewrites only the parts it touches

STATE_DIR = "_state"
STAGING_DIR = "_staging"
LOCKS_DIR = "_locks"
SPILL_DIR = "_tmp/duckdb"


def accounts_state(connection: str) -> str:
    """The accounts a connection reaches, from its last discovery."""
    return f"{STATE_DIR}/accounts/{connection}.json"


ALERTS_STATE = "alerts/_built_from.json"
CATALOG_STATE = f"{STATE_DIR}/catalog_views.sha256"  # the view statements huntress.duckdb was last given
AGENT_INVENTORY_FILE = "agent_inventory/data.parquet"  # the agents' inventory (see inventory_file)
DEVICE_INVENTORY_FILE = "ocsf/device_inventory_info/data.parquet"
USER_INVENTORY_FILE = "ocsf/user_inventory_info/data.parquet"


def account_dir(stream: Stream, account: str) -> str:
    return f"{stream.raw_table}/account={account}"


def day_dir(stream: Stream, account: str, day: date) -> str:
    return f"{account_dir(stream, account)}/day={day.isoformat()}"


def raw_day_file(stream: Stream, account: str, day: date) -> str:
    """A walked stream's partition of one updated_at day of one account."""
    return f"{day_dir(stream, account, day)}/data.parquet"


def snapshot_file(stream: Stream, account: str, collected_at: datetime) -> str:
    """One snapshot of a snapshot stream, in the day it was taken."""
    return (f"{day_dir(stream, account, collected_at.date())}/"
            f"snapshot-{collected_at.strftime(SNAPSHOT_STAMP)}.parquet")


def snapshot_time(path: Path) -> datetime:
    return datetime.strptime(path.stem.removeprefix("snapshot-"), SNAPSHOT_STAMP).replace(tzinfo=timezone.utc)


SNAPSHOT_FILES = "snapshot-*.parquet"  # the snapshots of one day, in its day_dir


def raw_glob(stream: Stream, account: str = "*") -> str:
    return f"{account_dir(stream, account)}/day=*/" + ("data.parquet" if stream.is_walk else SNAPSHOT_FILES)


def account_of(path: Path) -> str:
    """The account a raw or parsed file belongs to (its `account=` directory)."""
    return next(part.removeprefix("account=") for part in str(path).split("/") if part.startswith("account="))


def parsed_file(msg_class: str, account: str, day: date) -> str:
    return f"parsed_syslog/msg_class={msg_class}/account={account}/day={day.isoformat()}/data.parquet"


def parsed_glob(msg_class: str = "*") -> str:
    return f"parsed_syslog/msg_class={msg_class}/account=*/day=*/data.parquet"


# The layout of the first wave, one account and no account= level: moved under the account on first run.
LEGACY_DAY_DIRS = [*(f"{stream.raw_table}/day=*" for stream in STREAMS), "parsed_syslog/msg_class=*/day=*"]


def inventory_file(table: str) -> str:
    """An inventory table built from a snapshot stream (agent_inventory, organizations, identities, external_ports)."""
    return f"{table}/data.parquet"


def alerts_part(bucket: int) -> str:
    return f"alerts/part-{bucket:02d}.parquet"


def findings_part(bucket: int) -> str:
    return f"ocsf/detection_finding/part-{bucket:02d}.parquet"


def quarantine_dir(stream_name: str) -> str:
    return f"_quarantine/stream={stream_name}"


def quarantine_file(stream_name: str, collected_at: datetime, unique: str) -> str:
    return f"{quarantine_dir(stream_name)}/{collected_at.strftime(SNAPSHOT_STAMP)}-{unique}.parquet"


def health_file(evaluated_at: datetime, unique: str) -> str:
    """One evaluation's rows of connector_health (append-only)."""
    return f"connector_health/day={evaluated_at.date().isoformat()}/{evaluated_at.strftime(SNAPSHOT_STAMP)}-{unique}.parquet"


INBOX_PENDING = "_inbox/pending"  # accepted webhook events waiting for the inbox sensor
INBOX_PENDING_GLOB = f"{INBOX_PENDING}/*.json"
WEBHOOK_STATS = f"{STATE_DIR}/webhooks.json"  # deliveries accepted / rejected per reason


def inbox_seen(event_key: str) -> str:
    """A marker per delivered svix-id (hashed): a repeated delivery is acknowledged, not stored twice."""
    return f"_inbox/seen/{event_key}"


def inbox_event(received_at: datetime, event_key: str) -> str:
    return f"{INBOX_PENDING}/{received_at.strftime(SNAPSHOT_STAMP)}-{event_key}.json"


def inbox_batch(batch: str) -> str:
    """The events one run commits (moved here from pending by the inbox sensor; kept after as the record)."""
    return f"_inbox/batches/{batch}"


def inbox_batch_glob(batch: str) -> str:
    return f"{inbox_batch(batch)}/*.json"


def lock_file(name: str) -> str:
    return f"{LOCKS_DIR}/{name.replace('/', '__')}.lock"


# Table name -> glob of its files (the catalog's views). Hive tables carry their directory keys as columns.
TABLE_GLOBS: dict[str, str] = {
    **{stream.raw_table: raw_glob(stream) for stream in STREAMS},
    "parsed_syslog": parsed_glob(),
    "alerts": "alerts/part-*.parquet",
    "agent_inventory": AGENT_INVENTORY_FILE,
    "organizations": inventory_file("organizations"),
    "identities": inventory_file("identities"),
    "external_ports": inventory_file("external_ports"),
    "ocsf_detection_finding": "ocsf/detection_finding/part-*.parquet",
    "ocsf_device_inventory_info": DEVICE_INVENTORY_FILE,
    "ocsf_user_inventory_info": USER_INVENTORY_FILE,
    "_quarantine": "_quarantine/stream=*/*.parquet",
    "connector_health": "connector_health/day=*/*.parquet",
}
HIVE_TABLES = {*(stream.raw_table for stream in STREAMS), "parsed_syslog", "connector_health"}
# Views over a table's view: name -> (the table, SELECT)
CONNECTOR_STATUS_SQL = ("SELECT * EXCLUDE (day) FROM connector_health QUALIFY row_number() OVER "
                        "(PARTITION BY connection, account_id, stream ORDER BY evaluated_at DESC) = 1")
DERIVED_VIEWS = {"connector_status": ("connector_health", CONNECTOR_STATUS_SQL)}


def tables_named(sql: str) -> list[str]:
    """The tables a SQL text names as words (a derived view counts as its table), so a query registers only
    their views: on an object store each view lists its files and reads a footer (~4 s for all 19 on moto)."""
    names = set(re.findall(r"\w+", sql.lower()))
    named = {table for table in TABLE_GLOBS if table in names}
    named.update(table for view, (table, _) in DERIVED_VIEWS.items() if view in names)
    return [table for table in TABLE_GLOBS if table in named]
