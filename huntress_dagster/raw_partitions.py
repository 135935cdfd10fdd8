"""The raw tables of the lake: walked streams' day partitions and snapshot streams' snapshots (plain Python).

Hermetic incremental collection: each day partition of a walked stream records, in its Parquet footer,
the instant as of which it is complete (`complete_as_of`: the start of the walk that last proved it).
The next walk starts from that instant minus an overlap, so a crash can only cause re-reading, never a
gap. A marker moves only for days the walk proved complete (`WalkedPartitions.commit(proven_days=...)`),
and it is only valid for the scope that proved it (`walk_scope`: the API host, tenant and organization
filter): a marker written under another scope counts as none, so widening the organization filter re-reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import layout
from .lake import (COMPLETE_AS_OF, UTC_US, Lake, day_end, day_start, parquet_copy_options, parquet_writer,
                   sql_files, sql_literal)
from .streams import Stream

RAW_SCHEMA = pa.schema([
    ("tenantid", pa.string()),
    ("account_id", pa.int64()),
    ("organization_id", pa.int64()),
    ("id", pa.int64()),
    ("updated_at", UTC_US),
    ("collected_at", UTC_US),
    ("raw_json", pa.large_string()),
    # The complete remediations list when an incident report embeds only the first 10 (has_more).
    ("remediations_json", pa.large_string()),
])
SNAPSHOT_SCHEMA = pa.schema([f for f in RAW_SCHEMA if f.name != "remediations_json"])
RAW_ROW_GROUP_ROWS = 2_048  # ~25 MB of raw incident JSON (~12 KB a record)
MAX_OPEN_STAGING_FILES = 8  # day files a walk writes at once (each holds at most its open page buffers)
# What makes two fetches of one (id, updated_at) the same version: everything but when it was collected.
def _row_digest(row: str) -> str:
    return (f"md5(concat_ws(chr(0), coalesce({row}.tenantid, chr(1)), coalesce(CAST({row}.account_id AS VARCHAR), "
            f"chr(1)), coalesce(CAST({row}.organization_id AS VARCHAR), chr(1)), {row}.raw_json, "
            f"coalesce({row}.remediations_json, chr(1))))")


@dataclass
class CommitStats:
    """What a commit of walked versions changed (for run metadata)."""

    days: int = 0
    rows_written: int = 0  # rows in the committed partitions after the commit
    new: int = 0  # versions of ids the lake had never seen
    updated: int = 0  # new versions of ids already in the lake
    unchanged: int = 0  # (id, updated_at) versions already stored


SCOPE = b"scope"


def walk_scope(host_url: str, tenant: str, organization_ids: Iterable[int]) -> str:
    """What a watermark was proven for: records of this host and tenant, of these organizations (all: none)."""
    text = f"{host_url.rstrip('/')}|{tenant}|{','.join(map(str, sorted(organization_ids)))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class WalkedPartitions:
    """The day partitions of one walked stream of one account."""

    def __init__(self, lake: Lake, stream: Stream, account: str, scope: str | None = None):
        """`scope` (see `walk_scope`): watermarks of another scope count as none; None accepts any."""
        assert stream.is_walk, stream
        self.lake, self.stream, self.account, self.scope = lake, stream, str(account), scope

    def day_path(self, day: date) -> Path:
        return self.lake.root / layout.raw_day_file(self.stream, self.account, day)

    def files(self) -> list[Path]:
        return self.lake.glob(layout.raw_glob(self.stream, self.account))

    def committed_days(self) -> list[date]:
        return sorted(date.fromisoformat(p.parent.name.removeprefix("day=")) for p in self.files())

    def complete_as_of(self, day: date) -> datetime | None:
        path = self.day_path(day)
        if not path.exists():
            return None
        metadata = self.lake.file_metadata(path)
        value, scope = metadata.get(COMPLETE_AS_OF), metadata.get(SCOPE)
        if self.scope is not None and scope is not None and scope.decode() != self.scope:
            return None  # proven for another host, tenant or organization filter
        return datetime.fromisoformat(value.decode()) if value else None

    def _marker_metadata(self, marker: datetime | None) -> dict[str, str]:
        metadata = {"complete_as_of": marker.isoformat()} if marker else {}
        return {**metadata, "scope": self.scope} if marker and self.scope else metadata

    def need(self, day: date, overlap: timedelta) -> datetime | None:
        """From when a walk must read to bring `day` up to date; None when it is complete through its end.

        A day never committed needs all of it. A committed day is complete as of its marker, and any
        later change moves a record's updated_at past the marker, so it needs only [marker - overlap,
        day end) (the overlap absorbs clock skew between Huntress and us) — nothing once that is empty.
        """
        complete_as_of = self.complete_as_of(day)
        if complete_as_of is None:
            return day_start(day)
        if complete_as_of - overlap < day_end(day):
            return max(complete_as_of - overlap, day_start(day))
        return None

    def incomplete_days(self, before: date, since: date | None = None) -> list[date]:
        """Committed days in [since, before) whose watermark stops short of the day's end: a walk was cut
        short (an outage, a broken API) and the day must be read again. One footer read per day looked at."""
        incomplete = []
        for day in self.committed_days():
            if day < before and (since is None or day >= since):
                marker = self.complete_as_of(day)
                if marker is None or marker < day_end(day):
                    incomplete.append(day)
        return incomplete

    def stored_remediations(self, days: Iterable[date]) -> dict[tuple[int, datetime], str]:
        """Completed remediations lists of stored versions, by (id, updated_at): a walk that meets such a
        version again (the overlap, a re-run) reuses it instead of spending requests on it."""
        files = [p for p in (self.day_path(d) for d in days) if p.exists()]
        if not files:
            return {}
        with self.lake.connect() as con:
            rows = con.execute(f"SELECT id, updated_at, remediations_json FROM read_parquet({sql_files(files)}) "
                               "WHERE remediations_json IS NOT NULL").fetchall()
        return {(row[0], row[1]): row[2] for row in rows}

    def stage(self, rows: Iterable[dict[str, Any]], stage_dir: Path, batch_rows: int = 1_000,
              complete_as_of: datetime | None = None) -> dict[date, list[Path]]:
        """Spill walked rows into staging Parquet files per day in `stage_dir` (see `Lake.staging`), with
        bounded memory for any walk size.

        At most `batch_rows` rows are held in all, across days: a walk meets up to a month of days, and a
        buffer per day would hold up to `batch_rows` rows of each (hundreds of MB of JSON). A walk meets the
        days in order (updated_at descending), so each day is usually one file, written as the day's raw
        partition would be and with the footer marker it gets if the walk proves it (`complete_as_of`):
        a day new to the lake is then published as staged, not read and written again (see `commit`)."""
        staged: dict[date, list[Path]] = {}
        buffers: dict[date, list[dict[str, Any]]] = {}
        writers: dict[date, pq.ParquetWriter] = {}  # open day files, least recently written first
        schema = RAW_SCHEMA.with_metadata(self._marker_metadata(complete_as_of))
        held = 0

        def flush(day: date) -> None:
            writer = writers.pop(day, None)
            if writer is None:
                if len(writers) >= MAX_OPEN_STAGING_FILES:  # a day met again later gets another file
                    writers.pop(next(iter(writers))).close()
                path = stage_dir / f"{day.isoformat()}-{len(staged.get(day, []))}.parquet"
                writer = parquet_writer(path, schema)
                staged.setdefault(day, []).append(path)
            writer.write_table(pa.Table.from_pylist(buffers.pop(day), schema=schema), row_group_size=batch_rows)
            writers[day] = writer

        try:
            for row in rows:
                buffers.setdefault(row["updated_at"].date(), []).append(row)
                held += 1
                if held >= batch_rows:
                    for day in list(buffers):
                        flush(day)
                    held = 0
            for day in list(buffers):
                flush(day)
        finally:
            for writer in writers.values():
                writer.close()
        return staged

    def _publish_as_staged(self, final: Path, fresh: list[Path], marker: datetime | None) -> bool:
        """Put a day's single staged file in place as its partition, if the day has none yet and the file is
        what a merge would write: no repeated version, the marker the day gets. The walk's one write of it."""
        if final.exists() or len(fresh) != 1 or self.has_repeated_versions(fresh):
            return False
        wanted = {k.encode(): v.encode() for k, v in self._marker_metadata(marker).items()}
        footer = self.lake.file_metadata(fresh[0])
        if {k: footer.get(k) for k in (COMPLETE_AS_OF, SCOPE)} != {k: wanted.get(k) for k in (COMPLETE_AS_OF, SCOPE)}:
            return False
        self.lake.mkdir(final.parent)
        self.lake.publish(fresh[0], final)
        return True

    def commit(self, days: Iterable[date], staged: dict[date, list[Path]], complete_as_of: datetime,
               proven_days: Iterable[date] | None = None, created_since: datetime | None = None) -> CommitStats:
        """Merge staged versions into each day's partition, atomically, one day at a time.

        A day in `proven_days` (default: all of `days`) is marked complete as of `complete_as_of` and gets
        a partition file even if empty, so "walked and found nothing" is distinguishable from "never
        collected". Any other day keeps the marker it had: its staged versions are stored, and the next
        walk reads the day again. Versions are keyed by (id, updated_at), one row each whatever the walk
        served (a stored partition holding a repeat is repaired when next touched); a re-fetched version
        replaces the stored one, so re-running a partition is idempotent. `created_since` (no staged version
        was created before it, when known) bounds the stored days read to count new and updated versions.
        """
        stats = CommitStats()
        days = set(days)
        proven = days if proven_days is None else set(proven_days)
        staged_files = [p for paths in staged.values() for p in paths]
        if staged_files:
            self._count_versions(staged_files, stats, created_since)
        for day in sorted(days | set(staged)):
            with self.lake.lock(f"{self.stream.raw_table}/{self.account}/{day.isoformat()}"):
                final = self.day_path(day)
                previous = self.complete_as_of(day)
                fresh = staged.get(day, [])
                if not fresh and (day not in proven or (previous and previous >= day_end(day))) \
                        and not (final.exists() and self.has_repeated_versions([final])):
                    continue  # nothing new, and the marker would not move: rewriting would change nothing
                marker = max(filter(None, [previous, complete_as_of if day in proven else None]), default=None)
                sources = ([final] if final.exists() else []) + fresh
                if not sources:
                    self.lake.write_table(final, RAW_SCHEMA.empty_table(),
                                          {k.encode(): v.encode() for k, v in self._marker_metadata(marker).items()})
                elif not self._publish_as_staged(final, fresh, marker):
                    self._merge_versions(sources, final, marker)
                stats.days += 1
                stats.rows_written += self.lake.num_rows(final)
        return stats

    def has_repeated_versions(self, files: list[Path]) -> bool:
        """Whether a (id, updated_at) occurs more than once in `files` (key columns only: cheap)."""
        with self.lake.connect() as con:
            return con.execute(
                f"SELECT count(*) > count(DISTINCT (id, updated_at)) FROM read_parquet({sql_files(files)})"
            ).fetchall()[0][0]

    def _one_row_per_version(self, files: list[Path]) -> str:
        """SQL selecting the raw rows of `files` with each (id, updated_at) once. Without repeats (the usual
        case) a plain scan; with some, the first occurrence is picked on the key columns and row positions
        only, so no JSON text is held in a hash table."""
        columns = ", ".join(RAW_SCHEMA.names)
        plain = f"read_parquet({sql_files(files)}, union_by_name = true)"
        if not self.has_repeated_versions(files):
            return f"SELECT {columns} FROM {plain}"
        scan = f"read_parquet({sql_files(files)}, union_by_name = true, filename = true, file_row_number = true)"
        return f"""SELECT {columns} FROM {scan} SEMI JOIN (
                       SELECT min(struct_pack(f := filename, r := file_row_number)) AS first
                       FROM {scan} GROUP BY id, updated_at) picked
                   ON picked.first.f = filename AND picked.first.r = file_row_number"""

    def _merge_versions(self, sources: list[Path], final: Path, marker: datetime | None) -> None:
        """A fresh fetch (staged files) that differs from the stored version of the same (id, updated_at)
        replaces it; an identical one leaves the stored row as it is, collected_at included, so a re-walk
        that finds nothing new changes no row, and nothing downstream (parsed days, alerts) sees a change.
        The joins are on the key columns and a digest of the row, so the JSON text never sits in a window
        or hash table (a day of a million-incident account is hundreds of MB of it)."""
        fresh = [p for p in sources if p != final]
        with self.lake.connect_private() as con, self.lake.atomic_path(final) as tmp:
            if not fresh:  # nothing new: rewritten to move its complete_as_of marker or to drop repeats
                query = self._one_row_per_version([final])
            else:
                query = self._one_row_per_version(fresh)
                if final in sources:
                    stored = self._one_row_per_version([final])
                    for name, rows in (("fresh_digests", query), ("stored_digests", stored)):
                        con.execute(f"CREATE TEMP TABLE {name} AS SELECT r.id, r.updated_at, {_row_digest('r')} "
                                    f"AS digest FROM ({rows}) r")
                    query = f"""SELECT * FROM ({query}) AS new
                        WHERE NOT EXISTS (SELECT 1 FROM stored_digests s WHERE s.id = new.id
                                          AND s.updated_at = new.updated_at AND s.digest = {_row_digest('new')})
                        UNION ALL
                        SELECT * FROM ({stored}) AS old
                        WHERE NOT EXISTS (SELECT 1 FROM fresh_digests f WHERE f.id = old.id
                                          AND f.updated_at = old.updated_at AND f.digest <> {_row_digest('old')})"""
            con.execute("SET preserve_insertion_order = false")  # streamed, not sorted: flat memory
            options = parquet_copy_options(RAW_ROW_GROUP_ROWS, string_dictionaries=False,
                                           **self._marker_metadata(marker))
            con.execute(f"COPY ({query}) TO {sql_literal(str(tmp))} {options}")

    def _count_versions(self, staged_files: list[Path], stats: CommitStats, created_since: datetime | None) -> None:
        """New, updated and unchanged versions among the staged ones. Only stored days from the staged
        versions' earliest creation on can hold earlier versions of them (an object is not updated before it
        is created), so an incremental walk reads the keys of a few recent days, not of the whole history."""
        stored = [p for p in self.files() if created_since is None
                  or p.parent.name.removeprefix("day=") >= created_since.date().isoformat()]
        with self.lake.connect() as con:
            con.execute(f"CREATE TEMP TABLE walked AS SELECT DISTINCT id, updated_at "
                        f"FROM read_parquet({sql_files(staged_files)})")
            if not stored:
                stats.new = con.execute("SELECT count(DISTINCT id) FROM walked").fetchone()[0]
                stats.updated = con.execute("SELECT count(*) FROM walked").fetchone()[0] - stats.new
                return
            con.execute(f"CREATE TEMP TABLE stored AS SELECT DISTINCT id, updated_at "
                        f"FROM read_parquet({sql_files(stored)}) WHERE id IN (SELECT id FROM walked)")
            stats.unchanged, stats.updated, stats.new = con.execute("""
                SELECT count(*) FILTER (WHERE s.id IS NOT NULL),
                       count(*) FILTER (WHERE s.id IS NULL AND known.id IS NOT NULL),
                       count(*) FILTER (WHERE s.id IS NULL AND known.id IS NULL)
                FROM walked w
                LEFT JOIN stored s USING (id, updated_at)
                LEFT JOIN (SELECT DISTINCT id FROM stored) known ON known.id = w.id
            """).fetchone()


