"""parsed_syslog: one normalized row per raw version, for every stream (plain Python: no Dagster).

A day of parsed_syslog is one file per msg_class, rebuilt from that day's raw files of the class's stream
(a walked stream's day partition, or the snapshots a snapshot stream took that day) in streamed batches
(bounded memory), and skipped when its inputs have not changed since it was last built (the inputs'
fingerprint is kept in the output's Parquet footer). A raw record the normalizer cannot read is
quarantined, not allowed to sink the day.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import layout, parsing
from .lake import SOURCE_FINGERPRINT, UTC_US, Lake, as_date, parquet_writer
from .processes import release_unused_memory
from .quarantine import QuarantineWriter
from .streams import STREAMS, Stream

# Bump when parsing changes, so existing parsed partitions are rebuilt instead of skipped.
PARSED_FORMAT_VERSION = "3"
PARSED_SCHEMA = parsing.PARSED_SYSLOG_SCHEMA.append(pa.field("collected_at", UTC_US))
PARSE_CONTEXT = b"parse_context"  # footer key: the parser version and account context a file was parsed with
# Raw JSON normalized at once (decoded objects and rows take several times it): bounds a parse worker's
# memory whatever the records' size (incident reports average ~13 KB, a few bodies reach megabytes).
# Measured on days of ~3.4k incidents: a worker's peak ~270 MiB at 8 MiB, ~240 at 4, ~220 at 2; CPU within noise.
PARSE_BATCH_BYTES = 4 << 20


@dataclass
class ParsedDayStats:
    day: str
    rows: dict[str, int] = field(default_factory=dict)  # by msg_class
    skipped: list[str] = field(default_factory=list)  # classes whose inputs had not changed
    parse_levels: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    parsed: int = 0  # rows normalized from raw records by this build
    carried_over: int = 0  # rows of versions parsed before, copied from the previous file


def parsed_path(lake: Lake, msg_class: str, account: str, day: date | str) -> Path:
    return lake.root / layout.parsed_file(msg_class, account, as_date(day))


def raw_sources(lake: Lake, stream: Stream, account: str, day: date) -> list[Path]:
    """The raw files a day of the stream's class of one account is parsed from."""
    if stream.is_walk:
        path = lake.walked(stream, account).day_path(day)
        return [path] if path.exists() else []
    return lake.snapshots(stream, account).files(day)


def _fingerprint(lake: Lake, sources: list[Path], ctx: parsing.ParseContext) -> bytes:
    digest = hashlib.sha256(PARSED_FORMAT_VERSION.encode())
    digest.update(repr(ctx).encode())
    for path in sources:
        digest.update(f"{path}|{lake.signature(path)}".encode())
    return digest.hexdigest().encode()


def _raw_records(stream: Stream, batch: pa.RecordBatch) -> tuple[list[bytes], list[bytes | dict[str, Any]]]:
    """The batch's raw JSON texts (UTF-8 bytes: the JSON decoder reads them as they are, where a str would
    cost a UTF-8 decode first), and what the normalizer reads: the same texts, except an incident report
    with a completed remediations list, which is decoded once here with the complete list set in (not
    decoded, re-encoded and decoded again)."""
    raws = batch.column("raw_json").cast(pa.large_binary()).to_pylist()
    if not stream.completes_remediations:
        return raws, raws
    return raws, [_with_remediations(raw, rem) for raw, rem in zip(
        raws, batch.column("remediations_json").to_pylist(), strict=True)]


def _with_remediations(raw: bytes, remediations_json: str | None) -> bytes | dict[str, Any]:
    if not remediations_json:
        return raw
    try:
        record = parsing.load_record(raw, "incident")
        complete = parsing.load_record(remediations_json, "remediations")["remediations"]
    except (parsing.InvalidRecord, KeyError):
        return raw  # not an object: the normalizer reports it, and it is quarantined
    return parsing.record_with_all_remediations(record, complete)


def _write_parsed(lake: Lake, stream: Stream, account: str, day: date, ctx: parsing.ParseContext,
                  stats: ParsedDayStats, batch_rows: int) -> None:
    msg_class = stream.msg_class
    sources = raw_sources(lake, stream, account, day)
    final = parsed_path(lake, msg_class, account, day)
    if not sources:
        return
    fingerprint = _fingerprint(lake, sources, ctx)
    if final.exists() and lake.file_metadata(final).get(SOURCE_FINGERPRINT) == fingerprint:
        stats.skipped.append(msg_class)
        stats.rows[msg_class] = stats.rows.get(msg_class, 0) + lake.num_rows(final)
        return
    parse_context = _context_fingerprint(ctx)
    columns = ["id", "updated_at", "raw_json", "collected_at"] + (
        ["remediations_json"] if stream.completes_remediations else [])
    schema = PARSED_SCHEMA.with_metadata({SOURCE_FINGERPRINT: fingerprint, PARSE_CONTEXT: parse_context})
    count = 0
    with lake.lock(f"parsed_syslog/{msg_class}/{account}/{day.isoformat()}"), lake.atomic_path(final) as tmp, \
            parquet_writer(tmp, schema) as writer, \
            QuarantineWriter(lake, stream.name, ctx.tenantid, datetime.now(timezone.utc)) as quarantine:
        parsed_before = _parsed_versions(lake, stream, final, parse_context)
        if parsed_before:  # the versions still in the raw day keep their parsed rows: only new ones are parsed
            carried = _carry_over(lake, final, _raw_versions(lake, sources), writer, schema, batch_rows)
            stats.carried_over += carried
            count += carried
        for batch in _batches(lake, sources, batch_rows, columns):
            if parsed_before:
                batch = batch.filter(pa.array([key not in parsed_before for key in _version_keys(
                    batch.column("id"), batch.column("updated_at"), batch.column("collected_at"))]))
            for part in _byte_bounded(batch, PARSE_BATCH_BYTES):
                count += _parse_batch(stream, part, ctx, schema, writer, quarantine, stats)
        stats.quarantined += quarantine.count
    stats.rows[msg_class] = stats.rows.get(msg_class, 0) + count


