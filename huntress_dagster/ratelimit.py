"""A sliding-window request budget shared by every process that uses one Huntress account.

Huntress allows 60 requests per minute per account in a sliding window. A Dagster sensor, a
schedule tick and a backfill run in different processes, so an in-memory limiter would let them
add up to several times the budget. pyrate-limiter's SQLite bucket keeps a log of request
timestamps in one SQLite file guarded by a file lock: every process appends to and counts the
same log, which is exactly a cross-process sliding window.

The log is only as trustworthy as its file, so this module also guards against it:

- The timestamps are wall-clock milliseconds, and the bucket counts every row newer than the window
  start with no upper bound: one row dated in the future (the clock stepped back, or someone else
  wrote the file) would keep the window full until that date. Rows more than
  `FUTURE_TOLERANCE_SECONDS` ahead of now are deleted, with a warning, before every count.
- No acquire waits without bound: past `max_wait_seconds` it raises `RateLimiterStalled`, and a wait
  longer than `log_wait_seconds` is logged with its length and cause.
- The default state lives in a private directory (0700) of the Dagster instance or of the user, not
  at a predictable path of the shared temp directory; the state and lock files are created 0600.

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
import hashlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock, Timeout
from pyrate_limiter import InMemoryBucket, Limiter, Rate, SQLiteBucket
from pyrate_limiter.buckets.sqlite_bucket import Queries

from .coordination import CoordinationError, connect, is_postgres_url, lock_key, redacted, scrub
from .errors import HuntressConfigError, RateLimiterStalled, RateLimiterUnavailable

log = logging.getLogger(__name__)

DEFAULT_REQUESTS = 60
DEFAULT_WINDOW_SECONDS = 60.0
# Entries dated further ahead than this are not requests of any process on this machine's current clock.
FUTURE_TOLERANCE_SECONDS = 1.0
# A wait at least this long gets a log line (and one more every this many seconds while it lasts).
DEFAULT_LOG_WAIT_SECONDS = 10.0
STATE_DIR_NAME = "huntress_dagster"
# Under DAGSTER_HOME, hidden: the Quickstart's DAGSTER_HOME is the repository, whose package is huntress_dagster/.
INSTANCE_STATE_DIR_NAME = ".huntress_dagster"
STATE_FILE_NAME = "ratelimit.sqlite"
_PRIVATE_DIR_MODE = 0o700
_PRIVATE_FILE_MODE = 0o600


def bucket_name_for(api_key: str, base_url: str) -> str:
    """A table name per (account credential, API host): the budget is per account.

    Hashed so the API key itself never lands in a file name or a table name.
    """
    digest = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:16]
    return f"huntress_{digest}"


# --- where the state lives ---------------------------------------------------------------------------


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The private directory of the default state: `$DAGSTER_HOME/.huntress_dagster` for a Dagster
    instance, else `$XDG_CACHE_HOME/huntress_dagster` (`~/.cache/huntress_dagster`) for the user.

    Every process of one instance (webserver, daemon, runs) sees the same DAGSTER_HOME, so they share
    one budget; nobody else can write it, so nobody else can stall or starve it.
    """
    env = os.environ if environ is None else environ
    dagster_home = env.get("DAGSTER_HOME")
    if dagster_home:
        return Path(os.path.abspath(os.path.expanduser(dagster_home))) / INSTANCE_STATE_DIR_NAME
    cache = env.get("XDG_CACHE_HOME")
    if cache and os.path.isabs(cache):  # the XDG spec: a relative path is invalid and ignored
        return Path(cache) / STATE_DIR_NAME
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".cache" / STATE_DIR_NAME


def default_state_path(environ: Mapping[str, str] | None = None) -> str:
    return str(default_state_dir(environ) / STATE_FILE_NAME)


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode))


_warned: set[tuple[str, str]] = set()


def _warn_once(path: Path, message: str, *args: object) -> None:
    """A RateLimiter is built per client: say each thing about a path once per process, not per client."""
    key = (str(path), message)
    if key not in _warned:
        _warned.add(key)
        log.warning(message, path, *args)


