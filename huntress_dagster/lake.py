"""The lake: Parquet files per table and partition (a DuckDB catalog of views over them: `catalog.py`).

Plain Python (no Dagster). Every path is defined in `layout.py`; the raw tables' partitions and
snapshots in `raw_partitions.py`.

Why this shape: DuckDB lets one process write a database file and locks out every other process,
even readers. Runs therefore never write table data into huntress.duckdb: each partition is a Parquet
file written to a temporary name and renamed into place (atomic on POSIX), under a file lock per
partition, with short-lived in-memory DuckDB connections doing the heavy lifting. The catalog file only
holds views, refreshed best-effort, so a user with the catalog open (read-only or not) never breaks a run.

Files and directories are created owner-only by default (umask 077; `HUNTRESS_UMASK` for a group).

The lake may also live on S3-compatible object storage (`s3://bucket/prefix`, credentials and endpoint from
the standard AWS_* variables), through fsspec (s3fs, behind a pathlib-like `UPath`) for Python and the same
filesystem registered in DuckDB for SQL. An object store has no rename, but a PUT is all-or-nothing: a reader
sees the previous object or the new one, never a half-written one, and an interrupted upload leaves nothing.
So every file is still written whole to a LOCAL temporary file first and then published with one PUT of the
final object name (`publish`), which keeps the guarantee above; staging, temporary files, DuckDB's spill and
(without a PostgreSQL URL) the locks stay on the machine's local disk (`scratch`). Read-merge-write of a
partition is guarded by `lock`, which works across machines with a PostgreSQL URL (coordination.py).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from . import layout
from .errors import HuntressConfigError
from .processes import process_alive

if TYPE_CHECKING:
    import duckdb

    from .raw_partitions import Snapshots, WalkedPartitions
    from .streams import Stream

log = logging.getLogger(__name__)

COMPLETE_AS_OF = b"complete_as_of"
SOURCE_FINGERPRINT = b"source_fingerprint"
UTC_US = pa.timestamp("us", tz="UTC")

DEFAULT_UMASK = 0o077  # incident data is confidential: owner-only unless configured otherwise
TMP_PREFIX = ".tmp-"  # files being written; renamed into place, or removed by `clean_leftovers`
# ... and ending so: no table's glob (`*.parquet`, `*.json`) matches a file whose footer is not written yet.
# Both DuckDB's glob and pathlib's match dot files: a catalog refresh or a query that lists a writer's
# half-written file fails ("Parquet magic bytes not found").
TMP_SUFFIX = ".partial"


# Columns of whole documents (an API record's JSON, an incident body): nearly every value differs, so a
# dictionary never pays; the writers still hash every value before giving up on one, which cost ~40% of
# writing such a column (pyarrow: 63 -> 37 us per incident body, DuckDB COPY: 52 -> 40 us per raw row).
DOCUMENT_COLUMNS = frozenset({"raw_json", "body"})


@lru_cache(maxsize=64)
def _dictionary_columns(schema: pa.Schema) -> tuple[str, ...]:
    """Parquet leaf paths of `schema` ("huntress.status", "files.list.element") outside DOCUMENT_COLUMNS."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, schema).close()  # (not pq.write_table: it imports pandas, ~50 MiB a parse worker)
    parquet_schema = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    paths = (parquet_schema.column(i).path for i in range(len(parquet_schema)))
    return tuple(path for path in paths if path.split(".", 1)[0] not in DOCUMENT_COLUMNS)


