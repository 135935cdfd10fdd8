"""Jobs, schedules, the incident sensor and the connection test.

Downstream assets are kept current by explicit jobs rather than declarative automation: the incident
job runs raw_incidents -> parsed_syslog -> alerts in one run over a range of days, the agents job runs
raw_agents -> parsed_syslog (today) -> assets -> alerts. One run per trigger keeps the API walk single
and makes "after the sensor's run, alerts are current" true without waiting on the automation daemon.
"""


import json
from datetime import date, timedelta, timezone

import dagster as dg

from .collect import parse_api_time
from .errors import HuntressError
from .resources import HuntressResource

INCIDENTS_JOB = "huntress_incidents_job"
AGENTS_JOB = "huntress_agents_job"
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
    incidents = dg.define_asset_job(
        INCIDENTS_JOB, selection=["raw_incidents", "parsed_syslog", "alerts"], executor_def=dg.in_process_executor,
        description="Collect incident reports for a range of days (one API walk), parse them, refresh alerts.")
    agents = dg.define_asset_job(
        AGENTS_JOB, selection=["raw_agents", "parsed_syslog", "assets", "alerts"], executor_def=dg.in_process_executor,
        description="Snapshot the agent inventory, parse it into today's syslog partition, refresh assets and "
                    "the host context of alerts.")
    return [incidents, agents]


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
    @dg.schedule(name="huntress_incidents_schedule", job_name=INCIDENTS_JOB, cron_schedule=settings.incidents_cron,
                 execution_timezone="UTC", default_status=default_status,
                 description="Incremental incident collection: yesterday and today, each walked only back to "
                             "its committed watermark.")
    def incidents_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        today = context.scheduled_execution_time.astimezone(timezone.utc).date()
        return dg.RunRequest(tags=range_tags(today - timedelta(days=1), today))

    @dg.schedule(name="huntress_agents_schedule", job_name=AGENTS_JOB, cron_schedule=settings.agents_cron,
                 execution_timezone="UTC", default_status=default_status,
                 description="Daily agent inventory snapshot.")
    def agents_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        today = context.scheduled_execution_time.astimezone(timezone.utc).date()
        return dg.RunRequest(partition_key=today.isoformat())

    return [incidents_schedule, agents_schedule]


def build_sensor(settings, default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(name="huntress_incident_sensor", job_name=INCIDENTS_JOB,
               minimum_interval_seconds=settings.sensor_interval_seconds, default_status=default_status,
               description="One request (the newest incident report by updated_at) per tick; when it is newer "
                           "than the cursor, runs the incident job for the days in between.")
    def incident_sensor(context: dg.SensorEvaluationContext, huntress: HuntressResource) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else None
        with huntress.get_client() as client:
            page = next(client.incident_report_pages(sort_field="updated_at", sort_direction="desc", limit=1))
        if not page.items:
            return dg.SensorResult(skip_reason="No incident reports in the account yet")
        newest = page.items[0]
        newest_key = {"updated_at": newest["updated_at"], "id": newest["id"]}
        if cursor == newest_key:
            return dg.SensorResult(skip_reason=f"No change since {newest['updated_at']}")
        newest_day = parse_api_time(newest["updated_at"]).date()
        first_day = parse_api_time(cursor["updated_at"]).date() if cursor else newest_day
        run = dg.RunRequest(run_key=f"incidents:{newest['updated_at']}:{newest['id']}",
                            tags=range_tags(min(first_day, newest_day), newest_day))
        return dg.SensorResult(run_requests=[run], cursor=json.dumps(newest_key))

    return incident_sensor
