"""The `huntress-dagster` command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from .client import HuntressClient
from .ratelimit import RateLimiter, bucket_name_for
from .simulator import DEMO_API_KEY, DEMO_API_SECRET, SimulatorConfig, SimulatorServer, World, WorldConfig


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--organizations", type=int, default=5)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--days", type=int, default=30, help="incident history spread over this many days")
    parser.add_argument("--large-body-share", type=float, default=0.01, help="share of 500 KiB..5 MiB bodies")
    parser.add_argument("--huge-body-share", type=float, default=0.0, help="share of bodies >= 5 MiB")


def world_config_from(args: argparse.Namespace) -> WorldConfig:
    return WorldConfig(seed=args.seed, organizations=args.organizations, agents=args.agents,
                       incidents=args.incidents, days=args.days, large_body_share=args.large_body_share,
                       huge_body_share=args.huge_body_share)


def run_simulator(args: argparse.Namespace) -> int:
    config = SimulatorConfig(rate_limit=args.rate_limit, rate_window_seconds=args.rate_window,
                             tick_seconds=args.tick_seconds)
    server = SimulatorServer(World(world_config_from(args)), config, host="127.0.0.1", port=args.port)
    server.start()
    if args.state_file:  # how other processes find this shared simulator (demo mode)
        state = Path(args.state_file)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
        os.replace(tmp, state)
    print(f"Huntress API simulator listening on {server.url}", flush=True)
    print(f"  HUNTRESS_HOST_URL={server.url}")
    print(f"  HUNTRESS_API_KEY={config.api_key}")
    print(f"  HUNTRESS_API_SECRET={DEMO_API_SECRET}   (demo credentials of the simulator only)")
    print(f"  admin API: {server.admin_url}/info, /requests, POST /tick, POST /faults", flush=True)
    try:
        while True:
            time.sleep(1.0)
            if args.idle_exit and time.monotonic() - server.last_request_at > args.idle_exit:
                print(f"no request for {args.idle_exit:.0f}s: exiting", flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def run_test_connection(args: argparse.Namespace) -> int:
    """The connector's "Test" button from the shell, for every connection: exit 0 and a summary per key, or
    the typed guidance (exit 2 when any fails)."""
    from .connections import DEFAULT_CONNECTION, Connection, discover_accounts
    from .errors import HuntressError
    from .health import probe_streams
    from .settings import Settings

    settings = Settings.from_env()
    if settings.demo:
        from .demo import ensure_demo_simulator

        host_url = ensure_demo_simulator()
        keys = [(Connection(DEFAULT_CONNECTION, "", "", host_url=host_url), DEMO_API_KEY, DEMO_API_SECRET)]
        print(f"DEMO MODE (no HUNTRESS_API_KEY or HUNTRESS_CONNECTIONS_FILE): testing the bundled simulator at "
              f"{host_url}")
    elif settings.connections:
        keys = [(c, *c.credentials(os.environ)) for c in settings.connections]
    else:
        keys = [(Connection(DEFAULT_CONNECTION, "", "", host_url=settings.host_url, tenant=settings.tenant),
                 os.environ["HUNTRESS_API_KEY"], os.environ.get("HUNTRESS_API_SECRET", ""))]
    failed = 0
    for connection, key, secret in keys:
        limiter = RateLimiter(connection.rate_limit if settings.connections else settings.rate_limit,
                              settings.rate_window_seconds, state_path=settings.rate_limit_state,
                              bucket=bucket_name_for(key, connection.host_url))
        try:
            with HuntressClient(key, secret, connection.host_url, rate_limiter=limiter, max_attempts=3) as client:
                own, *customers = discover_accounts(client, connection)
                organizations = sum(1 for _ in client.organizations())
                readable = probe_streams(client, own)
        except HuntressError as exc:
            print(f"FAILED [{connection.name}]: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"OK [{connection.name}]: account {own.name!r} (id {own.account_id}, subdomain {own.subdomain}), "
              f"{organizations} organizations, {len(customers)} customer account(s), via {connection.host_url}")
        for stream, problem in readable.items():
            print(f"    {stream:18s} {'readable' if problem is None else 'NOT readable: ' + problem}")
        failed += any(readable.values())
    return 2 if failed else 0


def run_demo(args: argparse.Namespace) -> int:
    """Materialize everything on a private simulator and print a summary of the lake."""
    from .demo_run import run_demo_pipeline

    server = SimulatorServer(World(world_config_from(args)), SimulatorConfig(rate_limit=10_000,
                                                                             rate_window_seconds=60))
    with server:
        print(f"Demo: bundled Huntress simulator at {server.url}; lake at {os.path.abspath(args.lake_dir)}")
        summary = run_demo_pipeline(server.url, os.path.abspath(args.lake_dir))
    print(summary)
    return 0


def run_pipeline(args: argparse.Namespace) -> int:
    """Every stream and everything downstream for a range of days, on the DAGSTER_HOME instance."""
    import dagster as dg

    from .connections import ACCOUNT_TAG, CONNECTION_TAG
    from .definitions import build_definitions
    from .errors import HuntressConfigError
    from .headless import incremental_window, lake_summary, run_range, run_summary, utc_today
    from .lake import Lake
    from .settings import Settings

    try:
        settings = Settings.from_env()
        start, end = incremental_window(Lake(settings.lake_dir, umask=settings.lake_umask))
        start = _date_argument(args.start, "--start") or start
        end = _date_argument(args.end, "--end") or end
        first = date.fromisoformat(settings.start_date)
        start = max(start, first) if not args.start else start
        if start > end or start < first or end > utc_today():
            raise HuntressConfigError(f"--start/--end must be days from HUNTRESS_START_DATE ({first}) to today, "
                                      f"start <= end; got {start}...{end}")
    except HuntressConfigError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    if not os.environ.get("DAGSTER_HOME"):
        print("DAGSTER_HOME is not set: the run goes to a temporary instance and will not show in the UI",
              file=sys.stderr)
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    with instance:
        print(f"Running every stream and everything downstream for {start}...{end} "
              f"({'demo mode' if settings.demo else settings.host_url}; lake {settings.lake_dir})", flush=True)
        narrowed = {tag: value for tag, value in ((CONNECTION_TAG, args.connection), (ACCOUNT_TAG, args.account))
                    if value}
        result = run_range(build_definitions(settings), instance, start, end, narrowed)
    print(run_summary(result))
    print(lake_summary(Lake(settings.lake_dir)))
    return 0 if result.success else 1


def run_status(args: argparse.Namespace) -> int:
    """The latest connector status per connection, account and stream; exit 1 when any is failing (for
    monitoring scripts), 2 when there is no lake or no status yet."""
    from .health import FAILING, current_status
    from .lake import Lake, is_object_store

    if not is_object_store(args.lake_dir) and not Path(args.lake_dir).expanduser().is_dir():
        print(f"FAILED: no lake at {args.lake_dir} (set --lake-dir or HUNTRESS_LAKE_DIR)", file=sys.stderr)
        return 2
    rows = current_status(Lake(args.lake_dir))
    if not rows:
        print("No connector status yet: no run has collected anything into this lake", file=sys.stderr)
        return 2
    print(f"{'connection':12s} {'account':>10s} {'stream':18s} {'status':9s} {'lag':>8s}  last success / problem")
    for row in rows:
        lag = f"{row['lag_seconds'] / 60:.0f} min" if row["lag_seconds"] is not None else "-"
        detail = (row["last_success_at"].isoformat(timespec="seconds") if row["last_success_at"] else "never")
        if row["status"] != "ok" and row["guidance"]:
            detail += f"; {row['error_class'] or ''}{' HTTP ' + str(row['http_status']) if row['http_status'] else ''}"
            detail += f": {row['guidance']}"
        print(f"{row['connection']:12s} {str(row['account_id'] or '-'):>10s} {row['stream']:18s} {row['status']:9s} "
              f"{lag:>8s}  {detail}")
    return 1 if any(row["status"] == FAILING for row in rows) else 0


def _exit_with(pid: int) -> None:
    import threading

    from .processes import process_alive

    def watch() -> None:  # process_alive: a dev CLI that exited but is not reaped yet (a zombie) is gone too
        while process_alive(pid):
            time.sleep(2)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def run_webhooks(args: argparse.Namespace) -> int:
    """The webhook receiver: verified deliveries into the lake's inbox (see webhooks.py)."""
    from .errors import HuntressConfigError
    from .lake import Lake
    from .webhooks import serve

    secret = os.environ.get("HUNTRESS_WEBHOOK_SECRET", "").strip()
    if args.exit_with:  # demo mode: the receiver lives as long as the simulator it receives from
        _exit_with(args.exit_with)
    try:
        lake = Lake(args.lake_dir)
        print(f"Receiving Huntress webhooks at http://{args.host}:{args.port}/webhooks/huntress into "
              f"{lake.location} (bodies up to {args.max_bytes} bytes)", flush=True)
        serve(lake, secret, host=args.host, port=args.port, max_bytes=args.max_bytes)
    except HuntressConfigError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    return 0


