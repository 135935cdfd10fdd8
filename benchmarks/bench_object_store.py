"""8. The lake on object storage: end-to-end wall time of the same pipeline on the same data, local vs S3.

One simulator process (`workers.py sim`, unthrottled) serves one world to both sides; each run is its own
`workers.py lake-run` subprocess (a fresh process per run, as Dagster's run launcher starts one), timed
from the start of the run to its end (the Python imports and the definitions are not in the figure):

- local: the lake in a local directory, the rate limiter's log in SQLite, file locks (one machine);
- s3:    the lake on `s3://bench-lake/lake`, served by moto's standalone S3 server in ITS OWN PROCESS
         (`python -m moto.server -H 127.0.0.1 -p PORT`), the rate limiter's log and the partition locks in
         PostgreSQL (a throwaway cluster started here like tests/conftest.py's `postgres_url`, or
         `--postgres-url`); without PostgreSQL the s3 side uses SQLite and file locks, and says so.

Stages, each run once per side, in this order: the backfill (`huntress_all_job`, every asset, over the whole
range from the start date to today: one run, as `huntress_dagster.headless.run_range` launches it, with
Dagster's console log at WARNING), local then s3; a small world tick; then one incremental run (the
window `headless.incremental_window` picks: yesterday, or an earlier incomplete day, to today), local
then s3. Both sides see the same world at each stage.

S3 requests are counted twice:
- server side (the figure): moto's request log, one werkzeug line per HTTP request (method, path, status;
  206 = a ranged GET), read from the moto process's stderr between the runs: every request, whatever
  process made it (the run, its spawned parse workers);
- client side (attribution): in the run's process and its parse workers, s3fs's `_call_s3` (one per S3 API
  call) and fsspec's blocking `sync` (one per blocking filesystem call, e.g. `exists`, `find`, a buffered
  read) are wrapped (`install_s3_trace`): each call is logged with its operation, its time, and the
  huntress_dagster frames that made it (first three, innermost first) plus the library entry point
  (e.g. `upath/core.py:exists`). That costs a few microseconds per call (a frame walk and a line appended
  to a file); the local side is not traced (it makes no S3 calls).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import linecache
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/bench_object_store.py`

from benchmarks.common import (  # noqa: E402
    SimProcess,
    bench_env,
    header,
    percentile,
    run_worker,
    scratch,
    table,
)

BUCKET = "bench-lake"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# The brief's world: 2,000 incident reports, 200 agents and signals over 10 days (bodies as in bench_e2e).
FULL_WORLD = dict(
    seed=11,
    organizations=20,
    agents=200,
    incidents=2_000,
    signals=2_000,
    days=10,
    body_min_bytes=2_000,
    body_max_bytes=20_000,
    large_body_share=0.0005,
)
QUICK_WORLD = dict(FULL_WORLD, agents=50, incidents=300, signals=300, days=5, identities=50, external_ports=20)
TICK = dict(  # the "small world tick" before the incremental run
    new_incidents=10,
    status_changes=5,
    agent_changes=10,
    new_signals=20,
    signal_status_changes=5,
    escalations_opened=1,
    escalations_closed=1,
    platform_actions_opened=1,
    platform_actions_closed=1,
)
REAL_S3_MS = 20  # a typical in-region S3 request latency, for the estimate printed with the figures
TIMEOUT = 3600


# --- moto's S3 server in its own process --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ANSI = re.compile(r"\x1b\[[0-9;]*m")
REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


class MotoProcess:
    """`python -m moto.server` on loopback; its request log (werkzeug, one line per request) goes to a file."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MotoProcess:
        self.port = free_port()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=self._log,
            env=bench_env(),
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start; see {self.log_path}") from None
                time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        return {**S3_ENV, "AWS_ENDPOINT_URL": self.url}

    def mark(self) -> int:
        self._log.flush()
        return self.log_path.stat().st_size

    def requests_since(self, offset: int) -> list[dict[str, Any]]:
        """The S3 requests logged from `offset` (a `mark()`), without moto's own /moto-api/ calls."""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            text = ANSI.sub("", log.read().decode(errors="replace"))
        out = []
        for match in REQUEST_LINE.finditer(text):
            if not match["path"].startswith("/moto-api"):
                out.append({"method": match["method"], "path": match["path"], "status": int(match["status"])})
        return out


