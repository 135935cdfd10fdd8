"""parsed_syslog rows (dicts) -> an Arrow table of exactly `PARSED_SYSLOG_SCHEMA`, column by column.

Arrow converting each row's dict is several times slower than building each column from a list of
values; the lists are transposed in C (`itemgetter` per row, then `zip`), which halved the conversion of an
incident row (47 -> 24 us, benchmarks/README.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import pyarrow as pa

from .schema import PARSED_SYSLOG_SCHEMA


def _transposed(items: Sequence[Mapping[str, Any]], names: list[str]) -> list[Sequence[Any]]:
    """The values of each of `names` across `items` (dicts), in C: one itemgetter per item, then zip. A
    dict without one of the names (a null struct, or a struct built with fewer fields) takes the slower
    path, where a missing name is None."""
    if len(names) > 1 and items:
        try:
            return list(zip(*map(itemgetter(*names), items)))
        except KeyError:
            pass
    return [[item.get(name) for item in items] for name in names]


def _column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """One Arrow column from row values. Structs (and lists of structs) are built field by field, several
    times faster than Arrow converting each row's dict; timestamps let Arrow infer their type from the
    aware UTC datetimes and then cast, which pyarrow does ~8x faster than converting to a given tz type."""
    if values.count(None) == len(values):
        return pa.nulls(len(values), kind)
    if pa.types.is_struct(kind):
        present = [{} if value is None else value for value in values] if None in values else values
        children = [
            _column(field_values, field.type)
            for field_values, field in zip(_transposed(present, kind.names), kind, strict=True)
        ]
        mask = pa.array([value is None for value in values]) if present is not values else None
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=mask)
    if pa.types.is_list(kind) and pa.types.is_struct(kind.value_type):
        offsets, items = [0], []
        for value in values:
            items.extend(value or ())
            offsets.append(len(items))
        return pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()),
            _column(items, kind.value_type),
            mask=pa.array([value is None for value in values]),
        )
    if pa.types.is_timestamp(kind):
        return pa.array(values).cast(kind)
    return pa.array(values, type=kind)


_ROW_VALUES = itemgetter(*PARSED_SYSLOG_SCHEMA.names)  # a row's columns in schema order, as one tuple


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """parsed_syslog rows as a Table with exactly `PARSED_SYSLOG_SCHEMA`."""
    rows = list(rows)
    columns = list(zip(*map(_ROW_VALUES, rows))) if rows else [[] for _ in PARSED_SYSLOG_SCHEMA]
    return pa.Table.from_arrays(
        [_column(values, field.type) for values, field in zip(columns, PARSED_SYSLOG_SCHEMA, strict=True)],
        schema=PARSED_SYSLOG_SCHEMA,
    )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Rows are acyclic, so the cyclic garbage collector has nothing to find in a batch; left on, it keeps
    rescanning the growing batch (a third of the time for agent batches)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
