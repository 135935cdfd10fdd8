"""The rate limiter against a misbehaving state file: real SQLite files, real processes, no mocks."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from huntress_dagster.errors import HuntressError, RateLimiterStalled
from huntress_dagster.ratelimit import RateLimiter
from huntress_dagster.ratelimit_sqlite import default_state_dir, default_state_path

LOGGER = "huntress_dagster.ratelimit"


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def insert_rows(state: Path, table: str, timestamps: list) -> None:
    """Write rows straight into the bucket table, as another process (or a clock step) would."""
    with sqlite3.connect(state) as conn:
        conn.executemany(f"INSERT INTO '{table}' (name, item_timestamp) VALUES ('request', ?)",
                         [(t,) for t in timestamps])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- entries in the future -----------------------------------------------------------------------------


def test_future_entries_are_discarded_with_a_warning_instead_of_stalling(tmp_path, caplog):
    state = tmp_path / "rl.sqlite"
    limiter = RateLimiter(3, 60.0, state_path=state, max_wait_seconds=5.0)
    # A year ahead (another user's file / a clock stepped back), 30 s ahead, and rows that are not even numbers:
    # more than the whole budget, so each alone would block every request until its date.
    insert_rows(state, "huntress", [now_ms() + 365 * 86_400_000] * 5 + [now_ms() + 30_000] * 3 + ["garbage"])
    caplog.set_level(logging.WARNING, logger=LOGGER)
    started = time.monotonic()
    waits = [limiter.acquire() for _ in range(3)]  # the whole budget is ours again
    assert time.monotonic() - started < 1.0
    assert max(waits) < 0.5
    warnings = [r for r in caplog.records if r.name == LOGGER and "Discarded 9" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert str(state) in warnings[0].getMessage() and "in the future" not in warnings[0].getMessage()
    assert "clock stepped back" in warnings[0].getMessage()
    with sqlite3.connect(state) as conn:
        assert conn.execute("SELECT COUNT(*) FROM huntress").fetchone()[0] == 3  # only our own requests remain


def test_entries_within_the_tolerance_still_count(tmp_path):
    # Half a second ahead is clock jitter between processes, not a stale file: it is kept and counted.
    state = tmp_path / "rl.sqlite"
    limiter = RateLimiter(1, 30.0, state_path=state, max_wait_seconds=0.3)
    insert_rows(state, "huntress", [now_ms() + 500])
    with pytest.raises(RateLimiterStalled):
        limiter.acquire()


def test_future_entries_written_by_another_process_mid_run_are_discarded(tmp_path, caplog):
    state = tmp_path / "rl.sqlite"
    limiter = RateLimiter(2, 60.0, state_path=state, max_wait_seconds=5.0)
    limiter.acquire()
    writer = textwrap.dedent("""
        import sqlite3, sys, time
        conn = sqlite3.connect(sys.argv[1], timeout=10)
        ahead = time.time_ns() // 1_000_000 + 86_400_000
        conn.executemany("INSERT INTO huntress VALUES ('request', ?)", [(ahead,)] * 10)
        conn.commit()
    """)
    subprocess.run([sys.executable, "-c", writer, str(state)], check=True, timeout=30)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    started = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - started < 1.0
    assert any("Discarded 10" in r.getMessage() for r in caplog.records)


# --- bounded waits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_a_wait_longer_than_the_maximum_raises_a_clear_error(tmp_path, shared):
    state = tmp_path / "rl.sqlite" if shared else None
    limiter = RateLimiter(1, 30.0, state_path=state, max_wait_seconds=0.4)
    assert limiter.acquire() < 0.1
    started = time.monotonic()
    with pytest.raises(RateLimiterStalled) as caught:
        limiter.acquire()
    elapsed = time.monotonic() - started
    assert 0.35 < elapsed < 1.5
    assert isinstance(caught.value, HuntressError)
    message = str(caught.value)
    assert "within 0.4 s" in message and "1 requests per 30 s" in message
    assert (str(state) in message) if shared else ("this process" in message)


def test_the_default_maximum_wait_covers_a_full_window_and_more():
    limiter = RateLimiter(60, 60.0)
    assert limiter.enforced_window_seconds == pytest.approx(61.8)
    assert limiter.max_wait_seconds > limiter.enforced_window_seconds + 5
    assert RateLimiter(8, 3.0).max_wait_seconds > 3.0 * 1.03 + 5


def test_a_wait_that_gets_its_slot_returns_the_seconds_waited_and_logs_a_long_one(tmp_path, caplog):
    limiter = RateLimiter(1, 0.5, state_path=tmp_path / "rl.sqlite", log_wait_seconds=0.2)
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert limiter.acquire() < 0.1
    waited = limiter.acquire()
    assert 0.3 < waited < 2.0
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any("waiting" in line and "so far" in line for line in lines)  # while it waited
    assert any(line.startswith("Rate limiter: waited") and "used up" in line for line in lines)  # and after


def test_a_lock_held_by_another_process_cannot_block_forever(tmp_path):
    state = tmp_path / "rl.sqlite"
    limiter = RateLimiter(100, 1.0, state_path=state, max_wait_seconds=0.8)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from filelock import FileLock
            lock = FileLock(sys.argv[1] + ".lock")
            lock.acquire()
            print("locked", flush=True)
            time.sleep(60)
        """), str(state)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(RateLimiterStalled):
            limiter.acquire()
        assert time.monotonic() - started < 3.0
    finally:
        holder.kill()
        holder.wait()
    assert limiter.acquire() < 0.5  # and it recovers once the lock is released


