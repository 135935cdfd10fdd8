"""One entry point for every class: raw JSON texts of a stream -> a parsed_syslog table.

`normalize_records(msg_class, raws, ctx, on_invalid=...)` dispatches on `msg_class` (see `msg_classes`);
agents keep the Arrow fast path of `normalize_agents`, every other class goes row by row through its record
normalizer (`RECORD_NORMALIZERS`). The table has one row per valid record, in input order.

Invalid records: a raw text that is not a JSON object, or (defensively: the normalizers are tested never to
raise on any JSON object) one whose normalization or Arrow conversion fails. With an `on_invalid(index,
reason)` callback each is reported (its index in the batch, a reason that never quotes the record) and
skipped, so the caller can quarantine it and keep the rest; without one, the first raises `InvalidRecord`,
as `normalize_incidents` / `normalize_agents` do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa

from .arrow_rows import collector_paused, rows_to_table
from .decode import InvalidRecord, load_record
from .msg_classes import (
    AGENT_CLASS,
    ESCALATION_CLASS,
    EXTERNAL_PORT_CLASS,
    IDENTITY_CLASS,
    INCIDENT_CLASS,
    MSG_CLASSES,
    ORGANIZATION_CLASS,
    PLATFORM_ACTION_CLASS,
    SIGNAL_CLASS,
)
from .records import (
    normalize_escalation_record,
    normalize_external_port_record,
    normalize_identity_record,
    normalize_organization_record,
    normalize_platform_action_record,
    normalize_signal_record,
)
from .syslog import (
    ParseContext,
    _agents_from_arrow_json,
    normalize_agent_record,
    normalize_incident_record,
)

RecordNormalizer = Callable[[Mapping[str, Any], ParseContext], dict[str, Any]]
OnInvalid = Callable[[int, str], None]

RECORD_NORMALIZERS: dict[str, RecordNormalizer] = {
    INCIDENT_CLASS: normalize_incident_record,
    AGENT_CLASS: normalize_agent_record,
    SIGNAL_CLASS: normalize_signal_record,
    ESCALATION_CLASS: normalize_escalation_record,
    PLATFORM_ACTION_CLASS: normalize_platform_action_record,
    IDENTITY_CLASS: normalize_identity_record,
    EXTERNAL_PORT_CLASS: normalize_external_port_record,
    ORGANIZATION_CLASS: normalize_organization_record,
}
# What error messages call a record of each class ("incident record is a JSON list, not an object").
RECORD_KINDS = {
    INCIDENT_CLASS: "incident",
    AGENT_CLASS: "agent",
    SIGNAL_CLASS: "signal",
    ESCALATION_CLASS: "escalation",
    PLATFORM_ACTION_CLASS: "platform action",
    IDENTITY_CLASS: "identity",
    EXTERNAL_PORT_CLASS: "external port",
    ORGANIZATION_CLASS: "organization",
}


def record_normalizer(msg_class: str) -> RecordNormalizer:
    """The record normalizer of a class; ValueError for a class that is not one of `MSG_CLASSES`."""
    try:
        return RECORD_NORMALIZERS[msg_class]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown msg_class {msg_class!r}; expected one of {', '.join(MSG_CLASSES)}"
        ) from None


def normalize_json(msg_class: str, raw_json: str | bytes, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of one record of `msg_class` (its API JSON text). Raises `InvalidRecord` only
    when the text is not a JSON object."""
    normalize = record_normalizer(msg_class)
    return normalize(load_record(raw_json, RECORD_KINDS[msg_class]), ctx)


def normalize_records(
    msg_class: str,
    raw_jsons: Iterable[str | bytes | dict[str, Any]],
    ctx: ParseContext,
    on_invalid: OnInvalid | None = None,
) -> pa.Table:
    """The parsed_syslog table (`PARSED_SYSLOG_SCHEMA`) of a batch of raw JSON texts of one class (or of
    objects already decoded from them)."""
    normalize = record_normalizer(msg_class)
    raws = raw_jsons if isinstance(raw_jsons, list) else list(raw_jsons)
    if msg_class == AGENT_CLASS and not any(isinstance(raw, dict) for raw in raws):
        try:
            return _agents_from_arrow_json(raws, ctx)
        except (pa.ArrowInvalid, UnicodeError):
            pass  # some record needs the tolerant coercion (or is invalid): row by row
    kind = RECORD_KINDS[msg_class]
    rows: list[dict[str, Any]] = []
    indexes: list[int] = []  # each row's index in the batch
    with collector_paused():
        for index, raw in enumerate(raws):
            try:
                rows.append(normalize(raw if isinstance(raw, dict) else load_record(raw, kind), ctx))
            except InvalidRecord as error:
                if on_invalid is None:
                    raise
                on_invalid(index, str(error))
                continue
            except Exception as error:
                if on_invalid is None:
                    raise
                on_invalid(index, f"{kind} record could not be normalized ({type(error).__name__})")
                continue
            indexes.append(index)
        try:
            return rows_to_table(rows)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            if on_invalid is None:
                raise
        return _table_without_unconvertible_rows(rows, indexes, kind, on_invalid)


def _table_without_unconvertible_rows(
    rows: list[dict[str, Any]], indexes: list[int], kind: str, on_invalid: OnInvalid
) -> pa.Table:
    """Row by row, the rows Arrow cannot convert are reported and left out (only after a batch failed)."""
    kept = []
    for index, row in zip(indexes, rows, strict=True):
        try:
            rows_to_table([row])
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as error:
            on_invalid(index, f"{kind} record could not be converted to Arrow ({type(error).__name__})")
            continue
        kept.append(row)
    return rows_to_table(kept)
