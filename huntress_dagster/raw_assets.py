"""The raw assets, one per stream, generated from its declaration (streams.py). Thin: collection and lake
I/O live in the plain modules (collect.py, raw_partitions.py)."""


import dataclasses
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
from pydantic import Field

from . import catalog
from .account_runs import AccountsOfRun, health_check, health_check_spec, run_tenant, tag_run_process
from .client import HuntressClient
from .collect import WalkStats, fetch_objects, snapshot_stream, walk_stream
from .connections import (
    Account,
    Connection,
)
from .errors import HuntressError, HuntressPaginationError
from .inbox import INBOX_TAG, DeliveryStats, Inbox, InboxEvent
from .lake import Lake, day_start, sql_literal
from .quarantine import QuarantineWriter
from .raw_partitions import CommitStats, walk_scope
from .resources import HuntressLakeResource, HuntressResource
from .streams import Stream
from .table_metadata import preview_table, table_metadata

GROUP = "huntress"
PROGRESS_EVERY_SECONDS = 10.0
ACCOUNT_CACHE_MAX_AGE = timedelta(hours=24)


class WalkConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Walk every day of the selected partitions in full, instead of only what changed since "
                    "each day's committed watermark")


def running_row_count(context: dg.AssetExecutionContext, store: Lake, table: str, added: int) -> int:
    """The rows of an append-only table: the last materialization's count plus what this run added (no
    count over every snapshot file ever written); counted once when there is no earlier figure."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(table))
    previous = event.asset_materialization.metadata.get("dagster/row_count") if event and \
        event.asset_materialization else None
    if previous is not None:
        return int(previous.value) + added
    counted = catalog.preview(store, f"SELECT count(*) AS n FROM {table}", 1)
    return counted[0]["n"] if counted else added


def log_progress(context: dg.AssetExecutionContext, rows: Iterable[dict], stats: WalkStats,
                 client: HuntressClient, what: str) -> Iterator[dict]:
    """Pass rows through, logging progress of long walks every few seconds."""
    last = time.monotonic()
    for row in rows:
        yield row
        if time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
            last = time.monotonic()
            context.log.info(
                f"{what}: {stats.records_walked} records walked in {stats.pages} pages "
                f"({stats.records_in_window} kept), at updated_at {stats.oldest_seen}; "
                f"{client.stats.requests} API requests, {client.stats.rate_limit_wait_seconds:.1f}s waiting for the rate budget")


def prepare_lake(context: dg.AssetExecutionContext, lake: HuntressLakeResource) -> tuple[Lake, dict[str, int]]:
    """The lake, checked writable before any API request, with dead runs' leftovers removed; the run's process
    recorded on the run (the run health sensor tells a killed run by it)."""
    tag_run_process(context)
    store = lake.lake_for_step()
    store.check_writable()
    leftovers = store.clean_leftovers()
    if leftovers["staging_dirs"] or leftovers["tmp_files"]:
        context.log.warning(f"Removed leftovers of dead runs: {leftovers}")
    return store, leftovers


def health_metadata(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers the UI plots over time: the worst lag, records collected, 429s and the rate budget's waits."""
    lags = [r["lag_seconds"] for r in rows if r["lag_seconds"] is not None]
    return {"lag_seconds": float(max(lags)) if lags else 0.0,
            "records_collected": sum(r["records_collected"] for r in rows),
            "accounts_failing": sum(r["status"] == "failing" for r in rows),
            "accounts_degraded": sum(r["status"] == "degraded" for r in rows)}


def walk_failure(stream: Stream, stats: WalkStats, proven: set[date], days: list[date]) -> dg.Failure:
    """The run's failure after a walk the API broke: what was walked is committed, completeness is not."""
    unproven = sorted(d.isoformat() for d in set(days) - proven)
    return dg.Failure(
        description=f"The {stream.label} walk could not prove it saw everything: " + "; ".join(stats.anomalies)
                    + f". {stats.records_in_window} versions walked were committed; days left to re-read by the "
                    f"next run: {', '.join(unproven) or 'none'}.",
        metadata={"anomalies": "\n".join(stats.anomalies), "days_not_proven": ", ".join(unproven),
                  "versions_committed": stats.records_in_window, "pages": stats.pages})


def raw_day_rows(store: Lake, stream: Stream, accounts: list[str], days: list[date]) -> dict[date, int]:
    """Rows (versions) each day's raw partition holds now, over the accounts (one footer read a file)."""
    rows = {}
    for day in days:
        paths = [store.walked(stream, account).day_path(day) for account in accounts]
        try:
            rows[day] = sum(store.num_rows(path) for path in paths if path.exists())
        except Exception:  # noqa: BLE001 - another run replaced a file as it was read: metadata only, no count
            continue
    return rows


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: dict[str, dict[str, Any]]) -> None:
    """Metadata that describes one partition each (its row count...), on that partition's materialization."""
    for partition_key, metadata in by_partition.items():
        context.add_asset_metadata(metadata, partition_key=partition_key)


