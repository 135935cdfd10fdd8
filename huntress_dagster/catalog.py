"""The lake's catalog: DuckDB views over its tables' Parquet files (plain Python: no Dagster).

A view per table for a connection (`register_views`, what `huntress-dagster sql`, run metadata and the builds
query), and the catalog file `huntress.duckdb` holding the same views for analysts' tools
(`refresh_catalog`, `open_catalog`). The file holds only views, refreshed best-effort, so a user with the
catalog open never breaks a run (see lake.py), and it is written in DuckDB's v1.0.0 storage format, which
every DuckDB from 1.0 opens.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import layout
from .lake import Lake, sql_files, sql_literal

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# The catalog file's storage format: the oldest DuckDB 2.0 writes, which DuckDB 1.0 and later open, so
# analysts' tools need not upgrade with this package. DuckDB reports it as "<version>+".
CATALOG_STORAGE_VERSION = "v1.0.0"


def view_sql(lake: Lake, table: str, relative: bool = False) -> str | None:
    """`SELECT` over a table's files, or None while it has none (a view over no files fails). `relative`:
    paths relative to the lake root (the catalog file's views: a moved lake still works, read with
    DuckDB's `file_search_path` set to the lake, as `huntress-dagster sql` does). A partitioned table
    takes `union_by_name` only when its files have several schemas (after a parser change): DuckDB binds
    a view when it is made, and with it opens every file and holds all their footers (parsed_syslog at
    1M incidents: +656 MiB to make the view, in every `sql` session and catalog refresh)."""
    files = lake.files(table)
    if not files:
        return None
    hive = ", hive_partitioning = true" if table in layout.HIVE_TABLES else ""
    if lake.remote:  # the files listed now: DuckDB would glob the store again, level by level. And no
        # union_by_name, which opens every file before the query prunes any: an object-store lake is
        # written by this version only (one schema per table), where a local one may hold older files.
        return f"SELECT * FROM read_parquet({sql_files(files)}{hive})"
    union = ", union_by_name = true" if hive and not lake.share_one_schema(files) else ""
    glob = layout.TABLE_GLOBS[table] if relative else f"{lake.location}/{layout.TABLE_GLOBS[table]}"
    return f"SELECT * FROM read_parquet({sql_literal(glob)}{hive}{union})"


def register_views(lake: Lake, con: duckdb.DuckDBPyConnection, tables: Iterable[str] | None = None) -> list[str]:
    """Create (temporary) views for every table with data (or those of `tables`) on a connection; returns
    their names."""
    names = []
    for table in layout.TABLE_GLOBS if tables is None else [t for t in layout.TABLE_GLOBS if t in set(tables)]:
        sql = view_sql(lake, table)
        if sql:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {sql}")
            names.append(table)
    for view, (table, sql) in layout.DERIVED_VIEWS.items():
        if table in names:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {sql}")
            names.append(view)
    return names


def preview(lake: Lake, sql: str, limit: int = 5) -> list[dict]:
    """A few rows of a query over the lake's views (for run metadata). Best effort: another run may replace
    a file while it is read (an object store then refuses the read), and metadata must not fail the run
    whose data is committed: one more try, then no rows and a warning."""
    for attempt in (1, 2):
        try:
            with lake.connect() as con:
                register_views(lake, con, layout.tables_named(sql))
                return con.sql(f"SELECT * FROM ({sql}) LIMIT {limit}").to_arrow_table().to_pylist()
        except Exception as exc:  # noqa: BLE001 - metadata only, see above
            if attempt == 2:
                log.warning("No preview for run metadata (%s)", str(exc).splitlines()[-1][:300])
    return []


def _catalog_stamp(path: Path) -> str:
    """The catalog file as it is on disk (modified time and size): another writer or a replaced file shows."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "none"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def refresh_catalog(lake: Lake, timeout: float = 5.0) -> bool:
    """Point huntress.duckdb's views at the current tables (paths relative to the lake, so a moved lake
    still works). Best effort: if someone holds the file, the existing views (globs) already cover new
    files, so the run goes on. An object-store lake has no catalog file: `huntress-dagster sql` (or
    `huntress-dagster catalog`) gives the views."""
    if lake.remote:
        return False
    views = {table: sql for table in layout.TABLE_GLOBS if (sql := view_sql(lake, table, relative=True))}
    # A derived view carries its table's SELECT (a CTE of the same name): DuckDB 1.0 binds the table names
    # of a view in an ATTACHed catalog in the default database, where there is no such table.
    views |= {view: f"WITH {table} AS ({views[table]}) {sql}"
              for view, (table, sql) in layout.DERIVED_VIEWS.items() if table in views}
    statements = [f"CREATE OR REPLACE VIEW {name} AS {sql}" for name, sql in views.items()]
    if not statements:
        return False
    digest = hashlib.sha256("\n".join([CATALOG_STORAGE_VERSION, *statements]).encode()).hexdigest()
    path, given = lake.root / layout.CATALOG_FILE, lake.root / layout.CATALOG_STATE
    if given.exists() and given.read_text() == f"{digest} {_catalog_stamp(path)}":
        return True  # the views are globs: new files need no refresh, and opening the file costs ~0.1 s a step
    try:
        with lake.lock("catalog", timeout=timeout):
            if not (path.exists() and _write_views(path, lake.root, statements)):
                # New, or in a format DuckDB 1.x cannot open (written by an earlier version of this
                # package): built aside and renamed into place, so a reader never sees a half-built catalog.
                with lake.atomic_path(path) as tmp:
                    _write_views(tmp, lake.root, statements)
            path.chmod(lake.file_mode)  # an earlier version left the process umask's
            with lake.atomic_path(given) as tmp:  # what was written, and the file it was written to
                tmp.write_text(f"{digest} {_catalog_stamp(path)}")
        return True
    except Exception as exc:  # noqa: BLE001 - a lock held by a user's session must not fail the run
        log.warning("Catalog %s not refreshed (%s); Parquet files are committed and the existing views "
                    "cover them", path, str(exc).splitlines()[0])
        return False


def connect_catalog(path: str | os.PathLike, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB file that, if created or written, keeps the 1.x-compatible storage format."""
    import duckdb

    return duckdb.connect(str(path), read_only=read_only,
                          config={"storage_compatibility_version": CATALOG_STORAGE_VERSION})


def storage_version(con: duckdb.DuckDBPyConnection) -> str:
    """The storage format of a connection's database file as DuckDB reports it: 'v1.0.0+', 'v2.0.0+'..."""
    return con.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                       "WHERE database_name = current_database()").fetchone()[0]


def _write_views(path: Path, lake_root: Path, statements: list[str]) -> bool:
    """Run the view statements in the catalog file at `path`; False (nothing written) if the file is not in
    the 1.x-compatible format: the setting only applies to new files, an existing one keeps its format."""
    with connect_catalog(path) as con:
        if storage_version(con) != f"{CATALOG_STORAGE_VERSION}+":
            return False
        con.execute(f"SET file_search_path = {sql_literal(str(lake_root))}")  # views bind their files now
        for statement in statements:
            con.execute(statement)
    return True


def open_catalog(lake_dir: str | os.PathLike, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """The lake's catalog file opened the way its relative views need: `file_search_path` = the lake."""
    root = Path(lake_dir).expanduser().resolve()
    con = connect_catalog(root / layout.CATALOG_FILE, read_only=read_only)
    con.execute(f"SET file_search_path = {sql_literal(str(root))}")
    return con
