"""Jobs, schedules, the sensor and the connection test, generated from the stream declarations.

Downstream assets are kept current by explicit jobs rather than declarative automation: the collect job
runs every walked stream's raw asset -> parsed_syslog -> alerts in one run over a range of days (one walk
per stream), the inventory job runs every snapshot stream -> parsed_syslog (today) -> assets -> alerts.
One run per trigger keeps each API walk single and makes "after the sensor's run, alerts are current"
true without waiting on the automation daemon.
"""


import json
import socket
import time
import uuid
from datetime import date, datetime, timezone

import dagster as dg

from .collect import PoisonRecord, parse_api_time, record_key
from .account_runs import HOST_TAG, PID_TAG
from .connections import ACCOUNT_TAG, CONNECTION_TAG, Account, discover_accounts, tagged
from .health import Evaluation, runs_recorded, write_health
from .inbox import INBOX_TAG, Inbox
from .processes import process_alive
from .errors import HuntressError
from .alerts import OCSF_TABLE as ALERTS_OCSF_TABLE
from .inventory import INVENTORIES, OCSF_TABLES
from .account_runs import accounts_for
from .raw_partitions import catch_up_start
from .resources import HuntressLakeResource, HuntressResource
from .streams import ALERT_STREAMS, SNAPSHOT_STREAMS, STREAMS, WALK_STREAMS, Stream

COLLECT_JOB = "huntress_collect_job"
INVENTORY_JOB = "huntress_inventory_job"
ALL_JOB = "huntress_all_job"
DOWNSTREAM = ["parsed_syslog", "alerts", ALERTS_OCSF_TABLE]  # alerts and its OCSF form: one step
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
                                  *(i.table for i in INVENTORIES), *OCSF_TABLES.values(), "alerts",
                                  ALERTS_OCSF_TABLE],
        executor_def=dg.in_process_executor,
        description="Snapshot " + ", ".join(s.label for s in SNAPSHOT_STREAMS) + ", parse them into today's "
                    "syslog partition, refresh the inventories and the host and organization context of alerts. "
                    "Each schedule runs it for one stream.")
    everything = dg.define_asset_job(
        ALL_JOB, selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor,
        description="Every stream and everything downstream for a range of days, in one run (what "
                    "`huntress-dagster run` launches).")
    return [collect, inventory, everything]


@dg.op(description="Call the Huntress API with each configured connection and report what it sees.")
def check_huntress_connection(context: dg.OpExecutionContext, huntress: HuntressResource) -> dg.Output:
    seen, failed = [], []
    for connection in huntress.connection_list():
        try:
            with huntress.get_client(connection) as client:
                accounts = discover_accounts(client, connection)
                organizations = sum(1 for _ in client.organizations())
        except HuntressError as exc:
            context.log.error(f"Connection {connection.name}: test failed: {exc}")
            failed.append(f"{connection.name}: {exc}")
            continue
        own = accounts[0]
        context.log.info(f"Connection {connection.name}: account {own.name!r} (id {own.account_id}), "
                         f"{organizations} organizations, {len(accounts) - 1} customer account(s)")
        seen.append({"connection": connection.name, "account": own.name, "account_id": own.account_id,
                     "subdomain": own.subdomain, "organizations": organizations,
                     "customer_accounts": len(accounts) - 1})
    if failed:
        raise dg.Failure(description=" | ".join(failed), metadata={"failed": "\n".join(failed),
                                                                   "connections_ok": len(seen)})
    return dg.Output(None, metadata={"connections": dg.MetadataValue.json(seen),
                                     **(huntress.describe() if len(seen) == 1 else {})})


@dg.job(name=CONNECTION_TEST_JOB, description="The connector's 'Test' button: checks host URL and credentials.")
def connection_test_job() -> None:
    check_huntress_connection()


def per_connection(huntress: HuntressResource, tags: dict[str, str], **request) -> list[dg.RunRequest]:
    """One run per connection, tagged with it: a revoked key fails only its own runs, keys run in parallel."""
    # run_key: a tick of several requests needs one each (Dagster scopes a schedule's run keys to its tick)
    return [dg.RunRequest(run_key=c.name, tags={**tags, CONNECTION_TAG: c.name}, **request)
            for c in huntress.connection_list()]


