"""Coordination without a shared disk, over the real PostgreSQL of the `postgres_url` fixture: cross-machine locks,
the rate limiter's PostgreSQL log, and the Dagster instance on PostgreSQL (deploy/dagster.postgres.yaml).

Separate processes stand in for separate machines: they share nothing but the database."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import filelock
import psycopg2
import pytest

from huntress_dagster.client import HuntressClient
from huntress_dagster.coordination import (
    CoordinationError,
    LockTimeout,
    PostgresLock,
    PostgresUnavailable,
    is_postgres_url,
    lock_key,
    redacted,
)
from huntress_dagster.errors import HuntressError, RateLimiterStalled, RateLimiterUnavailable
from huntress_dagster.ratelimit import RateLimiter
from huntress_dagster.ratelimit_postgres import RATE_LOG_TABLE
from huntress_dagster.settings import Settings, parse_state_path
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET

from .conftest import admin, make_client

REPO = Path(__file__).resolve().parents[1]
LOGGER = "huntress_dagster.ratelimit"
PASSWORD = "Sup3r-S3cret-pw"


def with_password(url: str, password: str = PASSWORD) -> str:
    """The fixture's URL with a password in it: trust auth ignores it, so the URL still connects."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"))


def closed_port_url(password: str = PASSWORD) -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://huntress:{password}@127.0.0.1:{port}/nowhere"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def limiter_log():
    """The rate limiter's log records (works with `-p no:logging`, unlike pytest's log capture)."""
    logger = logging.getLogger(LOGGER)
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def most_in_any_window(instants: list[float], window: float) -> int:
    instants = sorted(instants)
    return max(sum(1 for t in instants if start <= t < start + window) for start in instants)


# --- URLs ------------------------------------------------------------------------------------------------


def test_postgres_urls_are_recognized_and_shown_without_their_password():
    assert is_postgres_url("postgresql://u@h/db") and is_postgres_url(" postgres://h/db") and is_postgres_url(
        "PostgreSQL://h/db")
    assert not is_postgres_url("/var/lib/ratelimit.sqlite") and not is_postgres_url("s3://bucket/x")
    assert not is_postgres_url(None) and not is_postgres_url("")
    assert redacted("postgresql://bob:pw@db:5432/d?sslmode=require") == "postgresql://bob:***@db:5432/d?sslmode=require"
    assert redacted("postgresql://bob@db/d") == "postgresql://bob@db/d"
    assert redacted("postgresql://db/d?sslmode=require&password=pw") == "postgresql://db/d?sslmode=require&password=***"
    # Malformed (an unclosed IPv6 bracket, a raw @ and / in the password): still hidden.
    assert redacted("postgresql://bob:p@ss/w@rd@[::1/d") == "postgresql://bob:***@[::1/d"


def test_lock_keys_are_stable_64_bit_and_distinct():
    assert lock_key("alerts") == lock_key("alerts") != lock_key("alerts2")
    assert -(2 ** 63) <= lock_key("alerts") < 2 ** 63
    # The same in another interpreter (unlike hash(), salted per process).
    code = "from huntress_dagster.coordination import lock_key; print(lock_key('alerts'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert int(out.stdout) == lock_key("alerts")


def test_the_settings_take_a_postgres_url_as_is(tmp_path):
    url = "postgresql://huntress:pw@db.internal:5432/dagster?sslmode=require"
    assert parse_state_path(f"  {url} ") == url
    assert Settings.from_env({"HUNTRESS_RATE_LIMIT_STATE": url, "DAGSTER_HOME": str(tmp_path)}).rate_limit_state == url
    assert Settings.from_env({"HUNTRESS_RATE_LIMIT_STATE": url.replace("postgresql", "postgres", 1),
                              "DAGSTER_HOME": str(tmp_path)}).rate_limit_state.startswith("postgres://")
    # A local path keeps its checks.
    assert parse_state_path(str(tmp_path / "rl.sqlite")) == str(tmp_path / "rl.sqlite")


# --- PostgresLock ----------------------------------------------------------------------------------------