def test_two_processes_still_share_one_budget(tmp_path):
    # 4 requests per 1 s shared by two processes taking 4 each: the second window is needed.
    state = tmp_path / "rl.sqlite"
    worker = textwrap.dedent("""
        import sys, time
        from huntress_dagster.ratelimit import RateLimiter
        limiter = RateLimiter(4, 1.0, state_path=sys.argv[1])
        granted = []
        for _ in range(4):
            limiter.acquire()
            granted.append(time.time())
        print(" ".join(map(str, granted)))
    """)
    workers = [subprocess.Popen([sys.executable, "-c", worker, str(state)], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=60)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    times = sorted(float(t) for out in outputs for t in out.split())
    assert len(times) == 8
    # No 1 s window holds more than 4 grants of the two processes together.
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 4
    assert times[-1] - times[0] >= 0.9


# --- where the state lives, and who may read it ----------------------------------------------------------


def test_default_location_under_dagster_home(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert default_state_path(env) == str(tmp_path / "home" / ".huntress_dagster" / "ratelimit.sqlite")


def test_default_location_under_the_user_cache(tmp_path):
    assert default_state_path({"XDG_CACHE_HOME": str(tmp_path / "cache")}) == str(
        tmp_path / "cache" / "huntress_dagster" / "ratelimit.sqlite")
    # A relative XDG_CACHE_HOME is invalid (XDG spec): ~/.cache
    assert default_state_dir({"XDG_CACHE_HOME": "rel", "HOME": str(tmp_path)}) == tmp_path / ".cache" / "huntress_dagster"
    assert default_state_dir({"HOME": str(tmp_path)}) == tmp_path / ".cache" / "huntress_dagster"


def test_default_location_is_not_the_shared_temp_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    assert default_state_path() == "/home/someone/.cache/huntress_dagster/ratelimit.sqlite"


@pytest.mark.parametrize("variable", ["DAGSTER_HOME", "XDG_CACHE_HOME"])
def test_default_state_is_created_owner_only_even_with_a_permissive_umask(monkeypatch, tmp_path, variable):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv(variable, str(tmp_path / "base"))
    state = Path(default_state_path())
    assert state.parent == tmp_path / "base" / (".huntress_dagster" if variable == "DAGSTER_HOME" else "huntress_dagster")
    old = os.umask(0)
    try:
        limiter = RateLimiter(5, 1.0, state_path=state)
        limiter.acquire()
    finally:
        os.umask(old)
    assert mode(state.parent) == 0o700
    for suffix in ("", ".lock", "-wal", "-shm"):
        path = Path(f"{state}{suffix}")
        assert path.exists(), path
        assert mode(path) == 0o600, (path, oct(mode(path)))


def test_a_loose_default_directory_and_file_are_tightened(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    state = Path(default_state_path())
    state.parent.mkdir()
    state.parent.chmod(0o755)
    state.touch()
    state.chmod(0o644)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    RateLimiter(5, 1.0, state_path=state).acquire()
    assert mode(state.parent) == 0o700 and mode(state) == 0o600
    assert any("Tightened" in r.getMessage() and "0o755" in r.getMessage() for r in caplog.records)


def test_a_loose_directory_the_user_chose_is_reported_not_changed(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    state = shared / "rl.sqlite"
    state.touch()
    state.chmod(0o664)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    RateLimiter(5, 1.0, state_path=state).acquire()
    assert mode(shared) == 0o775 and mode(state) == 0o664  # the user's choice stands...
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any(str(shared) in m and "0o775" in m and "open to group/others" in m for m in messages)  # ...reported
    assert any(str(state) in m and "0o664" in m for m in messages)


def test_a_new_state_in_a_directory_the_user_chose_is_owner_only(tmp_path):
    state = tmp_path / "new" / "dir" / "rl.sqlite"
    RateLimiter(5, 1.0, state_path=state).acquire()
    assert mode(state.parent) == 0o700 and mode(state) == 0o600 and mode(f"{state}.lock") == 0o600