def build_schedules(settings, default_status: dg.DefaultScheduleStatus) -> list[dg.ScheduleDefinition]:
    @dg.schedule(name="huntress_collect_schedule", job_name=COLLECT_JOB, cron_schedule=settings.incidents_cron,
                 execution_timezone="UTC", default_status=default_status,
                 description="Incremental collection of every walked stream, one run per connection: yesterday and "
                             "today (and any earlier day of the last 31 that a walk left incomplete), each walked "
                             "only back to its committed watermark.")
    def incidents_schedule(context: dg.ScheduleEvaluationContext, lake: HuntressLakeResource,
                           huntress: HuntressResource) -> list[dg.RunRequest]:
        today = context.scheduled_execution_time.astimezone(timezone.utc).date()
        first = max(catch_up_start(lake.get_lake(), WALK_STREAMS, today), date.fromisoformat(settings.start_date))
        return per_connection(huntress, range_tags(first, today))

    return [incidents_schedule, *(inventory_schedule(settings, stream, default_status) for stream in SNAPSHOT_STREAMS)]


def inventory_schedule(settings, stream, default_status: dg.DefaultScheduleStatus) -> dg.ScheduleDefinition:
    """The inventory job for one snapshot stream: its snapshot, today's parsed partition, its inventory (and
    those that take organization names from it), and alerts."""
    inventories = [i.table for i in INVENTORIES if i.stream is stream or stream.name == "organizations"]
    ocsf = [OCSF_TABLES[table] for table in inventories if table in OCSF_TABLES]  # written with their tables
    selection = [stream.raw_table, "parsed_syslog", *inventories, *ocsf, "alerts", ALERTS_OCSF_TABLE]

    @dg.schedule(name=f"huntress_{stream.name}_schedule", job_name=INVENTORY_JOB,
                 cron_schedule=settings.cron_for(stream), execution_timezone="UTC", default_status=default_status,
                 description=f"{stream.label.capitalize()} snapshot, one run per connection "
                             f"(HUNTRESS_{stream.name.upper()}_CRON).")
    def schedule(context: dg.ScheduleEvaluationContext, huntress: HuntressResource) -> list[dg.RunRequest]:
        today = context.scheduled_execution_time.astimezone(timezone.utc).date()
        return per_connection(huntress, {}, partition_key=today.isoformat(),
                              asset_selection=[dg.AssetKey(a) for a in selection])

    return schedule


def newest_change(client, stream, path_prefix: str = "") -> dict | None:
    """The stream's most recently updated object: {"updated_at", "id"} (one request of one record). A record
    that cannot be keyed still counts as a change, dated now: the run it triggers quarantines it."""
    page = next(client.iter_pages(path_prefix + stream.path, stream.name,
                                  {"sort_field": "updated_at", "sort_direction": "desc", "limit": 1}))
    if not page.items:
        return None
    try:
        record_id, updated_at = record_key(page.items[0])
    except PoisonRecord:
        return {"updated_at": datetime.now(timezone.utc).isoformat(), "id": repr(page.items[0].get("id"))[:40]
                if isinstance(page.items[0], dict) else None}
    return {"updated_at": updated_at.isoformat(), "id": record_id}


def watch_list(accounts: list[Account]) -> list[tuple[Account, Stream]]:
    """What the sensor watches for one connection: each account's alert streams its path serves."""
    return [(a, s) for a in accounts for s in ALERT_STREAMS if a.serves(s)]


def changes_of_connection(client, accounts: list[Account], cursor: dict, start: int, budget: int
                          ) -> tuple[list[tuple[Account, Stream, dict]], int]:
    """Look at up to `budget` (account, stream) pairs from position `start` (round robin, so every account is
    looked at within ceil(pairs / budget) ticks); the pairs newer than the cursor, and the next position."""
    watched = watch_list(accounts)
    if not watched:
        return [], 0
    changed = []
    for step in range(min(budget, len(watched))):
        account, stream = watched[(start + step) % len(watched)]
        key = f"{account.connection}/{account.account_id}/{stream.name}"
        seen = newest_change(client, stream, account.path_prefix)
        if seen is not None and cursor.get(key) != seen:
            changed.append((account, stream, {**seen, "since": (cursor.get(key) or seen)["updated_at"]}))
            cursor[key] = seen
    return changed, (start + min(budget, len(watched))) % len(watched)


