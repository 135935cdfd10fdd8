"""Jobs, schedules, the sensor and the connection test, generated from the stream declarations.

Downstream assets are kept current by explicit jobs rather than declarative automation: the collect job
runs every walked stream's raw asset -> parsed_syslog -> alerts in one run over a range of days (one walk
per stream), the inventory job runs every snapshot stream -> parsed_syslog (today) -> assets -> alerts.
One run per trigger keeps each API walk single and makes "after the sensor's run, alerts are current"
true without waiting on the automation daemon.
"""


import json
from datetime import date, datetime, timezone

import dagster as dg

from .collect import PoisonRecord, parse_api_time, record_key
from .errors import HuntressError
from .raw_partitions import catch_up_start
from .resources import HuntressLakeResource, HuntressResource
from .inventory import INVENTORIES
from .streams import ALERT_STREAMS, SNAPSHOT_STREAMS, WALK_STREAMS

COLLECT_JOB = "huntress_collect_job"
INVENTORY_JOB = "huntress_inventory_job"
ALL_JOB = "huntress_all_job"
DOWNSTREAM = ["parsed_syslog", "alerts"]
CONNECTION_TEST_JOB = "huntress_connection_test"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def range_tags(first: date, last: date) -> dict[str, str]:
    """Tags that make one run cover a range of daily partitions (single-run backfill semantics)."""
    return {RANGE_START: first.isoformat(), RANGE_END: max(first, last).isoformat()}


def build_jobs() -> list:
    # In process: the steps are a chain (raw -> parsed -> alerts, checks after each), so the default
    # multiprocess executor gains nothing and spends ~3 s starting a process per step, ~20 s of a
    # sensor-triggered run. Parsing a range of days still uses every core (its own process pool).
    collect = dg.define_asset_job(
        COLLECT_JOB, selection=[*(s.raw_table for s in WALK_STREAMS), *DOWNSTREAM],
        executor_def=dg.in_process_executor,
        description="Collect " + ", ".join(s.label for s in WALK_STREAMS) + " for a range of days (one API walk "
                    "per stream), parse them, refresh alerts.")
    inventory = dg.define_asset_job(
        INVENTORY_JOB, selection=[*(s.raw_table for s in SNAPSHOT_STREAMS), "parsed_syslog",
                                  *(i.table for i in INVENTORIES), "alerts"],
        executor_def=dg.in_process_executor,
        description="Snapshot " + ", ".join(s.label for s in SNAPSHOT_STREAMS) + ", parse them into today's "
                    "syslog partition, refresh the inventories and the host and organization context of alerts. "
                    "Each schedule runs it for one stream.")
    everything = dg.define_asset_job(
        ALL_JOB, selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor,
        description="Every stream and everything downstream for a range of days, in one run (what "
                    "`huntress-dagster run` launches).")
    return [collect, inventory, everything]


@dg.op(description="Call the Huntress API with the configured credentials and report what it sees.")
def check_huntress_connection(context: dg.OpExecutionContext, huntress: HuntressResource) -> dg.Output:
    try:
        with huntress.get_client() as client:
            account = client.account()
            organizations = sum(1 for _ in client.organizations())
            requests = client.stats.requests
    except HuntressError as exc:
        context.log.error(f"Connection test failed: {exc}")
        raise dg.Failure(description=str(exc), metadata={"status_code": exc.status_code or 0}) from None
    context.log.info(f"Connected to Huntress account {account.get('name')!r} ({organizations} organizations)")
    return dg.Output(None, metadata={"account": account.get("name"), "account_id": account.get("id"),
                                     "subdomain": account.get("subdomain"), "organizations": organizations,
                                     "api_requests": requests, **huntress.describe()})


@dg.job(name=CONNECTION_TEST_JOB, description="The connector's 'Test' button: checks host URL and credentials.")
def connection_test_job() -> None:
    check_huntress_connection()


