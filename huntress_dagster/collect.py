"""Collection walks over the Huntress API (plain Python: no Dagster, no storage).

`/incident_reports` has no time filter, so a window of days is collected by ONE walk sorted by
`updated_at` descending: records newer than the window are skipped, the walk stops at the first
record older than its lower bound. Records that share one `updated_at` may straddle a page
boundary and be served twice; the walk yields each (id, updated_at) once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .client import HuntressClient

log = logging.getLogger(__name__)


def parse_api_time(value: str | None) -> datetime | None:
    """The API's ISO-8601 timestamps ("2022-03-01T18:54:02Z") as aware UTC datetimes."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


def to_json_text(obj: dict[str, Any]) -> str:
    """The API object as compact JSON text (the raw tables keep objects verbatim in this form)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@dataclass
class WalkStats:
    pages: int = 0
    records_walked: int = 0  # every object the API served, in or out of the window
    records_in_window: int = 0
    duplicates_skipped: int = 0
    remediation_completions: int = 0
    oldest_seen: datetime | None = None
    newest_seen: datetime | None = None
    per_day: dict[str, int] = field(default_factory=dict)


def raw_row(obj: dict[str, Any], tenantid: str, collected_at: datetime) -> dict[str, Any]:
    """A raw-table row: key columns plus the object verbatim."""
    return {
        "tenantid": tenantid,
        "account_id": obj.get("account_id"),
        "organization_id": obj.get("organization_id"),
        "id": obj["id"],
        "updated_at": parse_api_time(obj.get("updated_at")),
        "collected_at": collected_at,
        "raw_json": to_json_text(obj),
        "remediations_json": None,
    }


def walk_incident_reports(
    client: HuntressClient,
    *,
    tenantid: str,
    lower_bound: datetime,
    upper_bound: datetime,
    organization_ids: Sequence[int] = (),
    complete_remediations: bool = True,
    known_complete: Callable[[int, datetime], str | None] | None = None,
    collected_at: datetime | None = None,
    stats: WalkStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield raw rows of incident reports with lower_bound <= updated_at < upper_bound.

    One walk per organization filter (none = one walk over the whole account). Remediation lists
    beyond the embedded first 10 are completed with extra requests, except for versions for which
    `known_complete(id, updated_at)` returns the already collected list (as remediations_json).
    """
    stats = stats if stats is not None else WalkStats()
    collected_at = collected_at or datetime.now(timezone.utc)
    for organization_id in (list(organization_ids) or [None]):
        boundary_stamp: datetime | None = None
        ids_at_boundary: set[int] = set()
        for page in client.incident_report_pages(sort_field="updated_at", sort_direction="desc",
                                                 organization_id=organization_id):
            stats.pages += 1
            reached_bottom = False
            for obj in page.items:
                stats.records_walked += 1
                updated_at = parse_api_time(obj.get("updated_at"))
                if updated_at is None:
                    log.warning("incident report %s has no updated_at; skipped", obj.get("id"))
                    continue
                # Only ids at the lowest timestamp seen so far can come back on the next page.
                if updated_at != boundary_stamp:
                    boundary_stamp, ids_at_boundary = updated_at, set()
                if obj["id"] in ids_at_boundary:
                    stats.duplicates_skipped += 1
                    continue
                ids_at_boundary.add(obj["id"])
                stats.oldest_seen = updated_at
                stats.newest_seen = stats.newest_seen or updated_at
                if updated_at >= upper_bound:
                    continue
                if updated_at < lower_bound:
                    reached_bottom = True
                    break
                row = raw_row(obj, tenantid, collected_at)
                embedded = obj.get("remediations")
                if complete_remediations and isinstance(embedded, dict) and embedded.get("has_more"):
                    row["remediations_json"] = known_complete and known_complete(obj["id"], updated_at)
                    if not row["remediations_json"]:
                        row["remediations_json"] = to_json_text({"remediations": list(client.remediations(obj["id"]))})
                        stats.remediation_completions += 1
                stats.records_in_window += 1
                day = updated_at.date().isoformat()
                stats.per_day[day] = stats.per_day.get(day, 0) + 1
                yield row
            if reached_bottom:
                break


def snapshot_agents(
    client: HuntressClient,
    *,
    tenantid: str,
    organization_ids: Sequence[int] = (),
    collected_at: datetime | None = None,
    stats: WalkStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield raw rows of every agent (a full inventory snapshot: ceil(agents / 500) requests)."""
    stats = stats if stats is not None else WalkStats()
    collected_at = collected_at or datetime.now(timezone.utc)
    seen: set[int] = set()
    for organization_id in (list(organization_ids) or [None]):
        # Sorting by id keeps pages stable while agents call back (updated_at moves) mid-snapshot.
        for page in client.agent_pages(sort_field="id", sort_direction="asc", organization_id=organization_id):
            stats.pages += 1
            for obj in page.items:
                stats.records_walked += 1
                if obj["id"] in seen:
                    stats.duplicates_skipped += 1
                    continue
                seen.add(obj["id"])
                stats.records_in_window += 1
                row = raw_row(obj, tenantid, collected_at)
                del row["remediations_json"]
                yield row
