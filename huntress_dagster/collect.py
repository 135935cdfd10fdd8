"""Collection over the Huntress API, for any stream (plain Python: no Dagster, no storage).

A walked stream (streams.Strategy.WALK) is collected for a window of days by ONE walk sorted by
`updated_at` descending: records newer than the window are skipped, the walk stops at the first
record older than its lower bound. Records that share one `updated_at` may straddle a page
boundary and be served twice; the walk yields each (id, updated_at) once. A snapshot stream is
listed in full, sorted by id.

The API is not trusted blindly. A walk records in its stats how far down it *proved* completeness
(`proven_down_to`: every record updated at or after it was seen, through pages that were all
well-formed); a broken paging (see `HuntressClient.iter_pages`) or records out of order leave less or
nothing proven, and callers record completeness only for what was proven. A record that cannot be keyed
(an id that is not an integer, an updated_at that is not a timestamp) is handed to `on_poison` with the
reason instead of stopping the walk.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from .client import HuntressClient
from .errors import HuntressNotFoundError, HuntressPaginationError
from .streams import Stream

log = logging.getLogger(__name__)


def parse_api_time(value: str | None) -> datetime | None:
    """The API's ISO-8601 timestamps ("2022-03-01T18:54:02Z") as aware UTC datetimes (a stamp without a
    zone is taken as UTC, as the API means it)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def to_json_bytes(obj: Any) -> bytes:
    """`to_json_text` as UTF-8 bytes, what a raw row carries: Arrow stores them as they are, where a str
    costs a UTF-8 decode here and an encode again in Arrow (~70 ms of a 500-incident page)."""
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return to_json_text(obj).encode()


def to_json_text(obj: Any) -> str:
    """The API object as compact JSON text (the raw tables keep objects verbatim in this form).

    Text the API sent that is not valid Unicode (a lone surrogate such as \\ud800) cannot be stored in
    Parquet as is: such an object is written with ASCII escapes, which keeps the original exactly."""
    try:
        return orjson.dumps(obj).decode()
    except (orjson.JSONEncodeError, TypeError):  # lone surrogates, integers beyond 64 bits
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))


class PoisonRecord(ValueError):
    """An API object that cannot be keyed or placed; its text says why. `updated_at` is set when the
    object's day is known (its id is the problem), so that day can be read again later."""

    def __init__(self, reason: str, updated_at: datetime | None = None):
        super().__init__(reason)
        self.updated_at = updated_at


def record_key(obj: Any, *, require_updated_at: bool = True) -> tuple[int, datetime | None]:
    """(id, updated_at) of an API object, or PoisonRecord saying what is wrong with it."""
    if not isinstance(obj, dict):
        raise PoisonRecord(f"record is a JSON {type(obj).__name__}, not an object")
    record_id, stamp = obj.get("id"), obj.get("updated_at")
    updated_at = None
    if stamp is not None or require_updated_at:
        if not isinstance(stamp, str):
            raise PoisonRecord(f"updated_at is not a timestamp string: {to_json_text(stamp)[:40]}")
        try:
            updated_at = parse_api_time(stamp)
        except ValueError:
            raise PoisonRecord(f"updated_at is not an ISO-8601 timestamp: {stamp[:40]!r}") from None
    if type(record_id) is not int:  # bool is an int subclass; "77" is not an id
        raise PoisonRecord("missing id" if record_id is None else
                           f"id is not an integer: {to_json_text(record_id)[:40]}", updated_at)
    return record_id, updated_at


PoisonHandler = Callable[[Any, str, str], None]  # (object, reason, endpoint)


def _log_poison(obj: Any, reason: str, endpoint: str) -> None:
    log.warning("%s: record skipped (%s)", endpoint, reason)


@dataclass
class WalkStats:
    pages: int = 0
    records_walked: int = 0  # every object the API served, in or out of the window
    records_in_window: int = 0
    duplicates_skipped: int = 0
    remediation_completions: int = 0
    quarantined: int = 0
    oldest_seen: datetime | None = None
    # The earliest created_at of the versions kept; None when one had none: what stored history can hold
    # earlier versions of them (see `WalkedPartitions.commit`).
    oldest_created: datetime | None = None
    created_unknown: bool = False
    newest_seen: datetime | None = None
    per_day: dict[str, int] = field(default_factory=dict)
    # Every record updated at or after this was seen (None: nothing proven). Set by walks that prove it.
    proven_down_to: datetime | None = None
    anomalies: list[str] = field(default_factory=list)  # why a walk proved less than it covered
    poisoned_days: set[str] = field(default_factory=set)  # days of quarantined records: to be read again

    def note_created(self, obj: dict[str, Any]) -> None:
        try:
            created = parse_api_time(obj.get("created_at"))
        except (TypeError, ValueError, AttributeError):
            created = None
        if created is None:
            self.created_unknown = True
        elif self.oldest_created is None or created < self.oldest_created:
            self.oldest_created = created

    def created_since(self) -> datetime | None:
        """No version kept was created before this (None: unknown)."""
        return None if self.created_unknown else self.oldest_created

    def prove(self, floor: datetime | None, first: bool) -> None:
        """Combine one walk's proof with the others' (several organization walks): the weakest holds."""
        if first:
            self.proven_down_to = floor
        elif floor is None or self.proven_down_to is None:
            self.proven_down_to = None
        else:
            self.proven_down_to = max(self.proven_down_to, floor)


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


