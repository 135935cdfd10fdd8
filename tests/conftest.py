"""Shared fixtures: every test talks real HTTP to the bundled simulator on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from huntress_dagster.client import HuntressClient
from huntress_dagster.ratelimit import RateLimiter
from huntress_dagster.simulator import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    SimulatorConfig,
    SimulatorServer,
    World,
    WorldConfig,
)

from .object_store import free_port, s3_lake, s3_server  # noqa: F401 (fixtures: a real S3 server)

# Small worlds keep the suite fast; tests that need scale ask for it.
SMALL_WORLD = dict(organizations=3, agents=60, incidents=300, days=10, large_body_share=0.0)


def admin(server: SimulatorServer, path: str, payload: dict | None = None) -> dict:
    """Call the simulator's admin API over HTTP (GET, or POST with a JSON payload)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{server.admin_url}/{path}", data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators with a given world/config; all are stopped after the test."""
    started: list[SimulatorServer] = []

    def factory(world: dict | None = None, **config) -> SimulatorServer:
        # Fast tests: a generous budget unless a test asks for the real 60/min.
        config.setdefault("rate_limit", 10_000)
        config.setdefault("rate_window_seconds", 1.0)
        server = SimulatorServer(World(WorldConfig(**{**SMALL_WORLD, **(world or {})})), SimulatorConfig(**config))
        started.append(server.start())
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def simulator(make_simulator) -> SimulatorServer:
    return make_simulator()


def make_client(server: SimulatorServer, *, requests: int = 10_000, window: float = 1.0, state_path=None,
                key: str = DEMO_API_KEY, secret: str = DEMO_API_SECRET, **kwargs) -> HuntressClient:
    kwargs.setdefault("backoff_base", 0.05)
    kwargs.setdefault("backoff_max", 1.0)
    return HuntressClient(key, secret, server.url, rate_limiter=RateLimiter(requests, window, state_path=state_path),
                          **kwargs)


@pytest.fixture
def client(simulator) -> Iterator[HuntressClient]:
    with make_client(simulator) as c:
        yield c


# --- a throwaway PostgreSQL server (coordination across machines, the Dagster instance) --------------------


def _postgres_bindir() -> Path | None:
    """The directory of initdb/pg_ctl: `pg_config --bindir` (if it has them), else the newest Debian
    /usr/lib/postgresql/*/bin, else whatever initdb is on PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted((p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                         key=version, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None



@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """`postgresql://postgres@127.0.0.1:<port>/huntress_test` of a PostgreSQL cluster started for this session
    (initdb in a temp dir, trust auth, 127.0.0.1 only, fsync off) and stopped at its end. As root, the server
    runs as the `postgres` user (PostgreSQL refuses to run as root)."""
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    as_server: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no `postgres` user to run PostgreSQL as")
        owner = (account.pw_uid, account.pw_gid)
        as_server = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else []
    # Not under pytest's tmp_path: its directories are 0700 root's, which the postgres user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="huntress-pg-"))
    data, sockets, logfile = base / "data", base / "sock", base / "server.log"
    sockets.mkdir()
    if owner:
        for path in (base, sockets):
            os.chown(path, *owner)

    def server_cmd(*args: str, **kwargs) -> subprocess.CompletedProcess:
        command = [*as_server, *args]
        extra = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner and not as_server else {}
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, **extra, **kwargs)

    def fail(step: str, result: subprocess.CompletedProcess) -> None:
        server_log = logfile.read_text(errors="replace") if logfile.exists() else ""
        pytest.fail(f"PostgreSQL {step} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                    f"{server_log[-4000:]}")

    port = free_port()
    started = False
    try:
        result = server_cmd(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                            "-E", "UTF8", "--locale=C", "--no-sync")
        if result.returncode:
            fail("initdb", result)
        options = (f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -F -c max_connections=200 "
                   "-c full_page_writes=off -c synchronous_commit=off")
        result = server_cmd(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-o", options,
                            "-w", "-t", "60", "start")
        started = True
        if result.returncode:
            fail("start", result)
        result = subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                 "huntress_test"], capture_output=True, text=True, timeout=60, check=False)
        if result.returncode:
            fail("createdb", result)
        yield f"postgresql://postgres@127.0.0.1:{port}/huntress_test"
    finally:
        if started:
            server_cmd(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps the call phase's outcome on the test item, for a fixture that describes what it holds when the test
    failed (test_browser's page: its dialogs and buttons, and a screenshot)."""
    report = yield
    if report.when == "call":
        item.call_failed = report.failed
    return report
