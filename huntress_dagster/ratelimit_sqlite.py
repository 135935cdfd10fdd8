"""The rate limiter's request log on one machine: pyrate-limiter's SQLite bucket in a private file (plain
Python: no Dagster).

Every process of the machine appends to and counts the same log under a file lock: a cross-process sliding
window. The log is only as trustworthy as its file, so the rows dated in the future are dropped before every
count (`GuardedSQLiteBucket`), and the default state lives in a private directory (0700) of the Dagster
instance or of the user, its files created 0600 (`default_state_dir`, `open_guarded_bucket`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from filelock import FileLock, Timeout
from pyrate_limiter import Rate, SQLiteBucket
from pyrate_limiter.buckets.sqlite_bucket import Queries

from .errors import HuntressConfigError, RateLimiterStalled

# The limiter's one logger, whichever log backs it: what operators filter on stays "huntress_dagster.ratelimit".
log = logging.getLogger("huntress_dagster.ratelimit")

STATE_DIR_NAME = "huntress_dagster"
# Under DAGSTER_HOME, hidden: the Quickstart's DAGSTER_HOME is the repository, whose package is huntress_dagster/.
INSTANCE_STATE_DIR_NAME = ".huntress_dagster"
STATE_FILE_NAME = "ratelimit.sqlite"
_PRIVATE_DIR_MODE = 0o700
_PRIVATE_FILE_MODE = 0o600


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
    _keep_private(path, st, "directory", _PRIVATE_DIR_MODE, lambda mode: os.chmod(path, mode), tighten=tighten)


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
        _keep_private(path, os.fstat(fd), "file", _PRIVATE_FILE_MODE, lambda mode: os.fchmod(fd, mode),
                      tighten=tighten)
    finally:
        os.close(fd)


def _keep_private(path: Path, st: os.stat_result, kind: str, private_mode: int, chmod: Callable[[int], None], *,
                  tighten: bool) -> None:
    """A state directory or file open to group/others: tightened to `private_mode` when it is ours to change
    (`tighten`, and this user owns it), else reported once and left as the user chose it."""
    if not st.st_mode & 0o077:
        return
    if tighten and st.st_uid == os.geteuid():
        chmod(private_mode)
        log.warning("Tightened the rate limiter state %s %s from %s to %s (owner only)", kind, path, _mode(st),
                    oct(private_mode))
    else:
        _warn_once(path, f"The rate limiter state {kind} %s is open to group/others (mode %s): whoever can write "
                   "it can stall or starve this integration's requests. Left as is (a path you chose); "
                   f"chmod {private_mode:o} it unless several accounts are meant to share this budget", _mode(st))


def is_default_location(state_path: Path) -> bool:
    try:
        return state_path.parent.resolve() == default_state_dir().resolve()
    except OSError:
        return False


class GuardedSQLiteBucket(SQLiteBucket):
    """pyrate-limiter's SQLite bucket, minus entries dated in the future.

    `SQLiteBucket.put` counts rows with `item_timestamp >= now - window`, with no upper bound, and a
    rejected request waits until the blocking row leaves the window: a row dated next year blocks every
    request until next year. Before every count (under the same file lock) rows more than
    `future_tolerance_ms` ahead of now are deleted. A text or blob timestamp sorts after every number in
    SQLite, so garbage rows go the same way.
    """

    future_tolerance_ms: int  # set by `open_guarded_bucket` (the limiter's FUTURE_TOLERANCE_SECONDS)
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
                        tighten: bool, future_tolerance_seconds: float) -> GuardedSQLiteBucket:
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
    bucket.future_tolerance_ms = int(future_tolerance_seconds * 1000)
    return bucket