def s3_request_kind(entry: dict[str, Any]) -> str:
    """A server log line as an S3 operation (path-style addressing: /bucket/key?query)."""
    method, path, status = entry["method"], entry["path"], entry["status"]
    target, _, query = path.partition("?")
    is_bucket = target.strip("/").count("/") == 0
    if method == "GET" and is_bucket:
        return "LIST (list_objects_v2)" if "list-type=2" in query else "GET bucket"
    if method == "GET":
        return "GET object, ranged (206)" if status == 206 else f"GET object ({status})"
    if method == "HEAD":
        return "HEAD bucket" if is_bucket else f"HEAD object ({status})"
    if method == "PUT":
        return "PUT object (part)" if "uploadId" in query else "PUT object"
    if method == "POST":
        return "POST delete_objects" if "delete" in query else "POST multipart"
    if method == "DELETE":
        return "DELETE object"
    return method


def s3_client(moto: MotoProcess) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_REGION"],
    )


def lake_size(side: dict[str, Any], moto: MotoProcess) -> dict[str, int]:
    """Files (objects) and bytes of a lake, after the runs (the local lake without its lock files)."""
    if side["remote"]:
        prefix = side["lake"].removeprefix(f"s3://{BUCKET}/") + "/"
        pages = s3_client(moto).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        sizes = [o["Size"] for page in pages for o in page.get("Contents", [])]
    else:
        sizes = [p.stat().st_size for p in Path(side["lake"]).rglob("*")
                 if p.is_file() and not p.name.endswith(".lock")]
    return {"files": len(sizes), "bytes": sum(sizes)}


# --- a throwaway PostgreSQL cluster (as tests/conftest.py's `postgres_url` fixture) ---------------------