def run_sql(args: argparse.Namespace) -> int:
    """SQL over the lake, read-only, with the DuckDB this package installed: an in-memory database with a view
    per table (paths resolved now, so a moved lake still works; no lock on the catalog file); for one query,
    the views of the tables it names."""
    from . import catalog, layout
    from .lake import Lake, is_object_store

    lake_dir = args.lake_dir if is_object_store(args.lake_dir) else Path(args.lake_dir).expanduser()
    if isinstance(lake_dir, Path) and not lake_dir.is_dir():
        print(f"FAILED: no lake at {lake_dir} (set --lake-dir or HUNTRESS_LAKE_DIR)", file=sys.stderr)
        return 2
    lake = Lake(lake_dir)  # s3://bucket/prefix: read through the AWS_* credentials and endpoint
    with tempfile.TemporaryDirectory(prefix="huntress-sql-") as spill, lake.connect(Path(spill)) as con:
        # one query: only the views it names (all when it names none: SHOW TABLES, duckdb_views(), ...)
        tables = catalog.register_views(lake, con, layout.tables_named(args.query or "") or None)
        _lock_down(con, lake)
        for text in [args.query] if args.query else _read_queries(tables):
            if failure := _run_reads(con, text, args.max_rows):
                print(f"FAILED: {failure}", file=sys.stderr)
                if args.query:
                    return 1
    return 0