def run_result(context: dg.AssetExecutionContext, metadata: dict[str, Any]) -> dg.MaterializeResult:
    """A partitioned run's own figures, on its newest partition only (MaterializeResult metadata would be
    copied onto every partition of the run)."""
    context.add_asset_metadata(metadata, partition_key=context.partition_keys[-1])
    return dg.MaterializeResult()


def quarantine_metadata(quarantine: QuarantineWriter) -> dict[str, Any]:
    return {"records_quarantined": quarantine.count,
            "quarantined": "\n".join(quarantine.named) if quarantine.named else "none"}


@dataclasses.dataclass
class AccountWalk:
    account: Account
    stats: WalkStats
    commit: CommitStats
    proven: set[date]
    lower: datetime | None
    recollected: list[str] = dataclasses.field(default_factory=list)  # days completed late (after an outage)


def walk_account(context: dg.AssetExecutionContext, stream: Stream, config: WalkConfig, huntress: HuntressResource,
                 lake: HuntressLakeResource, store: Lake, client: HuntressClient, connection: Connection,
                 account: Account, days: list[date], upper: datetime, walk_started: datetime,
                 quarantine: QuarantineWriter) -> AccountWalk:
    """One walk of one account's stream over `days`, committed; completeness only for the days it proved."""
    organization_ids = [] if account.customer else list(connection.organization_ids)  # the key's own account's
    scope = walk_scope(connection.host_url, account.tenantid, organization_ids)
    partitions = store.walked(stream, str(account.account_id), scope)
    overlap = timedelta(seconds=lake.overlap_seconds)
    # From when each day must be read (None: complete through its end); the walk covers the earliest.
    needs = {d: day_start(d) if config.full_refresh else partitions.need(d, overlap) for d in days}
    lower = min(filter(None, needs.values()), default=None)
    stats = WalkStats()
    if lower is None:
        context.log.info(f"Account {account.account_id}: every selected day is complete through its end")
        return AccountWalk(account, stats, CommitStats(), set(days), None)
    context.log.info(f"Walking {stream.label} of account {account.account_id} ({account.tenantid}) updated in "
                     f"[{lower.isoformat()}, {upper.isoformat()}) for {len(days)} day partition(s) "
                     f"({huntress.describe(connection)})")
    known = partitions.stored_remediations(days) if stream.completes_remediations else {}
    rows = walk_stream(client, stream, tenantid=account.tenantid, lower_bound=lower, upper_bound=upper,
                       organization_ids=organization_ids, known_complete=lambda i, u: known.get((i, u)),
                       collected_at=walk_started, stats=stats, on_poison=quarantine, path_prefix=account.path_prefix)
    with store.staging() as stage_dir:
        staged = partitions.stage(log_progress(context, rows, stats, client, stream.raw_table), stage_dir,
                                  complete_as_of=walk_started)
        # A day is complete as of this walk only if the walk proved everything it needed.
        floor = stats.proven_down_to
        proven = {d for d in days if needs[d] is None or (floor is not None and floor <= needs[d]
                                                           and d.isoformat() not in stats.poisoned_days)}
        commit = partitions.commit(days, staged, walk_started, proven, created_since=stats.created_since())
    # days before the range's last that were not complete before this walk and are now: read again after an
    # outage (the health history's missing-data accounting)
    recollected = sorted(d.isoformat() for d in proven if d < days[-1] and needs[d] is not None)
    return AccountWalk(account, stats, commit, proven, lower, recollected)


def pushed_events(store: Lake, context: dg.AssetExecutionContext, stream: Stream) -> list[InboxEvent] | None:
    """The webhook events of this stream a run of the inbox sensor is to commit; None for any other run."""
    batch = context.run.tags.get(INBOX_TAG)
    if not batch:
        return None
    return [e for e in Inbox(store).batch(batch) if e.stream is stream and e.object_id is not None]