def parquet_writer(where: Any, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer for a lake file: zstd, dictionaries for every column but whole documents."""
    dictionary_columns = _dictionary_columns(schema.remove_metadata())  # (cached by the bare schema)
    return pq.ParquetWriter(where, schema, compression="zstd", use_dictionary=list(dictionary_columns))


def parquet_copy_options(row_group_rows: int, *, string_dictionaries: bool = True, **kv_metadata: str) -> str:
    """Options of a DuckDB `COPY ... TO` a lake file. DuckDB buffers a whole row group per writing
    thread, and its default (122,880 rows) is 1.6 GB of raw incident JSON or ~300 MB of alerts: row
    groups sized to the row keep a write's memory small. Pair with `preserve_insertion_order = false`
    on the connection, or DuckDB buffers rows to keep their order. `string_dictionaries=False` for rows
    of whole documents (see DOCUMENT_COLUMNS): DuckDB's option applies to every string column."""
    options = f"FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group_rows}"
    if not string_dictionaries:
        options += ", STRING_DICTIONARY_PAGE_SIZE_LIMIT 1"
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


def is_object_store(location: str | os.PathLike) -> bool:
    """Whether a lake location is on S3-compatible object storage (s3://bucket/prefix)."""
    return str(location).startswith(("s3://", "s3a://"))


def _is_local(path: Any) -> bool:
    return isinstance(path, Path)




class Lake:
    """One lake: a local directory, or a prefix of an S3-compatible bucket."""

    def __init__(self, root: str | os.PathLike, *, duckdb_memory_limit: str = "512MB", duckdb_threads: int = 2,
                 umask: int = DEFAULT_UMASK, locks_url: str | None = None, scratch_dir: str | None = None):
        """`locks_url`: a PostgreSQL URL for locks that hold across machines (default: file locks, one
        machine). `scratch_dir`: local working space of an object-store lake (default: the temp dir)."""
        self.dir_mode = 0o777 & ~umask
        self.file_mode = 0o666 & ~umask
        self.locks_url = locks_url
        self.duckdb_memory_limit = duckdb_memory_limit
        self.duckdb_threads = duckdb_threads
        self._database: duckdb.DuckDBPyConnection | None = None  # see connect()
        self._database_pid: int | None = None
        self._database_lock = threading.Lock()
        if is_object_store(root):
            from upath import UPath

            self.location = str(root).rstrip("/")
            # no listings cache: another machine's writes must be seen by the next glob
            self.root: Any = UPath(self.location, use_listings_cache=False)
            digest = hashlib.sha256(self.location.encode()).hexdigest()[:12]
            self.scratch = Path(scratch_dir or tempfile.gettempdir()) / f"huntress_dagster-{digest}"
            self.mkdir(self.scratch)
            return
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)
        self.scratch = self.root
        if self.root.exists() and not self.root.is_dir():
            raise HuntressConfigError(f"The lake directory {str(self.root)!r} (HUNTRESS_LAKE_DIR) exists and is "
                                      "not a directory")
        try:
            self.mkdir(self.root)
        except OSError as exc:
            raise HuntressConfigError(f"Cannot create the lake directory {str(self.root)!r} (HUNTRESS_LAKE_DIR): "
                                      f"{exc.strerror}") from None

    def __repr__(self) -> str:
        return f"Lake({self.location!r})"

    @property
    def remote(self) -> bool:
        return not _is_local(self.root)

    # --- plumbing --------------------------------------------------------------------------------

    def mkdir(self, path: Any) -> Any:
        """Create `path` and its missing parents with the lake's directory mode (whatever the process umask).
        An object store has no directories: nothing to do there."""
        if not _is_local(path):
            return path
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
        """Fail before any API request if the lake cannot be written (read-only mount, wrong owner, no
        bucket or no permission)."""
        probe = self.root / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-probe"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            raise HuntressConfigError(f"The lake {self.location!r} (HUNTRESS_LAKE_DIR) is not writable: "
                                      f"{reason}") from None

    def lock(self, name: str, timeout: float = 600) -> Any:
        """A lock per table or partition, so read-merge-write never interleaves: across machines with a
        PostgreSQL URL, else a file lock (processes of this machine)."""
        if self.locks_url:
            from .coordination import PostgresLock

            return PostgresLock(self.locks_url, f"{self.location}|{name}", timeout=timeout)
        path = self.scratch / layout.lock_file(name)
        self.mkdir(path.parent)
        return FileLock(str(path), timeout=timeout, mode=self.file_mode)

    def connect(self, spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
        """A connection for computing over Parquet (no file lock involved), private to its caller: its temp
        tables are its own. It is a cursor of one in-memory DuckDB per process, because starting a database
        costs ~18 ms of CPU and a run opens hundreds; they also share one `memory_limit`, so concurrent work
        of one process stays within it. Its global settings are the lake's (see `_database`): a caller that
        needs another global setting takes `connect_private`. With `spill_dir`, a private database spilling
        there (a reader must not write into the lake)."""
        if spill_dir is not None:
            return self.connect_private(spill_dir)
        with self._database_lock:
            if self._database is None or self._database_pid != os.getpid():
                self._database, self._database_pid = self.connect_private(), os.getpid()
            con = self._database.cursor()
        return con

    def connect_private(self, spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB of its own (in memory); it spills to the lake's own (local) temp directory unless given
        another. For an object-store lake, the lake's filesystem is registered, so SQL reads and writes s3://
        paths."""
        import duckdb  # (here: a parse worker, which never connects, spares its ~16 MiB)

        con = duckdb.connect(config={"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads,
                                     "allocator_background_threads": True})
        spill = spill_dir or self.scratch / layout.SPILL_DIR
        self.mkdir(spill)  # DuckDB does not create missing parents of its spill dir
        con.execute(f"SET temp_directory = {sql_literal(str(spill))}")
        con.execute("SET TimeZone = 'UTC'")  # timestamps come back as UTC whatever the machine's zone
        if self.remote:
            con.register_filesystem(self.root.fs)
        return con

    def __getstate__(self) -> dict[str, Any]:  # to parse worker processes: without the process's database
        return {**self.__dict__, "_database": None, "_database_pid": None, "_database_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _database_lock=threading.Lock())

    def files(self, table: str) -> list[Any]:
        return self.glob(layout.TABLE_GLOBS[table])

    def glob(self, pattern: str) -> list[Any]:
        """The lake's files matching a pattern relative to its root (`*` within one path segment), sorted.
        On an object store: ONE listing of the pattern's literal prefix, matched segment by segment (fsspec's
        glob lists level by level: a request per directory)."""
        if not self.remote:
            return sorted(self.root.glob(pattern), key=str)
        parts = pattern.split("/")
        literal = list(itertools.takewhile(lambda part: not any(c in part for c in "*?["), parts[:-1]))
        base = "/".join([self.root.path, *literal])
        try:
            keys = self.root.fs.find(base)
        except FileNotFoundError:
            return []
        found = []
        for key in keys:
            relative = key[len(self.root.path) + 1:].split("/")
            if len(relative) == len(parts) and all(map(fnmatch.fnmatchcase, relative, parts)):
                found.append(self.root / "/".join(relative))
        return sorted(found, key=str)

    def tmp_path(self, final: Any) -> Path:
        """A local temporary file to write `final` into: next to it in a local lake (renamed into place), in
        the local scratch space for an object store (uploaded with one PUT)."""
        unique = f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}-{final.name}{TMP_SUFFIX}"
        if self.remote:
            directory = self.scratch / "_tmp" / "publish"
            self.mkdir(directory)
            return directory / unique
        self.mkdir(final.parent)
        # The writer's pid in the name lets `clean_leftovers` tell a dead run's file from a live one's.
        return final.with_name(unique)

    @contextlib.contextmanager
    def atomic_path(self, final: Any) -> Iterator[Path]:
        """Yield a local temporary path; publish it as `final` only if the block succeeds."""
        tmp = self.tmp_path(final)
        try:
            yield tmp
            self.publish(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def publish(self, tmp: Path, final: Any) -> None:
        """Put a finished temporary file in place, whole: a rename (atomic on POSIX), or one PUT of the final
        object (all-or-nothing on S3), so readers see old or new, never half."""
        if self.remote:
            final.fs.put_file(str(tmp), final.path)
            tmp.unlink()
            return
        tmp.chmod(self.file_mode)
        os.replace(tmp, final)

    @contextlib.contextmanager
    def open_read(self, path: Any) -> Iterator[IO[bytes] | str]:
        """Something pyarrow reads `path` through: the local path itself, or an open object-store file."""
        if _is_local(path):
            yield str(path)
            return
        with path.open("rb") as handle:
            yield handle

    def read_metadata(self, path: Any) -> pq.FileMetaData:
        with self.open_read(path) as source:
            return pq.read_metadata(source)

    def file_metadata(self, path: Any) -> dict[bytes, bytes]:
        return self.read_metadata(path).metadata or {}

    def share_one_schema(self, paths: Iterable[Any]) -> bool:
        """Whether the files all have one Arrow schema (from their footers; a file written by DuckDB, such as a
        merged raw day, counts as another), so that a query over them needs no `union_by_name`: with it,
        DuckDB opens every file and holds all their footers first (at 1M incidents, a DESCRIBE of
        parsed_syslog's view took 600 MiB with it, 13 without)."""
        schemas = {self._footer_schema(path) for path in paths}
        return len(schemas) <= 1 and None not in schemas

    def _footer_schema(self, path: Any) -> bytes | None:
        """A local file's footer schema (only local views weigh `union_by_name`), remembered by its signature:
        views are made at every asset step's end (the catalog), and a lake's footers take ~0.5-1.3 s at 1M."""
        key = (str(path), self.signature(path))
        if key not in _FOOTER_SCHEMAS:
            if len(_FOOTER_SCHEMAS) >= FOOTER_SCHEMAS_KEPT:  # rewritten files leave stale keys behind
                _FOOTER_SCHEMAS.clear()
            _FOOTER_SCHEMAS[key] = footer_arrow_schema(self.file_metadata(path))
        return _FOOTER_SCHEMAS[key]

    def num_rows(self, path: Any) -> int:
        return self.read_metadata(path).num_rows

    def signature(self, path: Any) -> str:
        """Changes whenever the file is rewritten: size and mtime, or size and ETag on an object store."""
        if _is_local(path):
            stat = path.stat()
            return f"{stat.st_size}:{stat.st_mtime_ns}"
        info = path.fs.info(path.path)
        return f"{info.get('size')}:{info.get('ETag') or info.get('LastModified')}"

    # --- crash hygiene ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private staging directory for one walk, removed when the block ends (success or failure).

        The walk holds a lock on it, so `clean_leftovers` in another run can tell a live walk's staging
        from a dead one's (a killed process's lock is released by the OS)."""
        stage_dir = self.scratch / layout.STAGING_DIR / uuid.uuid4().hex
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
        staging_root = self.scratch / layout.STAGING_DIR
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
        for tmp in self.scratch.rglob(f"{TMP_PREFIX}*"):
            pid = tmp.name.removeprefix(TMP_PREFIX).split("-", 1)[0]
            if tmp.is_file() and (not pid.isdigit() or not process_alive(int(pid))):
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
        with self.atomic_path(final) as tmp, parquet_writer(tmp, table.schema) as writer:
            writer.write_table(table)

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
        if self.remote:  # prefixes, not directories: an account is there if it has a file
            return sorted({layout.account_of(p) for p in self.glob(layout.raw_glob(stream))})
        return sorted(p.name.removeprefix("account=") for p in base.glob("account=*") if p.is_dir()) \
            if base.exists() else []

    def adopt_legacy_layout(self, account: str) -> int:
        """Move a single-account lake of the first wave (no account= level) under `account`; returns the
        directories moved. Parsed days are moved too, so alerts need no re-parse."""
        moved = 0
        if self.remote:  # the first wave's layout only ever existed on a local disk
            return 0
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

    def quarantine_files(self, stream_name: str) -> list[Any]:
        return self.glob(f"{layout.quarantine_dir(stream_name)}/*.parquet")


# (path, signature) -> the Arrow schema in its footer, for `share_one_schema`; per process, cleared when full.
_FOOTER_SCHEMAS: dict[tuple[str, str], bytes | None] = {}
FOOTER_SCHEMAS_KEPT = 20_000


def footer_arrow_schema(metadata: dict[bytes, bytes]) -> bytes | None:
    """The Arrow schema pyarrow's writer keeps in a file's footer (`file_metadata`), without its metadata;
    None: not written by pyarrow. Not FileMetaData.schema: building it retained ~4 MB per day file of 33k
    incidents."""
    stored = metadata.get(b"ARROW:schema")
    if stored is None:
        return None
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored)))
    return schema.remove_metadata().serialize().to_pybytes()
