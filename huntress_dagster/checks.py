"""Asset checks: the promises the lake makes (unique alerts, no gaps, fresh data, nothing quarantined),
generated per stream from its declaration."""


from datetime import date, datetime, timedelta, timezone

import dagster as dg

from . import catalog, layout
from .alerts import TABLE_KEY_COLUMNS
from .lake import Lake
from .resources import HuntressLakeResource
from .streams import PLATFORM_ACTIONS, STREAMS, Stream


def duplicate_alert_keys(lake: Lake) -> int:
    """Alert keys (tenantid, msg_class, huntress_id, organization_id, account_id) that occur more than once."""
    files = lake.files("alerts")
    if not files:
        return 0
    # No union_by_name (it holds every part's footer through the query: +223 MiB at 1M): DuckDB reads the
    # key columns by name from each part, which every alerts format has had (a test mixes two formats).
    with lake.connect() as con:
        return con.execute(
            f"SELECT count(*) FROM (SELECT {', '.join(TABLE_KEY_COLUMNS)} FROM read_parquet(?) "
            "GROUP BY ALL HAVING count(*) > 1)", [[str(path) for path in files]]).fetchall()[0][0]


def missing_days(lake: Lake, stream: Stream, today: date | None = None) -> tuple[list[date], list[str]]:
    """Committed days of a walked stream, and the days between its first committed day and today that have no
    partition (in any account: `account:day`)."""
    committed_by_account = {account: lake.walked(stream, account).committed_days() for account in lake.accounts(stream)}
    missing: list[str] = []
    for account, committed in committed_by_account.items():
        missing += [f"{account}:{day}" for day in _gaps(committed, today)]
    return sorted({d for days in committed_by_account.values() for d in days}), missing


def _gaps(committed: list[date], today: date | None) -> list[str]:
    if not committed:
        return []
    last = max(committed[-1], today or datetime.now(timezone.utc).date())
    have = set(committed)
    return [(committed[0] + timedelta(days=n)).isoformat() for n in range((last - committed[0]).days + 1)
            if committed[0] + timedelta(days=n) not in have]


def quarantined_records(lake: Lake, stream: str, limit: int = 10) -> tuple[int, list[str]]:
    """How many records of `stream` sit in the quarantine, and the first few named with their reason."""
    files = [str(p) for p in lake.quarantine_files(stream)]
    if not files:
        return 0, []
    with lake.connect() as con:
        total = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchall()[0][0]
        named = con.execute(
            "SELECT endpoint || ' id ' || coalesce(record_id, '(none)') || ': ' || reason || ' (collected ' || "
            "strftime(collected_at, '%Y-%m-%d %H:%M:%S') || ')' FROM read_parquet(?) ORDER BY collected_at DESC "
            "LIMIT ?", [files, limit]).fetchall()
    return total, [row[0] for row in named]