def postgres_bindir() -> Path | None:
    """initdb/pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")), key=version, reverse=True
    )
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    return next((b for b in candidates if (b / "initdb").is_file() and (b / "pg_ctl").is_file()), None)


class PostgresUnavailable(RuntimeError):
    pass


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster for this benchmark (initdb in a temp dir, trust auth, 127.0.0.1 only, fsync
    off, as the test fixture), stopped and removed at the end; as root it runs as the `postgres` user."""
    bindir = postgres_bindir()
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL is not installed (no initdb/pg_ctl found)")
    as_server: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` user") from None
        owner = (account.pw_uid, account.pw_gid)
        as_server = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else []
    base = Path(tempfile.mkdtemp(prefix="huntress-bench-pg-"))  # not under a 0700 scratch dir of root's
    data, sockets, logfile = base / "data", base / "sock", base / "server.log"
    sockets.mkdir()
    if owner:
        for path in (base, sockets):
            os.chown(path, *owner)

    def server_cmd(*args: str) -> subprocess.CompletedProcess:
        extra = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner and not as_server else {}
        return subprocess.run(
            [*as_server, *args], capture_output=True, text=True, timeout=120, check=False, **extra
        )

    def check(step: str, result: subprocess.CompletedProcess) -> None:
        if result.returncode:
            tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise PostgresUnavailable(f"PostgreSQL {step} failed: {result.stderr.strip()[:500]} {tail}")

    port = free_port()
    started = False
    try:
        check(
            "initdb",
            server_cmd(
                str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                "--locale=C", "--no-sync",
            ),
        )
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -F -c max_connections=200 "
            "-c full_page_writes=off -c synchronous_commit=off"
        )
        result = server_cmd(
            str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-o", options, "-w", "-t", "60", "start"
        )
        started = True
        check("start", result)
        check(
            "createdb",
            subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "huntress_bench"],
                capture_output=True, text=True, timeout=60, check=False,
            ),
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/huntress_bench"
    finally:
        if started:
            server_cmd(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


# --- client-side attribution of S3 calls (installed in the run's process and its spawned workers) -------

_CALLER: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("bench_s3_caller", default=None)


def install_s3_trace(trace_dir: str) -> None:
    """Log every s3fs S3 API call and every blocking fsspec call of this process to trace_dir/<pid>.jsonl,
    with the huntress_dagster frames that made it. See the module docstring."""
    import fsspec.asyn
    import s3fs.core

    import huntress_dagster

    package = os.path.dirname(os.path.abspath(huntress_dagster.__file__)) + os.sep
    lock = threading.Lock()
    state: dict[str, Any] = {"pid": None, "file": None}

    def write(record: dict[str, Any]) -> None:
        with lock:
            if state["pid"] != os.getpid():
                Path(trace_dir).mkdir(parents=True, exist_ok=True)
                state["file"] = open(Path(trace_dir) / f"{os.getpid()}.jsonl", "a", buffering=1)  # noqa: SIM115
                state["pid"] = os.getpid()
            state["file"].write(json.dumps(record) + "\n")

    def short(filename: str) -> str:
        parts = filename.split(os.sep)
        return "/".join(parts[-2:])

    def package_frames(frame: Any) -> tuple[list[str], str, str, str]:
        """The first three huntress_dagster frames from `frame` outwards; the library frame just inside the
        first of them (the entry point into fsspec/s3fs/upath/pyarrow/duckdb); the outermost fsspec/s3fs
        method on the way (what was asked of the filesystem: open, size, modified, glob, read...); the source
        line of the first huntress_dagster frame."""
        entry, fs_method, chain, line = "?", "?", [], ""
        while frame is not None and len(chain) < 3:
            filename = frame.f_code.co_filename
            if filename.startswith(package):
                name = frame.f_code.co_qualname.replace(".<locals>", "")
                chain.append(f"{filename[len(package):].removesuffix('.py')}.{name}:{frame.f_lineno}")
                if len(chain) == 1:
                    line = linecache.getline(filename, frame.f_lineno)
            elif not chain:
                entry = f"{short(filename)}:{frame.f_code.co_qualname.replace('.<locals>', '')}"
                if short(filename).startswith(("fsspec/", "s3fs/")):
                    fs_method = frame.f_code.co_name
            frame = frame.f_back
        return chain, entry, fs_method, line

    def caller(func: Any) -> tuple[str, str]:
        """(who: frames | entry [coroutine], mechanism: what kind of access this is)."""
        chain, entry, fs_method, line = package_frames(sys._getframe(2))
        via = ""
        if not chain:  # a DuckDB thread calling the registered filesystem: who is waiting on DuckDB?
            me = threading.get_ident()
            for ident, frame in sys._current_frames().items():
                if ident != me and (chain := package_frames(frame)[0]):
                    via = "[duckdb] "
                    break
        coroutine = getattr(func, "__name__", "?")
        who = f"{via}{' < '.join(chain) or '(outside huntress_dagster)'} | {entry} [{coroutine}]"
        entry_file = entry.split(":", 1)[0]
        # The filesystem called straight from C: DuckDB (its registered filesystem); the package's own direct
        # calls of the filesystem all go through `.fs.` (Lake.glob, publish, signature).
        duckdb = bool(via) or entry_file.startswith("duckdb/") or (
            entry_file in ("fsspec/spec.py", "fsspec/asyn.py", "s3fs/core.py") and ".fs." not in line)
        if duckdb:
            method = fs_method if fs_method != "wrapper" else coroutine.lstrip("_")
            mechanism = f"DuckDB via fsspec: {method}"
        elif entry == "upath/core.py:UPath.exists":
            mechanism = "UPath.exists"
        elif entry.startswith("upath/"):
            mechanism = f"UPath.{entry.rsplit('.', 1)[-1]} [{coroutine}]"
        elif entry_file.startswith(("parquet/", "pyarrow/")):
            mechanism = "pyarrow reading a file (footer / row groups)"
        elif coroutine == "_find":
            mechanism = "Lake.glob (fs.find: one listing)"
        elif coroutine == "_put_file":
            mechanism = "Lake.publish (fs.put_file)"
        elif coroutine == "_info" and ".fs.info" in line:
            mechanism = "Lake.signature (fs.info)"
        else:
            mechanism = f"{entry} [{coroutine}]"
        return who, mechanism

    original_sync = fsspec.asyn.sync

    def traced_sync(loop: Any, func: Any, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        who, mechanism = caller(func)

        async def with_caller() -> Any:
            _CALLER.set((who, mechanism))
            return await func(*args, **kwargs)

        started = time.time()
        try:
            return original_sync(loop, with_caller, timeout=timeout)
        finally:
            write({"k": "sync", "t0": started, "t1": time.time(), "c": who, "m": mechanism})

    original_call = s3fs.core.S3FileSystem._call_s3

    async def traced_call(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        started = time.time()
        try:
            return await original_call(self, method, *args, **kwargs)
        finally:
            who, mechanism = _CALLER.get() or ("(no blocking caller)", "(no blocking caller)")
            write({"k": "s3", "t0": started, "t1": time.time(), "op": method, "c": who, "m": mechanism})

    fsspec.asyn.sync = traced_sync
    s3fs.core.sync = traced_sync
    s3fs.core.S3FileSystem._call_s3 = traced_call


def read_trace(trace_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(trace_dir.glob("*.jsonl")) if trace_dir.exists() else []:
        pid = int(path.stem)
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append({**json.loads(line), "pid": pid})
    return records


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Wall time with at least one of the intervals open."""
    total, end = 0.0, float("-inf")
    for t0, t1 in sorted(intervals):
        if t1 <= end:
            continue
        total += t1 - max(t0, end)
        end = t1
    return total


def step_of(t: float, steps: dict[str, dict[str, float]]) -> str:
    for name, s in steps.items():
        if s["start"] <= t <= s["end"]:
            return name
    return "(outside steps)"


def analyze_trace(records: list[dict[str, Any]], steps: dict[str, dict[str, float]]) -> dict[str, Any]:
    calls = [r for r in records if r["k"] == "s3"]
    syncs = [r for r in records if r["k"] == "sync"]
    def group(key: str) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = defaultdict(lambda: {"requests": 0, "ops": Counter(), "blocked_s": 0.0})
        for r in calls:
            out[r[key]]["requests"] += 1
            out[r[key]]["ops"][r["op"]] += 1
        for r in syncs:
            out[r[key]]["blocked_s"] += r["t1"] - r["t0"]
        return sorted(({key: k, "requests": v["requests"], "ops": dict(v["ops"]), "blocked_s": v["blocked_s"]}
                       for k, v in out.items()), key=lambda c: (-c["requests"], -c["blocked_s"]))
    by_step: dict[str, dict[str, float]] = defaultdict(lambda: {"requests": 0, "blocked_s": 0.0})
    for r in calls:
        by_step[step_of(r["t0"], steps)]["requests"] += 1
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in syncs:
        intervals[step_of(r["t0"], steps)].append((r["t0"], r["t1"]))
    for name, spans in intervals.items():
        by_step[name]["blocked_s"] = union_seconds(spans)  # wall time with a call open, not summed over threads
    return {
        "requests": len(calls),
        "ops": dict(Counter(r["op"] for r in calls)),
        "processes": len({r["pid"] for r in records}),
        "blocking_calls": len(syncs),
        "blocked_s_sum": sum(r["t1"] - r["t0"] for r in syncs),
        "blocked_s_union": union_seconds([(r["t0"], r["t1"]) for r in syncs]),
        "request_s_sum": sum(r["t1"] - r["t0"] for r in calls),
        # one S3 API call's time on loopback (botocore + HTTP + moto; a GET's body read comes after it)
        "request_ms_median": 1000 * percentile([r["t1"] - r["t0"] for r in calls], 50) if calls else None,
        "request_ms_p95": 1000 * percentile([r["t1"] - r["t0"] for r in calls], 95) if calls else None,
        "by_step": {k: dict(v) for k, v in by_step.items()},
        "by_mechanism": group("m"),
        "by_caller": group("c"),
    }


# --- the measurement ----------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_run(
    side: dict[str, Any], stage: str, sim: SimProcess, moto: MotoProcess | None, history_days: int, workdir: Path
) -> dict[str, Any]:
    trace_dir = workdir / "trace" / f"{side['name']}-{stage}"
    env = dict(side["env"])
    if side["remote"]:
        env["BENCH_S3_TRACE"] = str(trace_dir)
    load_before = os.getloadavg()[0]
    mark = moto.mark() if moto else 0
    moto_cpu = proc_cpu_seconds(moto.pid) if moto else 0.0
    sim_cpu = proc_cpu_seconds(sim.pid)
    usage, result = run_worker(
        ["lake-run", sim.url, str(side["workdir"]), str(history_days), side["lake"], side["postgres_url"], stage],
        log_path=side["workdir"] / "worker.log",
        timeout=TIMEOUT,
        env=bench_env(**env),
    )
    if usage.returncode or not result:
        raise RuntimeError(f"{side['name']} {stage} failed; see {side['workdir'] / 'worker.log'}: "
                           + (side["workdir"] / "worker.log").read_text(errors="replace")[-3000:])
    time.sleep(0.5)  # the server logs a request after answering it
    out: dict[str, Any] = {
        **result,
        "process_wall_s": usage.wall_seconds,
        "process_cpu_s": usage.cpu_seconds,
        "sim_cpu_s": proc_cpu_seconds(sim.pid) - sim_cpu,
        "loadavg_1min": [load_before, os.getloadavg()[0]],  # the machine is shared: how busy it was
    }
    if moto:
        server = moto.requests_since(mark)
        out["s3_requests"] = len(server)
        out["s3_by_kind"] = dict(Counter(s3_request_kind(e) for e in server).most_common())
        out["s3_errors"] = sum(e["status"] >= 500 for e in server)
        out["moto_cpu_s"] = proc_cpu_seconds(moto.pid) - moto_cpu
        out["trace"] = analyze_trace(read_trace(trace_dir), result["steps"])
    return out


def lake_rows(side: dict[str, Any]) -> dict[str, int]:
    _, result = run_worker(
        ["lake-rows", side["lake"]], log_path=side["workdir"] / "worker.log", env=bench_env(**side["env"])
    )
    return result or {}


TOP_CALLERS = 15


def step_rows(local: dict[str, Any], s3: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step: seconds on each side, and the s3 side's requests and blocked time. Asset checks (a step
    named `<asset>_<check>`) are summed into one row."""
    names = list(dict.fromkeys([*local["steps"], *s3["steps"]]))
    checks = {n for n in names if any(n != m and n.startswith(m + "_") for m in names)}
    by_step = s3["trace"]["by_step"]
    rows: dict[str, dict[str, Any]] = {}
    for name in names + [n for n in by_step if n not in names]:
        key = f"asset checks ({len(checks)} steps)" if name in checks else name
        row = rows.setdefault(key, {"step": key, "local s": 0.0, "s3 s": 0.0, "S3 requests": 0, "blocked s": 0.0})
        row["local s"] += local["steps"].get(name, {}).get("seconds", 0.0)
        row["s3 s"] += s3["steps"].get(name, {}).get("seconds", 0.0)
        row["S3 requests"] += int(by_step.get(name, {}).get("requests", 0))
        row["blocked s"] += by_step.get(name, {}).get("blocked_s", 0.0)
    for row in rows.values():
        row["s3/local"] = row["s3 s"] / row["local s"] if row["local s"] else None
    return [{k: row[k] for k in ("step", "local s", "s3 s", "s3/local", "S3 requests", "blocked s")}
            for row in rows.values()]


def by_owner(callers: list[dict[str, Any]]) -> tuple[list[tuple[str, int]], int]:
    """Requests by the first huntress_dagster function outside lake.py and catalog.py (their plumbing: glob,
    open_read, read_metadata, preview...), and how many were made inside catalog.preview."""
    owners: Counter[str] = Counter()
    previews = 0
    for c in callers:
        frames = [re.sub(r":\d+$", "", f) for f in c["c"].split(" | ")[0].removeprefix("[duckdb] ").split(" < ")]
        owners[next((f for f in frames if not f.startswith(("lake.", "catalog."))), frames[0])] += c["requests"]
        previews += c["requests"] if any(f == "catalog.preview" for f in frames) else 0
    return owners.most_common(), previews


def estimate_real_s3(s3: dict[str, Any]) -> float:
    """The s3 run's wall time with its loopback S3 time replaced by REAL_S3_MS per request, serially."""
    return s3["run_wall_s"] - s3["trace"]["blocked_s_union"] + s3["s3_requests"] * REAL_S3_MS / 1000


def report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    print(
        f"\n  world: {results['world']['incidents']:,} incident reports, {results['world']['agents']:,} agents, "
        f"{results['world']['signals']:,} signals over {results['world']['days']} days (+ the simulator's "
        f"default escalations, platform actions, identities, ports); the s3 side: {results['s3_coordination']}"
    )
    rows = []
    for stage in ("backfill", "incremental"):
        local, s3 = runs["local"][stage], runs["s3"][stage]
        requests = s3["s3_requests"]
        rows.append({
            "stage": stage,
            "days": s3["days"],
            "local s": local["run_wall_s"],
            "s3 s": s3["run_wall_s"],
            "s3/local": s3["run_wall_s"] / local["run_wall_s"],
            "S3 requests": requests,
            "blocked in S3 s": s3["trace"]["blocked_s_union"],
            "moto CPU s": s3["moto_cpu_s"],
            f"+{REAL_S3_MS} ms/req s": requests * REAL_S3_MS / 1000,
            "est. real S3 s": estimate_real_s3(s3),
            "worker CPU s (l/s3)": f"{local['process_cpu_s']:.1f}/{s3['process_cpu_s']:.1f}",
        })
    table(rows)
    print(
        f"  run s: the run alone (window + huntress_all_job), in a fresh process; S3 requests: moto's log; "
        f"'blocked in S3': wall time with at least one blocking s3fs call open (client trace); moto CPU: the "
        f"S3 server's own CPU seconds, on the same 2 cores as the run; '+{REAL_S3_MS} ms/req': requests x "
        f"{REAL_S3_MS} ms; 'est. real S3': s3 s - blocked in S3 + requests x {REAL_S3_MS} ms (as if the requests "
        f"were serial; DuckDB's reads are partly parallel, so rather an upper estimate); worker CPU: the run's "
        f"process with its imports and its parse workers"
    )
    print("  1-minute load average before/after each run (2 cores; other work on the machine shows here): "
          + ", ".join(f"{name} {stage} {runs[name][stage]['loadavg_1min'][0]:.1f}/{runs[name][stage]['loadavg_1min'][1]:.1f}"
                      for stage in ("backfill", "incremental") for name in ("local", "s3")))
    for stage in ("backfill", "incremental"):
        local, s3 = runs["local"][stage], runs["s3"][stage]
        print(f"\n  {stage}: per step (Dagster's STEP_START..STEP_SUCCESS); S3 requests and wall time blocked "
              "in S3 from the client trace ('outside steps': the window, before the run)")
        table(step_rows(local, s3))
        print(f"  S3 requests by kind (moto's log, {s3['s3_requests']:,} in all, {s3['s3_errors']} 5xx): "
              + ", ".join(f"{k} {v:,}" for k, v in s3["s3_by_kind"].items()))
        trace = s3["trace"]
        print(f"  client trace: {trace['requests']:,} S3 API calls in {trace['processes']} process(es) (median "
              f"{trace['request_ms_median']:.1f} ms, p95 {trace['request_ms_p95']:.1f} ms each on loopback), "
              f"{trace['blocking_calls']:,} blocking filesystem calls; by operation: "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(trace["ops"].items(), key=lambda kv: -kv[1])))
        print("  S3 requests by kind of access (requests, seconds blocked summed over threads, operations):")
        for c in trace["by_mechanism"]:
            ops = ", ".join(f"{k} {v}" for k, v in c["ops"].items())
            print(f"  {c['requests']:6,d} {c['blocked_s']:7.2f} s  {ops:36s}  {c['m']}")
        owners, previews = by_owner(trace["by_caller"])
        print(f"  S3 requests by the function that made them (the first huntress_dagster frame outside lake.py's "
              f"plumbing); {previews:,} of them ({previews / max(trace['requests'], 1):.0%}) inside Lake.preview "
              f"(the few rows and counts shown as run metadata):")
        print("  " + ", ".join(f"{name} {n:,}" for name, n in owners[:12]))
        print("  top callers (huntress_dagster frames, innermost first | library entry point [fsspec coroutine]; "
              "[duckdb]: from a DuckDB thread, with the frames of the thread waiting on DuckDB):")
        for c in trace["by_caller"][:TOP_CALLERS]:
            ops = ", ".join(f"{k} {v}" for k, v in c["ops"].items())
            print(f"  {c['requests']:6,d} {c['blocked_s']:7.2f} s  {ops:36s}  {c['c']}")
    size = results["lake_size"]
    print(f"\n  lake after both runs: local {size['local']['files']:,} files, {size['local']['bytes'] / 2**20:.1f} MiB "
          f"(with the catalog file); s3 {size['s3']['files']:,} objects, {size['s3']['bytes'] / 2**20:.1f} MiB")
    rows_local, rows_s3 = results["rows"]["local"], results["rows"]["s3"]
    same = {t: rows_local.get(t) == rows_s3.get(t) for t in rows_local}
    print("  rows per table, local = s3: " + ", ".join(
        f"{t} {n:,}{'' if same[t] else ' (s3: ' + str(rows_s3.get(t)) + ')'}" for t, n in rows_local.items()))


def run(quick: bool, postgres_url: str | None = None) -> dict[str, Any]:
    header("8. The lake on object storage: the same pipeline on a local lake and on S3 (moto on loopback, "
           "its own process)")
    world = QUICK_WORLD if quick else FULL_WORLD
    history_days = world["days"] + 1
    results: dict[str, Any] = {"world": world, "tick": TICK, "history_days": history_days}
    with scratch("object_store") as workdir, contextlib.ExitStack() as stack:
        sim = stack.enter_context(SimProcess(world, log_path=workdir / "sim.log"))
        moto = stack.enter_context(MotoProcess(workdir / "moto.log"))
        s3_client(moto).create_bucket(Bucket=BUCKET)
        if postgres_url:
            coordination = "PostgreSQL (given with --postgres-url) for the rate limiter's log and the locks"
        else:
            try:
                postgres_url = stack.enter_context(throwaway_postgres())
                coordination = "PostgreSQL (a throwaway local cluster) for the rate limiter's log and the locks"
            except PostgresUnavailable as exc:
                coordination = f"SQLite + file locks: PostgreSQL unavailable ({exc})"
                print(f"  NOTE: {coordination}", flush=True)
        results["s3_coordination"] = coordination
        sides = {}
        for name in ("local", "s3"):
            side_dir = workdir / name
            (side_dir / "tmp").mkdir(parents=True)
            remote = name == "s3"
            sides[name] = {
                "name": name,
                "remote": remote,
                "workdir": side_dir,
                "lake": f"s3://{BUCKET}/lake" if remote else str(side_dir / "lake"),
                "postgres_url": (postgres_url or "") if remote else "",
                # the S3 lake's scratch (staging, temporary files, spill) goes to TMPDIR: keep it in workdir
                "env": {"TMPDIR": str(side_dir / "tmp"), **(moto.env() if remote else {})},
            }
        runs: dict[str, dict[str, Any]] = {"local": {}, "s3": {}}
        for stage in ("backfill", "incremental"):
            if stage == "incremental":
                sim.tick(**TICK)
            for name, side in sides.items():
                print(f"  {stage} on {name} ...", flush=True)
                runs[name][stage] = m = measure_run(side, stage, sim, moto if side["remote"] else None,
                                                    history_days, workdir)
                print(f"    {m['run_wall_s']:.1f} s" + (f", {m['s3_requests']:,} S3 requests"
                                                         if side["remote"] else ""), flush=True)
        results["runs"] = runs
        results["rows"] = {name: lake_rows(side) for name, side in sides.items()}
        results["lake_size"] = {name: lake_size(side, moto) for name, side in sides.items()}
    report(results)
    for stage in ("backfill", "incremental"):
        results[f"{stage}_ratio"] = runs["s3"][stage]["run_wall_s"] / runs["local"][stage]["run_wall_s"]
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    from benchmarks.common import quiet_dagster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small world")
    parser.add_argument("--postgres-url", help="use this PostgreSQL instead of starting a throwaway cluster")
    parser.add_argument("--json", type=Path, help="also write every measured figure to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_dagster()
    results = run(args.quick, args.postgres_url)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
