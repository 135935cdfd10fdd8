"""Decoding raw records: the API object's JSON text -> a dict, or `InvalidRecord` when it is not an object."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_ORJSON_MAX_CHARS = 1 << 20
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidRecord(ValueError):
    """A raw record that is not a JSON object; the message never includes the record's content."""


def load_record(raw_json: str | bytes, kind: str) -> dict[str, Any]:
    """The API object as a dict.

    orjson is ~3x faster than the stdlib on typical records, but peaks at ~15x the text's size when
    decoding a large non-ASCII string (the stdlib: ~2.5x), so text over `_ORJSON_MAX_CHARS` goes to the
    stdlib. orjson also rejects lone surrogates (\\ud800) and integers beyond 64 bits, which the stdlib
    accepts.
    """
    if len(raw_json) > _ORJSON_MAX_CHARS:
        record = _stdlib_loads(raw_json, kind)
    else:
        try:
            record = orjson.loads(raw_json)
        except orjson.JSONDecodeError:
            record = _stdlib_loads(raw_json, kind)
    if not isinstance(record, dict):
        raise InvalidRecord(f"{kind} record is a JSON {type(record).__name__}, not an object")
    return record


def _stdlib_loads(raw_json: str | bytes, kind: str) -> Any:
    """Decode with the stdlib; unpaired surrogates are replaced so that every string is valid UTF-8."""
    try:
        record = json.loads(raw_json)
        if _has_lone_surrogate(record):
            record = json.loads(json.dumps(record, ensure_ascii=False).encode("utf-8", "replace"))
    except (ValueError, TypeError) as error:
        raise InvalidRecord(f"{kind} record is not valid JSON ({type(error).__name__})") from None
    except RecursionError:  # deeper than the interpreter's recursion limit (orjson stops at 1024 levels)
        raise InvalidRecord(f"{kind} record is nested too deeply") from None
    return record


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return not value.isascii() and _LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(map(_has_lone_surrogate, value))
    return False