def test_a_lock_excludes_another_holder_and_is_used_like_a_file_lock(postgres_url):
    name = unique("lock")
    first, second = PostgresLock(postgres_url, name), PostgresLock(postgres_url, name, timeout=0.3)
    with first:
        assert first.is_locked
        with first:  # re-entrant in its thread, like FileLock
            assert first.lock_counter == 2
        assert first.is_locked
        started = time.monotonic()
        with pytest.raises(filelock.Timeout) as caught:  # code written for FileLock catches it as is
            second.acquire()
        assert 0.25 < time.monotonic() - started < 2.0
        assert isinstance(caught.value, LockTimeout) and isinstance(caught.value, TimeoutError)
        assert name in str(caught.value) and "another process holds it" in str(caught.value)
        with pytest.raises(LockTimeout):
            second.acquire(timeout=0)
        assert PostgresLock(postgres_url, unique("other"), timeout=0).acquire()  # other names are free
    assert not first.is_locked
    with second.acquire(timeout=1) as held:  # the proxy releases once at the end
        assert held is second and second.is_locked
    assert not second.is_locked


def test_threads_sharing_one_lock_object_exclude_each_other(postgres_url):
    lock = PostgresLock(postgres_url, unique("threads"), timeout=10)
    inside, most = [0], [0]
    guard = threading.Lock()

    def work():
        for _ in range(5):
            with lock:
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.01)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most[0] == 1