def _byte_bounded(batch: pa.RecordBatch, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """Slices of the batch holding at most `max_bytes` of raw JSON each (or one record, if larger)."""
    sizes = pc.fill_null(pc.binary_length(batch.column("raw_json")), 0).to_pylist()
    start, held = 0, 0
    for index, size in enumerate(sizes):
        if held and held + size > max_bytes:
            yield batch.slice(start, index - start)
            start, held = index, 0
        held += size
    if start < batch.num_rows:
        yield batch.slice(start)


def _parse_batch(stream: Stream, batch: pa.RecordBatch, ctx: parsing.ParseContext, schema: pa.Schema,
                 writer: pq.ParquetWriter, quarantine: QuarantineWriter, stats: ParsedDayStats) -> int:
    """Normalize a batch of raw versions into `writer`, quarantining what cannot be; returns rows written."""
    raws, records = _raw_records(stream, batch)
    invalid: list[int] = []

    def on_invalid(index: int, reason: str) -> None:
        invalid.append(index)
        quarantine.add_text(raws[index].decode(), f"not normalizable: {reason}", stream.path)

    table = parsing.normalize_records(stream.msg_class, records, ctx, on_invalid=on_invalid)
    collected = batch.column("collected_at")
    if invalid:
        bad = set(invalid)
        collected = collected.take(pa.array([i for i in range(batch.num_rows) if i not in bad], pa.int64()))
    table = table.append_column("collected_at", collected)
    writer.write_table(table.cast(schema))
    stats.parsed += table.num_rows
    for level in table.column("parse_level").to_pylist():
        if level:
            stats.parse_levels[level] = stats.parse_levels.get(level, 0) + 1
    return table.num_rows


VersionKey = tuple[int, datetime, datetime]  # (id, updated_at, collected_at): one fetch of one version


def _version_keys(ids: Any, updated: Any, collected: Any) -> list[VersionKey]:
    return list(zip(ids.to_pylist(), updated.to_pylist(), collected.to_pylist(), strict=True))


def _context_fingerprint(ctx: parsing.ParseContext) -> bytes:
    """What a parsed row depends on besides its raw record: the parser's version and the account's context."""
    return hashlib.sha256(f"{PARSED_FORMAT_VERSION}|{ctx!r}".encode()).hexdigest().encode()


def _parsed_versions(lake: Lake, stream: Stream, final: Path, parse_context: bytes) -> set[VersionKey] | None:
    """The versions a walked day's parsed file holds, if it was parsed the way it would be now; None when the
    whole day must be parsed again (a snapshot stream, a parser or context change, no file yet). A raw commit
    never changes a stored version without changing its collected_at, so a version parsed before is parsed
    the same again."""
    if not stream.is_walk or not final.exists() or lake.file_metadata(final).get(PARSE_CONTEXT) != parse_context:
        return None
    with lake.open_read(final) as source:  # (of the `huntress` struct's ~80 fields, only these two)
        table = pq.ParquetFile(source).read(columns=["huntress.id", "huntress.updated_at", "collected_at"])
    huntress = table.column("huntress").combine_chunks()
    return set(_version_keys(huntress.field("id"), huntress.field("updated_at"), table.column("collected_at")))


def _raw_versions(lake: Lake, sources: list[Path]) -> set[VersionKey]:
    keys: set[VersionKey] = set()
    for batch in _batches(lake, sources, 50_000, ["id", "updated_at", "collected_at"]):
        keys.update(_version_keys(batch.column("id"), batch.column("updated_at"), batch.column("collected_at")))
    return keys


def _carry_over(lake: Lake, final: Path, still_raw: set[VersionKey], writer: pq.ParquetWriter, schema: pa.Schema,
                batch_rows: int) -> int:
    """Copy the parsed rows of `final` whose version is still in the raw day into `writer`."""
    carried = 0
    for batch in _batches(lake, [final], batch_rows, schema.names):
        huntress = batch.column("huntress")
        mask = pa.array([key in still_raw for key in _version_keys(huntress.field("id"), huntress.field("updated_at"),
                                                                   batch.column("collected_at"))])
        kept = pa.Table.from_batches([batch.filter(mask)])
        if kept.num_rows:
            writer.write_table(kept.cast(schema))
            carried += kept.num_rows
    return carried


def _batches(lake: Lake, sources: list[Path], batch_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    for path in sources:
        with lake.open_read(path) as source:
            # pre_buffer reads every row group's chunks up front: the whole compressed day (~40 MB at 33k
            # incidents a day) held by each parse worker. Only an object store needs it (fewer requests).
            yield from pq.ParquetFile(source, pre_buffer=lake.remote).iter_batches(batch_size=batch_rows,
                                                                                   columns=columns)


Contexts = dict[str, parsing.ParseContext]  # by account id; "*" for an account not listed


def build_parsed_syslog_day(lake: Lake, day: date | str, contexts: Contexts,
                            batch_rows: int = 1_000) -> ParsedDayStats:
    """Normalize one day of every stream of every account: versions updated that day, and snapshots taken
    that day, each with its account's context (tenant, names)."""
    day = as_date(day)
    stats = ParsedDayStats(day=day.isoformat())
    for stream in STREAMS:
        for account in lake.accounts(stream):
            _write_parsed(lake, stream, account, day, contexts.get(account, contexts["*"]), stats, batch_rows)
    release_unused_memory()  # a parse worker goes through many days: each starts from what it needs
    return stats


def build_parsed_syslog_days(lake: Lake, days: list[date | str], contexts: Contexts,
                             workers: int = 1) -> Iterator[ParsedDayStats]:
    """Normalize several days, in parallel processes when `workers` > 1: parsing is CPU-bound and each day
    is an independent file, so a backfill scales with the cores (memory: one batch per worker)."""
    workers = min(workers, len(days))
    if workers <= 1:
        yield from (build_parsed_syslog_day(lake, day, contexts) for day in days)
        return
    # spawn, not fork: the caller may be a threaded Dagster run worker.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=prepare_parse_worker) as pool:
        yield from pool.map(build_parsed_syslog_day, [lake] * len(days), days, [contexts] * len(days))


PREVIEW_COLUMNS = ["msg_class", "id", "status", "parse_level", "processes", "sha256", "domains"]


def newest_incidents(lake: Lake, days: list[str], limit: int = 5) -> list[dict[str, Any]]:
    """The newest incident reports parsed on the newest of `days` that has any (run metadata), with their entity
    counts. Read with pyarrow from that day's files, a few fields each: a DuckDB query over the day (or the
    table's view, which opens every file of the lake) peaked at ~800 MiB at 1M incidents."""
    files_by_day: dict[str, list[Any]] = {}
    for path in lake.glob(layout.parsed_glob(parsing.INCIDENT_CLASS)):  # (listed once)
        files_by_day.setdefault(path.parent.name.removeprefix("day="), []).append(path)
    for day in sorted(set(days) & files_by_day.keys(), reverse=True):
        tables = []
        for path in files_by_day[day]:
            with lake.open_read(path) as source:
                tables.append(pq.ParquetFile(source).read(columns=[
                    "msg_class", "timestamp", "huntress.id", "huntress.status", "parse_level", "processes", "sha256",
                    "domains"]))
        rows = pa.concat_tables(tables)
        if rows.num_rows:
            newest = rows.take(pc.select_k_unstable(rows, limit, [("timestamp", "descending")])).to_pylist()
            return [{"msg_class": row["msg_class"], "id": row["huntress"]["id"], "status": row["huntress"]["status"],
                     "parse_level": row["parse_level"],
                     **{column: len(row[column] or ()) for column in ("processes", "sha256", "domains")}}
                    for row in newest]
    return []


def prepare_parse_worker() -> None:
    """A parse worker's start: Arrow memory from a pool that returns it, and no pandas."""
    use_returning_arrow_pool()
    keep_pandas_out()


def use_returning_arrow_pool() -> None:
    """A parse worker's Arrow allocations come from jemalloc returning freed pages at once (decay 0), not
    from the default pool (mimalloc) that keeps them: parsing one 33k-incident day, a worker's median RSS
    went from ~365 to ~310 MiB and its peak from ~440 to ~350, same CPU. Only in the workers, which are
    ours: a run process's Arrow pool is its own business (its alerts build measured the same either way)."""
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc: the default pool it is
        return
    pa.set_memory_pool(pool)
    pa.jemalloc_set_decay_ms(0)


class _NoPandas:
    """A meta path finder that refuses pandas (see `keep_pandas_out`)."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is kept out of parse workers", name=name)


def keep_pandas_out() -> None:
    """pyarrow imports pandas, when it is installed, the first time it converts a Python value (to look
    for pandas types): ~40 MiB of a parse worker's ~100 after imports, for nothing the parser uses.
    Refused, pyarrow goes on without it. (Only in our workers: Dagster's process has its own uses.)"""
    if "pandas" not in sys.modules and _NoPandas not in sys.meta_path:
        sys.meta_path.insert(0, _NoPandas)
