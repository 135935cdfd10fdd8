"""Keyset pagination shared by every simulated list endpoint.

A page token holds the (sort value, id) of the last record served, so a walk stays exact while the world
changes under a paginating client: records sharing one sort value are ordered by id and never skipped or
repeated across a page boundary.
"""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sortedcontainers import SortedList


class BadRequest(ValueError):
    """A parameter the real API would reject with HTTP 400."""


def encode_token(sort_value: Any, record_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort_value, record_id]).encode()).decode()


def decode_token(token: str) -> tuple[Any, int]:
    try:
        value, record_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return value, int(record_id)
    except Exception:
        raise BadRequest("page_token is invalid") from None


def iso(ts: int | None) -> str | None:
    """ISO-8601 UTC with second precision, as the API formats timestamps."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(name: str, text: str) -> int:
    """An ISO-8601 query parameter as epoch seconds (a date alone means its midnight UTC); else 400."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadRequest(f"{name} is not a valid ISO-8601 date") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def page(records: dict[int, Any], by_updated: SortedList | None, keep: Callable[[Any], bool], sort_field: str,
         direction: str, limit: int, token: str | None, *, id_ordered: frozenset[str] = frozenset({"id", "created_at"}),
         key: Callable[[Any, str], Any] | None = None) -> tuple[list[Any], str | None]:
    """One page of `records` (a dict in ascending id order) and the token of the next page, if any.

    `updated_at` walks the `by_updated` index of (updated_at, id); the fields in `id_ordered` share the
    order of ids (ids are assigned in creation order); any other field is sorted on demand by
    `key(record, field)`.
    """
    reverse = direction == "desc"
    bound = decode_token(token) if token else None
    ids: Iterator[int]
    if sort_field == "updated_at" and by_updated is not None:
        if bound:
            start = (int(bound[0]), bound[1])
            keys: Iterator = (by_updated.irange(maximum=start, inclusive=(True, False), reverse=True)
                              if reverse else by_updated.irange(minimum=start, inclusive=(False, True)))
        else:
            keys = iter(by_updated.islice(reverse=reverse))
        ids = (record_id for _, record_id in keys)
    elif sort_field in id_ordered:
        ordered = list(records)
        if bound:
            cut = bisect.bisect_left(ordered, bound[1])
            ordered = ordered[:cut] if reverse else ordered[cut + 1:]
        ids = reversed(ordered) if reverse else iter(ordered)
    else:
        if key is None:
            raise BadRequest("sort_field does not have a valid value")
        pairs = sorted((key(r, sort_field), r_id) for r_id, r in records.items() if keep(r))
        if bound:
            value = tuple(bound[0]) if isinstance(bound[0], list) else bound[0]
            try:
                cut = (bisect.bisect_left(pairs, (value, bound[1])) if reverse
                       else bisect.bisect_right(pairs, (value, bound[1])))
            except TypeError:
                raise BadRequest("page_token is invalid") from None
            pairs = pairs[:cut] if reverse else pairs[cut:]
        ids = (r_id for _, r_id in (reversed(pairs) if reverse else pairs))
    found: list[Any] = []
    more = False
    for record_id in ids:
        record = records[record_id]
        if not keep(record):
            continue
        if len(found) == limit:
            more = True
            break
        found.append(record)
    if not more or not found:
        return found, None
    last = found[-1]
    if sort_field == "updated_at" and by_updated is not None:
        value = last.updated_at
    elif sort_field in id_ordered:
        value = last.id
    else:
        value = key(last, sort_field)  # type: ignore[misc]
    return found, encode_token(value, last.id)
