"""Connector health (plain Python: no Dagster).

`connector_health` is an append-only table of the lake: one row per (connection, account, stream) each time a
run collects (or fails to collect) that stream, and one per failed run that recorded nothing itself (a crash,
a kill). Its history answers "when did collection of this customer break, what did it say, and which days
were read again afterwards"; the `connector_status` view is the latest row per (connection, account, stream).

Status: `failing` when the stream could not be collected (the error's class, HTTP status and the guidance of
the reference connector's troubleshooting table are in the row); `degraded` when it was collected but is late
(lag past the stream's freshness window) or was throttled (429s); `ok` otherwise. Lag is now minus the last
success: a walked stream's committed watermark (the start of the last walk that proved its newest day), a
snapshot stream's newest snapshot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from . import catalog, layout
from .errors import HuntressError
from .lake import UTC_US, Lake
from .streams import STREAMS, Stream

OK, DEGRADED, FAILING = "ok", "degraded", "failing"
HEALTH_SCHEMA = pa.schema([
    ("evaluated_at", UTC_US), ("connection", pa.string()), ("account_id", pa.int64()), ("tenantid", pa.string()),
    ("stream", pa.string()), ("status", pa.string()), ("last_success_at", UTC_US), ("lag_seconds", pa.float64()),
    ("http_status", pa.int32()), ("error_class", pa.string()), ("guidance", pa.string()), ("error", pa.string()),
    ("records_collected", pa.int64()), ("api_requests", pa.int64()), ("api_429_responses", pa.int64()),
    ("rate_limit_wait_seconds", pa.float64()), ("days_recollected", pa.list_(pa.string())),
    ("run_id", pa.string()), ("source", pa.string()),
])
RUN_FAILURE_GUIDANCE = (
    "The run failed outside the Huntress API (a crash, a kill, running out of memory, a lost machine). Open the "
    "run's logs in the Dagster UI; nothing it did not commit is lost: the next scheduled run reads it again")
ERROR_TEXT_MAX = 500


def classify(error: BaseException | str | None) -> tuple[str | None, int | None, str | None]:
    """(error class, HTTP status, guidance) of what stopped a collection."""
    if error is None:
        return None, None, None
    if isinstance(error, HuntressError):
        return type(error).__name__, error.status_code, error.guidance or None
    if isinstance(error, BaseException):
        return type(error).__name__, None, RUN_FAILURE_GUIDANCE
    return "RunFailure", None, RUN_FAILURE_GUIDANCE


@dataclass
class Evaluation:
    """What one run saw of one (connection, account, stream)."""

    connection: str
    account_id: int | None
    tenantid: str | None
    stream: Stream
    error: BaseException | str | None = None
    last_success_at: datetime | None = None
    records_collected: int = 0
    api: dict[str, float] = field(default_factory=dict)
    days_recollected: list[str] = field(default_factory=list)
    run_id: str | None = None
    source: str = "run"
    error_class: str | None = None  # when `error` is a failed run's message: the class of what failed it

    def row(self, now: datetime) -> dict[str, Any]:
        error_class, http_status, guidance = classify(self.error)
        error_class = self.error_class or error_class
        lag = (now - self.last_success_at).total_seconds() if self.last_success_at else None
        throttled = int(self.api.get("api_429_responses", 0))
        late = lag is None or lag > self.stream.fresh_within.total_seconds()
        status = FAILING if self.error is not None else DEGRADED if late or throttled else OK
        if status == DEGRADED and guidance is None:
            guidance = (f"Collected, but {'throttled by the API (429)' if throttled else 'late'}: lag "
                        f"{lag or 0:.0f} s against a freshness window of "
                        f"{self.stream.fresh_within.total_seconds():.0f} s. Check that the schedules run and "
                        "that other tools do not spend this key's rate budget")
        text = None if self.error is None else str(self.error)[:ERROR_TEXT_MAX]
        return {"evaluated_at": now, "connection": self.connection, "account_id": self.account_id,
                "tenantid": self.tenantid, "stream": self.stream.name, "status": status,
                "last_success_at": self.last_success_at, "lag_seconds": lag, "http_status": http_status,
                "error_class": error_class, "guidance": guidance, "error": text,
                "records_collected": self.records_collected, "api_requests": int(self.api.get("api_requests", 0)),
                "api_429_responses": throttled,
                "rate_limit_wait_seconds": float(self.api.get("rate_limit_wait_seconds", 0.0)),
                "days_recollected": self.days_recollected, "run_id": self.run_id, "source": self.source}


def last_success(lake: Lake, stream: Stream, account: str) -> datetime | None:
    """When the stream of the account was last collected completely: the watermark of its newest committed
    day (walked), or its newest snapshot."""
    if not stream.is_walk:
        return lake.snapshots(stream, account).newest_time()
    partitions = lake.walked(stream, account)
    days = partitions.committed_days()
    return partitions.complete_as_of(days[-1]) if days else None


def write_health(lake: Lake, rows: list[dict[str, Any]], now: datetime | None = None) -> Any:
    """Append rows to connector_health (one file per evaluation: immutable, nothing rewritten)."""
    if not rows:
        return None
    now = now or datetime.now(timezone.utc)
    final = lake.root / layout.health_file(now, uuid.uuid4().hex[:8])
    lake.write_table(final, pa.Table.from_pylist(rows, schema=HEALTH_SCHEMA))
    return final


def runs_recorded(lake: Lake, run_id: str) -> bool:
    """Whether a run already wrote its own health rows (then a run-failure record would only repeat them)."""
    files = lake.files("connector_health")
    if not files:
        return False
    with lake.connect() as con:
        catalog.register_views(lake, con, ["connector_health"])
        return con.execute("SELECT count(*) > 0 FROM connector_health WHERE run_id = ?", [run_id]).fetchone()[0]


def current_status(lake: Lake) -> list[dict[str, Any]]:
    """The connector_status view: the latest row per (connection, account, stream)."""
    if not lake.files("connector_health"):
        return []
    with lake.connect() as con:
        catalog.register_views(lake, con, ["connector_health"])
        return con.sql(f"{layout.CONNECTOR_STATUS_SQL} ORDER BY connection, account_id, stream"
                       ).to_arrow_table().to_pylist()


def probe_streams(client: Any, account: Any) -> dict[str, str | None]:
    """What the key can and cannot read of an account: one request of one record per content type it serves;
    None when readable, else the error class, HTTP status and guidance."""
    readable: dict[str, str | None] = {}
    for stream in STREAMS:
        if not account.serves(stream):
            continue
        try:
            next(client.iter_pages(account.path_prefix + stream.path, stream.name, {"limit": 1}), None)
            readable[stream.name] = None
        except HuntressError as exc:
            error_class, status, guidance = classify(exc)
            readable[stream.name] = f"{error_class}{f' HTTP {status}' if status else ''}: {guidance or exc}"
    return readable