def commit_pushed(store: Lake, stream: Stream, client: HuntressClient, connection: Connection, account: Account,
                  events: list[InboxEvent], started: datetime) -> AccountWalk:
    """The objects webhooks announced, fetched by id (one request each, no list walk) and committed into the
    days of their updated_at. Watermarks do not move: only a walk proves a day complete, so the polling path
    stays the safety net, and a version fetched both ways is one version (commits key by id, updated_at)."""
    mine = [e.object_id for e in events if e.account_id in (None, account.account_id)]
    scope = walk_scope(connection.host_url, account.tenantid,
                       [] if account.customer else list(connection.organization_ids))
    partitions, stats = store.walked(stream, str(account.account_id), scope), WalkStats()
    rows = fetch_objects(client, stream, mine, tenantid=account.tenantid, collected_at=started, stats=stats,
                         path_prefix=account.path_prefix)
    with store.staging() as stage_dir:
        staged = partitions.stage(rows, stage_dir)
        commit = partitions.commit(set(staged), staged, started, proven_days=set())
    return AccountWalk(account, stats, commit, set(), None)


def walked_raw_asset(stream: Stream, partitions_def: dg.PartitionsDefinition, banner: str) -> dg.AssetsDefinition:
    """raw_<stream> for a walked stream: daily partitions of updated_at, one walk per run."""

    @dg.asset(
        name=stream.raw_table, group_name=GROUP, partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(), kinds={"python", "parquet"},
        tags={"huntress/layer": "raw", "huntress/stream": stream.name}, check_specs=[health_check_spec(stream)],
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=stream.fresh_within * 4,
                                                        warn_window=stream.fresh_within),
        description=banner + stream.description + f" Verbatim JSON plus key columns, one partition per day of "
                    f"updated_at (UTC). A run over a range of days makes ONE walk of {stream.path} (updated_at "
                    "desc, 500 per page) and commits each day atomically; an object updated several times keeps "
                    "every version. Incremental: walks only back to each day's committed watermark minus an "
                    "overlap, and a day is marked complete only when the walk proved it.",
    )
    def raw_walked(context: dg.AssetExecutionContext, config: WalkConfig, huntress: HuntressResource,
                   lake: HuntressLakeResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        store, leftovers = prepare_lake(context, lake)
        window = context.partition_time_window
        days = [date.fromisoformat(key) for key in context.partition_keys]
        walk_started = datetime.now(timezone.utc)
        walks = []
        run = AccountsOfRun(context, huntress, store, stream)
        pushed = pushed_events(store, context, stream)  # a run of the inbox sensor: the announced objects only
        with QuarantineWriter(store, stream.name, run_tenant(run), walk_started) as quarantine:
            for connection, client, account in run:
                if pushed is not None and account.customer:
                    continue  # webhooks come for a key's own account
                try:  # one account's failure (401, 403, a 5xx storm) never stops the others
                    walk = walk_account(context, stream, config, huntress, lake, store, client, connection,
                                        account, days, window.end, walk_started, quarantine) if pushed is None \
                        else commit_pushed(store, stream, client, connection, account, pushed, walk_started)
                    walks.append(walk)
                    if walk.stats.anomalies:
                        run.failed(connection, account, HuntressPaginationError("; ".join(walk.stats.anomalies)))
                    else:
                        run.succeeded(connection, account, walk.stats.records_in_window, walk.recollected)
                except HuntressError as exc:
                    run.failed(connection, account, exc)
        api = run.api
        health = run.record_health()
        catalog.refresh_catalog(store)
        yield health_check(stream, health)
        for walk in walks:
            if walk.stats.anomalies:
                raise walk_failure(stream, walk.stats, walk.proven, days)
        if run.failures:
            raise run.failure(len(walks), "committed_accounts")
        stats, commit = WalkStats(), CommitStats()
        for walk in walks:
            for name in ("records_walked", "records_in_window", "pages", "duplicates_skipped",
                         "remediation_completions"):
                setattr(stats, name, getattr(stats, name) + getattr(walk.stats, name))
            for name in ("new", "updated", "unchanged", "rows_written"):
                setattr(commit, name, getattr(commit, name) + getattr(walk.commit, name))
        lowers = [w.lower for w in walks if w.lower]
        context.log.info(f"Committed {len(days)} day(s) of {stream.label} for {len(walks)} account(s): "
                         f"{stats.records_in_window} versions walked ({commit.new} new, {commit.updated} updated, "
                         f"{commit.unchanged} unchanged) with {api['api_requests']} API requests")
        # try(): raw JSON keeps a lone surrogate escape (\ud800) as the API sent it, which DuckDB's JSON
        # functions reject; parsed_syslog holds such strings replaced.
        newest = catalog.preview(store, f"""
            SELECT account, id, updated_at, try(json_extract_string(raw_json, '$.status')) AS status, organization_id
            FROM {stream.raw_table} WHERE day BETWEEN '{days[0]}' AND '{days[-1]}' ORDER BY updated_at DESC""") \
            if walks else []  # e.g. a run narrowed to customer accounts, which this stream does not reach
        day_rows = raw_day_rows(store, stream, [str(w.account.account_id) for w in walks], days)
        add_partition_metadata(context, {day.isoformat(): {"dagster/row_count": n} for day, n in day_rows.items()})
        # The run's own figures (health, API use, the walk) describe the collection, not a day: they go on the
        # run's newest day only, so per-day plots are not the run's totals repeated on every day.
        yield run_result(context, {
            **health_metadata(health),
            "walk_lower_bound": min(lowers).isoformat() if lowers else "none (complete)",
            "walk_upper_bound": window.end.isoformat(), "accounts": len(walks),
            "records_walked": stats.records_walked, "versions_in_window": stats.records_in_window,
            "new": commit.new, "updated": commit.updated, "unchanged": commit.unchanged,
            "rows_in_partitions": commit.rows_written, "pages": stats.pages,
            "page_boundary_duplicates_skipped": stats.duplicates_skipped,
            "remediation_lists_completed": stats.remediation_completions, **quarantine_metadata(quarantine),
            "leftovers_removed_bytes": leftovers["bytes"],
            "demo_mode": huntress.demo_mode, **api,
            **({"pushed_objects": len(pushed), **{f"webhook_{k}": v for k, v in DeliveryStats(store).read().items()}}
               if pushed is not None else {}),
            "preview": preview_table(newest, ["account", "id", "updated_at", "status", "organization_id"]),
            **table_metadata(store, stream.raw_table, None),
        })

    return raw_walked


def snapshot_raw_asset(stream: Stream, banner: str) -> dg.AssetsDefinition:
    """raw_<stream> for a snapshot stream: one file per snapshot, history kept."""

    @dg.asset(
        name=stream.raw_table, group_name=GROUP, kinds={"python", "parquet"},
        tags={"huntress/layer": "raw", "huntress/stream": stream.name}, check_specs=[health_check_spec(stream)],
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=stream.fresh_within),
        description=banner + stream.description + f" Verbatim JSON plus key columns. A snapshot costs "
                    f"ceil({stream.label} / 500) API requests of {stream.path}.",
    )
    def raw_snapshot(context: dg.AssetExecutionContext, huntress: HuntressResource,
                     lake: HuntressLakeResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        store, leftovers = prepare_lake(context, lake)
        collected_at = datetime.now(timezone.utc)
        stats = WalkStats()
        written = []
        run = AccountsOfRun(context, huntress, store, stream)
        with QuarantineWriter(store, stream.name, run_tenant(run), collected_at) as quarantine:
            for connection, client, account in run:
                snapshots = store.snapshots(stream, str(account.account_id))
                try:  # one account's failure never stops the others
                    rows = snapshot_stream(client, stream, tenantid=account.tenantid,
                                           organization_ids=[] if account.customer else list(connection.organization_ids),
                                           collected_at=collected_at, stats=stats, on_poison=quarantine,
                                           path_prefix=account.path_prefix)
                    written.append((snapshots, *snapshots.write(
                        log_progress(context, rows, stats, client, stream.raw_table), collected_at)))
                    run.succeeded(connection, account, written[-1][2])
                except HuntressError as exc:
                    run.failed(connection, account, exc)
        api = run.api
        health = run.record_health()
        catalog.refresh_catalog(store)
        yield health_check(stream, health)
        if run.failures:
            raise run.failure(len(written), "snapshots_written")
        changes: dict[str, int] = {"new": 0, "updated": 0, "unchanged": 0, "removed": 0}
        for snapshots, path, _ in written:
            for name, value in snapshots.compare(path).items():
                changes[name] += value
        count = sum(n for _, _, n in written)
        context.log.info(f"Snapshot of {count} {stream.label} of {len(written)} account(s) with "
                         f"{api['api_requests']} requests; versus the previous snapshots: {changes}")
        files = ", ".join(sql_literal(str(path)) for _, path, _ in written)
        newest = catalog.preview(store, f"""
            SELECT id, organization_id, updated_at FROM read_parquet([{files}])
            ORDER BY updated_at DESC NULLS LAST""") if written else []
        yield dg.MaterializeResult(metadata={
            **health_metadata(health), stream.name: count, **changes, "accounts": len(written), "pages": stats.pages,
            "snapshots": ", ".join(str(path.relative_to(store.root)) for _, path, _ in written),
            "demo_mode": huntress.demo_mode, **api,
            **quarantine_metadata(quarantine), "leftovers_removed_bytes": leftovers["bytes"],
            "preview": preview_table(newest, ["id", "organization_id", "updated_at"]),
            **table_metadata(store, stream.raw_table, running_row_count(context, store, stream.raw_table, count)),
        })

    return raw_snapshot
