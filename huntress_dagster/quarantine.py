"""Poison records: API objects that cannot be keyed or normalized, kept verbatim instead of stopping
collection (plain Python: no Dagster).

A walk hands each such object to a `QuarantineWriter`, which appends it with the reason, the endpoint
and its id (as text: the id itself may be the problem) to one Parquet file per run under
`_quarantine/stream=<stream>/`; the catalog's `_quarantine` view reads them all. Nothing is removed
automatically: an operator inspects the rows, then deletes the file(s) to acknowledge them. A record the
quarantine already holds (the same text: the API served it again) is not added twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .collect import to_json_text
from .lake import UTC_US, Lake, parquet_writer

log = logging.getLogger(__name__)

QUARANTINE_SCHEMA = pa.schema([
    ("tenantid", pa.string()),
    ("stream", pa.string()),
    ("endpoint", pa.string()),
    ("record_id", pa.string()),  # the id as the API sent it, as JSON text ("77", null, ...)
    ("reason", pa.string()),
    ("collected_at", UTC_US),
    ("raw_json", pa.large_string()),
])


def _record_id(obj: Any) -> str | None:
    return to_json_text(obj.get("id")) if isinstance(obj, dict) and "id" in obj else None


class QuarantineWriter:
    """Collects one run's poison records of one stream and writes them as one file at `close()`."""

    def __init__(self, lake: Lake, stream: str, tenantid: str, collected_at: datetime | None = None,
                 max_rows_held: int = 500):
        self.lake, self.stream, self.tenantid = lake, stream, tenantid
        self.collected_at = collected_at or datetime.now(timezone.utc)
        self.max_rows_held = max_rows_held
        self.count = 0
        self.named: list[str] = []  # "id 77 (reason)" of the first few, for logs and metadata
        self._rows: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._tmp: Path | None = None
        self._held: set[str] | None = None  # fingerprints of what the quarantine holds, read on first need

    def __call__(self, obj: Any, reason: str, endpoint: str) -> None:
        """Quarantine an API object (decoded JSON)."""
        self._add(_record_id(obj), reason, endpoint, to_json_text(obj))

    def add_text(self, raw_json: str, reason: str, endpoint: str) -> None:
        """Quarantine a stored raw JSON text that could not be normalized."""
        try:
            record_id = _record_id(json.loads(raw_json))
        except ValueError:
            record_id = None
        self._add(record_id, reason, endpoint, raw_json)

    def _already_held(self, raw_json: str) -> bool:
        if self._held is None:
            files = [str(p) for p in self.lake.quarantine_files(self.stream)]
            self._held = set()
            if files:
                with self.lake.connect() as con:
                    self._held = {r[0] for r in con.execute("SELECT DISTINCT sha256(raw_json) FROM read_parquet(?)",
                                                            [files]).fetchall()}
        fingerprint = hashlib.sha256(raw_json.encode("utf-8", "surrogatepass")).hexdigest()
        if fingerprint in self._held:
            return True
        self._held.add(fingerprint)
        return False

    def _add(self, record_id: str | None, reason: str, endpoint: str, raw_json: str) -> None:
        if self._already_held(raw_json):
            log.info("%s: record %s is already in the quarantine", endpoint, record_id or "without id")
            return
        log.warning("%s: record %s quarantined (%s)", endpoint, record_id or "without id", reason)
        self._rows.append({"tenantid": self.tenantid, "stream": self.stream, "endpoint": endpoint,
                           "record_id": record_id, "reason": reason, "collected_at": self.collected_at,
                           "raw_json": raw_json})
        self.count += 1
        if len(self.named) < 10:
            self.named.append(f"{endpoint} id {record_id or '(none)'}: {reason}")
        if len(self._rows) >= self.max_rows_held:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        if self._writer is None:
            self._path = self.lake.quarantine_path(self.stream, self.collected_at, uuid.uuid4().hex[:8])
            self._tmp = self.lake.tmp_path(self._path)
            self._writer = parquet_writer(self._tmp, QUARANTINE_SCHEMA)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=QUARANTINE_SCHEMA))
        self._rows = []

    def close(self) -> Path | None:
        """Write what was collected (nothing when nothing was); returns the file written."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self.lake.publish(self._tmp, self._path)
            self._writer = None
        return self._path

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # poison records are kept even when the walk failed afterwards