def ensure_private_dir(path: Path, *, tighten: bool) -> None:
    """Create `path` (0700) if missing. If it exists and others may enter it: tighten it to 0700 when it is
    our default location (`tighten`), else leave a directory the user chose as it is, with a warning."""
    path.mkdir(mode=_PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):  # mkdir(exist_ok) already refuses a file; a race could still leave one
        raise HuntressConfigError(f"The rate limiter state directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        _warn_once(path, "The rate limiter state directory %s belongs to another user (uid %d): whoever can "
                   "write it can stall or starve this integration's requests", st.st_uid)
    if not st.st_mode & 0o077:
        return
    if tighten and st.st_uid == os.geteuid():
        os.chmod(path, _PRIVATE_DIR_MODE)
        log.warning("Tightened the rate limiter state directory %s from %s to 0o700 (owner only)",
                    path, _mode(st))
    else:
        _warn_once(path, "The rate limiter state directory %s is open to group/others (mode %s): whoever can "
                   "write there can stall or starve this integration's requests. Left as is (a directory "
                   "you chose); chmod 700 it unless several accounts are meant to share this budget",
                   _mode(st))


def ensure_private_file(path: Path, *, tighten: bool, create: bool = True) -> None:
    """Create `path` 0600 if missing; an existing file open to group/others is tightened (`tighten`) or
    reported with a warning."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, _PRIVATE_FILE_MODE)
    except FileNotFoundError:
        if create:
            raise
        return
    except OSError as exc:
        raise HuntressConfigError(
            f"Cannot open the rate limiter state file {path}: {exc.strerror}. Expected a file this user can "
            "read and write (HUNTRESS_RATE_LIMIT_STATE)") from None
    try:
        st = os.fstat(fd)
        if not st.st_mode & 0o077:
            return
        if tighten and st.st_uid == os.geteuid():
            os.fchmod(fd, _PRIVATE_FILE_MODE)
            log.warning("Tightened the rate limiter state file %s from %s to 0o600 (owner only)",
                        path, _mode(st))
        else:
            _warn_once(path, "The rate limiter state file %s is open to group/others (mode %s): left as is "
                       "(a path you chose); chmod 600 it unless several accounts are meant to share this "
                       "budget", _mode(st))
    finally:
        os.close(fd)


def _is_default_location(state_path: Path) -> bool:
    try:
        return state_path.parent.resolve() == default_state_dir().resolve()
    except OSError:
        return False


# --- the bucket ----------------------------------------------------------------------------------------


class GuardedSQLiteBucket(SQLiteBucket):
    """pyrate-limiter's SQLite bucket, minus entries dated in the future.

    `SQLiteBucket.put` counts rows with `item_timestamp >= now - window`, with no upper bound, and a
    rejected request waits until the blocking row leaves the window: a row dated next year blocks every
    request until next year. Before every count (under the same file lock) rows more than
    `future_tolerance_ms` ahead of now are deleted. A text or blob timestamp sorts after every number in
    SQLite, so garbage rows go the same way.
    """

    future_tolerance_ms: int = int(FUTURE_TOLERANCE_SECONDS * 1000)
    state_path: str = ""

    def put(self, item):
        with self.lock:
            self.discard_future_entries()
            return super().put(item)

    def discard_future_entries(self) -> int:
        """Delete the rows dated beyond now + tolerance; returns how many there were."""
        with self.lock:
            now = self.now()
            bound = now + self.future_tolerance_ms
            cur = self.conn.execute(
                "SELECT COUNT(*), MAX(CASE WHEN typeof(item_timestamp) IN ('integer', 'real') "
                f"THEN item_timestamp END) FROM '{self.table}' WHERE item_timestamp > ?", (bound,))
            count, newest = cur.fetchone()
            cur.close()
            if not count:
                return 0
            self.conn.execute(f"DELETE FROM '{self.table}' WHERE item_timestamp > ?", (bound,)).close()
            self.conn.commit()
        if newest is None:
            ahead = "not valid timestamps"
        else:
            ahead = f"dated up to {(newest - now) / 1000:,.1f} s ahead"
        log.warning(
            "Discarded %d rate limiter entries %s of now from %s (table %s): the system clock stepped back, "
            "or another process wrote this file. Left in place they would have blocked every request until "
            "then",
            count, ahead, self.state_path or "the state file", self.table)
        return count


def open_guarded_bucket(rates: list[Rate], state_path: Path, table: str, *, lock_timeout: float,
                        tighten: bool) -> GuardedSQLiteBucket:
    """`SQLiteBucket.init_from_file(use_file_lock=True)`, with owner-only files and a bounded lock wait."""
    ensure_private_dir(state_path.parent, tighten=tighten)
    ensure_private_file(state_path, tighten=tighten)
    # SQLite creates the -wal and -shm files with the database file's mode; older ones are checked here.
    for suffix in ("-wal", "-shm"):
        ensure_private_file(Path(f"{state_path}{suffix}"), tighten=tighten, create=False)
    lock_path = Path(f"{state_path}.lock")
    ensure_private_file(lock_path, tighten=tighten)
    file_lock = FileLock(str(lock_path), mode=_PRIVATE_FILE_MODE)
    try:
        file_lock.acquire(timeout=lock_timeout)
    except Timeout:
        raise RateLimiterStalled(f"Could not lock the rate limiter state {state_path} within "
                                 f"{lock_timeout:g} s (another process holds its lock)") from None
    try:
        conn = sqlite3.connect(str(state_path), isolation_level="DEFERRED", check_same_thread=False)
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL;")
        cur.execute("PRAGMA synchronous=NORMAL;")
        cur.execute(Queries.CREATE_BUCKET_TABLE.format(table=table))
        cur.execute(Queries.CREATE_INDEX_ON_TIMESTAMP.format(index_name=f"idx_{table}_rate_item_timestamp",
                                                             table_name=table))
        cur.close()
        conn.commit()
    finally:
        file_lock.release()
    bucket = GuardedSQLiteBucket(rates, conn, table=table, lock=file_lock)
    bucket.state_path = str(state_path)
    return bucket


# --- the PostgreSQL log (several machines) -------------------------------------------------------------

RATE_LOG_TABLE = "huntress_rate_log"
_CREATE_RATE_LOG = f"""
CREATE TABLE IF NOT EXISTS {RATE_LOG_TABLE} (
    bucket text NOT NULL,
    at double precision NOT NULL  -- the database's clock, seconds since the epoch
)"""
_CREATE_RATE_LOG_INDEX = f"CREATE INDEX IF NOT EXISTS {RATE_LOG_TABLE}_bucket_at ON {RATE_LOG_TABLE} (bucket, at)"
# A client that stops mid-transaction (stopped, swapped out, cut off) must not keep the bucket's lock.
_IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000


class _Busy(Exception):
    """The bucket's lock was not had within the transaction's lock timeout."""


def _first_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).strip().splitlines()[:2]) or type(exc).__name__


class PostgresRateLog:
    """The request instants of one bucket in `huntress_rate_log`, shared by every process on every machine
    that reaches the same database. Not a pyrate-limiter bucket: `RateLimiter` drives it directly."""

    def __init__(self, url: str, bucket: str, requests: int, window_seconds: float, *,
                 connect_timeout: float = 10.0):
        self.url = url.strip()
        self.where = redacted(self.url)
        self.bucket = bucket
        self.requests = requests
        self.window_seconds = window_seconds
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
                                      f"{scrub(_first_line(exc), self.url)}")

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

        Raises `_Busy` when the bucket's lock stayed taken `lock_timeout` seconds, `CoordinationError`
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
                                (self.bucket, now - self.window_seconds, now + FUTURE_TOLERANCE_SECONDS, now))
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
                raise _Busy() from None
            except errors.UndefinedTable:  # dropped while we ran: make it again, then retry at once
                conn.rollback()
                self._ensure_table()
                return 0.001
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self._drop_connection()
                raise CoordinationError(f"lost the connection to {self.where}: "
                                        f"{scrub(_first_line(exc), self.url)}") from None
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


# --- the limiter ---------------------------------------------------------------------------------------


class RateLimiter:
    """Blocks until one more request fits into `requests` per `window_seconds`, for at most
    `max_wait_seconds` (then `RateLimiterStalled`).

    With `state_path`, the window is shared through that SQLite file by all processes on the
    machine, or, when it is a postgresql:// URL, through that database by all processes on every
    machine reaching it; without it, only by the threads of this process. `default_state_path()` is the
    private default location of a shared (one-machine) state.
    """

    def __init__(
        self,
        requests: int = DEFAULT_REQUESTS,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        state_path: str | os.PathLike | None = None,
        bucket: str = "huntress",
        max_wait_seconds: float | None = None,
        log_wait_seconds: float = DEFAULT_LOG_WAIT_SECONDS,
    ):
        if requests < 1:
            raise ValueError("the rate budget must allow at least 1 request per window")
        if window_seconds <= 0:
            raise ValueError("the rate window must be positive")
        if max_wait_seconds is not None and not max_wait_seconds > 0:
            raise ValueError("the maximum wait must be positive")
        if not log_wait_seconds > 0:
            raise ValueError("the wait logging threshold must be positive")
        self.requests = requests
        self.window_seconds = window_seconds
        self.state_path = str(state_path) if state_path else None
        self.bucket = bucket
        self._pg: PostgresRateLog | None = None
        # The server counts a request when it arrives, the limiter when it grants it: with the window
        # exactly the API's, a request granted just as a slot frees can arrive 61st in the server's window
        # when the one 60 earlier was slower in flight (seen: 0-2 429s per 1,200 requests at full rate).
        # So the enforced window is 3% longer (1.8 s of Huntress's 60 s; at least 50 ms): 0.97 of the
        # limit at most, and arrival jitter within the margin never costs a 429.
        window_ms = int(window_seconds * 1000)
        enforced_ms = window_ms + max(50, window_ms * 3 // 100)
        self.enforced_window_seconds = enforced_ms / 1000
        # One process alone never waits longer than one enforced window (plus the 1 s of future tolerance
        # and lock overhead). Processes sharing the state race for each freed slot, so a waiter may lose a
        # few: a second window absorbs that before the wait counts as stalled.
        if max_wait_seconds is None:
            max_wait_seconds = 2 * self.enforced_window_seconds + 5.0
        self.max_wait_seconds = float(max_wait_seconds)
        self.log_wait_seconds = float(log_wait_seconds)
        rate = Rate(requests, enforced_ms)
        if self.state_path and is_postgres_url(self.state_path):
            self.state_path = self.state_path.strip()
            self._pg = PostgresRateLog(self.state_path, bucket, requests, self.enforced_window_seconds,
                                       connect_timeout=min(10.0, self.max_wait_seconds))
            return
        if self.state_path:
            path = Path(self.state_path)
            self._bucket = open_guarded_bucket([rate], path, bucket, lock_timeout=self.max_wait_seconds,
                                               tighten=_is_default_location(path))
        else:
            self._bucket = InMemoryBucket([rate])
        self._limiter = Limiter(self._bucket, buffer_ms=25)

    def _why(self) -> str:
        if self._pg is not None:
            shared = f"this and other processes sharing {self._pg.where} (bucket {self.bucket})"
        else:
            shared = f"this and other processes sharing {self.state_path}" if self.state_path else "this process"
        return f"the budget of {self.requests} requests per {self.window_seconds:g} s is used up by {shared}"

    def acquire(self) -> float:
        """Take one request slot, sleeping as long as needed (at most `max_wait_seconds`); returns the
        seconds waited. Raises `RateLimiterStalled` when no slot came in time (and, with a PostgreSQL
        state, `RateLimiterUnavailable` when the database could not be used)."""
        if self._pg is not None:
            return self._acquire_postgres()
        started = time.monotonic()
        deadline = started + self.max_wait_seconds
        next_report = started + self.log_wait_seconds
        while True:
            attempt = time.monotonic()
            timeout = max(0.001, min(deadline, next_report) - attempt)
            if self._limiter.try_acquire("request", blocking=True, timeout=timeout):
                break
            now = time.monotonic()
            waited = now - started
            if now >= deadline:
                raise RateLimiterStalled(f"No request slot from the rate limiter within "
                                         f"{self.max_wait_seconds:g} s: {self._why()}")
            if now >= next_report:
                next_report = self._report_waiting(waited)
            elif now - attempt < 0.005:
                time.sleep(0.01)  # refused without waiting (a lock timeout): do not spin
        return self._report_waited(started)

    def _report_waiting(self, waited: float) -> float:
        """Log a wait still going on; returns when to log the next time."""
        # Up to one window is the budget working (a burst used it up); beyond, something is off.
        level = logging.WARNING if waited > self.enforced_window_seconds + 2 else logging.INFO
        log.log(level, "Rate limiter: waiting %.0f s so far for a request slot (gives up after "
                "%g s): %s", waited, self.max_wait_seconds, self._why())
        return time.monotonic() + self.log_wait_seconds

    def _report_waited(self, started: float) -> float:
        waited = time.monotonic() - started
        if waited >= self.log_wait_seconds:
            level = logging.WARNING if waited > self.enforced_window_seconds + 2 else logging.INFO
            log.log(level, "Rate limiter: waited %.1f s for a request slot: %s", waited, self._why())
        return waited

    def _acquire_postgres(self) -> float:
        """`acquire` on the PostgreSQL log: a short transaction per try, the sleeps between tries outside it.

        A lost connection is reopened on the next try; if the database stays unreachable until the
        deadline, `RateLimiterUnavailable` says why (the URL redacted)."""
        assert self._pg is not None
        started = time.monotonic()
        deadline = started + self.max_wait_seconds
        next_report = started + self.log_wait_seconds
        outage: CoordinationError | None = None
        while True:
            attempt = time.monotonic()
            try:
                # The bucket's lock is held for a few statements: waiting up to 5 s for it is contention,
                # longer is a stuck session (which the server ends after its idle-in-transaction timeout).
                wait = self._pg.try_take(lock_timeout=min(5.0, max(0.05, deadline - attempt)))
                if outage is not None:
                    log.warning("Rate limiter: %s is reachable again", self._pg.where)
                    outage = None
            except _Busy:
                wait = 0.01
            except CoordinationError as exc:  # lost, or not reopened yet: try again until the deadline
                if outage is None:
                    log.warning("Rate limiter: %s; reconnecting (gives up after %g s)", exc, self.max_wait_seconds)
                outage = exc
                wait = 0.5
            if wait == 0.0:
                return self._report_waited(started)
            now = time.monotonic()
            if now >= deadline:
                if outage is not None:
                    raise RateLimiterUnavailable(f"The rate limiter's PostgreSQL could not be used for "
                                                 f"{now - started:.1f} s: {outage}") from None
                raise RateLimiterStalled(f"No request slot from the rate limiter within "
                                         f"{self.max_wait_seconds:g} s: {self._why()}")
            if now >= next_report:
                next_report = self._report_waiting(now - started)
            # A little past the instant the slot frees, so the next try finds it free on the database's clock.
            time.sleep(max(0.0, min(wait + 0.01, deadline - now, next_report - now)))

    def close(self) -> None:
        """Stop pyrate-limiter's background leak thread and close the bucket's SQLite connection: a
        long-lived process (the sensor's code server) makes a client per tick. With PostgreSQL: closes its
        connection."""
        if self._pg is not None:
            self._pg.close()
            return
        self._limiter.close()
        close_bucket = getattr(self._bucket, "close", None)
        if close_bucket is not None:
            close_bucket()

    def __repr__(self) -> str:
        return (
            f"RateLimiter(requests={self.requests}, window_seconds={self.window_seconds}, "
            f"shared={'yes' if self.state_path else 'no'})"
        )
