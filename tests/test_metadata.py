"""Dagster-native metadata on real runs: row counts that match the lake, column schemas with a description
for every column, previews the UI renders as tables."""

from __future__ import annotations

import dagster as dg

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
            pipeline.lake.register_views(con)
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
