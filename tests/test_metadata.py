"""Dagster-native metadata on real runs: row counts that match the lake, column schemas with a description
for every column, previews the UI renders as tables."""

from __future__ import annotations

import dagster as dg

from huntress_dagster import catalog

from .dagster_helpers import make_pipeline

TABLES = ("alerts", "agent_inventory", "identities", "external_ports", "organizations", "raw_agents", "raw_incidents",
          "parsed_syslog", "ocsf_detection_finding", "ocsf_device_inventory_info", "ocsf_user_inventory_info")


def latest(pipeline, table: str) -> dict:
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey(table))
    return event.asset_materialization.metadata


def test_every_table_reports_its_row_count_column_schema_and_a_table_preview(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success and pipeline.run_incidents().success
    assert pipeline.run_agents().success  # a second snapshot: the running count adds to the first

    for table in TABLES:
        metadata = latest(pipeline, table)
        with pipeline.lake.connect() as con:
            catalog.register_views(pipeline.lake, con)
            columns = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
        schema = metadata["dagster/column_schema"].value
        assert [c.name for c in schema.columns] == columns, table
        assert all(c.description for c in schema.columns), (table, [c.name for c in schema.columns
                                                                    if not c.description])
        if not table.startswith("ocsf_"):  # an OCSF table is read by machines: no preview
            assert isinstance(metadata["preview"], dg.TableMetadataValue), table
        if table != "raw_incidents" and table != "parsed_syslog":  # per day, see test_pipeline
            assert metadata["dagster/row_count"].value == pipeline.query(f"SELECT count(*) FROM {table}")[0][0], table
    preview = latest(pipeline, "alerts")["preview"].value
    assert preview.records and {"msg_class", "severity", "subject"} <= {c.name for c in preview.schema.columns}


def test_the_ocsf_tables_are_assets_downstream_of_the_table_they_are_written_with(simulator, tmp_path):
    graph = make_pipeline(simulator, tmp_path).defs.resolve_asset_graph()
    for ocsf, source in (("ocsf_detection_finding", "alerts"), ("ocsf_device_inventory_info", "agent_inventory"),
                         ("ocsf_user_inventory_info", "identities")):
        assert graph.get(dg.AssetKey(ocsf)).parent_keys == {dg.AssetKey(source)}


def test_a_view_and_its_column_schema_read_one_footer_when_the_files_share_a_schema_and_union_them_when_not(
        tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from huntress_dagster.lake import Lake
    from huntress_dagster.table_metadata import column_schema

    lake = Lake(tmp_path / "lake")

    def day_file(day: str):
        path = lake.root / f"raw_incidents/account=1/day={day}/data.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def described() -> list[tuple[str, str]]:
        schema = column_schema(lake, "raw_incidents")
        return [(c.name, c.type) for c in schema.columns]

    def described_with_union_by_name() -> list[tuple[str, str]]:
        glob = f"{lake.root}/raw_incidents/*/*/*.parquet"
        with duckdb.connect() as con:
            return [(name, kind) for name, kind, *_ in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
            ).fetchall()]

    def ids_through_the_view() -> list:
        with lake.connect() as con:
            catalog.register_views(lake, con, ["raw_incidents"])
            return [row[0] for row in con.execute("SELECT id FROM raw_incidents ORDER BY id").fetchall()]

    first = day_file("2026-11-01")
    for day, ids in (("2026-11-01", [1]), ("2026-11-02", [2, None])):
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "raw_json": ["{}"] * len(ids)}), day_file(day))
    assert lake.share_one_schema(lake.files("raw_incidents"))
    assert "union_by_name" not in catalog.view_sql(lake, "raw_incidents")  # DuckDB binds it from one footer
    assert described() == described_with_union_by_name()
    assert [name for name, _ in described()] == ["id", "raw_json", "account", "day"]
    assert ids_through_the_view() == [1, 2, None]

    with duckdb.connect() as con:  # a merged day is written by DuckDB: no Arrow schema in its footer
        con.execute(f"COPY (SELECT id + 2 AS id, raw_json FROM '{first}') TO '{day_file('2026-11-03')}'")
    assert not lake.share_one_schema(lake.files("raw_incidents"))
    assert "union_by_name = true" in catalog.view_sql(lake, "raw_incidents")
    assert described() == described_with_union_by_name()
    assert ids_through_the_view() == [1, 2, 3, None]

    # a day written by another version, with a column more: the union of all, as the view reads them
    pq.write_table(pa.table({"id": pa.array([4], pa.int64()), "raw_json": ["{}"], "note": ["new"]}),
                   day_file("2026-11-04"))
    assert not lake.share_one_schema(lake.files("raw_incidents"))
    assert described() == described_with_union_by_name()
    assert "note" in [name for name, _ in described()]
    assert ids_through_the_view() == [1, 2, 3, 4, None]

    # the same path rewritten with another schema is read again (footers are remembered by signature)
    for day in ("2026-11-03", "2026-11-04"):
        day_file(day).unlink()
    assert lake.share_one_schema(lake.files("raw_incidents"))
    pq.write_table(pa.table({"id": pa.array([2], pa.int64()), "raw_json": ["{}"], "note": ["x"]}),
                   day_file("2026-11-02"))
    assert not lake.share_one_schema(lake.files("raw_incidents"))
    assert "note" in [name for name, _ in described()]
