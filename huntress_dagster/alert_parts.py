"""The part files of alerts and of their OCSF findings (plain Python: no Dagster): written all at once by
a full build (`write_all_parts`, one streaming pass), or part by part by an incremental one (`alerts`
writes the part's rows, `write_findings_part` its findings).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import layout
from .inventory import write_ocsf
from .lake import Lake, parquet_copy_options, parquet_writer, sql_literal
from .parsing import ocsf, ocsf_findings

ALERT_PARTS = layout.ALERT_PARTS
ALERTS_ROW_GROUP_ROWS = 16_384  # ~40 MB of alerts rows: see parquet_copy_options


def alerts_part(lake: Lake, bucket: int) -> Path:
    return lake.root / layout.alerts_part(bucket)


def findings_part(lake: Lake, bucket: int) -> Path:
    return lake.root / layout.findings_part(bucket)


def bucket_of(id_sql: str) -> str:
    """SQL for the part an alert lives in: a function of its Huntress id alone, so a key never moves."""
    return f"((coalesce({id_sql}, 0) % {ALERT_PARTS} + {ALERT_PARTS}) % {ALERT_PARTS})"


def write_all_parts(lake: Lake, con: Any, queries: list[str], batch_rows: int = 10_000) -> int:
    """A full build in one streaming pass over the alert rows `queries` yield: each row to its part's file,
    and the part's findings made from the same rows, so nothing is gathered or read twice. A part's rows
    wait until they make a row group (`_PartBuffer`), so memory is that plus DuckDB's limit at any lake
    size. Returns the rows written.

    (Measured at 1M alerts: a temp table of every alert scanned once per part spilled ~5 GB and took 447
    CPU-s; DuckDB's PARTITION_BY holds its partitions without spilling, out of memory at 100k.)"""
    with contextlib.ExitStack() as files:
        files.enter_context(lake.lock("ocsf/detection_finding"))
        parts: list[_PartBuffer] = []
        for query in queries:
            with con.sql(f"SELECT *, {bucket_of('huntress_id')} AS part FROM ({query})").to_arrow_reader(
                    batch_rows) as reader:
                # (every query reads the union of the same files: one schema for all)
                schema = reader.schema.remove(reader.schema.get_field_index("part"))
                parts = parts or [_PartBuffer(files, lake, bucket, schema) for bucket in range(ALERT_PARTS)]
                for batch in reader:
                    buckets = batch.column("part")
                    rows = batch.drop_columns(["part"])
                    for bucket in pc.unique(buckets).to_pylist():
                        parts[bucket].add(rows.filter(pc.equal(buckets, bucket)))
        for part in parts:
            part.flush()
        return sum(part.rows for part in parts)


# A full build's rows waiting to be written, all parts together: a part writes a row group at 1/16 of it
# (~1,700 rows, against 16,384 in an incremental build's COPY), the price of holding 16 parts at once.
ALERTS_BUFFER_BYTES = 64 << 20


class _PartBuffer:
    """One part of a full build: its alerts and findings files (published when `files` closes without an
    error) and the rows waiting to be written to them as one row group."""

    def __init__(self, files: contextlib.ExitStack, lake: Lake, bucket: int, schema: pa.Schema):
        findings_schema = ocsf.DETECTION_FINDING_SCHEMA.with_metadata({b"ocsf_version": ocsf.OCSF_VERSION.encode()})
        alerts_tmp = files.enter_context(lake.atomic_path(alerts_part(lake, bucket)))
        findings_tmp = files.enter_context(lake.atomic_path(findings_part(lake, bucket)))
        # entered after their paths: each writer is closed before its file is published
        self.alerts = files.enter_context(parquet_writer(alerts_tmp, schema))
        self.findings = files.enter_context(parquet_writer(findings_tmp, findings_schema))
        self.batches: list[pa.RecordBatch] = []
        self.waiting_bytes = self.waiting_rows = self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        self.waiting_rows += batch.num_rows
        self.waiting_bytes += batch.nbytes
        if (self.waiting_rows >= ALERTS_ROW_GROUP_ROWS
                or self.waiting_bytes >= ALERTS_BUFFER_BYTES // ALERT_PARTS):
            self.flush()

    def flush(self) -> None:
        if not self.batches:
            return
        rows = pa.Table.from_batches(self.batches)
        self.alerts.write_table(rows, row_group_size=rows.num_rows)
        findings = pa.concat_tables(map(detection_findings, rows.select(OCSF_ALERT_COLUMNS).to_batches()))
        self.findings.write_table(findings, row_group_size=findings.num_rows)  # (the file's metadata: the writer's)
        self.rows += rows.num_rows
        self.batches, self.waiting_bytes, self.waiting_rows = [], 0, 0


def write_findings_part(lake: Lake, con: Any, bucket: int, rows: str, batch_rows: int = 10_000) -> None:
    """In an incremental build, the OCSF findings of a part: of `rows` (SQL: the part's new alert rows), plus
    the findings of the part's other alerts carried over from the previous file."""
    alerts_file, findings_file = alerts_part(lake, bucket), findings_part(lake, bucket)
    carry_over = findings_file.exists()
    with lake.lock("ocsf/detection_finding"), lake.atomic_path(findings_file) as tmp:
        fresh = tmp.with_name(tmp.name + ".new") if carry_over else tmp
        try:
            with con.sql(f"SELECT {', '.join(OCSF_ALERT_COLUMNS)} FROM {rows}").to_arrow_reader(batch_rows) as reader:
                write_ocsf(fresh, reader, ocsf.DETECTION_FINDING_SCHEMA, detection_findings)
            if carry_over:  # the findings of the part's other alerts, by finding_info.uid (the alert id)
                options = parquet_copy_options(ALERTS_ROW_GROUP_ROWS, ocsf_version=ocsf.OCSF_VERSION)
                con.execute(
                    f"COPY (SELECT * FROM read_parquet({sql_literal(str(fresh))}) UNION ALL BY NAME "
                    f"SELECT o.* FROM read_parquet({sql_literal(str(findings_file))}) o "
                    f"SEMI JOIN read_parquet({sql_literal(str(alerts_file))}) a ON o.finding_info.uid = a.alert_id "
                    f"ANTI JOIN (SELECT alert_id FROM new_alerts WHERE part = {bucket}) n "
                    f"ON o.finding_info.uid = n.alert_id) TO {sql_literal(str(tmp))} {options}")
        finally:
            if carry_over:
                fresh.unlink(missing_ok=True)


# alerts names the parsed row's alert_uid / portal_url for what they are
_ALERTS_RENAMED = {"alert_uid": "alert_id", "portal_url": "incident_report_url"}
# The alerts columns the OCSF findings need (Python rows of only these: to_pylist is half the cost).
OCSF_ALERT_COLUMNS = [_ALERTS_RENAMED.get(c, c) for c in ocsf.DETECTION_FINDING_INPUTS]


def detection_findings(batch: pa.RecordBatch) -> pa.Table:
    return ocsf_findings.detection_findings(batch.rename_columns(list(ocsf.DETECTION_FINDING_INPUTS)))
