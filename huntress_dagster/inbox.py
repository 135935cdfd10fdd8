"""The webhook inbox of the lake (plain Python: no Dagster).

The receiver (webhooks.py) makes every verified delivery durable here before it answers 2xx: one JSON file
per event under `_inbox/pending/`, written whole (a local lake: written, fsynced, renamed; an object store: one
PUT), plus a marker per svix-id so a repeated delivery is acknowledged and not stored twice. The inbox sensor
moves the pending events into a batch (`_inbox/batches/<batch>/`) and starts one run that fetches exactly those
objects by id and commits them; the batch stays as the record of what came by push.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from . import layout
from .lake import Lake
from .streams import ESCALATIONS, INCIDENT_REPORTS, PLATFORM_ACTIONS, Stream

INBOX_TAG = "huntress/inbox"  # a run of the inbox sensor: the batch of events it commits

# Event type prefix -> the stream whose object it announces (account notices announce no object)
EVENT_STREAMS = {"incident_report.": INCIDENT_REPORTS, "escalation.": ESCALATIONS,
                 "platform_action.": PLATFORM_ACTIONS}


def event_key(svix_id: str) -> str:
    return hashlib.sha256(svix_id.encode()).hexdigest()[:32]


def stream_of(event_type: str) -> Stream | None:
    return next((s for prefix, s in EVENT_STREAMS.items() if event_type.startswith(prefix)), None)


@dataclass(frozen=True)
class InboxEvent:
    svix_id: str
    type: str
    object_id: int | None
    received_at: datetime
    occurred_on: date  # the day the object changed (its updated_at, else the delivery's)
    account_id: int | None = None  # the Huntress account it belongs to (`account.id`)

    @property
    def stream(self) -> Stream | None:
        return stream_of(self.type)


def object_id_of(payload: dict[str, Any]) -> int | None:
    """The announced object's id: the payload is the object's summary (webhooks.json: `id`, `event_type`,
    `updated_at`, `account`...), without what a webhook leaves out (remediations, indicator types)."""
    value = payload.get("id")
    return value if type(value) is int else None


def _account_of(payload: dict[str, Any]) -> int | None:
    account = payload.get("account")
    value = account.get("id") if isinstance(account, dict) else payload.get("account_id")
    return value if type(value) is int else None


def _occurred_on(payload: dict[str, Any], received_at: datetime) -> date:
    for field in ("updated_at", "resolved_at", "closed_at", "created_at"):
        text = payload.get(field)
        if isinstance(text, str):
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
            except ValueError:
                pass
    return received_at.date()


class Inbox:
    def __init__(self, lake: Lake):
        self.lake = lake

    def accept(self, svix_id: str, payload: dict[str, Any], received_at: datetime | None = None) -> bool:
        """Store a verified event durably; False when this svix-id was already stored (a retry, a replay of a
        delivered event). The event is written before its marker: a crash in between only lets a retry
        store it again, which the commit absorbs (one row per version)."""
        received_at = received_at or datetime.now(timezone.utc)
        key = event_key(svix_id)
        seen = self.lake.root / layout.inbox_seen(key)
        if seen.exists():
            return False
        record = {"svix_id": svix_id, "received_at": received_at.isoformat(), "payload": payload}
        with self.lake.atomic_path(self.lake.root / layout.inbox_event(received_at, key)) as tmp:
            with open(tmp, "w") as handle:
                json.dump(record, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())  # durable before the 2xx: the sender will not deliver it again
        with self.lake.atomic_path(seen) as tmp:
            tmp.write_text(received_at.isoformat())
        return True

    def pending(self) -> list[Any]:
        return self.lake.glob(layout.INBOX_PENDING_GLOB)

    def claim(self, paths: list[Any], batch: str) -> list[InboxEvent]:
        """Move pending events into a batch (the run's input); returns them."""
        events = []
        for path in paths:
            target = self.lake.root / layout.inbox_batch(batch) / path.name
            with self.lake.atomic_path(target) as tmp:
                tmp.write_bytes(path.read_bytes())
            path.unlink()
            events.append(self._event(target))
        return events

    def batch(self, batch: str) -> list[InboxEvent]:
        return [self._event(p) for p in self.lake.glob(layout.inbox_batch_glob(batch))]

    @staticmethod
    def _event(path: Any) -> InboxEvent:
        record = json.loads(path.read_text())
        received_at = datetime.fromisoformat(record["received_at"])
        payload = record["payload"]
        return InboxEvent(svix_id=record["svix_id"], type=str(payload.get("event_type") or ""),
                          object_id=object_id_of(payload), received_at=received_at,
                          occurred_on=_occurred_on(payload, received_at), account_id=_account_of(payload))


class DeliveryStats:
    """Deliveries accepted, duplicated and rejected per reason, kept in the lake (`_state/webhooks.json`)."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.path = lake.root / layout.WEBHOOK_STATS

    def read(self) -> dict[str, int]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError, FileNotFoundError):
            return {}

    def count(self, outcome: str) -> None:
        counts = self.read()
        counts[outcome] = counts.get(outcome, 0) + 1
        with self.lake.atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(counts, sort_keys=True))
