"""The rate limiter's request log in PostgreSQL, for processes on several machines (plain Python: no Dagster).

Across machines (no shared disk), the state is a PostgreSQL URL instead of a file
(HUNTRESS_RATE_LIMIT_STATE=postgresql://user@host:5432/db, the password preferably in PGPASSWORD or
~/.pgpass): `PostgresRateLog` keeps the request instants of every bucket in one table,
`huntress_rate_log(bucket text, at double precision)`. Each acquire is one short transaction under
`pg_advisory_xact_lock(<64-bit key of the bucket>)`: delete the rows that left the window, count the
rest, insert one if under the limit; else the transaction ends and the process sleeps, outside it,
until the oldest row leaves the window, then tries again. The instants are the database's clock
(`clock_timestamp()`), never a client's, so machines whose clocks disagree still share one window.
Waits are bounded and logged exactly as with SQLite; a lost connection is reopened.

Why not pyrate-limiter's own `PostgresBucket` (looked at in 4.5): it needs psycopg 3 and psycopg_pool,
while dagster-postgres brings psycopg2; under contention it takes `LOCK TABLE ... NOWAIT` and refuses
the request outright instead of waiting its turn, so contending processes spin through the limiter's
retry delay; its `TIMESTAMP` (without time zone) column converts through each session's TimeZone
setting, so clients configured differently would disagree by hours; and its clock silently falls back
to the local clock when the query fails. A few statements of SQL here give the guarantees stated above.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from .coordination import CoordinationError, connect, first_lines, lock_key, redacted, scrub
from .errors import RateLimiterUnavailable

# The limiter's one logger, whichever log backs it: what operators filter on stays "huntress_dagster.ratelimit".
log = logging.getLogger("huntress_dagster.ratelimit")

RATE_LOG_TABLE = "huntress_rate_log"
_CREATE_RATE_LOG = f"""
CREATE TABLE IF NOT EXISTS {RATE_LOG_TABLE} (
    bucket text NOT NULL,
    at double precision NOT NULL  -- the database's clock, seconds since the epoch
)"""
_CREATE_RATE_LOG_INDEX = f"CREATE INDEX IF NOT EXISTS {RATE_LOG_TABLE}_bucket_at ON {RATE_LOG_TABLE} (bucket, at)"
# A client that stops mid-transaction (stopped, swapped out, cut off) must not keep the bucket's lock.
_IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000


class BucketBusy(Exception):
    """The bucket's lock was not had within the transaction's lock timeout."""



class PostgresRateLog:
    """The request instants of one bucket in `huntress_rate_log`, shared by every process on every machine
    that reaches the same database. Not a pyrate-limiter bucket: `RateLimiter` drives it directly."""

    def __init__(self, url: str, bucket: str, requests: int, window_seconds: float, *,
                 connect_timeout: float = 10.0, future_tolerance_seconds: float):
        self.url = url.strip()
        self.where = redacted(self.url)
        self.bucket = bucket
        self.requests = requests
        self.window_seconds = window_seconds
        self.future_tolerance_seconds = future_tolerance_seconds
        # Its own namespace: a PostgresLock named like a bucket must not take the bucket's lock.
        self.key = lock_key(f"{RATE_LOG_TABLE}\0{bucket}")
        self.connect_timeout = connect_timeout
        self.last_granted_at: float | None = None  # the database instant of this process's last grant
        self._mutex = threading.Lock()  # one transaction at a time on the connection
        self._conn = None
        self._closed = False
        try:
            self._connect()
        except CoordinationError as exc:
            raise RateLimiterUnavailable(str(exc)) from None
        self._ensure_table()

    def _connect(self):
        """Open the connection; `PostgresUnavailable` (a `CoordinationError`: retried) when it cannot."""
        conn = connect(self.url, connect_timeout=self.connect_timeout, autocommit=False,
                       application_name="huntress_dagster rate limiter", purpose="rate limiter")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET idle_in_transaction_session_timeout = {_IDLE_IN_TRANSACTION_TIMEOUT_MS}")
            conn.commit()
        except Exception as exc:  # noqa: BLE001
            conn.close()
            raise self._unavailable("refused the session settings", exc) from None
        self._conn = conn
        return conn

    def _unavailable(self, what: str, exc: BaseException) -> RateLimiterUnavailable:
        return RateLimiterUnavailable(f"The rate limiter's PostgreSQL at {self.where} {what}: "
                                      f"{scrub(first_lines(exc), self.url)}")

    def _ensure_table(self) -> None:
        """Create the table and its index unless they exist. Checked first, so a user who may not create
        tables (PostgreSQL 15+ grants no CREATE on schema public to non-owners) can use one made for it;
        serialized by an advisory lock, as concurrent `CREATE ... IF NOT EXISTS` can still collide."""
        import psycopg2

        conn = self._conn
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                            (RATE_LOG_TABLE, f"{RATE_LOG_TABLE}_bucket_at"))
                if not cur.fetchone()[0]:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(RATE_LOG_TABLE),))
                    cur.execute(_CREATE_RATE_LOG)
                    cur.execute(_CREATE_RATE_LOG_INDEX)
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise self._unavailable(f"could not create the table {RATE_LOG_TABLE} (create it once as a user "
                                    f"who may: {' '.join(_CREATE_RATE_LOG.split())}; "
                                    f"{_CREATE_RATE_LOG_INDEX})", exc) from None

    def try_take(self, lock_timeout: float) -> float:
        """One transaction: take a slot (returns 0.0) or say how many seconds until one frees (> 0).

        Raises `BucketBusy` when the bucket's lock stayed taken `lock_timeout` seconds, `CoordinationError`
        when the connection is lost or cannot be reopened (the next call tries again), and
        `RateLimiterUnavailable` when the database refuses (permissions, a closed limiter)."""
        import psycopg2
        from psycopg2 import errors

        with self._mutex:
            if self._closed:
                raise RateLimiterUnavailable(f"The rate limiter sharing {self.where} was closed")
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._connect()
            try:
                with conn.cursor() as cur:
                    lock_ms = max(1, int(lock_timeout * 1000))
                    cur.execute(f"SET LOCAL lock_timeout = {lock_ms}")
                    cur.execute(f"SET LOCAL statement_timeout = {lock_ms + 10_000}")
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.key,))
                    # The database's clock, read under the lock: every process and machine orders its
                    # requests on this one clock, so skewed client clocks cannot widen or narrow the window.
                    cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
                    now = cur.fetchone()[0]
                    # Rows that left the window go. The SQLite log's guard against entries dated in the future
                    # is moot here: no client's clock ever dates a row, so skew between machines cannot put one
                    # ahead. Only the database's own clock stepping back (or a row written by hand) could, and
                    # such a row would keep the window full until its date: it is dropped the same way.
                    cur.execute(f"DELETE FROM {RATE_LOG_TABLE} WHERE bucket = %s AND (at <= %s OR at > %s) "
                                "RETURNING at > %s",
                                (self.bucket, now - self.window_seconds, now + self.future_tolerance_seconds, now))
                    ahead = sum(1 for (future,) in cur.fetchall() if future)
                    cur.execute(f"SELECT count(*) FROM {RATE_LOG_TABLE} WHERE bucket = %s", (self.bucket,))
                    used = cur.fetchone()[0]
                    if used < self.requests:
                        cur.execute(f"INSERT INTO {RATE_LOG_TABLE} (bucket, at) VALUES (%s, %s)", (self.bucket, now))
                        wait = 0.0
                    else:  # a slot frees when the row `requests` places before the newest leaves the window
                        cur.execute(f"SELECT at FROM {RATE_LOG_TABLE} WHERE bucket = %s ORDER BY at "
                                    "LIMIT 1 OFFSET %s", (self.bucket, used - self.requests))
                        wait = max(0.001, cur.fetchone()[0] + self.window_seconds - now)
                conn.commit()
            except (errors.LockNotAvailable, errors.QueryCanceled):
                conn.rollback()
                raise BucketBusy() from None
            except errors.UndefinedTable:  # dropped while we ran: make it again, then retry at once
                conn.rollback()
                self._ensure_table()
                return 0.001
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self._drop_connection()
                raise CoordinationError(f"lost the connection to {self.where}: "
                                        f"{scrub(first_lines(exc), self.url)}") from None
            except psycopg2.Error as exc:
                conn.rollback()
                raise self._unavailable("refused the request log", exc) from None
        if ahead:
            log.warning("Discarded %d rate limiter entries dated ahead of the database clock from %s (bucket %s): "
                        "the database's clock stepped back, or someone wrote rows by hand. Left in place they "
                        "would have blocked every request until then", ahead, self.where, self.bucket)
        if wait == 0.0:
            self.last_granted_at = now
        return wait

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            self._drop_connection()