HOLDER = """
    import sys, time
    from huntress_dagster.coordination import PostgresLock
    lock = PostgresLock(sys.argv[1], sys.argv[2])
    lock.acquire()
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_lock_held_by_another_process_times_out_and_a_killed_holder_releases_it(postgres_url):
    name = unique("partition")
    url = with_password(postgres_url)
    holder = spawn(HOLDER, url, name)
    try:
        assert holder.stdout.readline().strip() == "locked"
        waiter = PostgresLock(url, name, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            waiter.acquire()
        assert time.monotonic() - started < 3.0
        message = str(caught.value)
        assert name in message and "within 0.5 s" in message and PASSWORD not in message and "***" in message
        assert PASSWORD not in repr(waiter)

        holder.send_signal(signal.SIGKILL)  # no cleanup of any kind: the server notices the closed socket
        holder.wait(10)
        killed = time.monotonic()
        with waiter.acquire(timeout=10):
            took = time.monotonic() - killed
        assert took < 2.0, f"the killed holder's lock was released only after {took:.1f} s"
    finally:
        holder.kill()
        holder.wait()


def test_a_released_lock_is_taken_by_the_waiting_process(postgres_url):
    name = unique("handover")
    holder = spawn("""
        import sys, time
        from huntress_dagster.coordination import PostgresLock
        with PostgresLock(sys.argv[1], sys.argv[2]):
            print("locked", flush=True)
            time.sleep(0.5)
        print("released", flush=True)
        time.sleep(30)
    """, postgres_url, name)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with PostgresLock(postgres_url, name, timeout=10):
            waited = time.monotonic() - started
        assert 0.2 < waited < 2.0
    finally:
        holder.kill()
        holder.wait()


def test_an_unreachable_server_is_named_without_its_password():
    url = closed_port_url()
    with pytest.raises(PostgresUnavailable) as caught:
        PostgresLock(url, "x", timeout=1).acquire()
    message = str(caught.value)
    assert isinstance(caught.value, CoordinationError)
    assert "Cannot connect to PostgreSQL at postgresql://huntress:***@127.0.0.1:" in message
    assert "lock 'x'" in message and PASSWORD not in message
    # libpq quotes a malformed URL whole in its error: the password is scrubbed from that too.
    with pytest.raises(PostgresUnavailable) as caught:
        PostgresLock(f"postgresql://huntress:{PASSWORD}@[::1/db", "x").acquire()
    assert PASSWORD not in str(caught.value) and "invalid dsn" in str(caught.value)
    with pytest.raises(ValueError):
        PostgresLock("/tmp/x.lock", "x")


# --- the rate limiter on PostgreSQL ----------------------------------------------------------------------


RATE_WORKER = """
    import json, os, sys, time
    real_time = time.time
    skew = float(sys.argv[3])
    if skew:  # this "machine" has its clock off by that much: the limiter must not care
        time.time = lambda: real_time() + skew
    from huntress_dagster.ratelimit import RateLimiter
    limiter = RateLimiter(10, 1.0, state_path=sys.argv[1], bucket=sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    granted = []
    for _ in range(25):
        limiter.acquire()
        granted.append((limiter._pg.last_granted_at, real_time()))
    limiter.close()
    print(json.dumps(granted), flush=True)
"""


@pytest.mark.slow
def test_two_processes_share_one_postgres_budget(postgres_url):
    # 10 requests per 1 s shared by two processes (one with a clock an hour ahead) taking 25 each.
    import json

    bucket = unique("huntress")
    workers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(RATE_WORKER), postgres_url, bucket, skew],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO) for skew in ("0", "3600")]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    grants = [tuple(g) for out, _ in outputs for g in json.loads(out.strip().splitlines()[-1])]
    assert len(grants) == 50
    database_instants = [db for db, _ in grants]
    client_instants = [client for _, client in grants]
    # The database instants are the limiter's own record; the clients' (same real clock) are when the callers
    # went ahead. Neither has more than 10 grants in any 1 s window.
    assert most_in_any_window(database_instants, 1.0) <= 10
    assert most_in_any_window(client_instants, 1.0) <= 10
    # 50 grants at 10 per (enforced, 1.05 s) window: at least 4 windows from the first to the last.
    assert max(database_instants) - min(database_instants) >= 4 * 1.0
    assert all(len(json.loads(out.strip().splitlines()[-1])) == 25 for out, _ in outputs)


def test_a_postgres_wait_longer_than_the_maximum_raises_a_clear_error(postgres_url):
    url = with_password(postgres_url)
    limiter = RateLimiter(1, 30.0, state_path=url, bucket=unique("huntress"), max_wait_seconds=0.4)
    try:
        assert limiter.acquire() < 0.1
        started = time.monotonic()
        with pytest.raises(RateLimiterStalled) as caught:
            limiter.acquire()
        elapsed = time.monotonic() - started
        assert 0.35 < elapsed < 1.5
        message = str(caught.value)
        assert "within 0.4 s" in message and "1 requests per 30 s" in message
        assert redacted(url) in message and PASSWORD not in message
        assert PASSWORD not in repr(limiter)
    finally:
        limiter.close()


def test_a_postgres_wait_that_gets_its_slot_is_returned_and_logged(postgres_url, limiter_log):
    limiter = RateLimiter(1, 0.5, state_path=postgres_url, bucket=unique("huntress"), log_wait_seconds=0.2)
    try:
        assert limiter.acquire() < 0.1
        waited = limiter.acquire()
        assert 0.3 < waited < 2.0
    finally:
        limiter.close()
    lines = limiter_log.messages()
    assert any("waiting" in line and "so far" in line for line in lines)
    assert any(line.startswith("Rate limiter: waited") and "used up" in line for line in lines)


def test_buckets_have_their_own_budgets_and_their_rows_expire(postgres_url):
    first, second = unique("huntress"), unique("huntress")
    a = RateLimiter(2, 0.3, state_path=postgres_url, bucket=first, max_wait_seconds=5)
    b = RateLimiter(2, 0.3, state_path=postgres_url, bucket=second, max_wait_seconds=5)
    try:
        assert max(a.acquire(), a.acquire(), b.acquire(), b.acquire()) < 0.1
        assert a.acquire() > 0.1  # a's third waits for its window; b's budget is untouched by it
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {RATE_LOG_TABLE} WHERE bucket = %s", (first,))
            assert cur.fetchone()[0] <= 2  # the log holds one window, not the history
    finally:
        a.close()
        b.close()


def test_rows_dated_ahead_of_the_database_clock_are_discarded(postgres_url, limiter_log):
    bucket = unique("huntress")
    limiter = RateLimiter(2, 60.0, state_path=postgres_url, bucket=bucket, max_wait_seconds=3)
    try:
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {RATE_LOG_TABLE} (bucket, at) SELECT %s, extract(epoch FROM now()) + 86400 "
                        "FROM generate_series(1, 5)", (bucket,))
        assert max(limiter.acquire(), limiter.acquire()) < 0.5
    finally:
        limiter.close()
    assert any("Discarded 5" in m and "clock" in m for m in limiter_log.messages(logging.WARNING))


def test_a_session_holding_the_bucket_lock_cannot_block_forever(postgres_url):
    bucket = unique("huntress")
    limiter = RateLimiter(100, 1.0, state_path=postgres_url, bucket=bucket, max_wait_seconds=0.8)
    blocker = psycopg2.connect(postgres_url)
    try:
        with blocker.cursor() as cur:  # a transaction holding the bucket's lock, left open
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (limiter._pg.key,))
        started = time.monotonic()
        with pytest.raises(RateLimiterStalled):
            limiter.acquire()
        assert time.monotonic() - started < 3.0
        blocker.rollback()
        assert limiter.acquire() < 0.5  # and it recovers once the lock is released
    finally:
        blocker.close()
        limiter.close()


def test_a_lost_connection_is_reopened(postgres_url, limiter_log):
    limiter = RateLimiter(100, 1.0, state_path=postgres_url, bucket=unique("huntress"), max_wait_seconds=5)
    try:
        limiter.acquire()
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:  # e.g. a failover or an admin
            cur.execute("SELECT pg_terminate_backend(%s)", (limiter._pg._conn.get_backend_pid(),))
        assert limiter.acquire() < 2.0
    finally:
        limiter.close()
    assert any("reconnecting" in m for m in limiter_log.messages(logging.WARNING))


def test_an_unreachable_rate_limiter_database_is_a_clear_error_without_the_password():
    url = closed_port_url()
    with pytest.raises(RateLimiterUnavailable) as caught:
        RateLimiter(60, 60.0, state_path=url, bucket="huntress_x")
    message = str(caught.value)
    assert isinstance(caught.value, HuntressError)
    assert "postgresql://huntress:***@127.0.0.1:" in message and PASSWORD not in message
    assert "PGPASSWORD" in message  # the guidance


def test_close_closes_the_connection_and_is_idempotent(postgres_url):
    limiter = RateLimiter(5, 1.0, state_path=postgres_url, bucket=unique("huntress"))
    conn = limiter._pg._conn
    limiter.acquire()
    limiter.close()
    limiter.close()
    assert conn.closed
    with pytest.raises(RateLimiterUnavailable):
        limiter.acquire()


def test_a_client_paces_its_requests_through_the_postgres_log(make_simulator, postgres_url):
    # The simulator answers 429 past 5 requests per second: the shared log keeps the client under it.
    server = make_simulator(rate_limit=5, rate_window_seconds=1.0)
    limiter = RateLimiter(5, 1.0, state_path=postgres_url, bucket=unique("huntress"))
    with make_client(server) as probe:
        org_id = next(probe.organizations())["id"]
    time.sleep(1.2)  # the probe's requests leave the simulator's window
    admin(server, "requests/clear", {})
    with HuntressClient(DEMO_API_KEY, DEMO_API_SECRET, server.url, rate_limiter=limiter, backoff_base=0.05,
                        backoff_max=1.0) as client:
        started = time.monotonic()
        for _ in range(8):
            assert client.organization(org_id)["id"] == org_id
        assert time.monotonic() - started >= 0.9  # 8 requests at 5 per (1.05 s) window: one wait at least
        assert limiter._pg.last_granted_at is not None
    statuses = [e["status"] for e in admin(server, "requests")["requests"]]
    assert statuses == [200] * 8  # never a 429


# --- the Dagster instance on PostgreSQL ------------------------------------------------------------------


def test_the_postgres_instance_yaml_stores_a_real_run_in_postgres(postgres_url, tmp_path, monkeypatch):
    import dagster as dg
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    # A database of its own, so the assertions below see only this run.
    database = unique("dagster")
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
    admin.close()
    url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)

    @dg.asset
    def tiny():
        return dg.MaterializeResult(metadata={"rows": 3})

    job = dg.Definitions(assets=[tiny], jobs=[dg.define_asset_job("tiny_job")]).resolve_job_def("tiny_job")
    # dagster-postgres needs psycopg2, the driver SQLAlchemy 2.0 picks for postgresql:// (2.1 picks psycopg 3).
    from sqlalchemy.engine import make_url

    assert make_url(url).get_dialect().driver == "psycopg2"

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 8
        result = job.execute_in_process(instance=instance, tags={"huntress/connection": "default"})
        assert result.success
        run_id = result.run_id

    # A second instance, as another machine would open it from the same file: the run and its events are there.
    with dg.DagsterInstance.from_config(str(home)) as other:
        run = other.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["huntress/connection"] == "default"
        event = other.get_latest_materialization_event(dg.AssetKey("tiny"))
        assert event is not None and event.run_id == run_id
        assert event.asset_materialization.metadata["rows"].value == 3
    with psycopg2.connect(url) as conn, conn.cursor() as cur:  # in PostgreSQL itself, not in a local file
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cur.fetchone()[0] > 5
    assert not list(home.rglob("*.db")), "no SQLite storage next to the instance"
    if "DAGSTER_POSTGRES_URL" in os.environ:
        assert os.environ["DAGSTER_POSTGRES_URL"] == url
