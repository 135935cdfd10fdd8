"""Every column of every lake table has a description in `table_docs`, and no description is stale.

The tables are the catalog's (`layout.TABLE_GLOBS` and its derived views); their columns come from the code
that writes them: the Arrow schemas (raw, parsed, health, quarantine, OCSF), the hive keys of their paths,
and the SELECT lists of the inventories and of alerts. A column added there without a description (or a
description left behind by a removed column) fails here.
"""

from __future__ import annotations

import re

import pytest

from huntress_dagster import alerts, layout, table_docs
from huntress_dagster.health import HEALTH_SCHEMA
from huntress_dagster.inventory import INVENTORIES
from huntress_dagster.parsed import PARSED_SCHEMA
from huntress_dagster.parsing import ocsf, ocsf_inventory
from huntress_dagster.quarantine import QUARANTINE_SCHEMA
from huntress_dagster.raw_partitions import RAW_SCHEMA, SNAPSHOT_SCHEMA
from huntress_dagster.streams import STREAMS


def _hive_keys(table: str) -> list[str]:
    return re.findall(r"(\w+)=", layout.TABLE_GLOBS[table]) if table in layout.HIVE_TABLES else []


def _split_top_level(select_list: str) -> list[str]:
    """A SELECT list's items (commas inside parentheses or quotes do not split)."""
    items, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(select_list):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        elif not quoted and char == "," and depth == 0:
            items.append(select_list[start:index])
            start = index + 1
    return [item.strip() for item in [*items, select_list[start:]] if item.strip()]


def _select_names(select_list: str, star: list[str] | None = None) -> list[str]:
    """The output column names of a SELECT list; `x.* EXCLUDE (...)` expands to `star` minus the excluded."""
    select_list = re.sub(r"--[^\n]*", "", select_list)
    names = []
    for item in _split_top_level(select_list):
        if excluded := re.fullmatch(r"\w+\.\*\s+EXCLUDE\s*\(([^)]*)\)", item, re.DOTALL):
            assert star is not None, item
            dropped = {name.strip() for name in excluded.group(1).split(",")}
            names += [name for name in star if name not in dropped and name not in names]
        elif alias := re.search(r"\bAS\s+(\w+)$", item, re.IGNORECASE):
            names.append(alias.group(1))
        else:
            assert re.fullmatch(r"[\w.]+", item), f"cannot name the column of {item!r}"
            names.append(item.rsplit(".", 1)[-1])
    return names


def _alerts_columns() -> list[str]:
    select = re.search(r"^SELECT (.*?)^FROM latest$", alerts.ALERT_ROWS_SQL, re.DOTALL | re.MULTILINE)
    assert select, "ALERT_ROWS_SQL changed shape: teach _alerts_columns its new SELECT"
    parsed = list(dict.fromkeys([*PARSED_SCHEMA.names, *_hive_keys("parsed_syslog")]))
    return _select_names(select.group(1), star=parsed)


def _table_columns() -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {}
    for stream in STREAMS:
        schema = RAW_SCHEMA if stream.is_walk else SNAPSHOT_SCHEMA
        columns[stream.raw_table] = [*schema.names, *_hive_keys(stream.raw_table)]
    columns["parsed_syslog"] = list(dict.fromkeys([*PARSED_SCHEMA.names, *_hive_keys("parsed_syslog")]))
    columns["alerts"] = _alerts_columns()
    for inventory in INVENTORIES:
        columns[inventory.table] = _select_names(inventory.columns_sql)
    columns["ocsf_detection_finding"] = ocsf.DETECTION_FINDING_SCHEMA.names
    columns["ocsf_device_inventory_info"] = ocsf.DEVICE_INVENTORY_INFO_SCHEMA.names
    columns["ocsf_user_inventory_info"] = ocsf_inventory.USER_INVENTORY_INFO_SCHEMA.names
    columns["connector_health"] = [*HEALTH_SCHEMA.names, *_hive_keys("connector_health")]
    columns["connector_status"] = HEALTH_SCHEMA.names  # SELECT * EXCLUDE (day) FROM connector_health
    columns["_quarantine"] = QUARANTINE_SCHEMA.names
    return columns


TABLES = _table_columns()


