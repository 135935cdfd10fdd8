"""Asset checks: the promises the lake makes (unique alerts, no gaps, fresh data)."""


from datetime import date, datetime, timedelta, timezone

import dagster as dg

from .lake import Lake
from .resources import HuntressLakeResource

INCIDENTS_STALE_AFTER = timedelta(minutes=30)
AGENTS_STALE_AFTER = timedelta(hours=26)


def duplicate_alert_keys(lake: Lake) -> int:
    """Keys of the reference's dedup tuple that occur more than once in alerts."""
    parts = [str(path) for path in lake.files("alerts")]
    if not parts:
        return 0
    with lake.connect() as con:
        return con.execute(
            "SELECT count(*) FROM (SELECT tenantid, huntress_id, organization_id, account_id FROM read_parquet(?) "
            "GROUP BY ALL HAVING count(*) > 1)", [parts]).fetchall()[0][0]


def missing_incident_days(lake: Lake, today: date | None = None) -> tuple[list[date], list[str]]:
    """Committed days, and the days between the first committed day and today that have no partition."""
    committed = lake.committed_incident_days()
    if not committed:
        return [], []
    last = max(committed[-1], today or datetime.now(timezone.utc).date())
    have = set(committed)
    missing = [(committed[0] + timedelta(days=n)).isoformat() for n in range((last - committed[0]).days + 1)
               if committed[0] + timedelta(days=n) not in have]
    return committed, missing


def quarantined_records(lake: Lake, stream: str, limit: int = 10) -> tuple[int, list[str]]:
    """How many records of `stream` sit in the quarantine, and the first few named with their reason."""
    files = [str(p) for p in lake.files("_quarantine") if p.parent.name == f"stream={stream}"]
    if not files:
        return 0, []
    with lake.connect() as con:
        total = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchall()[0][0]
        named = con.execute(
            "SELECT endpoint || ' id ' || coalesce(record_id, '(none)') || ': ' || reason || ' (collected ' || "
            "strftime(collected_at, '%Y-%m-%d %H:%M:%S') || ')' FROM read_parquet(?) ORDER BY collected_at DESC "
            "LIMIT ?", [files, limit]).fetchall()
    return total, [row[0] for row in named]


def quarantine_check(asset: str, stream: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=f"{asset}_nothing_quarantined",
                    description=f"No {stream} record sits in the quarantine. A record that cannot be keyed or "
                                "normalized is kept verbatim in the _quarantine table with its reason while the "
                                "rest is committed; inspect it, then delete its file under "
                                f"_quarantine/stream={stream}/ to acknowledge it.")
    def check(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        total, named = quarantined_records(lake.get_lake(), stream)
        return dg.AssetCheckResult(
            passed=total == 0, severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{total} {stream} record(s) quarantined: " + "; ".join(named)) if total else None,
            metadata={"records_quarantined": total, "records": dg.MetadataValue.md(
                "\n".join(f"- {line}" for line in named) or "_none_")})
    return check


def build_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset="alerts", blocking=True,
                    description="Exactly one alert per (tenantid, huntress_id, huntress.organization_id, "
                                "huntress.account_id).")
    def alerts_key_unique(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        duplicates = duplicate_alert_keys(lake.get_lake())
        return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_keys": duplicates})

    @dg.asset_check(asset="raw_incidents",
                    description="Every day from the first collected day to today has a committed partition.")
    def raw_incidents_no_missing_partition(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        committed, missing = missing_incident_days(lake.get_lake())
        return dg.AssetCheckResult(
            passed=not missing, severity=dg.AssetCheckSeverity.WARN,
            metadata={"committed_days": len(committed), "missing_days": len(missing),
                      "first_missing": missing[:10], "first_day": committed[0].isoformat() if committed else None})

    @dg.asset_check(asset="raw_incidents",
                    description=f"Incident collection is complete as of less than {INCIDENTS_STALE_AFTER} ago.")
    def raw_incidents_fresh(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        store = lake.get_lake()
        days = store.committed_incident_days()
        newest = max(filter(None, (store.incident_day_complete_as_of(d) for d in days[-2:])), default=None)
        age = datetime.now(timezone.utc) - newest if newest else None
        return dg.AssetCheckResult(
            passed=age is not None and age <= INCIDENTS_STALE_AFTER, severity=dg.AssetCheckSeverity.WARN,
            metadata={"complete_as_of": newest.isoformat() if newest else None,
                      "age_minutes": round(age.total_seconds() / 60, 1) if age else None})

    @dg.asset_check(asset="raw_agents",
                    description=f"The newest agent snapshot is less than {AGENTS_STALE_AFTER} old.")
    def raw_agents_fresh(lake: HuntressLakeResource) -> dg.AssetCheckResult:
        newest = lake.get_lake().newest_agent_snapshot_time()
        age = datetime.now(timezone.utc) - newest if newest else None
        return dg.AssetCheckResult(
            passed=age is not None and age <= AGENTS_STALE_AFTER, severity=dg.AssetCheckSeverity.WARN,
            metadata={"newest_snapshot": newest.isoformat() if newest else None,
                      "age_hours": round(age.total_seconds() / 3600, 2) if age else None})

    return [alerts_key_unique, raw_incidents_no_missing_partition, raw_incidents_fresh, raw_agents_fresh,
            quarantine_check("raw_incidents", "incident_reports"), quarantine_check("raw_agents", "agents")]