def quarantine_check(stream: Stream) -> dg.AssetChecksDefinition:
    asset = stream.raw_table

    @dg.asset_check(asset=asset, name=f"{asset}_nothing_quarantined",
                    description=f"No {stream.label} record sits in the quarantine. A record that cannot be keyed "
                                "or normalized is kept verbatim in the _quarantine table with its reason while the "
                                "rest is committed; inspect it, then delete its file under "
                                f"{layout.quarantine_dir(stream.name)}/ to acknowledge it.")
    def check(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        total, named = quarantined_records(lake.get_lake(), stream.name)
        return dg.AssetCheckResult(
            passed=total == 0, severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{total} {stream.label} record(s) quarantined: " + "; ".join(named)) if total else None,
            metadata={"records_quarantined": total, "records": dg.MetadataValue.md(
                "\n".join(f"- {line}" for line in named) or "_none_")})
    return check


def missing_partition_check(stream: Stream) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=stream.raw_table, name=f"{stream.raw_table}_no_missing_partition",
                    description="Every day from the first collected day to today has a committed partition.")
    def check(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        committed, missing = missing_days(lake.get_lake(), stream)
        return dg.AssetCheckResult(
            passed=not missing, severity=dg.AssetCheckSeverity.WARN,
            metadata={"committed_days": len(committed), "missing_days": len(missing),
                      "first_missing": missing[:10], "first_day": committed[0].isoformat() if committed else None})
    return check


def days_complete_check(stream: Stream) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=stream.raw_table, name=f"{stream.raw_table}_days_complete",
                    description="Every committed day before today is complete through its end: a day a walk left "
                                "incomplete (an outage, a broken API) is read again by the next scheduled run.")
    def check(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        store, today = lake.get_lake(), datetime.now(timezone.utc).date()
        incomplete = sorted(day for account in store.accounts(stream)
                            for day in store.walked(stream, account).incomplete_days(today))
        return dg.AssetCheckResult(
            passed=not incomplete, severity=dg.AssetCheckSeverity.WARN,
            description=f"{len(incomplete)} day(s) left incomplete: "
                        + ", ".join(d.isoformat() for d in incomplete[:10]) if incomplete else None,
            metadata={"incomplete_days": len(incomplete), "first_incomplete": [d.isoformat() for d in incomplete[:10]]})
    return check


def freshness_check(stream: Stream) -> dg.AssetChecksDefinition:
    what = "collection is complete as of" if stream.is_walk else "the newest snapshot is"

    @dg.asset_check(asset=stream.raw_table, name=f"{stream.raw_table}_fresh",
                    description=f"{stream.label.capitalize()}: {what} less than {stream.fresh_within} ago.")
    def check(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        store = lake.get_lake()
        newest_by_account = []  # each account's newest; the stalest account decides
        for account in store.accounts(stream):
            if stream.is_walk:
                partitions = store.walked(stream, account)
                newest_by_account.append(max(filter(None, (partitions.complete_as_of(d)
                                                           for d in partitions.committed_days()[-2:])), default=None))
            else:
                newest_by_account.append(store.snapshots(stream, account).newest_time())
        newest = None if None in newest_by_account else min(newest_by_account, default=None)
        age = datetime.now(timezone.utc) - newest if newest else None
        return dg.AssetCheckResult(
            passed=age is not None and age <= stream.fresh_within, severity=dg.AssetCheckSeverity.WARN,
            metadata={"newest": newest.isoformat() if newest else None,
                      "age_minutes": round(age.total_seconds() / 60, 1) if age else None})
    return check


def open_platform_actions(lake: Lake) -> list[str]:
    """The platform actions Huntress reports as not resolved (e.g. a log source down, Microsoft Defender
    disabled): each one's latest version, as "tenant, organizations [..]: type / subtype (severity, status)"."""
    if not lake.files(PLATFORM_ACTIONS.raw_table):
        return []
    with lake.connect() as con:
        catalog.register_views(lake, con, [PLATFORM_ACTIONS.raw_table])
        rows = con.execute(f"""
            SELECT tenantid, try(json_extract(raw_json, '$.organization_ids'))::VARCHAR,
                   concat_ws(' / ', try(json_extract_string(raw_json, '$.type')),
                             try(json_extract_string(raw_json, '$.subtype'))),
                   try(json_extract_string(raw_json, '$.severity')), try(json_extract_string(raw_json, '$.status'))
            FROM {PLATFORM_ACTIONS.raw_table}
            QUALIFY row_number() OVER (PARTITION BY account, id ORDER BY updated_at DESC) = 1""").fetchall()
    return [f"{t}, organizations {o}: {kind} ({severity}, {status})" for t, o, kind, severity, status in rows
            if status != "resolved"]


def platform_actions_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=PLATFORM_ACTIONS.raw_table, name="no_open_platform_action",
                    description="Huntress reports no unresolved platform action: something on the Huntress side "
                                "needs a person (e.g. Microsoft Defender disabled, an agent not reporting), and "
                                "its detections may be missing or delayed until it is fixed.")
    def check(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        actions = open_platform_actions(lake.get_lake())
        return dg.AssetCheckResult(
            passed=not actions, severity=dg.AssetCheckSeverity.WARN,
            description=(f"{len(actions)} platform action(s) open in Huntress: act on them in the Huntress portal: "
                         + "; ".join(actions[:10])) if actions else None,
            metadata={"open_platform_actions": len(actions), "actions": dg.MetadataValue.md(
                "\n".join(f"- {a}" for a in actions[:50]) or "_none_")})
    return check


def build_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset="alerts", blocking=True,
                    description="Exactly one alert per (tenantid, msg_class, huntress_id, organization_id, "
                                "account_id).")
    def alerts_key_unique(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        duplicates = duplicate_alert_keys(lake.get_lake())
        return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_keys": duplicates})

    per_stream = [check for stream in STREAMS for check in (
        [missing_partition_check(stream), days_complete_check(stream)] if stream.is_walk else []) + [
        freshness_check(stream),
                                                                        quarantine_check(stream)]]
    return [alerts_key_unique, platform_actions_check(), *per_stream]