def build_schedules(settings, default_status: dg.DefaultScheduleStatus) -> list[dg.ScheduleDefinition]:
    @dg.schedule(name="huntress_collect_schedule", job_name=COLLECT_JOB, cron_schedule=settings.incidents_cron,
                 execution_timezone="UTC", default_status=default_status,
                 description="Incremental collection of every walked stream: yesterday and today (and any earlier "
                             "day of the last 31 that a walk left incomplete), each walked only back to its "
                             "committed watermark.")
    def incidents_schedule(context: dg.ScheduleEvaluationContext, lake: HuntressLakeResource) -> dg.RunRequest:
        today = context.scheduled_execution_time.astimezone(timezone.utc).date()
        first = max(catch_up_start(lake.get_lake(), WALK_STREAMS, today), date.fromisoformat(settings.start_date))
        return dg.RunRequest(tags=range_tags(first, today))

    return [incidents_schedule, *(inventory_schedule(settings, stream, default_status) for stream in SNAPSHOT_STREAMS)]


def inventory_schedule(settings, stream, default_status: dg.DefaultScheduleStatus) -> dg.ScheduleDefinition:
    """The inventory job for one snapshot stream: its snapshot, today's parsed partition, its inventory (and
    those that take organization names from it), and alerts."""
    inventories = [i.table for i in INVENTORIES if i.stream is stream or stream.name == "organizations"]
    selection = [stream.raw_table, "parsed_syslog", *inventories, "alerts"]

    @dg.schedule(name=f"huntress_{stream.name}_schedule", job_name=INVENTORY_JOB,
                 cron_schedule=settings.cron_for(stream), execution_timezone="UTC", default_status=default_status,
                 description=f"{stream.label.capitalize()} snapshot (HUNTRESS_{stream.name.upper()}_CRON).")
    def schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        today = context.scheduled_execution_time.astimezone(timezone.utc).date()
        return dg.RunRequest(partition_key=today.isoformat(), asset_selection=[dg.AssetKey(a) for a in selection])

    return schedule


def newest_change(client, stream) -> dict | None:
    """The stream's most recently updated object: {"updated_at", "id"} (one request of one record). A record
    that cannot be keyed still counts as a change, dated now: the run it triggers quarantines it."""
    page = next(client.iter_pages(stream.path, stream.name, {"sort_field": "updated_at", "sort_direction": "desc",
                                                             "limit": 1}))
    if not page.items:
        return None
    try:
        record_id, updated_at = record_key(page.items[0])
    except PoisonRecord:
        return {"updated_at": datetime.now(timezone.utc).isoformat(), "id": repr(page.items[0].get("id"))[:40]
                if isinstance(page.items[0], dict) else None}
    return {"updated_at": updated_at.isoformat(), "id": record_id}


def build_sensor(settings, default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(name="huntress_alert_sensor", job_name=COLLECT_JOB,
               minimum_interval_seconds=settings.sensor_interval_seconds, default_status=default_status,
               description="One request per alert stream (" + ", ".join(s.label for s in ALERT_STREAMS) + ": "
                           "its newest object by updated_at) per tick; when one is newer than the cursor, runs "
                           "the collect job for those streams over the days in between.")
    def alert_sensor(context: dg.SensorEvaluationContext, huntress: HuntressResource) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        newest, changed, first_day, last_day = {}, [], None, None
        with huntress.get_client() as client:
            for stream in ALERT_STREAMS:
                newest[stream.name] = seen = newest_change(client, stream)
                if seen is None or cursor.get(stream.name) == seen:
                    continue
                changed.append(stream)
                day = parse_api_time(seen["updated_at"]).date()
                since = parse_api_time(cursor[stream.name]["updated_at"]).date() if cursor.get(stream.name) else day
                first_day = min(filter(None, [first_day, since, day]))
                last_day = max(filter(None, [last_day, day]))
        if not changed:
            seen_text = ", ".join(f"{name} {seen['updated_at']}" for name, seen in newest.items() if seen)
            return dg.SensorResult(skip_reason=f"No change since {seen_text}" if seen_text else "No objects yet")
        key = ";".join(f"{s.name}:{newest[s.name]['updated_at']}:{newest[s.name]['id']}" for s in changed)
        run = dg.RunRequest(run_key=key, tags=range_tags(first_day, last_day),
                            asset_selection=[dg.AssetKey(s.raw_table) for s in changed]
                            + [dg.AssetKey(a) for a in DOWNSTREAM])
        return dg.SensorResult(run_requests=[run], cursor=json.dumps(newest))

    return alert_sensor