def _owner_id(obj: dict[str, Any], name: str) -> int | None:
    """`<name>_id`, or the id of an embedded `<name>` object (signals embed `organization`, escalations
    `account`); None for objects spanning several organizations (their ids stay in the JSON)."""
    embedded = obj.get(name)
    return _int_or_none(obj.get(f"{name}_id", embedded.get("id") if isinstance(embedded, dict) else None))


def raw_row(obj: dict[str, Any], tenantid: str, collected_at: datetime,
            key: tuple[int, datetime | None] | None = None) -> dict[str, Any]:
    """A raw-table row: key columns plus the object verbatim."""
    record_id, updated_at = key or record_key(obj, require_updated_at=False)
    return {
        "tenantid": tenantid,
        "account_id": _owner_id(obj, "account"),
        "organization_id": _owner_id(obj, "organization"),
        "id": record_id,
        "updated_at": updated_at,
        "collected_at": collected_at,
        "raw_json": to_json_bytes(obj),
        "remediations_json": None,
    }


def walk_stream(
    client: HuntressClient,
    stream: Stream,
    *,
    tenantid: str,
    lower_bound: datetime,
    upper_bound: datetime,
    organization_ids: Sequence[int] = (),
    complete_remediations: bool = True,
    known_complete: Callable[[int, datetime], str | None] | None = None,
    collected_at: datetime | None = None,
    stats: WalkStats | None = None,
    on_poison: PoisonHandler = _log_poison,
    path_prefix: str = "",
) -> Iterator[dict[str, Any]]:
    """Yield raw rows of a walked stream's objects with lower_bound <= updated_at < upper_bound.

    One walk per organization filter (none = one walk over the whole account). For incident reports,
    remediation lists beyond the embedded first 10 are completed with extra requests, except for
    versions for which `known_complete(id, updated_at)` returns the already collected list.
    `stats.proven_down_to` says how far down the walks proved completeness (see the module doc).
    `path_prefix` ("/accounts/<id>") walks a reseller's customer account.
    """
    stats = stats if stats is not None else WalkStats()
    collected_at = collected_at or datetime.now(timezone.utc)
    for number, organization_id in enumerate(list(organization_ids) or [None]):
        path = path_prefix + stream.path
        walk = _UpdatedAtWalk(path, lower_bound, upper_bound, stats)
        pages = client.iter_pages(path, stream.name, {"sort_field": "updated_at", "sort_direction": "desc",
                                                             "organization_id": organization_id})
        try:
            for page in pages:
                stats.pages += 1
                for obj in page.items:
                    try:
                        key = walk.admit(obj)
                    except PoisonRecord as poison:
                        stats.quarantined += 1
                        if poison.updated_at is not None:
                            stats.poisoned_days.add(poison.updated_at.date().isoformat())
                        on_poison(obj, str(poison), path)
                        continue
                    if key is None:
                        continue
                    row = raw_row(obj, tenantid, collected_at, key)
                    embedded = obj.get("remediations")
                    if complete_remediations and stream.completes_remediations and isinstance(embedded, dict) \
                            and embedded.get("has_more"):
                        row["remediations_json"] = known_complete and known_complete(*key)
                        if not row["remediations_json"]:
                            row["remediations_json"] = to_json_bytes(
                                {"remediations": list(client.remediations(key[0], path_prefix=path_prefix))})
                            stats.remediation_completions += 1
                    stats.records_in_window += 1
                    stats.note_created(obj)
                    day = key[1].date().isoformat()
                    stats.per_day[day] = stats.per_day.get(day, 0) + 1
                    yield row
                if walk.reached_bottom:
                    break
                walk.end_page()
        except HuntressPaginationError as exc:
            stats.anomalies.append(str(exc))
            walk.broken = True
        finally:
            pages.close()
        stats.prove(walk.proven_down_to(), first=number == 0)


