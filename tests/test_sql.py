"""`huntress-dagster sql` is read-only, and the catalog file opens in DuckDB 1.x: real Parquet files written by
a real pipeline run on the simulator, read by the real DuckDB (2.0 here, 1.0 in a throwaway venv)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from huntress_dagster import catalog, layout
from huntress_dagster.catalog import CATALOG_STORAGE_VERSION, open_catalog, storage_version
from huntress_dagster.cli import main
from huntress_dagster.lake import Lake
from huntress_dagster.simulator import SimulatorConfig, SimulatorServer, World, WorldConfig

from .conftest import SMALL_WORLD
from .dagster_helpers import make_pipeline

OLDEST_1X = "1.0.0"  # the oldest DuckDB the v1.0.0 storage format promises to open


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory) -> Iterator[Path]:
    """One small lake for the module (the tests here only read it): agents and incidents collected from the
    simulator through the Dagster jobs, so every table and the catalog file are there."""
    world = WorldConfig(**{**SMALL_WORLD, "agents": 10, "incidents": 20, "days": 3})
    server = SimulatorServer(World(world), SimulatorConfig(rate_limit=10_000, rate_window_seconds=1.0)).start()
    try:
        pipeline = make_pipeline(server, tmp_path_factory.mktemp("sql"))
        assert pipeline.run_agents().success and pipeline.run_incidents().success
        yield Path(pipeline.lake_dir)
    finally:
        server.stop()


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and mtime: equal before and after means nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def sql_cli(lake_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "huntress_dagster.cli", "sql", "--lake-dir", str(lake_dir), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def count(lake_dir: Path, table: str) -> int:
    lake = Lake(lake_dir)
    with lake.connect() as con:
        catalog.register_views(lake, con)
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_query_answers_from_the_lake_and_writes_nothing(lake_dir):
    before = files_of(lake_dir)
    out = sql_cli(lake_dir, "select 'alerts=' || count(*) as n from alerts; describe agent_inventory")
    assert out.returncode == 0, out.stderr
    assert f"alerts={count(lake_dir, 'alerts')}" in out.stdout
    assert "column_name" in out.stdout  # the second statement's result too
    assert files_of(lake_dir) == before


def test_one_query_registers_the_views_it_names_and_every_view_when_it_names_none(lake_dir):
    assert layout.tables_named("select * from ALERTS a join agent_inventory using (agent_id)") == [
        "alerts", "agent_inventory"]
    assert layout.tables_named("from connector_status") == ["connector_health"]  # a derived view: its table
    assert layout.tables_named("select 1 as alerts_count") == []  # words, not pieces of words
    shown = sql_cli(lake_dir, "show tables")
    assert shown.returncode == 0, shown.stderr
    assert all(table in shown.stdout for table in ("alerts", "agent_inventory", "parsed_syslog", "raw_incidents"))
    named = sql_cli(lake_dir, "select count(*) as hosts from agent_inventory; show tables")
    assert named.returncode == 0, named.stderr
    assert "agent_inventory" in named.stdout.split("hosts", 1)[1] and "parsed_syslog" not in named.stdout


@pytest.mark.parametrize(("statement", "reason"), [
    ("COPY alerts TO '{out}/alerts.csv'", "refused COPY statement"),
    ("CREATE TABLE kept AS SELECT * FROM alerts", "refused CREATE statement"),
    ("ATTACH '{out}/new.duckdb' AS new", "refused ATTACH statement"),
    ("INSTALL spatial", "refused LOAD statement"),
    ("SET enable_external_access = true", "refused SET statement"),
    ("IMPORT DATABASE '{out}'", "refused PRAGMA (IMPORT DATABASE) statement"),
    ("EXPLAIN ANALYZE COPY alerts TO '{out}/alerts.csv'", "refused EXPLAIN of COPY statement"),  # ANALYZE runs it
    ("SELECT 42 AS first; COPY alerts TO '{out}/alerts.csv'", "refused COPY statement"),  # none of them runs
    # what a SELECT can reach through table functions: stopped by the locked-down connection
    ("SELECT * FROM enable_logging(storage = 'file', storage_path = '{out}/logs')", "configuration has been locked"),
    ("SELECT * FROM read_text('{outside}')", "file system operations are disabled"),
])
def test_a_statement_that_is_not_a_read_is_refused_and_writes_nothing(lake_dir, tmp_path, capfd, statement, reason):
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    outside.write_text("not part of the lake")
    before = files_of(lake_dir)
    assert main(["sql", "--lake-dir", str(lake_dir), statement.format(out=out, outside=outside)]) == 1
    printed = capfd.readouterr()
    assert printed.err.startswith("FAILED: ") and reason in printed.err, printed.err
    assert "first" not in printed.out and "not part of the lake" not in printed.out
    assert not out.exists() and files_of(lake_dir) == before


def test_the_prompt_answers_queries_and_goes_on_after_a_refused_one(lake_dir, tmp_path):
    out = tmp_path / "alerts.csv"
    stdin = (f"select count(*) as assets_n from agent_inventory;\ncopy alerts to '{out}';\n"
             "select severity,\n  count(*) as by_severity from alerts group by all;\n\n")
    ran = sql_cli(lake_dir, stdin=stdin)
    assert ran.returncode == 0, ran.stderr
    assert "assets_n" in ran.stdout and "by_severity" in ran.stdout  # before and after the refused one
    assert ran.stderr.count("FAILED: refused COPY statement") == 1
    assert not out.exists()


def test_an_object_store_lake_is_read_and_stays_unwritten(s3_lake, tmp_path, capfd):
    from .object_store import object_names

    lake = Lake(s3_lake)
    lake.write_table(lake.root / layout.AGENT_INVENTORY_FILE, pa.table({"hostname": ["a", "b", "c"]}))
    before = object_names(s3_lake)
    assert main(["sql", "--lake-dir", s3_lake, "select count(*) as hosts from agent_inventory"]) == 0
    assert "hosts" in capfd.readouterr().out
    # the lake's own prefix is the only place the connection reaches, and COPY is refused before that
    assert main(["sql", "--lake-dir", s3_lake, f"copy agent_inventory to '{s3_lake}/copied.parquet'"]) == 1
    assert main(["sql", "--lake-dir", s3_lake, f"select * from read_parquet('{s3_lake}-other/x.parquet')"]) == 1
    assert "refused COPY" in capfd.readouterr().err
    assert object_names(s3_lake) == before


def test_the_catalog_is_written_in_the_1x_format_and_a_2_0_one_is_rebuilt(lake_dir, tmp_path):
    with open_catalog(lake_dir) as con:
        assert storage_version(con) == f"{CATALOG_STORAGE_VERSION}+" == "v1.0.0+"
        assert con.execute("SELECT count(*) FROM alerts").fetchone()[0] == count(lake_dir, "alerts")

    copy = tmp_path / "lake"
    shutil.copytree(lake_dir, copy)
    catalog_file = copy / layout.CATALOG_FILE
    catalog_file.unlink()
    with duckdb.connect(str(catalog_file)) as con:  # what earlier versions wrote: DuckDB 2.0's own format
        con.execute("CREATE VIEW stale AS SELECT 1")
        assert storage_version(con) == "v2.0.0+"
    assert catalog.refresh_catalog(Lake(copy))
    with open_catalog(copy) as con:
        assert storage_version(con) == "v1.0.0+"
        views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert "alerts" in views and "stale" not in views  # rebuilt whole, not patched
        assert con.execute("SELECT count(*) FROM agent_inventory").fetchone()[0] == count(copy, "agent_inventory")
    assert catalog_file.stat().st_mode & 0o777 == 0o600
    assert not list(copy.glob(".tmp-*")) and not list(copy.glob("*.wal"))
    assert catalog.refresh_catalog(Lake(copy)) and storage_version(open_catalog(copy)) == "v1.0.0+"  # then in place


@pytest.mark.slow
def test_duckdb_1_0_opens_the_catalog_with_the_readme_snippet(lake_dir, tmp_path):
    venv = tmp_path / "duckdb-1x"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"duckdb=={OLDEST_1X}"],
                               capture_output=True, text=True, timeout=300, check=False)
    if installed.returncode:
        pytest.skip(f"DuckDB {OLDEST_1X} could not be installed (no package index reachable?): "
                    f"{installed.stderr.strip().splitlines()[-1:]}")
    moved = tmp_path / "elsewhere" / "huntress"  # the views are relative to the lake: a moved lake works
    shutil.copytree(lake_dir, moved)
    script = f"""
import duckdb, json
con = duckdb.connect()
con.execute("ATTACH {str(moved / layout.CATALOG_FILE)!r} AS huntress (READ_ONLY)")
con.execute("SET file_search_path = {str(moved)!r}")
views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                   "WHERE database_name = 'huntress' AND NOT internal").fetchall()]
print(json.dumps({{"version": duckdb.__version__,
                  "counts": {{v: con.execute(f"SELECT count(*) FROM huntress.{{v}}").fetchone()[0] for v in views}}}}))
"""
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=120,
                         check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    answer = json.loads(ran.stdout)
    assert answer["version"] == OLDEST_1X
    with open_catalog(lake_dir) as con:
        expected = {v: con.execute(f"SELECT count(*) FROM {v}").fetchone()[0] for v in answer["counts"]}
    assert {"alerts", "agent_inventory", "parsed_syslog", "connector_status"} <= set(answer["counts"])
    assert answer["counts"] == expected
