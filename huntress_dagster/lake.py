"""The lake: Parquet files per table and partition, and a DuckDB catalog of views over them.

Plain Python (no Dagster). Layout under the lake root:

    raw_incidents/day=YYYY-MM-DD/data.parquet     API objects verbatim, every version, by updated_at day
    raw_agents/day=YYYY-MM-DD/snapshot-<ts>.parquet   inventory snapshots (history kept)
    parsed_syslog/msg_class=<class>/day=YYYY-MM-DD/data.parquet
    alerts/part-NN.parquet                          16 parts by Huntress id (a run rewrites the parts it touches)
    ocsf/detection_finding/part-NN.parquet          the same parts
    assets/data.parquet, ocsf/device_inventory_info/data.parquet
    huntress.duckdb                                 views over all of the above

Why this shape: DuckDB lets one process write a database file and locks out every other process,
even readers. Runs therefore never write table data into huntress.duckdb: each partition is a Parquet
file written to a temporary name and renamed into place (atomic on POSIX), under a file lock per
partition, with short-lived in-memory DuckDB connections doing the heavy lifting. The catalog file only
holds views, refreshed best-effort, so a user with the catalog open (read-only or not) never breaks a run.

Hermetic incremental collection: each raw_incidents partition records, in its Parquet footer, the
instant as of which it is complete (`complete_as_of`: the start of the walk that last wrote it). The
next walk starts from that instant minus an overlap, so a crash can only cause re-reading, never a gap.
A marker moves only for days the walk proved complete (`commit_incident_days(proven_days=...)`).

Files and directories are created owner-only by default (umask 077; `HUNTRESS_UMASK` for a group).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from .errors import HuntressConfigError

log = logging.getLogger(__name__)

CATALOG_FILE = "huntress.duckdb"
COMPLETE_AS_OF = b"complete_as_of"
SOURCE_FINGERPRINT = b"source_fingerprint"
UTC_US = pa.timestamp("us", tz="UTC")

RAW_INCIDENTS_SCHEMA = pa.schema([
    ("tenantid", pa.string()),
    ("account_id", pa.int64()),
    ("organization_id", pa.int64()),
    ("id", pa.int64()),
    ("updated_at", UTC_US),
    ("collected_at", UTC_US),
    ("raw_json", pa.large_string()),
    # The complete remediations list when the object embeds only the first 10 (has_more).
    ("remediations_json", pa.large_string()),
])
RAW_AGENTS_SCHEMA = pa.schema([f for f in RAW_INCIDENTS_SCHEMA if f.name != "remediations_json"])

# Table name -> glob of its files, relative to the lake root (the catalog's views).
TABLE_GLOBS = {
    "raw_incidents": "raw_incidents/day=*/data.parquet",
    "raw_agents": "raw_agents/day=*/snapshot-*.parquet",
    "parsed_syslog": "parsed_syslog/msg_class=*/day=*/data.parquet",
    "alerts": "alerts/part-*.parquet",
    "assets": "assets/data.parquet",
    "ocsf_detection_finding": "ocsf/detection_finding/part-*.parquet",
    "ocsf_device_inventory_info": "ocsf/device_inventory_info/data.parquet",
    "_quarantine": "_quarantine/stream=*/*.parquet",
}
HIVE_TABLES = {"raw_incidents", "raw_agents", "parsed_syslog"}
RAW_ROW_GROUP_ROWS = 2_048  # ~25 MB of raw incident JSON (~12 KB a record)
SNAPSHOT_STAMP = "%Y%m%dT%H%M%S%fZ"  # agent snapshot file names: snapshot-<collected_at>.parquet
DEFAULT_UMASK = 0o077  # incident data is confidential: owner-only unless configured otherwise
TMP_PREFIX = ".tmp-"  # files being written; renamed into place, or removed by `clean_leftovers`


def parquet_copy_options(row_group_rows: int, **kv_metadata: str) -> str:
    """Options of a DuckDB `COPY ... TO` a lake file. DuckDB buffers a whole row group per writing
    thread, and its default (122,880 rows) is 1.6 GB of raw incident JSON or ~300 MB of alerts: row
    groups sized to the row keep a write's memory small. Pair with `preserve_insertion_order = false`
    on the connection, or DuckDB buffers rows to keep their order."""
    options = f"FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group_rows}"
    if kv_metadata:
        pairs = ", ".join(f"{key}: {sql_literal(value)}" for key, value in kv_metadata.items())
        options += f", KV_METADATA {{{pairs}}}"
    return f"({options})"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def day_end(day: date) -> datetime:
    return day_start(day) + timedelta(days=1)


def as_date(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(day)


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_files(files: Iterable[Path]) -> str:
    return "[" + ", ".join(sql_literal(str(p)) for p in files) + "]"


def _marker_metadata(marker: datetime | None) -> dict[bytes, bytes]:
    return {COMPLETE_AS_OF: marker.isoformat().encode()} if marker else {}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass
class CommitStats:
    """What a commit of raw incident versions changed (for run metadata)."""

    days: int = 0
    rows_written: int = 0  # rows in the committed partitions after the commit
    new: int = 0  # versions of ids the lake had never seen
    updated: int = 0  # new versions of ids already in the lake
    unchanged: int = 0  # (id, updated_at) versions already stored


class Lake:
    """One lake directory."""

    def __init__(self, root: str | os.PathLike, *, duckdb_memory_limit: str = "1GB", duckdb_threads: int = 2,
                 umask: int = DEFAULT_UMASK):
        self.root = Path(root).expanduser().resolve()
        self.dir_mode = 0o777 & ~umask
        self.file_mode = 0o666 & ~umask
        if self.root.exists() and not self.root.is_dir():
            raise HuntressConfigError(f"The lake directory {str(self.root)!r} (HUNTRESS_LAKE_DIR) exists and is "
                                      "not a directory")
        try:
            self.mkdir(self.root)
        except OSError as exc:
            raise HuntressConfigError(f"Cannot create the lake directory {str(self.root)!r} (HUNTRESS_LAKE_DIR): "
                                      f"{exc.strerror}") from None
        self.duckdb_memory_limit = duckdb_memory_limit
        self.duckdb_threads = duckdb_threads

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # --- plumbing --------------------------------------------------------------------------------

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    def mkdir(self, path: Path) -> Path:
        """Create `path` and its missing parents with the lake's directory mode (whatever the process umask)."""
        missing = []
        while not path.exists():
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
                directory.chmod(self.dir_mode)
        return missing[0] if missing else path

    def check_writable(self) -> None:
        """Fail before any API request if the lake cannot be written (read-only mount, wrong owner)."""
        probe = self.root / f"{TMP_PREFIX}{os.getpid()}-probe"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise HuntressConfigError(f"The lake directory {str(self.root)!r} (HUNTRESS_LAKE_DIR) is not "
                                      f"writable: {exc.strerror}") from None

    def lock(self, name: str, timeout: float = 600) -> FileLock:
        """A cross-process lock per table or partition, so read-merge-write never interleaves."""
        path = self.root / "_locks" / f"{name.replace('/', '__')}.lock"
        self.mkdir(path.parent)
        return FileLock(str(path), timeout=timeout, mode=self.file_mode)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A private in-memory DuckDB for computing over Parquet (no file lock involved)."""
        con = duckdb.connect(config={"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads})
        spill = self.root / "_tmp" / "duckdb"
        self.mkdir(spill)  # DuckDB does not create missing parents of its spill dir
        con.execute(f"SET temp_directory = {sql_literal(str(spill))}")
        con.execute("SET TimeZone = 'UTC'")  # timestamps come back as UTC whatever the machine's zone
        return con

    def files(self, table: str) -> list[Path]:
        return sorted(self.root.glob(TABLE_GLOBS[table]))

    def tmp_path(self, final: Path) -> Path:
        self.mkdir(final.parent)
        # The writer's pid in the name lets `clean_leftovers` tell a dead run's file from a live one's.
        return final.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}-{final.name}")

    @contextlib.contextmanager
    def atomic_path(self, final: Path) -> Iterator[Path]:
        """Yield a temporary path next to `final`; rename it into place only if the block succeeds."""
        tmp = self.tmp_path(final)
        try:
            yield tmp
            self.publish(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def publish(self, tmp: Path, final: Path) -> None:
        """Move a finished temporary file into place: atomic on POSIX, so readers see old or new, never half."""
        tmp.chmod(self.file_mode)
        os.replace(tmp, final)

    # --- crash hygiene ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private staging directory for one walk, removed when the block ends (success or failure).

        The walk holds a lock on it, so `clean_leftovers` in another run can tell a live walk's staging
        from a dead one's (a killed process's lock is released by the OS)."""
        stage_dir = self.root / "_staging" / uuid.uuid4().hex
        self.mkdir(stage_dir)
        holder = FileLock(str(stage_dir) + ".lock", mode=self.file_mode)
        with holder:
            try:
                yield stage_dir
            finally:
                shutil.rmtree(stage_dir, ignore_errors=True)
        Path(holder.lock_file).unlink(missing_ok=True)

    def clean_leftovers(self) -> dict[str, int]:
        """Remove what dead runs left behind: staging directories no live walk holds, and temporary files
        of processes that no longer run on this machine. Returns what was removed (for run metadata)."""
        removed = {"staging_dirs": 0, "tmp_files": 0, "bytes": 0}
        staging_root = self.root / "_staging"
        for stage_dir in (p for p in staging_root.glob("*") if p.is_dir()) if staging_root.exists() else ():
            holder = FileLock(str(stage_dir) + ".lock", mode=self.file_mode)
            try:
                holder.acquire(timeout=0)
            except Timeout:
                continue  # a live walk's
            try:
                removed["bytes"] += sum(f.stat().st_size for f in stage_dir.rglob("*") if f.is_file())
                shutil.rmtree(stage_dir, ignore_errors=True)
                removed["staging_dirs"] += 1
            finally:
                holder.release()
                Path(holder.lock_file).unlink(missing_ok=True)
        for tmp in self.root.rglob(f"{TMP_PREFIX}*"):
            pid = tmp.name.removeprefix(TMP_PREFIX).split("-", 1)[0]
            if tmp.is_file() and (not pid.isdigit() or not _process_alive(int(pid))):
                with contextlib.suppress(OSError):
                    removed["bytes"] += tmp.stat().st_size
                    tmp.unlink()
                    removed["tmp_files"] += 1
        if removed["staging_dirs"] or removed["tmp_files"]:
            log.warning("Removed leftovers of dead runs from %s: %d staging dir(s), %d temporary file(s), %d bytes",
                        self.root, removed["staging_dirs"], removed["tmp_files"], removed["bytes"])
        return removed

    def write_table(self, final: Path, table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> None:
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        with self.atomic_path(final) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    @staticmethod
    def file_metadata(path: Path) -> dict[bytes, bytes]:
        return pq.read_metadata(path).metadata or {}

    # --- raw incidents ---------------------------------------------------------------------------

    def incident_day_path(self, day: date | str) -> Path:
        return self.root / "raw_incidents" / f"day={as_date(day).isoformat()}" / "data.parquet"

    def incident_day_complete_as_of(self, day: date | str) -> datetime | None:
        path = self.incident_day_path(day)
        if not path.exists():
            return None
        value = self.file_metadata(path).get(COMPLETE_AS_OF)
        return datetime.fromisoformat(value.decode()) if value else None

    def incident_day_need(self, day: date, overlap: timedelta) -> datetime | None:
        """From when a walk must read to bring `day` up to date; None when it is complete through its end.

        A day never committed needs all of it. A committed day is complete as of its marker, and any
        later change moves a record's updated_at past the marker, so it needs only [marker - overlap,
        day end) (the overlap absorbs clock skew between Huntress and us) — nothing once that is empty.
        """
        complete_as_of = self.incident_day_complete_as_of(day)
        if complete_as_of is None:
            return day_start(day)
        if complete_as_of - overlap < day_end(day):
            return max(complete_as_of - overlap, day_start(day))
        return None

    def incident_lower_bound(self, days: Iterable[date], overlap: timedelta) -> datetime | None:
        """How far back a walk must go to bring every day in `days` up to date; None if no day needs it."""
        return min(filter(None, (self.incident_day_need(day, overlap) for day in days)), default=None)

    def quarantine_path(self, stream: str, collected_at: datetime, unique: str) -> Path:
        return self.root / "_quarantine" / f"stream={stream}" / f"{collected_at.strftime(SNAPSHOT_STAMP)}-{unique}.parquet"

    def stored_remediations(self, days: Iterable[date]) -> dict[tuple[int, datetime], str]:
        """Completed remediations lists of stored versions, by (id, updated_at): a walk that meets such a
        version again (the overlap, a re-run) reuses it instead of spending requests on it."""
        files = [p for p in (self.incident_day_path(d) for d in days) if p.exists()]
        if not files:
            return {}
        with self.connect() as con:
            rows = con.execute(
                f"SELECT id, updated_at, remediations_json FROM read_parquet([{', '.join(sql_literal(str(p)) for p in files)}]) "
                "WHERE remediations_json IS NOT NULL").fetchall()
        return {(row[0], row[1]): row[2] for row in rows}

    def stage_incident_rows(self, rows: Iterable[dict[str, Any]], stage_dir: Path,
                            batch_rows: int = 2_000) -> dict[date, list[Path]]:
        """Spill walked rows into staging Parquet files per day in `stage_dir` (see `staging`), with
        bounded memory for any walk size.

        At most `batch_rows` rows are held in all, across days: a walk meets up to a month of days, and a
        buffer per day would hold up to `batch_rows` rows of each (hundreds of MB of JSON)."""
        staged: dict[date, list[Path]] = {}
        buffers: dict[date, list[dict[str, Any]]] = {}
        held = 0

        def flush(day: date) -> None:
            path = stage_dir / f"{day.isoformat()}-{len(staged.get(day, []))}.parquet"
            pq.write_table(pa.Table.from_pylist(buffers.pop(day), schema=RAW_INCIDENTS_SCHEMA), path)
            staged.setdefault(day, []).append(path)

        for row in rows:
            buffers.setdefault(row["updated_at"].date(), []).append(row)
            held += 1
            if held >= batch_rows:
                for day in list(buffers):
                    flush(day)
                held = 0
        for day in list(buffers):
            flush(day)
        return staged

    def commit_incident_days(self, days: Iterable[date], staged: dict[date, list[Path]],
                             complete_as_of: datetime, proven_days: Iterable[date] | None = None) -> CommitStats:
        """Merge staged versions into each day's partition, atomically, one day at a time.

        A day in `proven_days` (default: all of `days`) is marked complete as of `complete_as_of` and gets
        a partition file even if empty, so "walked and found nothing" is distinguishable from "never
        collected". Any other day keeps the marker it had: its staged versions are stored, and the next
        walk reads the day again. Versions are keyed by (id, updated_at), one row each whatever the walk
        served (a stored partition holding a repeat is repaired when next touched); a re-fetched version
        replaces the stored one, so re-running a partition is idempotent.
        """
        stats = CommitStats()
        days = set(days)
        proven = days if proven_days is None else set(proven_days)
        staged_files = [p for paths in staged.values() for p in paths]
        if staged_files:
            self._count_versions(staged_files, stats)
        for day in sorted(days | set(staged)):
            with self.lock(f"raw_incidents/{day.isoformat()}"):
                final = self.incident_day_path(day)
                previous = self.incident_day_complete_as_of(day)
                fresh = staged.get(day, [])
                if not fresh and (day not in proven or (previous and previous >= day_end(day))) \
                        and not (final.exists() and self._has_repeated_versions([final])):
                    continue  # nothing new, and the marker would not move: rewriting would change nothing
                marker = max(filter(None, [previous, complete_as_of if day in proven else None]), default=None)
                sources = ([final] if final.exists() else []) + fresh
                if not sources:
                    self.write_table(final, RAW_INCIDENTS_SCHEMA.empty_table(), _marker_metadata(marker))
                else:
                    self._merge_versions(sources, final, marker)
                stats.days += 1
                stats.rows_written += pq.read_metadata(final).num_rows
        return stats

    def _has_repeated_versions(self, files: list[Path]) -> bool:
        """Whether a (id, updated_at) occurs more than once in `files` (key columns only: cheap)."""
        with self.connect() as con:
            return con.execute(
                f"SELECT count(*) > count(DISTINCT (id, updated_at)) FROM read_parquet({_sql_files(files)})"
            ).fetchall()[0][0]

    def _one_row_per_version(self, files: list[Path]) -> str:
        """SQL selecting the raw rows of `files` with each (id, updated_at) once. Without repeats (the usual
        case) a plain scan; with some, the first occurrence is picked on the key columns and row positions
        only, so no JSON text is held in a hash table."""
        columns = ", ".join(RAW_INCIDENTS_SCHEMA.names)
        scan = f"read_parquet({_sql_files(files)}, filename = true, file_row_number = true)"
        if not self._has_repeated_versions(files):
            return f"SELECT {columns} FROM read_parquet({_sql_files(files)})"
        return f"""SELECT {columns} FROM {scan} SEMI JOIN (
                       SELECT min(struct_pack(f := filename, r := file_row_number)) AS first
                       FROM {scan} GROUP BY id, updated_at) picked
                   ON picked.first.f = filename AND picked.first.r = file_row_number"""

    def _merge_versions(self, sources: list[Path], final: Path, marker: datetime | None) -> None:
        """Fresh fetches (staged files) win over the stored version of the same (id, updated_at). An
        anti-join on the key columns only, so the JSON text never sits in a window or hash table (a day of
        a million-incident account is hundreds of MB of it)."""
        fresh = [p for p in sources if p != final]
        if not fresh:  # nothing new: rewritten to move its complete_as_of marker or to drop repeats
            query = self._one_row_per_version([final])
        else:
            query = self._one_row_per_version(fresh)
            if final in sources:
                query = f"""({query})
                    UNION ALL
                    SELECT * FROM ({self._one_row_per_version([final])}) AS old
                    WHERE NOT EXISTS (SELECT 1 FROM read_parquet({_sql_files(fresh)}) AS new
                                      WHERE new.id = old.id AND new.updated_at = old.updated_at)"""
        with self.connect() as con, self.atomic_path(final) as tmp:
            con.execute("SET preserve_insertion_order = false")  # streamed, not sorted: flat memory
            metadata = {"complete_as_of": marker.isoformat()} if marker else {}
            options = parquet_copy_options(RAW_ROW_GROUP_ROWS, **metadata)
            con.execute(f"COPY ({query}) TO {sql_literal(str(tmp))} {options}")

    def _count_versions(self, staged_files: list[Path], stats: CommitStats) -> None:
        stored = self.files("raw_incidents")
        staged_sql = ", ".join(sql_literal(str(p)) for p in staged_files)
        with self.connect() as con:
            con.execute(f"CREATE TEMP TABLE walked AS SELECT DISTINCT id, updated_at FROM read_parquet([{staged_sql}])")
            if not stored:
                stats.new = con.execute("SELECT count(DISTINCT id) FROM walked").fetchone()[0]
                stats.updated = con.execute("SELECT count(*) FROM walked").fetchone()[0] - stats.new
                return
            stored_sql = ", ".join(sql_literal(str(p)) for p in stored)
            con.execute(f"CREATE TEMP TABLE stored AS SELECT DISTINCT id, updated_at FROM read_parquet([{stored_sql}])")
            stats.unchanged, stats.updated, stats.new = con.execute("""
                SELECT count(*) FILTER (WHERE s.id IS NOT NULL),
                       count(*) FILTER (WHERE s.id IS NULL AND known.id IS NOT NULL),
                       count(*) FILTER (WHERE s.id IS NULL AND known.id IS NULL)
                FROM walked w
                LEFT JOIN stored s USING (id, updated_at)
                LEFT JOIN (SELECT DISTINCT id FROM stored) known ON known.id = w.id
            """).fetchone()

    def committed_incident_days(self) -> list[date]:
        return sorted(date.fromisoformat(p.parent.name.removeprefix("day=")) for p in self.files("raw_incidents"))

    # --- raw agents -------------------------------------------------------------------------------

    def write_agent_snapshot(self, rows: Iterable[dict[str, Any]], collected_at: datetime,
                             batch_rows: int = 5_000) -> tuple[Path, int]:
        """Write one inventory snapshot as its own file (snapshots are history: never overwritten)."""
        stamp = collected_at.strftime(SNAPSHOT_STAMP)
        final = self.root / "raw_agents" / f"day={collected_at.date().isoformat()}" / f"snapshot-{stamp}.parquet"
        count = 0
        with self.atomic_path(final) as tmp, pq.ParquetWriter(tmp, RAW_AGENTS_SCHEMA, compression="zstd") as writer:
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= batch_rows:
                    writer.write_table(pa.Table.from_pylist(batch, schema=RAW_AGENTS_SCHEMA))
                    count += len(batch)
                    batch = []
            writer.write_table(pa.Table.from_pylist(batch, schema=RAW_AGENTS_SCHEMA))
            count += len(batch)
        return final, count

    def compare_agent_snapshot(self, snapshot: Path) -> dict[str, int]:
        """How a snapshot differs from the one before it: new, updated, unchanged and removed agents."""
        earlier = [p for p in self.agent_snapshot_files() if p.name < snapshot.name]
        if not earlier:
            return {"new": pq.read_metadata(snapshot).num_rows, "updated": 0, "unchanged": 0, "removed": 0}
        with self.connect() as con:
            new, updated, unchanged, removed = con.execute("""
                SELECT count(*) FILTER (WHERE o.id IS NULL), count(*) FILTER (WHERE n.updated_at <> o.updated_at),
                       count(*) FILTER (WHERE n.updated_at = o.updated_at), count(*) FILTER (WHERE n.id IS NULL)
                FROM read_parquet(?) n FULL JOIN read_parquet(?) o ON n.id = o.id
            """, [str(snapshot), str(earlier[-1])]).fetchone()
        return {"new": new, "updated": updated, "unchanged": unchanged, "removed": removed}

    def newest_agent_snapshot_time(self) -> datetime | None:
        files = self.agent_snapshot_files()
        if not files:
            return None
        stamp = files[-1].stem.removeprefix("snapshot-")
        return datetime.strptime(stamp, SNAPSHOT_STAMP).replace(tzinfo=timezone.utc)

    def agent_snapshot_files(self, day: date | str | None = None) -> list[Path]:
        if day is None:
            return self.files("raw_agents")
        return sorted((self.root / "raw_agents" / f"day={as_date(day).isoformat()}").glob("snapshot-*.parquet"))

    # --- catalog ----------------------------------------------------------------------------------

    def view_sql(self, table: str) -> str | None:
        """`SELECT` over a table's files, or None while it has none (a view over no files fails)."""
        if not self.files(table):
            return None
        pattern = sql_literal(str(self.root / TABLE_GLOBS[table]))
        options = ", hive_partitioning = true, union_by_name = true" if table in HIVE_TABLES else ""
        return f"SELECT * FROM read_parquet({pattern}{options})"

    def register_views(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Create (temporary) views for every table with data on a connection; returns their names."""
        names = []
        for table in TABLE_GLOBS:
            sql = self.view_sql(table)
            if sql:
                con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {sql}")
                names.append(table)
        return names

    def refresh_catalog(self, timeout: float = 5.0) -> bool:
        """Point huntress.duckdb's views at the current files. Best effort: if someone holds the file,
        the existing views (globs) already cover new files, so the run goes on."""
        statements = [f"CREATE OR REPLACE VIEW {t} AS {sql}" for t in TABLE_GLOBS if (sql := self.view_sql(t))]
        if not statements:
            return False
        try:
            with self.lock("catalog", timeout=timeout), duckdb.connect(str(self.catalog_path)) as con:
                for statement in statements:
                    con.execute(statement)
            self.catalog_path.chmod(self.file_mode)  # DuckDB creates it with the process umask
            return True
        except Exception as exc:  # a lock held by a user's session must not fail the run
            log.warning("Catalog %s not refreshed (%s); Parquet files are committed and the existing views "
                        "cover them", self.catalog_path, str(exc).splitlines()[0])
            return False