class Snapshots:
    """The snapshots of one snapshot stream of one account: one file per collection, never overwritten."""

    def __init__(self, lake: Lake, stream: Stream, account: str):
        assert not stream.is_walk, stream
        self.lake, self.stream, self.account = lake, stream, str(account)

    def write(self, rows: Iterable[dict[str, Any]], collected_at: datetime, batch_rows: int = 5_000) -> tuple[Path, int]:
        final = self.lake.root / layout.snapshot_file(self.stream, self.account, collected_at)
        count = 0
        with self.lake.atomic_path(final) as tmp, parquet_writer(tmp, SNAPSHOT_SCHEMA) as writer:
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= batch_rows:
                    writer.write_table(pa.Table.from_pylist(batch, schema=SNAPSHOT_SCHEMA))
                    count += len(batch)
                    batch = []
            writer.write_table(pa.Table.from_pylist(batch, schema=SNAPSHOT_SCHEMA))
            count += len(batch)
        return final, count

    def files(self, day: date | None = None) -> list[Path]:
        if day is None:
            return self.lake.glob(layout.raw_glob(self.stream, self.account))
        return self.lake.glob(f"{layout.day_dir(self.stream, self.account, day)}/{layout.SNAPSHOT_FILES}")

    def newest_time(self) -> datetime | None:
        files = self.files()
        return layout.snapshot_time(files[-1]) if files else None

    def compare(self, snapshot: Path) -> dict[str, int]:
        """How a snapshot differs from the one before it: new, updated, unchanged and removed objects."""
        earlier = [p for p in self.files() if p.name < snapshot.name]
        if not earlier:
            return {"new": self.lake.num_rows(snapshot), "updated": 0, "unchanged": 0, "removed": 0}
        with self.lake.connect() as con:
            new, updated, unchanged, removed = con.execute("""
                SELECT count(*) FILTER (WHERE o.id IS NULL),
                       count(*) FILTER (WHERE n.updated_at IS DISTINCT FROM o.updated_at AND n.id IS NOT NULL
                                        AND o.id IS NOT NULL),
                       count(*) FILTER (WHERE n.updated_at IS NOT DISTINCT FROM o.updated_at AND n.id IS NOT NULL
                                        AND o.id IS NOT NULL),
                       count(*) FILTER (WHERE n.id IS NULL)
                FROM read_parquet(?) n FULL JOIN read_parquet(?) o ON n.id = o.id
            """, [str(snapshot), str(earlier[-1])]).fetchone()
        return {"new": new, "updated": updated, "unchanged": unchanged, "removed": removed}


def catch_up_start(lake: Lake, streams: Iterable[Stream], today: date, max_days: int = 31) -> date:
    """Where an incremental run starts: yesterday, or the earliest day of the last `max_days` that a walked
    stream left incomplete (so a day cut short by an outage is read again by the next scheduled run)."""
    floor = today - timedelta(days=max_days)
    incomplete = [day for stream in streams for account in lake.accounts(stream)
                  for day in lake.walked(stream, account).incomplete_days(today, since=floor)]
    return min([today - timedelta(days=1), *incomplete])
