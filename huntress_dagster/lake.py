"""The lake: Parquet files per table and partition, and a DuckDB catalog of views over them.

Plain Python (no Dagster). Every path is defined in `layout.py`; the raw tables' partitions and
snapshots in `raw_partitions.py`.

Why this shape: DuckDB lets one process write a database file and locks out every other process,
even readers. Runs therefore never write table data into huntress.duckdb: each partition is a Parquet
file written to a temporary name and renamed into place (atomic on POSIX), under a file lock per
partition, with short-lived in-memory DuckDB connections doing the heavy lifting. The catalog file only
holds views, refreshed best-effort, so a user with the catalog open (read-only or not) never breaks a run.

Files and directories are created owner-only by default (umask 077; `HUNTRESS_UMASK` for a group).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from . import layout
from .errors import HuntressConfigError

if TYPE_CHECKING:
    from .raw_partitions import Snapshots, WalkedPartitions
    from .streams import Stream

log = logging.getLogger(__name__)

COMPLETE_AS_OF = b"complete_as_of"
SOURCE_FINGERPRINT = b"source_fingerprint"
UTC_US = pa.timestamp("us", tz="UTC")

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


def sql_files(files: Iterable[Path]) -> str:
    return "[" + ", ".join(sql_literal(str(p)) for p in files) + "]"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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
        return self.root / layout.CATALOG_FILE

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
        path = self.root / layout.lock_file(name)
        self.mkdir(path.parent)
        return FileLock(str(path), timeout=timeout, mode=self.file_mode)

    def connect(self, spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
        """A private in-memory DuckDB for computing over Parquet (no file lock involved); it spills to the
        lake's own temp directory unless given another (a reader must not write into the lake)."""
        con = duckdb.connect(config={"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads})
        spill = spill_dir or self.root / layout.SPILL_DIR
        self.mkdir(spill)  # DuckDB does not create missing parents of its spill dir
        con.execute(f"SET temp_directory = {sql_literal(str(spill))}")
        con.execute("SET TimeZone = 'UTC'")  # timestamps come back as UTC whatever the machine's zone
        return con

    def files(self, table: str) -> list[Path]:
        return sorted(self.root.glob(layout.TABLE_GLOBS[table]))

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
        stage_dir = self.root / layout.STAGING_DIR / uuid.uuid4().hex
        self.mkdir(stage_dir.parent)
        holder = FileLock(str(stage_dir) + ".lock", mode=self.file_mode)
        with holder:  # held before the directory exists: a cleaner never sees it unheld while alive
            self.mkdir(stage_dir)
            try:
                yield stage_dir
            finally:
                shutil.rmtree(stage_dir, ignore_errors=True)
        Path(holder.lock_file).unlink(missing_ok=True)

    def clean_leftovers(self) -> dict[str, int]:
        """Remove what dead runs left behind: staging directories no live walk holds, and temporary files
        of processes that no longer run on this machine. Returns what was removed (for run metadata)."""
        removed = {"staging_dirs": 0, "tmp_files": 0, "bytes": 0}
        staging_root = self.root / layout.STAGING_DIR
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

    # --- raw tables and quarantine -----------------------------------------------------------------

    def walked(self, stream: Stream, account: str, scope: str | None = None) -> WalkedPartitions:
        from .raw_partitions import WalkedPartitions
        return WalkedPartitions(self, stream, account, scope)

    def snapshots(self, stream: Stream, account: str) -> Snapshots:
        from .raw_partitions import Snapshots
        return Snapshots(self, stream, account)

    def accounts(self, stream: Stream) -> list[str]:
        """The accounts the lake holds raw data of, for a stream."""
        base = self.root / stream.raw_table
        return sorted(p.name.removeprefix("account=") for p in base.glob("account=*") if p.is_dir()) \
            if base.exists() else []

    def adopt_legacy_layout(self, account: str) -> int:
        """Move a single-account lake of the first wave (no account= level) under `account`; returns the
        directories moved. Parsed days are moved too, so alerts need no re-parse."""
        moved = 0
        with self.lock("layout"):
            for pattern in layout.LEGACY_DAY_DIRS:
                for day_dir in sorted(self.root.glob(pattern)):
                    target = day_dir.parent / f"account={account}" / day_dir.name
                    if not day_dir.is_dir() or target.exists():
                        continue
                    self.mkdir(target.parent)
                    os.replace(day_dir, target)
                    moved += 1
        if moved:
            log.warning("Moved %d day directories of the single-account layout under account=%s", moved, account)
        return moved

    def quarantine_path(self, stream_name: str, collected_at: datetime, unique: str) -> Path:
        return self.root / layout.quarantine_file(stream_name, collected_at, unique)

    def quarantine_files(self, stream_name: str) -> list[Path]:
        return sorted((self.root / layout.quarantine_dir(stream_name)).glob("*.parquet"))

    # --- catalog ----------------------------------------------------------------------------------

    def view_sql(self, table: str) -> str | None:
        """`SELECT` over a table's files, or None while it has none (a view over no files fails)."""
        if not self.files(table):
            return None
        pattern = sql_literal(str(self.root / layout.TABLE_GLOBS[table]))
        options = ", hive_partitioning = true, union_by_name = true" if table in layout.HIVE_TABLES else ""
        return f"SELECT * FROM read_parquet({pattern}{options})"

    def register_views(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Create (temporary) views for every table with data on a connection; returns their names."""
        names = []
        for table in layout.TABLE_GLOBS:
            sql = self.view_sql(table)
            if sql:
                con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {sql}")
                names.append(table)
        return names

    def preview(self, sql: str, limit: int = 5) -> list[dict]:
        """A few rows of a query over the lake's views (for run metadata)."""
        with self.connect() as con:
            self.register_views(con)
            return con.sql(f"SELECT * FROM ({sql}) LIMIT {limit}").to_arrow_table().to_pylist()

    def refresh_catalog(self, timeout: float = 5.0) -> bool:
        """Point huntress.duckdb's views at the current files. Best effort: if someone holds the file,
        the existing views (globs) already cover new files, so the run goes on."""
        statements = [f"CREATE OR REPLACE VIEW {t} AS {sql}" for t in layout.TABLE_GLOBS if (sql := self.view_sql(t))]
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
