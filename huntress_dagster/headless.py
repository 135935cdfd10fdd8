"""`huntress-dagster run`: every stream and everything downstream for a range of days, through Dagster, on the
configured instance (DAGSTER_HOME), so the run shows in the UI; a summary, and a non-zero exit on failure."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg

from . import catalog
from .automation import ALL_JOB, range_tags
from .lake import Lake
from .raw_partitions import catch_up_start
from .streams import WALK_STREAMS


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def incremental_window(lake: Lake, today: date | None = None) -> tuple[date, date]:
    """What the collect schedule collects: yesterday (or an earlier day left incomplete) to today, each day
    walked only back to its watermark."""
    today = today or utc_today()
    return catch_up_start(lake, WALK_STREAMS, today), today


def run_range(defs: dg.Definitions, instance: dg.DagsterInstance, start: date, end: date,
              tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    """One run of every asset over [start, end] (single-run backfill semantics: one walk per stream and
    account); `tags` may narrow it to some connections / accounts (huntress/connection, huntress/account)."""
    return defs.resolve_job_def(ALL_JOB).execute_in_process(tags={**range_tags(start, end), **(tags or {})},
                                                           instance=instance, raise_on_error=False)


def run_summary(result: dg.ExecuteInProcessResult) -> str:
    """Per step: materialized or failed, with the figures a person checks first; then the asset checks."""
    lines = [f"Run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}"]
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        figures = ", ".join(f"{k}={metadata[k]}" for k in (
            "records_walked", "versions_in_window", "new", "updated", "api_requests", "records_quarantined",
            "rows", "alerts", "build") if k in metadata)
        lines.append(f"  materialized {materialization.asset_key.to_user_string():28s} {figures}")
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the user's exception, not Dagster's wrapper
                error = error.cause
            message = (error.message if error else "failed").strip().splitlines()[0][:400]
            lines.append(f"  FAILED       {event.step_key:28s} {message}")
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            lines.append(f"  check failed {check.check_name:28s} {check.description or ''}"[:300])
    return "\n".join(lines)


def lake_summary(lake: Lake) -> str:
    lines = [f"Lake {lake.root}:"]
    with lake.connect() as con:
        tables = catalog.register_views(lake, con)
        for table in tables:
            lines.append(f"  {table:28s} {con.execute(f'SELECT count(*) FROM {table}').fetchone()[0]:>9,d} rows")
        if "alerts" in tables:
            rows = con.execute("SELECT msg_class, status, count(*) FROM alerts GROUP BY ALL ORDER BY 1, 3 DESC"
                               ).fetchall()
            lines.append("  alerts by class/status: " + ", ".join(f"{c.removeprefix('huntress_')}/{s}={n}"
                                                                  for c, s, n in rows))
    return "\n".join(lines)