class _UpdatedAtWalk:
    """The bookkeeping of one updated_at-descending walk: which records to keep, and what it proved."""

    def __init__(self, path: str, lower_bound: datetime, upper_bound: datetime, stats: WalkStats):
        self.path, self.lower_bound, self.upper_bound, self.stats = path, lower_bound, upper_bound, stats
        self.boundary_stamp: datetime | None = None
        self.ids_at_boundary: set[int] = set()  # only ids at the lowest stamp can come back on the next page
        self.on_page: set[tuple[int, datetime]] = set()  # repeats anywhere on this page...
        self.on_previous_page: set[tuple[int, datetime]] = set()  # ...or served again from the page before
        self.reached_bottom = False
        self.broken = False  # the paging failed: only what came before is proven
        self.out_of_order = False  # records out of order: nothing is proven

    def admit(self, obj: Any) -> tuple[int, datetime] | None:
        """The record's key if it is a new version inside the window; None to skip it."""
        self.stats.records_walked += 1
        record_id, updated_at = record_key(obj)
        if (record_id, updated_at) in self.on_page or (record_id, updated_at) in self.on_previous_page or (
                updated_at == self.boundary_stamp and record_id in self.ids_at_boundary):
            self.stats.duplicates_skipped += 1
            return None
        self.on_page.add((record_id, updated_at))
        if self.boundary_stamp is not None and updated_at > self.boundary_stamp:
            if not self.out_of_order:
                self.stats.anomalies.append(
                    f"{self.path} served updated_at {updated_at.isoformat()} (id {record_id}) after "
                    f"{self.boundary_stamp.isoformat()}: not in descending order")
            self.out_of_order = True
        elif updated_at != self.boundary_stamp:
            self.boundary_stamp, self.ids_at_boundary = updated_at, set()
        self.ids_at_boundary.add(record_id)
        self.stats.oldest_seen = min(filter(None, [self.stats.oldest_seen, updated_at]))
        self.stats.newest_seen = max(filter(None, [self.stats.newest_seen, updated_at]))
        if updated_at >= self.upper_bound:
            return None
        if updated_at < self.lower_bound:
            self.reached_bottom = True
            return None
        return record_id, updated_at

    def end_page(self) -> None:
        self.on_previous_page, self.on_page = self.on_page, set()

    def proven_down_to(self) -> datetime | None:
        if self.out_of_order:
            return None
        if self.reached_bottom:
            return self.lower_bound
        if not self.broken:
            return datetime.min.replace(tzinfo=timezone.utc)  # the list ended: everything was seen
        if self.boundary_stamp is None:
            return None
        # Records at the lowest stamp seen may straddle into the page that never came.
        return self.boundary_stamp + timedelta(microseconds=1)


def snapshot_stream(
    client: HuntressClient,
    stream: Stream,
    *,
    tenantid: str,
    organization_ids: Sequence[int] = (),
    collected_at: datetime | None = None,
    stats: WalkStats | None = None,
    on_poison: PoisonHandler = _log_poison,
    path_prefix: str = "",
) -> Iterator[dict[str, Any]]:
    """Yield raw rows of every object of a snapshot stream (ceil(objects / 500) requests).

    A broken paging raises (HuntressPaginationError): a partial snapshot would show the agents it missed
    as gone, so none is written."""
    stats = stats if stats is not None else WalkStats()
    collected_at = collected_at or datetime.now(timezone.utc)
    seen: set[int] = set()
    for organization_id in (list(organization_ids) if stream.filters_by_organization else []) or [None]:
        # Sorting by id keeps pages stable while objects change (agents call back) mid-snapshot.
        params = {"sort_field": "id", "sort_direction": "asc", "organization_id": organization_id}
        for page in client.iter_pages(path_prefix + stream.path, stream.name, params):
            stats.pages += 1
            for obj in page.items:
                stats.records_walked += 1
                try:
                    key = record_key(obj, require_updated_at=False)
                except PoisonRecord as poison:
                    stats.quarantined += 1
                    on_poison(obj, str(poison), path_prefix + stream.path)
                    continue
                if key[0] in seen:
                    stats.duplicates_skipped += 1
                    continue
                seen.add(key[0])
                stats.records_in_window += 1
                row = raw_row(obj, tenantid, collected_at, key)
                del row["remediations_json"]
                yield row


def fetch_objects(client: HuntressClient, stream: Stream, ids: Iterable[int], *, tenantid: str,
                  collected_at: datetime | None = None, stats: WalkStats | None = None,
                  on_poison: PoisonHandler = _log_poison, path_prefix: str = "") -> Iterator[dict[str, Any]]:
    """Raw rows of named objects, one `GET <path>/<id>` each (what a webhook announced: no list walk). An
    incident report's remediations are completed as a walk completes them; an id the API no longer has is
    skipped (the polling walk is the safety net)."""
    stats = stats if stats is not None else WalkStats()
    collected_at = collected_at or datetime.now(timezone.utc)
    path = path_prefix + stream.path
    for record_id in dict.fromkeys(ids):
        try:
            obj = client.get(f"{path}/{record_id}").get(stream.name[:-1])  # {"incident_report": {...}}
        except HuntressNotFoundError:
            continue
        try:
            key = record_key(obj)
        except PoisonRecord as poison:
            stats.quarantined += 1
            on_poison(obj, str(poison), path)
            continue
        row = raw_row(obj, tenantid, collected_at, key)
        embedded = obj.get("remediations")
        if stream.completes_remediations and isinstance(embedded, dict) and embedded.get("has_more"):
            row["remediations_json"] = to_json_bytes(
                {"remediations": list(client.remediations(key[0], path_prefix=path_prefix))})
            stats.remediation_completions += 1
        stats.records_walked += 1
        stats.records_in_window += 1
        yield row
