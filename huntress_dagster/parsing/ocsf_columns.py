"""Column-wise building blocks of the OCSF events (`ocsf_devices`, `ocsf_findings`): each computes, for a
whole Arrow array, what a helper of `ocsf` computes for one value, with the same nulls, and what
`ocsf._compact` does to an empty object or list (a null). Plain pyarrow compute and numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import ocsf

# ocsf's own patterns, anchored for RE2 (whose `$` is the end of the text, as fullmatch wants)
_MAC = f"^(?:{ocsf._MAC.pattern})$"
_DOTTED_QUAD = f"^(?:{ocsf._DOTTED_QUAD.pattern})$"
_OS_TYPE = ocsf.DEVICE_INVENTORY_INFO_SCHEMA.field("device").type.field("os").type
_METADATA_TYPE = ocsf.DEVICE_INVENTORY_INFO_SCHEMA.field("metadata").type


def constant(value: object, type_: pa.DataType, rows: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_), rows)


def struct(type_: pa.StructType, children: dict[str, pa.Array], null_when_empty: bool = False,
           null_where: pa.Array | None = None) -> pa.StructArray:
    """A struct of `type_` from its children (cast to their types; a child not given is null); null where
    `null_where` is true, or with `null_when_empty` where every child is null (`ocsf._compact` drops an
    empty object)."""
    rows = len(next(iter(children.values())))
    arrays = [children[f.name].cast(f.type) if f.name in children else pa.nulls(rows, f.type) for f in type_]
    mask = null_where
    if null_when_empty:
        mask = arrays[0].is_null()
        for array in arrays[1:]:
            mask = pc.and_(mask, array.is_null())
    return pa.StructArray.from_arrays(arrays, fields=list(type_), mask=mask)


def millis(times: pa.Array) -> pa.Array:
    """Epoch milliseconds, truncated as `ocsf._millis` does (`int()` of the float)."""
    return pc.divide(times.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), 1000)


def event_times(*candidates: pa.Array) -> pa.Array:
    """`ocsf._event_time`: the first known time of each row, else the processing time."""
    now = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
    return millis(pc.coalesce(*(times.cast(now.type) for times in candidates), now))


def metadata(products: pa.Array, uids: pa.Array, tenants: pa.Array) -> pa.StructArray:
    """`ocsf._metadata` with the host profile."""
    rows = len(uids)
    return struct(_METADATA_TYPE, {
        "version": constant(ocsf.OCSF_VERSION, pa.string(), rows),
        "product": struct(_METADATA_TYPE.field("product").type,
                          {"name": products, "vendor_name": constant(ocsf.VENDOR, pa.string(), rows)}),
        "uid": uids,
        "tenant_uid": tenants,
        "profiles": lists_of(constant("host", pa.string(), rows), np.ones(rows, np.int64)),
    })


def named(ids: pa.Array, names: dict[int, str]) -> pa.Array:
    """`names.get(id)` of each id (null for one not named)."""
    positions = pc.index_in(ids, value_set=pa.array(list(names), ids.type))
    return pa.array(list(names.values()), pa.string()).take(positions)


def non_empty(texts: pa.Array) -> pa.Array:
    """Where a text is truthy in Python: not null, not ""."""
    return pc.fill_null(pc.not_equal(texts.cast(pa.string()), ""), False)


def ips(values: pa.Array) -> pa.Array:
    """`ocsf.ip_or_none` of each value: a dotted quad as it is, anything else through `ipaddress`."""
    values = values.cast(pa.string())  # (inputs may be all-null, hence typeless: here and below)
    quad = pc.fill_null(pc.match_substring_regex(values, _DOTTED_QUAD), False)
    others = np.flatnonzero(pc.and_(pc.invert(quad), values.is_valid()).to_numpy(zero_copy_only=False))
    addresses = pc.if_else(quad, values, pa.scalar(None, pa.string()))
    if len(others):
        texts = [ocsf.ip_or_none(value) for value in values.take(others).to_pylist()]
        addresses = pc.replace_with_mask(addresses, _mask_of(others, len(values)), pa.array(texts, pa.string()))
    return addresses


def _mask_of(indexes: np.ndarray, rows: int) -> pa.Array:
    mask = np.zeros(rows, bool)
    mask[indexes] = True
    return pa.array(mask)


def kept_items(lists: pa.Array, keep: Callable[[pa.Array], pa.Array]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The non-null items of each list for which `keep(items)` is true: (those items, the row of each,
    the count per row)."""
    lists = lists.cast(pa.list_(pa.string()))
    flat = pc.list_flatten(lists)  # (a null list's slot holds no values here, whatever its offsets say)
    parents = np.repeat(np.arange(len(lists)), pc.fill_null(pc.list_value_length(lists), 0).to_numpy())
    kept = pc.fill_null(pc.and_(flat.is_valid(), keep(flat)), False)
    rows_of = parents[kept.to_numpy(zero_copy_only=False)]
    return flat.filter(kept), rows_of, np.bincount(rows_of, minlength=len(lists))


def lists_of(items: pa.Array, counts: np.ndarray) -> pa.ListArray:
    """Lists of `items` in order, `counts[i]` for row i; null where a row has none (`_compact` drops [])."""
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, items, mask=pa.array(counts == 0))


def firsts(items: pa.Array, counts: np.ndarray) -> pa.Array:
    """Each row's first item, null for a row with none."""
    return items.take(pa.array(np.cumsum(counts) - counts, mask=counts == 0))


def device_types(os_names: pa.Array) -> pa.Array:
    """`ocsf._device_type`: 1 (server) for an OS name holding "server" in any case, else 0. (utf8_lower maps
    one letter to one where Python's lower() maps U+0130 to two, neither of them in "server": the same
    answer; not ignore_case, whose folding would take "ſ" for "s".)"""
    server = pc.fill_null(pc.match_substring(pc.utf8_lower(os_names.cast(pa.string())), "server"), False)
    return pc.if_else(server, ocsf._DEVICE_SERVER, ocsf._DEVICE_UNKNOWN).cast(pa.int32())


def operating_systems(names: pa.Array, platforms: pa.Array, builds: pa.Array) -> pa.StructArray:
    """`ocsf._os`: named by the OS, else the platform; none without either ("" is none)."""
    names, platforms = names.cast(pa.string()), platforms.cast(pa.string())
    has_name, has_platform = non_empty(names), non_empty(platforms)
    encoded = platforms.dictionary_encode()  # (a handful of platforms: one lookup each)
    type_ids = pa.array([ocsf._OS_TYPE_IDS.get(p, 0) for p in encoded.dictionary.to_pylist()], pa.int32())
    return pa.StructArray.from_arrays(
        [pc.if_else(has_name, names, platforms), pc.fill_null(type_ids.take(encoded.indices), 0), builds.cast(pa.string())],
        fields=list(_OS_TYPE), mask=pc.invert(pc.or_(has_name, has_platform)))


def macs(lists: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """`ocsf._macs` of each list: (the valid MAC addresses, the row of each, the count per row)."""
    return kept_items(lists, lambda flat: pc.match_substring_regex(flat, _MAC))
