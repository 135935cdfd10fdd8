"""A sliding-window request budget shared by every process that uses one Huntress account.

Huntress allows 60 requests per minute per account in a sliding window. A Dagster sensor, a
schedule tick and a backfill run in different processes, so an in-memory limiter would let them
add up to several times the budget. pyrate-limiter's SQLite bucket keeps a log of request
timestamps in one SQLite file guarded by a file lock: every process appends to and counts the
same log, which is exactly a cross-process sliding window.

The log is only as trustworthy as its file, so the limiter also guards against it:

- The timestamps are wall-clock milliseconds, and the bucket counts every row newer than the window
  start with no upper bound: one row dated in the future (the clock stepped back, or someone else
  wrote the file) would keep the window full until that date. Rows more than
  `FUTURE_TOLERANCE_SECONDS` ahead of now are deleted, with a warning, before every count.
- No acquire waits without bound: past `max_wait_seconds` it raises `RateLimiterStalled`, and a wait
  longer than `log_wait_seconds` is logged with its length and cause.
- The default state lives in a private directory (0700) of the Dagster instance or of the user, not
  at a predictable path of the shared temp directory; the state and lock files are created 0600.

The log lives in one of two places: a SQLite file shared by the processes of one machine
(`ratelimit_sqlite`, the default), or a PostgreSQL table shared by every machine that reaches the database
(HUNTRESS_RATE_LIMIT_STATE=postgresql://...; `ratelimit_postgres`, which says why not pyrate-limiter's own
PostgresBucket).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from pyrate_limiter import InMemoryBucket, Limiter, Rate

from .coordination import CoordinationError, is_postgres_url
from .errors import RateLimiterStalled, RateLimiterUnavailable
from .ratelimit_postgres import BucketBusy, PostgresRateLog
from .ratelimit_sqlite import is_default_location, open_guarded_bucket

log = logging.getLogger(__name__)

DEFAULT_REQUESTS = 60
DEFAULT_WINDOW_SECONDS = 60.0
# Entries dated further ahead than this are not requests of any process on this machine's current clock.
FUTURE_TOLERANCE_SECONDS = 1.0
# A wait at least this long gets a log line (and one more every this many seconds while it lasts).
DEFAULT_LOG_WAIT_SECONDS = 10.0


def bucket_name_for(api_key: str, base_url: str) -> str:
    """A table name per (account credential, API host): the budget is per account.

    Hashed so the API key itself never lands in a file name or a table name.
    """
    digest = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:16]
    return f"huntress_{digest}"


class RateLimiter:
    """Blocks until one more request fits into `requests` per `window_seconds`, for at most
    `max_wait_seconds` (then `RateLimiterStalled`).

    With `state_path`, the window is shared through that SQLite file by all processes on the
    machine, or, when it is a postgresql:// URL, through that database by all processes on every
    machine reaching it; without it, only by the threads of this process.
    `ratelimit_sqlite.default_state_path()` is the private default location of a shared (one-machine) state.
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
                                       connect_timeout=min(10.0, self.max_wait_seconds),
                                       future_tolerance_seconds=FUTURE_TOLERANCE_SECONDS)
            return
        if self.state_path:
            path = Path(self.state_path)
            self._bucket = open_guarded_bucket([rate], path, bucket, lock_timeout=self.max_wait_seconds,
                                               tighten=is_default_location(path),
                                               future_tolerance_seconds=FUTURE_TOLERANCE_SECONDS)
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
            except BucketBusy:
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
