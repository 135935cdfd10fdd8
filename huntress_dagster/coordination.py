"""Coordination between machines that share no disk: a PostgreSQL server they all reach.

File locks (filelock) and the SQLite request log only hold among the processes of one machine. When
the webserver, the daemon and the run workers of a Dagster deployment run on different machines (or
containers), they can still all reach the PostgreSQL server that holds the Dagster instance, so that
server coordinates them:

- `PostgresLock(url, name)`: a mutual-exclusion lock used exactly like `filelock.FileLock`
  (`with lock:`, `lock.acquire(timeout=...)`, `lock.release()`), held as a session-level advisory
  lock on a connection of its own. The server releases it when that connection ends, so a holder
  that is killed (SIGKILL, OOM, a lost container) releases it too: immediately when the holder's
  kernel closes the socket, and within about a minute (TCP keepalives, set per session here) when
  the holder's machine vanished without closing it.
- `ratelimit.RateLimiter(state_path="postgresql://...")`: the request log of the rate limiter
  (see ratelimit_postgres.py).

Both take a libpq URL, `postgresql://user:password@host:5432/database` (or `postgres://`). Prefer to
leave the password out of it and give it to libpq via PGPASSWORD or ~/.pgpass (PGPASSFILE): a URL is
configuration and is shown as such (e.g. in Dagster's resource config). Every message of this module
shows the URL with its password replaced by ***.

Advisory locks belong to a server session: a pooler in transaction mode (PgBouncer's
pool_mode=transaction) hands one session to several clients and breaks them. Connect directly, or
through a pooler in session mode.

Plain Python (psycopg2, which dagster-postgres brings), no Dagster imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
import time
from typing import Any, Self

from filelock import Timeout as _FileLockTimeout

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
DEFAULT_POLL_INTERVAL_SECONDS = 0.1
# The server drops a session whose peer stopped answering after about idle + interval * count seconds.
SERVER_KEEPALIVES = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}
CLIENT_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

_SCHEME = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://)(.*)$", re.DOTALL)
_PASSWORD_PARAM = re.compile(r"(?i)([?&]password=)([^&#]*)")


class CoordinationError(RuntimeError):
    """PostgreSQL coordination failed (server unreachable, refused, lost)."""


class PostgresUnavailable(CoordinationError):
    """The PostgreSQL server of the coordination URL could not be reached or refused the session."""


class LockTimeout(_FileLockTimeout, CoordinationError):
    """The lock was not acquired within its timeout. A `filelock.Timeout` (and a `TimeoutError`), so
    code written for `FileLock` (`except Timeout:`) works unchanged with `PostgresLock`."""

    def __init__(self, message: str, name: str = "") -> None:
        _FileLockTimeout.__init__(self, name)
        self.message = message
        self.name = name

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # pickled across processes (multiprocessing) with its message
        return self.__class__, (self.message, self.name)


def is_postgres_url(text: object) -> bool:
    """True for a libpq URL (postgresql:// or postgres://, any case), which selects the PostgreSQL backends."""
    if text is None:
        return False
    return str(text).strip().lower().startswith(POSTGRES_SCHEMES)


def redacted(url: str) -> str:
    """The URL as it may be shown: the password (of the user info, or a `password=` parameter) is `***`.

    Does not rely on the URL being well formed: a malformed URL is shown redacted too (the user info is
    whatever precedes the last `@`, so a password containing `@` or `/` is still hidden)."""
    text = str(url)
    match = _SCHEME.match(text.strip())
    if match:
        scheme, rest = match.groups()
        at = rest.rfind("@")
        if at >= 0:
            user, colon, _password = rest[:at].partition(":")
            if colon:
                rest = f"{user}:***{rest[at:]}"
        text = scheme + rest
    return _PASSWORD_PARAM.sub(r"\1***", text)


def _secrets_of(url: str) -> list[str]:
    """The password(s) a URL carries, raw and percent-decoded, longest first."""
    from urllib.parse import unquote

    found: list[str] = []
    match = _SCHEME.match(str(url).strip())
    if match:
        rest = match.group(2)
        at = rest.rfind("@")
        if at >= 0:
            _user, colon, password = rest[:at].partition(":")
            if colon and password:
                found += [password, unquote(password)]
    found += [value for m in _PASSWORD_PARAM.finditer(str(url)) if (value := m.group(2))]
    found += [unquote(value) for value in list(found)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` (an error message of libpq, which may quote the whole URL) without the URL's password."""
    text = str(text).replace(str(url), redacted(url))
    for secret in _secrets_of(url):
        if len(secret) >= 3:  # shorter ones would mangle the message; libpq quotes them only inside the URL
            text = text.replace(secret, "***")
    return text


def first_lines(exc: BaseException) -> str:
    """The first two non-blank lines of an error's text, joined (libpq's messages run over several)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " ".join(lines[:2]) or type(exc).__name__


def lock_key(name: str) -> int:
    """The advisory lock key of a name: the first 64 bits of its SHA-256, as PostgreSQL's signed bigint.
    The same in every process and on every machine (unlike `hash()`)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def connect(url: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS, autocommit: bool = True,
            application_name: str = "huntress_dagster", purpose: str = "coordination") -> Any:
    """A psycopg2 connection to `url` with TCP keepalives both ways, so either side notices a dead peer.

    Raises `PostgresUnavailable` naming the redacted URL (never the password) when it cannot connect.
    Settings given in the URL itself (e.g. `?connect_timeout=5`) win over these defaults."""
    try:
        import psycopg2
        from psycopg2.extensions import parse_dsn
    except ImportError as exc:  # pragma: no cover - psycopg2-binary comes with dagster-postgres
        raise PostgresUnavailable("PostgreSQL coordination needs psycopg2 (pip install dagster-postgres, which "
                                  "brings psycopg2-binary)") from exc
    where = redacted(url)
    try:
        given = parse_dsn(url)
        defaults: dict[str, Any] = {"connect_timeout": max(2, round(connect_timeout)),
                                    "application_name": application_name, **CLIENT_KEEPALIVES}
        extra = {k: v for k, v in defaults.items() if k not in given}
        conn = psycopg2.connect(url, **extra)
    except Exception as exc:  # noqa: BLE001 - psycopg2 raises several types; all mean "cannot connect"
        raise PostgresUnavailable(f"Cannot connect to PostgreSQL at {where} for the {purpose}: "
                                  f"{scrub(first_lines(exc), url)}") from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            # Per session (any user may set them); a Unix-socket session ignores them.
            for setting, value in SERVER_KEEPALIVES.items():
                cur.execute(f"SET {setting} = {int(value)}")
        conn.autocommit = autocommit
    except Exception as exc:  # noqa: BLE001
        conn.close()
        raise PostgresUnavailable(f"PostgreSQL at {where} refused the {purpose} session: "
                                  f"{scrub(first_lines(exc), url)}") from None
    return conn


class _AcquireReturnProxy:
    """What `acquire()` returns, like filelock's: `with lock.acquire(timeout=1):` releases once at the end."""

    def __init__(self, lock: PostgresLock) -> None:
        self.lock = lock

    def __enter__(self) -> PostgresLock:
        return self.lock

    def __exit__(self, *exc_info: object) -> None:
        self.lock.release()


class PostgresLock:
    """A lock across machines: a PostgreSQL session-level advisory lock keyed by `sha256(name)`.

    Used like `filelock.FileLock`::

        with PostgresLock(url, "alerts", timeout=600):
            ...

    `acquire` polls `pg_try_advisory_lock` (every `poll_interval` seconds) on a connection of its own
    until `timeout` (negative: forever; 0: one try), then raises `LockTimeout` (a `filelock.Timeout`)
    naming the lock. `release` unlocks and closes that connection. Re-entrant within a thread (a counter,
    like FileLock); different threads, processes and machines exclude each other, each thread on its
    own connection. Connection problems raise `PostgresUnavailable` naming the redacted URL.

    If the connection is lost while the lock is held (server restart, network cut), the server has
    released the lock: `release()` then logs a warning. Work guarded by it should be idempotent
    (atomic replace), as it is in this package.
    """

    def __init__(self, url: str, name: str, timeout: float = 600, *,
                 poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"expected a postgresql:// URL for a PostgresLock, got {redacted(str(url))!r}")
        self.url = str(url).strip()
        self.name = name
        self.key = lock_key(name)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self._local = threading.local()

    # -- state of the calling thread --

    @property
    def _conn(self) -> Any:
        return getattr(self._local, "conn", None)

    @property
    def lock_counter(self) -> int:
        return getattr(self._local, "count", 0)

    @property
    def is_locked(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self.lock_counter > 0

    @property
    def lock_file(self) -> str:
        """What the lock guards (FileLock's attribute name): its name."""
        return self.name

    def _describe(self) -> str:
        return f"lock {self.name!r} (PostgreSQL advisory lock {self.key} at {redacted(self.url)})"

    def acquire(self, timeout: float | None = None, poll_interval: float | None = None, *,
                blocking: bool | None = None) -> _AcquireReturnProxy:
        if self.lock_counter > 0:
            self._local.count += 1
            return _AcquireReturnProxy(self)
        timeout = self.timeout if timeout is None else timeout
        if blocking is False:
            timeout = 0
        poll = self.poll_interval if poll_interval is None else poll_interval
        started = time.monotonic()
        deadline = None if timeout < 0 else started + timeout
        conn = connect(self.url, connect_timeout=self.connect_timeout, application_name="huntress_dagster lock",
                       purpose=f"lock {self.name!r}")
        try:
            while True:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                    if cur.fetchone()[0]:
                        break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise LockTimeout(f"Could not acquire the {self._describe()} within {timeout:g} s: another "
                                      "process holds it", self.name)
                pause = poll if deadline is None else min(poll, max(0.0, deadline - now))
                time.sleep(pause)
        except LockTimeout:
            conn.close()
            raise
        except Exception as exc:  # noqa: BLE001 - the server went away while we polled
            conn.close()
            raise CoordinationError(f"Lost the connection while acquiring the {self._describe()}: "
                                    f"{scrub(first_lines(exc), self.url)}") from None
        self._local.conn = conn
        self._local.count = 1
        waited = time.monotonic() - started
        if waited >= 10:
            log.info("Acquired the %s after %.1f s", self._describe(), waited)
        return _AcquireReturnProxy(self)

    def release(self, force: bool = False) -> None:
        if self.lock_counter == 0:
            return
        self._local.count = 0 if force else self.lock_counter - 1
        if self._local.count > 0:
            return
        conn, self._local.conn = self._conn, None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                held = cur.fetchone()[0]
            if not held:
                log.warning("The %s was no longer held when released", self._describe())
        except Exception as exc:  # noqa: BLE001 - the session ended: the server released the lock already
            log.warning("The connection of the %s was lost while it was held (the server released the lock "
                        "then): %s", self._describe(), scrub(first_lines(exc), self.url))
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:  # like FileLock: an abandoned lock object does not keep the lock
        try:
            conn = self._local.__dict__.get("conn")
        except Exception:  # noqa: BLE001
            return
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __repr__(self) -> str:
        return f"PostgresLock({redacted(self.url)!r}, {self.name!r}, timeout={self.timeout!r})"