def change_run(connection: str, changed: list[tuple[Account, Stream, dict]]) -> dg.RunRequest:
    """One collect run of a connection for the accounts and streams that changed, over the days in between."""
    days = [parse_api_time(t).date() for _, _, seen in changed for t in (seen["since"], seen["updated_at"])]
    streams = sorted({s.raw_table for _, s, _ in changed})
    key = ";".join(f"{a.account_id}/{s.name}:{seen['updated_at']}:{seen['id']}" for a, s, seen in changed)
    return dg.RunRequest(run_key=f"{connection}|{key}",
                         tags={**range_tags(min(days), max(days)), CONNECTION_TAG: connection,
                               ACCOUNT_TAG: ",".join(sorted({str(a.account_id) for a, _, _ in changed}))},
                         asset_selection=[dg.AssetKey(t) for t in streams] + [dg.AssetKey(a) for a in DOWNSTREAM])


def build_sensor(settings, default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(name="huntress_alert_sensor", job_name=COLLECT_JOB,
               minimum_interval_seconds=settings.sensor_interval_seconds, default_status=default_status,
               description="Per connection and tick, up to HUNTRESS_SENSOR_REQUESTS_PER_TICK requests (round robin "
                           "over its accounts' " + " and ".join(s.label for s in ALERT_STREAMS) + ": the newest "
                           "object by updated_at); for what is newer than the cursor, one collect run of that "
                           "connection, those accounts and streams, over the days in between.")
    def alert_sensor(context: dg.SensorEvaluationContext, huntress: HuntressResource,
                     lake: HuntressLakeResource) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        seen, turns = cursor.setdefault("seen", {}), cursor.setdefault("turn", {})
        runs, notes = [], []
        store = lake.get_lake()
        for connection in huntress.connection_list():
            try:
                with huntress.get_client(connection) as client:
                    accounts = accounts_for(huntress, connection, store, client)
                    changed, turns[connection.name] = changes_of_connection(
                        client, accounts, seen, turns.get(connection.name, 0), settings.sensor_requests_per_tick)
            except HuntressError as exc:  # one key failing never blinds the sensor to the others
                context.log.warning(f"Connection {connection.name}: {exc}")
                notes.append(f"{connection.name}: {type(exc).__name__}")
                continue
            if changed:
                runs.append(change_run(connection.name, changed))
        if not runs:
            return dg.SensorResult(skip_reason="No change" + (f" ({'; '.join(notes)})" if notes else ""),
                                   cursor=json.dumps(cursor))
        return dg.SensorResult(run_requests=runs, cursor=json.dumps(cursor))

    return alert_sensor


RUN_HEALTH_SENSOR = "huntress_run_health_sensor"
OWN_JOBS = {COLLECT_JOB: WALK_STREAMS, INVENTORY_JOB: SNAPSHOT_STREAMS, ALL_JOB: STREAMS}


def _dead_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Started runs whose raw steps' process, on this machine, is gone: marked failed."""
    dead = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid and host == socket.gethostname() and not process_alive(int(pid)):  # tagged by our raw steps
            instance.report_run_failed(run, f"The run's process {pid} on {host} ended without finishing it "
                                            "(killed, e.g. SIGKILL or the out-of-memory killer)")
            dead.append(run)
    return dead


def _streams_of(run: dg.DagsterRun) -> list[Stream]:
    """The streams a run was to collect: its selection's raw assets (a UI "Materialize" is __ASSET_JOB), or
    its job's; none for a run of anything else."""
    selected = {k.to_user_string() for k in run.asset_selection or []}
    if selected:
        return [s for s in STREAMS if s.raw_table in selected]
    return list(OWN_JOBS.get(run.job_name, []))


def _failure_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[str, str]:
    """(error class, message) of a failed run: its first step failure's error, else the run failure's text."""
    for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        error = record.event_log_entry.dagster_event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            return error.cls_name or "StepFailure", error.message.strip().splitlines()[0][:400]
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    message = records[-1].event_log_entry.dagster_event.message if records else "the run failed"
    return ("RunWorkerDied" if "ended without finishing" in (message or "") else "RunFailure"), message or ""


def build_run_health_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(name=RUN_HEALTH_SENSOR, minimum_interval_seconds=30, default_status=default_status,
               description="Records failed runs that were to collect Huntress streams into connector_health with the "
                           "class of what failed them (a crash, a kill, out of memory), unless the run recorded its "
                           "own health rows (API errors); marks failed a run whose process on this machine died.")
    def run_health(context: dg.SensorEvaluationContext, lake: HuntressLakeResource,
                   huntress: HuntressResource) -> dg.SkipReason:
        instance, store = context.instance, lake.get_lake()
        _dead_runs(instance)
        since = float(context.cursor or 0)
        records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE],
                                                         updated_after=datetime.fromtimestamp(since, timezone.utc)))
        recorded = 0
        for record in sorted(records, key=lambda r: r.update_timestamp):
            run = record.dagster_run
            since = max(since, record.update_timestamp.timestamp())
            streams = _streams_of(run)
            if not streams or runs_recorded(store, run.run_id):
                continue
            error_class, message = _failure_of(instance, run)
            named = tagged(run.tags, CONNECTION_TAG) or {c.name for c in huntress.connection_list()}
            write_health(store, [Evaluation(connection, None, None, stream, error=message, error_class=error_class,
                                            run_id=run.run_id, source="run_failure").row(datetime.now(timezone.utc))
                                 for connection in sorted(named) for stream in streams])
            recorded += 1
        context.update_cursor(str(since))
        return dg.SkipReason(f"{recorded} failed run(s) recorded in connector_health")

    return run_health