def test_the_derived_columns_are_the_lake_s():
    """The derivation above reads the code right (the demo lake's columns, spot-checked)."""
    assert set(TABLES) == {*layout.TABLE_GLOBS, *layout.DERIVED_VIEWS}
    assert TABLES["raw_incidents"][-3:] == ["remediations_json", "account", "day"]
    assert TABLES["raw_agents"][-2:] == ["account", "day"] and "remediations_json" not in TABLES["raw_agents"]
    assert TABLES["alerts"][:5] == ["alert_id", "tenantid", "tenant_name", "msg_class", "huntress_id"]
    assert {"version_count", "host_domain_name", "msg_origin", "huntress", "services", "body_size", "day"} <= set(
        TABLES["alerts"])
    assert not {"body", "account", "alert_uid", "portal_url", "collected_at", "oid", "filename"} & set(
        TABLES["alerts"])
    assert len(TABLES["alerts"]) == len(set(TABLES["alerts"])) == 59
    assert TABLES["agent_inventory"][:3] == ["tenantid", "tenant_name", "agent_id"] and TABLES["agent_inventory"][-1] == "huntress"
    assert {"days_since_callback", "is_stale", "in_latest_snapshot"} <= set(TABLES["agent_inventory"])
    assert TABLES["identities"][-2:] == ["mfa_changed_at", "risk_changed_at"]
    assert TABLES["external_ports"][:3] == ["tenantid", "ip_address", "port"]
    assert TABLES["organizations"][:4] == ["tenantid", "organization_id", "account_id", "name"]
    assert TABLES["parsed_syslog"][-3:] == ["collected_at", "account", "day"]
    assert TABLES["ocsf_user_inventory_info"][-2:] == ["user", "unmapped"]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_column_is_described(table):
    assert table_docs.undocumented(table, TABLES[table]) == []
    assert table_docs.TABLE_DOCS.get(table), f"{table} has no table description"
    for column in TABLES[table]:
        text = table_docs.column_description(table, column)
        assert text == text.strip() and len(text) <= 140, (table, column, len(text))


def test_no_description_is_stale():
    every_column = {column for columns in TABLES.values() for column in columns}
    assert set(table_docs.TABLE_DOCS) == set(TABLES)
    assert set(table_docs.TABLE_COLUMN_DOCS) <= set(TABLES)
    for table, docs in table_docs.TABLE_COLUMN_DOCS.items():
        assert set(docs) <= set(TABLES[table]), (table, sorted(set(docs) - set(TABLES[table])))
    assert set(table_docs.COLUMN_DOCS) <= every_column, sorted(set(table_docs.COLUMN_DOCS) - every_column)
    # a shared entry is read by at least one table (not overridden in every table that has the column)
    used = {column for table, columns in TABLES.items() for column in columns
            if column not in table_docs.TABLE_COLUMN_DOCS.get(table, {})}
    assert set(table_docs.COLUMN_DOCS) <= used, sorted(set(table_docs.COLUMN_DOCS) - used)


def test_lookup_order_and_unknowns():
    # table-specific first
    assert table_docs.column_description("raw_incidents", "id").startswith("Huntress id of the incident report")
    assert table_docs.column_description("raw_agents", "id") == "Huntress id of the agent"
    assert (table_docs.column_description("parsed_syslog", "huntress")
            != table_docs.column_description("agent_inventory", "huntress"))
    assert table_docs.column_description("connector_health", "status").startswith("ok; degraded")
    assert table_docs.column_description("alerts", "status").startswith("Huntress status label")
    # then shared
    assert table_docs.column_description("identities", "tenantid") == table_docs.COLUMN_DOCS["tenantid"]
    assert table_docs.column_description("no_such_table", "in_latest_snapshot") == table_docs.COLUMN_DOCS[
        "in_latest_snapshot"]
    # never a KeyError
    assert table_docs.column_description("alerts", "no_such_column") == ""
    assert table_docs.column_description("no_such_table", "no_such_column") == ""


def test_undocumented():
    assert table_docs.undocumented("alerts", []) == []
    assert table_docs.undocumented("alerts", ["alert_id", "tenantid"]) == []
    # the gaps, in the order given, once per mention; a generator works
    assert table_docs.undocumented("alerts", (c for c in ["zz", "alert_id", "aa", "zz"])) == ["zz", "aa", "zz"]
    # `name` is described for organizations only; `day` is shared
    assert table_docs.undocumented("agent_inventory", ["name", "day"]) == ["name"]
    assert table_docs.undocumented("organizations", ["name"]) == []
    assert table_docs.undocumented("no_such_table", ["tenantid", "alert_id"]) == ["alert_id"]
