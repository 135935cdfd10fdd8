"""Dagster-native metadata of the lake's tables: `dagster/column_schema` (the view's columns, their DuckDB
types and descriptions from table_docs), `dagster/row_count`, and table previews the UI renders as tables.
Thin: the descriptions live in table_docs (plain Python), the columns in the lake's views."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import dagster as dg

from . import catalog
from .lake import Lake
from .table_docs import TABLE_DOCS, column_description

PREVIEW_CELL_CHARS = 120  # a long subject or JSON value is cut: the preview is for a glance, SQL has the rest


def column_schema(store: Lake, table: str) -> dg.TableSchema | None:
    """The table's columns as its view exposes them, each with its type and description; None without files.
    Files of one schema are described from the first one's footer (`catalog.view_sql`), not with
    `union_by_name` (every footer held: ~600 MiB for parsed_syslog at 1M incidents, the parse step's peak)."""
    try:
        sql = catalog.view_sql(store, table)
        if sql is None:
            return None
        with store.connect() as con:
            described = con.execute(f"DESCRIBE {sql}").fetchall()
    except Exception:  # noqa: BLE001 - another run replaced a file as it was read: no schema this time
        return None
    return dg.TableSchema(columns=[
        dg.TableColumn(name=name, type=str(column_type), description=column_description(table, name) or None)
        for name, column_type, *_ in described])


def table_metadata(store: Lake, table: str, rows: int | None) -> dict[str, Any]:
    """`dagster/column_schema`, `dagster/row_count` (when known) and the table's one-line description."""
    schema = column_schema(store, table)
    return {**({"dagster/column_schema": schema} if schema else {}),
            **({"dagster/row_count": rows} if rows is not None else {}),
            **({"table": TABLE_DOCS[table]} if table in TABLE_DOCS else {})}


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    text = str(value).replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[:PREVIEW_CELL_CHARS - 1] + "…"


def _typed_cell(value: Any, kind: str) -> str | int | float | bool | None:
    cell = _cell(value)
    return str(cell) if kind == "string" and cell is not None else cell


def preview_table(rows: list[dict[str, Any]], columns: list[str]) -> dg.MetadataValue:
    """A few rows as a table the UI renders (lists, structs and long text as short strings)."""
    kinds = {c: "string" for c in columns}
    for column in columns:
        values = [row.get(column) for row in rows if row.get(column) is not None]
        if values and all(isinstance(v, bool) for v in values):
            kinds[column] = "bool"
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            kinds[column] = "int"
        elif values and all(isinstance(v, float | Decimal) for v in values):
            kinds[column] = "float"
    schema = dg.TableSchema(columns=[dg.TableColumn(name=c, type=kinds[c]) for c in columns])
    records = [dg.TableRecord({c: _typed_cell(row.get(c), kinds[c]) for c in columns}) for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)