INBOX_SENSOR = "huntress_inbox_sensor"


def wait_for_events(inbox: Inbox, wait_seconds: float, poll_seconds: float) -> list:
    """The inbox's pending events, looking again every `poll_seconds` for up to `wait_seconds` while there are
    none: an event that lands during the wait starts its run at once instead of at the daemon's next sensor
    loop (every 5 s). A listing per look: slower on an object store, where each is a request."""
    deadline = time.monotonic() + wait_seconds
    pending = inbox.pending()
    while not pending and time.monotonic() < deadline:
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
        pending = inbox.pending()
    return pending


def build_inbox_sensor(settings, default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(name=INBOX_SENSOR, job_name=COLLECT_JOB, minimum_interval_seconds=settings.inbox_interval_seconds,
               default_status=default_status,
               description="Webhook events the receiver made durable in the lake's inbox (huntress-dagster "
                           "webhooks): one collect run per batch, which fetches exactly the announced incident "
                           "reports, escalations and platform actions by id (no list request) and refreshes "
                           "alerts. The polling sensor and the schedule stay the safety net.")
    def inbox_sensor(context: dg.SensorEvaluationContext, lake: HuntressLakeResource) -> dg.SensorResult:
        store = lake.get_lake()
        inbox = Inbox(store)
        pending = wait_for_events(inbox, settings.inbox_wait_seconds, 1.0 if store.remote else 0.2)
        if not pending:
            return dg.SensorResult(skip_reason=f"The webhook inbox stayed empty for {settings.inbox_wait_seconds:g} s")
        now = datetime.now(timezone.utc)
        batch = f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
        events = [e for e in inbox.claim(pending, batch) if e.stream is not None and e.object_id is not None]
        if not events:
            return dg.SensorResult(skip_reason=f"{len(pending)} event(s) announce no collected object")
        first = max(min(e.occurred_on for e in events), date.fromisoformat(settings.start_date))
        streams = sorted({e.stream.raw_table for e in events})
        return dg.SensorResult(run_requests=[dg.RunRequest(
            run_key=batch, tags={**range_tags(first, now.date()), INBOX_TAG: batch},
            asset_selection=[dg.AssetKey(t) for t in streams] + [dg.AssetKey(a) for a in DOWNSTREAM])])

    return inbox_sensor
