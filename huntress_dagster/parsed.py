"""parsed_syslog: one normalized row per raw version, for every stream (plain Python: no Dagster).

A day of parsed_syslog is one file per msg_class, rebuilt from that day's raw files of the class's stream
(a walked stream's day partition, or the snapshots a snapshot stream took that day) in streamed batches
(bounded memory), and skipped when its inputs have not changed since it was last built (the inputs'
fingerprint is kept in the output's Parquet footer). A raw record the normalizer cannot read is
quarantined, not allowed to sink the day.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import layout, parsing
from .lake import SOURCE_FINGERPRINT, UTC_US, Lake, as_date
from .quarantine import QuarantineWriter
from .streams import STREAMS, Stream

# Bump when parsing changes, so existing parsed partitions are rebuilt instead of skipped.
PARSED_FORMAT_VERSION = "2"
PARSED_SCHEMA = parsing.PARSED_SYSLOG_SCHEMA.append(pa.field("collected_at", UTC_US))


@dataclass
class ParsedDayStats:
    day: str
    rows: dict[str, int] = field(default_factory=dict)  # by msg_class
    skipped: list[str] = field(default_factory=list)  # classes whose inputs had not changed
    parse_levels: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0


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


def _raw_texts(stream: Stream, batch: pa.RecordBatch) -> list[str]:
    """The batch's raw JSON texts; an incident report's with its complete remediations list."""
    raws = batch.column("raw_json").to_pylist()
    if not stream.completes_remediations:
        return raws
    return [_with_remediations(raw, rem) for raw, rem in zip(raws, batch.column("remediations_json").to_pylist(),
                                                              strict=True)]


def _with_remediations(raw: str, remediations_json: str | None) -> str:
    if not remediations_json:
        return raw
    try:
        return parsing.with_all_remediations(raw, json.loads(remediations_json)["remediations"])
    except parsing.InvalidRecord:
        return raw  # not an object: the normalizer reports it, and it is quarantined


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
    columns = ["raw_json", "collected_at"] + (["remediations_json"] if stream.completes_remediations else [])
    schema = PARSED_SCHEMA.with_metadata({SOURCE_FINGERPRINT: fingerprint})
    count = 0
    with lake.lock(f"parsed_syslog/{msg_class}/{account}/{day.isoformat()}"), lake.atomic_path(final) as tmp, \
            pq.ParquetWriter(tmp, schema, compression="zstd") as writer, \
            QuarantineWriter(lake, stream.name, ctx.tenantid, datetime.now(timezone.utc)) as quarantine:
        for batch in _batches(lake, sources, batch_rows, columns):
            raws = _raw_texts(stream, batch)
            invalid: list[int] = []

            def on_invalid(index: int, reason: str, raws: list[str] = raws, invalid: list[int] = invalid) -> None:
                invalid.append(index)
                quarantine.add_text(raws[index], f"not normalizable: {reason}", stream.path)

            table = parsing.normalize_records(msg_class, raws, ctx, on_invalid=on_invalid)
            collected = batch.column("collected_at")
            if invalid:
                bad = set(invalid)
                keep = [i for i in range(batch.num_rows) if i not in bad]
                collected = collected.take(pa.array(keep, pa.int64()))
            table = table.append_column("collected_at", collected)
            writer.write_table(table.cast(schema))
            count += table.num_rows
            for level in table.column("parse_level").to_pylist():
                if level:
                    stats.parse_levels[level] = stats.parse_levels.get(level, 0) + 1
        stats.quarantined += quarantine.count
    stats.rows[msg_class] = stats.rows.get(msg_class, 0) + count


def _batches(lake: Lake, sources: list[Path], batch_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    for path in sources:
        with lake.open_read(path) as source:
            yield from pq.ParquetFile(source).iter_batches(batch_size=batch_rows, columns=columns)


Contexts = dict[str, parsing.ParseContext]  # by account id; "*" for an account not listed


def build_parsed_syslog_day(lake: Lake, day: date | str, contexts: Contexts,
                            batch_rows: int = 2_000) -> ParsedDayStats:
    """Normalize one day of every stream of every account: versions updated that day, and snapshots taken
    that day, each with its account's context (tenant, names)."""
    day = as_date(day)
    stats = ParsedDayStats(day=day.isoformat())
    for stream in STREAMS:
        for account in lake.accounts(stream):
            _write_parsed(lake, stream, account, day, contexts.get(account, contexts["*"]), stats, batch_rows)
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
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(build_parsed_syslog_day, [lake] * len(days), days, [contexts] * len(days))