# What `huntress-dagster sql` runs: reads. DESCRIBE, SHOW, SUMMARIZE, FROM and VALUES parse as SELECT; PIVOT as
# MULTI (it declares a type in memory, then selects); an EXPLAIN is judged by what it explains (EXPLAIN ANALYZE
# runs it); a PRAGMA by its name, as COPY FROM DATABASE and IMPORT DATABASE parse as PRAGMA too.
INFO_PRAGMAS = {"collations", "database_list", "database_size", "functions", "metadata_info", "platform", "show",
                "show_databases", "show_tables", "show_tables_expanded", "storage_info", "table_info", "user_agent",
                "version"}
READS = "SELECT, FROM, DESCRIBE, SHOW, SUMMARIZE, PIVOT, EXPLAIN, and PRAGMAs that inform, e.g. table_info"


def _lock_down(con, lake) -> None:
    """Past the statement check, a SELECT can still reach files through table functions (enable_logging
    writes a log directory, read_csv reads anywhere): files only within the lake (its views' Parquet, local
    or on the object store), no extension installs, and settings locked so no statement can undo that."""
    from .lake import sql_literal

    con.execute(f"SET allowed_directories = [{sql_literal(lake.location.rstrip('/') + '/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _run_reads(con, text: str, max_rows: int) -> str | None:
    """Run the statements of `text`, showing each result, if every one is a read (else none runs); returns
    why not, or the error."""
    import duckdb

    try:
        statements = con.extract_statements(text)
        for statement in statements:
            if refused := _not_a_read(con, statement):
                return f"refused {refused} statement: `huntress-dagster sql` is read-only ({READS})"
        for statement in statements:  # the parsed statements themselves: what was checked is what runs
            relation = con.sql(statement)
            if relation is not None:
                relation.show(max_rows=max_rows, max_width=200)
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None


def _not_a_read(con, statement) -> str | None:
    """None for a read, else what the statement is: its type ('COPY', 'PRAGMA import_database', 'EXPLAIN
    of INSERT'...)."""
    import duckdb

    kind = statement.type
    tokens = _tokens(statement.query)
    words = [word.lower() for _, word in tokens]
    if kind == duckdb.StatementType.SELECT or (kind == duckdb.StatementType.MULTI and words[0] == "pivot"):
        return None
    if kind == duckdb.StatementType.PRAGMA:
        if words[0] != "pragma":  # COPY FROM DATABASE, IMPORT DATABASE
            written = words[:words.index("database") + 1] if "database" in words else words[:1]
            return f"PRAGMA ({' '.join(written).upper()})"
        name = words[1].strip('"') if len(words) > 1 else ""
        return None if name in INFO_PRAGMAS else f"PRAGMA {name}"
    if kind == duckdb.StatementType.EXPLAIN:
        position, depth = 1, 0  # past EXPLAIN, ANALYZE and (options), to the statement explained
        while position < len(words) and (depth or words[position] in ("analyze", "analyse", "(")):
            depth += {"(": 1, ")": -1}.get(words[position], 0)
            position += 1
        explained = con.extract_statements(statement.query[tokens[position][0]:]) if position < len(words) else []
        refused = [what for inner in explained if (what := _not_a_read(con, inner))]
        return f"EXPLAIN of {refused[0]}" if refused else None if explained else "EXPLAIN"
    return kind.name


def _tokens(query: str) -> list[tuple[int, str]]:
    """The statement's tokens as written (offset, text), without comments."""
    import duckdb

    tokens = duckdb.tokenize(query)
    ends = [offset for offset, _ in tokens[1:]] + [len(query)]
    return [(offset, query[offset:end].strip()) for (offset, kind), end in zip(tokens, ends)
            if kind != duckdb.token_type.comment]


def _read_queries(tables: list[str]):
    """An interactive prompt: statements end with ';', an empty line or EOF ends it."""
    print(f"Tables: {', '.join(tables)}. End a statement with ';'; an empty line or Ctrl-D quits.")
    buffer = ""
    while True:
        try:
            line = input("huntress> " if not buffer else "      ... ")
        except EOFError:
            return
        if not line.strip() and not buffer:
            return
        buffer += line + "\n"
        if buffer.rstrip().endswith(";"):
            yield buffer
            buffer = ""


def _date_argument(text: str | None, name: str) -> date | None:
    from .errors import HuntressConfigError

    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise HuntressConfigError(f"{name} {text!r} is not a date: expected YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="huntress-dagster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulator", help="run the bundled Huntress API simulator on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    add_world_arguments(sim)
    sim.add_argument("--rate-limit", type=int, default=60, help="requests per window (Huntress: 60)")
    sim.add_argument("--rate-window", type=float, default=60.0, help="window seconds (Huntress: 60)")
    sim.add_argument("--tick-seconds", type=float, default=0.0,
                     help="move time every N seconds: new incidents, status changes, agent callbacks")
    sim.add_argument("--state-file", help="write {url, pid} here once listening (used by demo mode)")
    sim.add_argument("--idle-exit", type=float, default=0.0, help="exit after N seconds without API requests")
    sim.set_defaults(func=run_simulator)

    test = commands.add_parser("test-connection", help="check the configured Huntress credentials (HUNTRESS_* env)")
    test.set_defaults(func=run_test_connection)

    demo = commands.add_parser("demo", help="materialize everything on the simulator, headless, and summarize")
    demo.add_argument("--lake-dir", default=os.environ.get("HUNTRESS_LAKE_DIR", "lake"))
    add_world_arguments(demo)
    demo.set_defaults(func=run_demo)

    run = commands.add_parser("run", help="materialize every stream and everything downstream for a range of days "
                                          "through Dagster (on DAGSTER_HOME); exits non-zero if a step failed")
    run.add_argument("--start", help="first day (YYYY-MM-DD); default: yesterday, as the schedules do")
    run.add_argument("--end", help="last day (YYYY-MM-DD); default: today")
    run.add_argument("--connection", help="only these connections (names, comma separated); default: all")
    run.add_argument("--account", help="only these accounts (ids, comma separated); default: all")
    run.set_defaults(func=run_pipeline)

    status = commands.add_parser("status", help="the latest collection status per connection, account and stream "
                                                "(exit 1 if any is failing)")
    status.add_argument("--lake-dir", default=os.environ.get("HUNTRESS_LAKE_DIR", "lake"))
    status.set_defaults(func=run_status)

    hooks = commands.add_parser("webhooks", help="receive Huntress webhooks (Svix-signed; HUNTRESS_WEBHOOK_SECRET) "
                                                 "into the lake's inbox")
    hooks.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; put TLS in front)")
    hooks.add_argument("--port", type=int, default=8787)
    hooks.add_argument("--lake-dir", default=os.environ.get("HUNTRESS_LAKE_DIR", "lake"))
    hooks.add_argument("--max-bytes", type=int, default=int(os.environ.get("HUNTRESS_WEBHOOK_MAX_BYTES") or 1_048_576))
    hooks.add_argument("--exit-with", type=int, help=argparse.SUPPRESS)  # demo mode: stop with the simulator
    hooks.set_defaults(func=run_webhooks)

    sql = commands.add_parser("sql", help="query the lake read-only with SQL (DuckDB): one query, or a prompt")
    sql.add_argument("query", nargs="?", help="the query; without it, an interactive prompt")
    sql.add_argument("--lake-dir", default=os.environ.get("HUNTRESS_LAKE_DIR", "lake"))
    sql.add_argument("--max-rows", type=int, default=40)
    sql.set_defaults(func=run_sql)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (`| head`): no traceback, the exit of a tool killed by SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout at exit
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
