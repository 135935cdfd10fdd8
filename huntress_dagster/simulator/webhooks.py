"""Webhooks: the simulator pushes Huntress's webhook events to a receiver, signed as Svix signs them.

Events (payloads per Huntress's webhook specification, `huntress_webhooks.json` beside this module):

    incident_report.created         a tick's new incident reports
    incident_report.closed          a tick's status changes to `closed`
    escalation.created / .closed    a tick's escalations opened / resolved
    platform_action.created / .closed
    escalation.overdue / platform_action.overdue
                                    an unresolved one passes its due time (checked after every tick; those
                                    already overdue when webhooks were switched on are not announced)
    incident_report.comment_added, account_notice.notification, platform_action.notification
                                    only on request: `POST /_sim/webhooks/emit`

The payload is flat, as the specification has it: the object's own fields with `event_type` beside them
(no envelope, no `data` object, no event id or timestamp in the body: the `svix-id` header identifies the
message). Incident reports carry `account`/`organization` as {id, name} (and the deprecated
`account_id`/`organization_id`), `api_url` and the body, but not `indicator_types` or remediations;
escalations and platform actions carry `total_organizations_impacted` and `api_url`, but not `subtype` or
entities. Only the main account's world sends events (not customer accounts, not independent keys).

Signing and delivery as Svix does: `svix-id` = `msg_<KSUID>` (kept across retries, with the same body),
`svix-timestamp` = unix seconds of the attempt, `svix-signature` = `v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">` keyed with the base64-decoded secret after `whsec_` (the `svix` package's own
signer). One background thread delivers: an attempt that answers non-2xx or fails to connect is tried
again after the next of `retry_delays` (the first delay is before the first attempt; one attempt per
delay), then given up. Every attempt is recorded (`GET /_sim/webhooks`).
"""

from __future__ import annotations

import base64
import copy
import heapq
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from .paging import iso

if TYPE_CHECKING:
    from .catalog import Incident
    from .tickets import Ticket
    from .world import World

# Svix's schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after each failure.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000)
DEFAULT_TIMEOUT = 5.0
USER_AGENT = "Svix-Webhooks/1.0 (huntress-dagster simulator)"

INCIDENT_EVENTS = ("incident_report.created", "incident_report.closed", "incident_report.comment_added")
TICKET_EVENTS = {  # event prefix -> the world's ticket book
    "escalation": "escalations", "platform_action": "platform_actions",
}
NOTIFICATION_EVENTS = ("account_notice.notification", "platform_action.notification")
EVENT_TYPES = (*INCIDENT_EVENTS, *(f"{prefix}.{what}" for prefix in TICKET_EVENTS
                                  for what in ("created", "closed", "overdue")), *NOTIFICATION_EVENTS)

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KSUID_EPOCH = 1_400_000_000


def message_id() -> str:
    """A Svix message id: `msg_` and a KSUID (4 bytes of seconds since 2014-05-13, 16 random bytes, in 27
    base-62 characters), so ids sort by creation time as Svix's do."""
    raw = int.from_bytes((int(time.time()) - _KSUID_EPOCH).to_bytes(4, "big") + os.urandom(16), "big")
    digits = []
    for _ in range(27):
        raw, digit = divmod(raw, 62)
        digits.append(_BASE62[digit])
    return "msg_" + "".join(reversed(digits))


def new_secret() -> str:
    """A Svix endpoint secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Svix headers of one attempt."""
    from svix.webhooks import Webhook  # here: svix takes ~0.3 s to import, every run worker would pay it

    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body)
    return {"svix-id": msg_id, "svix-timestamp": str(timestamp), "svix-signature": signature}


def check_retry_delays(delays: Any) -> list[float]:
    if not isinstance(delays, (list, tuple)) or not delays:
        raise ValueError("retry_delays must be a non-empty list of seconds")
    values = [float(d) for d in delays]
    if any(d < 0 for d in values):
        raise ValueError("retry_delays must not be negative")
    return values


# --- payloads ------------------------------------------------------------------------------------


def _account(world: World) -> dict[str, Any]:
    return {"id": world.config.account_id, "name": world.config.account_name}


def incident_payload(world: World, incident: Incident, event_type: str, api_base: str,
                     **extra: Any) -> Callable[[], dict[str, Any]]:
    """IncidentReportPayload of a snapshot of the incident, taken now (under the world's lock); the body
    (possibly megabytes) is rendered later, in the delivery thread, by the returned function."""
    record = world.incident_json(incident, with_body=False)
    org_id = incident.organization_id
    payload = {
        "event_type": event_type, "id": incident.id, "account": _account(world),
        "account_id": world.config.account_id, "agent_id": incident.agent_id,
        "organization": {"id": org_id, "name": world._org_name(org_id) if org_id is not None else None},
        "organization_id": org_id, "api_url": f"{api_base}/incident_reports/{incident.id}",
        "platform": record["platform"], "severity": record["severity"], "status": record["status"],
        "subject": record["subject"], "summary": record["summary"],
        "indicator_counts": record["indicator_counts"], "sent_at": record["sent_at"],
        "closed_at": record["closed_at"], "status_updated_at": record["status_updated_at"],
        "created_at": record["created_at"], "updated_at": record["updated_at"], **extra,
    }

    def render() -> dict[str, Any]:
        return {**payload, "body": world.render_body(incident, record)}

    return render


def ticket_payload(world: World, book: str, ticket: Ticket, event_type: str, api_base: str,
                   **extra: Any) -> dict[str, Any]:
    """EscalationPayload (escalations and platform actions alike)."""
    record = world.ticket_json(book, ticket)
    return {
        "event_type": event_type, "id": ticket.id, "account": record["account"],
        "organizations": record["organizations"], "total_organizations_impacted": len(record["organizations"]),
        "api_url": f"{api_base}/{book}/{ticket.id}", "type": record["type"], "subject": record["subject"],
        "severity": record["severity"], "status": record["status"], "created_at": record["created_at"],
        "updated_at": record["updated_at"], "resolved_at": record["resolved_at"], **extra,
    }


def overdue_message(book: str, ticket: Ticket) -> str:
    what = "escalation" if book == "escalations" else "platform action"
    return (f"This {what} was due by {iso(ticket.due_at)} and is still {ticket.status}: "
            f"please review it in the Huntress portal.")


# --- delivery ------------------------------------------------------------------------------------


@dataclass
class Message:
    svix_id: str
    event_type: str
    object_id: int | None
    url: str
    secret: str
    delays: list[float]
    payload: dict[str, Any] | Callable[[], dict[str, Any]]
    created_at: float = field(default_factory=time.time)
    body: str | None = None  # rendered at the first attempt and kept: every retry sends the same bytes
    attempts: int = 0
    state: str = "pending"  # pending | delivered | given_up | cancelled

    def summary(self) -> dict[str, Any]:
        return {"svix_id": self.svix_id, "event_type": self.event_type, "object_id": self.object_id,
                "state": self.state, "attempts": self.attempts, "url": self.url, "created_at": self.created_at}


class WebhookSender:
    """Turns a world's ticks into webhook messages and delivers them from one background thread."""

    def __init__(self, world: World, api_base: Callable[[], str], url: str | None = None,
                 secret: str | None = None, retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
                 timeout: float = DEFAULT_TIMEOUT):
        self.world = world
        self._api_base = api_base
        self.url: str | None = None
        self.secret: str | None = None
        self.retry_delays = check_retry_delays(list(retry_delays))
        self.timeout = float(timeout)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Message]] = []  # (due, sequence, message)
        self._sequence = itertools.count()
        self._notification_ids = itertools.count(1)
        self.messages: list[Message] = []
        self.attempts: list[dict[str, Any]] = []
        self.errors: list[str] = []  # events a tick could not make (simulator bugs)
        self._overdue_sent: dict[str, set[int]] = {book: set() for book in TICKET_EVENTS.values()}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.configure(url=url, secret=secret)
        world.tick_listeners.append(self.on_tick)

    # --- configuration -----------------------------------------------------------------------

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change any of url, secret, retry_delays, timeout. A null url disables delivery and cancels the
        messages still waiting; a url without any secret gets a new one."""
        unknown = set(changes) - {"url", "secret", "retry_delays", "timeout"}
        if unknown:
            raise ValueError(f"unknown webhook settings: {sorted(unknown)}")
        secret = changes.get("secret", self.secret)
        if secret is not None:
            from svix.webhooks import Webhook

            try:
                Webhook(secret)
            except Exception as exc:  # empty or not base64
                raise ValueError(f"not a Svix secret (whsec_<base64>): {type(exc).__name__}") from exc
        url = changes.get("url")
        if url is not None and not str(url).startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s)://...: {url!r}")
        delays = check_retry_delays(changes["retry_delays"]) if "retry_delays" in changes else None
        with self._cond:
            was_enabled = self.url is not None
            if "url" in changes:
                self.url = str(changes["url"]) if changes["url"] else None
            self.secret = secret
            if self.url is not None and self.secret is None:
                self.secret = new_secret()
            if delays is not None:
                self.retry_delays = delays
            if "timeout" in changes:
                self.timeout = float(changes["timeout"])
            if self.url is None:
                for message in self.messages:
                    if message.state == "pending":
                        message.state = "cancelled"
                self._heap.clear()
            self._cond.notify_all()
        if self.url is not None and not was_enabled:
            self._baseline_overdue()
        return self.settings()

    def settings(self) -> dict[str, Any]:
        return {"url": self.url, "secret": self.secret, "retry_delays": list(self.retry_delays),
                "timeout": self.timeout}

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def _baseline_overdue(self) -> None:
        """Tickets already overdue when webhooks are switched on were never announced by this endpoint."""
        world = self.world
        with world.lock:
            now = world.now()
            for book, seen in self._overdue_sent.items():
                seen.update(t.id for t in world._books[book].records.values()
                            if t.status != "resolved" and t.due_at <= now)

    # --- events ------------------------------------------------------------------------------

    def on_tick(self, world: World, changed: dict[str, Any]) -> None:
        """World.tick's listener (called under the world's lock): the tick's changes become messages."""
        if self.url is None:
            return
        try:
            self._on_tick(world, changed)
        except Exception as exc:  # a webhook bug must never fail the tick; it shows in GET /_sim/webhooks
            with self._cond:
                self.errors.append(f"tick {world.tick_count}: {type(exc).__name__}: {exc}")

    def _on_tick(self, world: World, changed: dict[str, Any]) -> None:
        api_base = self._api_base()
        events: list[tuple[str, int, Any]] = []
        for incident_id in changed.get("new_incidents", []):
            incident = copy_of(world.incidents[incident_id])
            events.append(("incident_report.created", incident_id,
                           incident_payload(world, incident, "incident_report.created", api_base)))
        for incident_id in changed.get("status_changes", []):
            incident = world.incidents[incident_id]
            if incident.status == "closed":
                events.append(("incident_report.closed", incident_id,
                               incident_payload(world, copy_of(incident), "incident_report.closed", api_base)))
        now = world.now()
        for prefix, book in TICKET_EVENTS.items():
            records = world._books[book].records
            for what, key in (("created", f"{book}_opened"), ("closed", f"{book}_closed")):
                for ticket_id in changed.get(key, []):
                    event_type = f"{prefix}.{what}"
                    events.append((event_type, ticket_id,
                                   ticket_payload(world, book, records[ticket_id], event_type, api_base)))
            seen = self._overdue_sent[book]
            for ticket in records.values():
                if ticket.status != "resolved" and ticket.due_at <= now and ticket.id not in seen:
                    seen.add(ticket.id)
                    event_type = f"{prefix}.overdue"
                    events.append((event_type, ticket.id, ticket_payload(
                        world, book, ticket, event_type, api_base, message=overdue_message(book, ticket))))
        for event_type, object_id, payload in events:
            self.enqueue(event_type, object_id, payload)

    def emit(self, event_type: str, object_id: int | None = None, **fields: Any) -> Message:
        """One event on request (any of EVENT_TYPES), e.g. a comment on an incident report or a notice:
        incident and ticket events take the object's `object_id` (and `comment` / `message`), notifications
        `subject` and `body` (and an optional `object_id`)."""
        if self.url is None:
            raise ValueError("webhooks are not configured (POST /_sim/webhooks {\"url\": ...})")
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}; one of {list(EVENT_TYPES)}")
        world, api_base = self.world, self._api_base()
        with world.lock:
            if event_type in INCIDENT_EVENTS:
                extra = {}
                if event_type == "incident_report.comment_added":
                    extra["comment"] = str(fields.get("comment") or "A Huntress analyst added a comment.")
                incident = copy_of(world.incidents[int(object_id)])  # KeyError: no such incident
                payload: Any = incident_payload(world, incident, event_type, api_base, **extra)
            elif event_type not in NOTIFICATION_EVENTS:
                book = TICKET_EVENTS[event_type.rpartition(".")[0]]
                ticket = world._books[book].records[int(object_id)]
                extra = {}
                if event_type.endswith(".overdue"):
                    extra["message"] = str(fields.get("message") or overdue_message(book, ticket))
                payload = ticket_payload(world, book, ticket, event_type, api_base, **extra)
            else:
                object_id = int(object_id) if object_id is not None else next(self._notification_ids)
                payload = {"event_type": event_type, "id": object_id, "account": _account(world),
                           "subject": str(fields.get("subject") or "Scheduled maintenance"),
                           "body": str(fields.get("body") or "Huntress will perform scheduled maintenance."),
                           "created_at": iso(world.now())}
        message = self.enqueue(event_type, object_id, payload)
        if message is None:
            raise ValueError("webhooks were switched off meanwhile")
        return message

    def enqueue(self, event_type: str, object_id: int | None, payload: Any) -> Message | None:
        with self._cond:
            if self.url is None or self.secret is None:
                return None
            message = Message(svix_id=message_id(), event_type=event_type, object_id=object_id, url=self.url,
                              secret=self.secret, delays=list(self.retry_delays), payload=payload)
            self.messages.append(message)
            self._schedule(message, message.delays[0])
            return message

    def _schedule(self, message: Message, delay: float) -> None:
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._sequence), message))
        self._cond.notify_all()

    # --- the delivery thread -----------------------------------------------------------------

    def start(self) -> WebhookSender:
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._deliver_forever, name="huntress-simulator-webhooks",
                                                daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None:
            thread.join(self.timeout + 2)

    def _next_due(self) -> Message | None:
        """The next message whose attempt is due, waiting for it; None when stopping."""
        with self._cond:
            while not self._stopping:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    message = heapq.heappop(self._heap)[2]
                    if message.state == "pending":
                        return message
                    continue
                self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
            return None

    def _deliver_forever(self) -> None:
        with httpx.Client(timeout=self.timeout, trust_env=False, follow_redirects=False) as client:
            while (message := self._next_due()) is not None:
                try:
                    self._attempt(client, message)
                except Exception as exc:  # a simulator bug must not end delivery; record it and go on
                    self._finish(message, None, f"simulator error: {type(exc).__name__}: {exc}", "")

    def _attempt(self, client: httpx.Client, message: Message) -> None:
        if message.body is None:
            payload = message.payload() if callable(message.payload) else message.payload
            message.body = json.dumps(payload)
            message.payload = {}  # the body is what is kept
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **sign(message.secret, message.svix_id, timestamp, message.body)}
        status: int | None = None
        error: str | None = None
        response_text = ""
        try:
            response = client.post(message.url, content=message.body.encode(), headers=headers,
                                   timeout=self.timeout)
            status, response_text = response.status_code, response.text[:200]
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._finish(message, status, error, response_text, timestamp)

    def _finish(self, message: Message, status: int | None, error: str | None, response_text: str,
                timestamp: int | None = None) -> None:
        with self._cond:
            message.attempts += 1
            if error is None:
                message.state = "delivered"
            elif message.state == "pending" and message.attempts < len(message.delays):
                self._schedule(message, message.delays[message.attempts])
            elif message.state == "pending":
                message.state = "given_up"
            self.attempts.append({
                "svix_id": message.svix_id, "event_type": message.event_type, "object_id": message.object_id,
                "attempt": message.attempts, "status": status, "error": error, "response": response_text,
                "outcome": {"delivered": "delivered", "given_up": "given_up", "cancelled": "cancelled"}.get(
                    message.state, "retrying"),
                "svix_timestamp": timestamp, "t": time.time(), "url": message.url})

    # --- the record ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._cond:
            states = [m.state for m in self.messages]
            return {"messages": len(states), "attempts": len(self.attempts),
                    "failed_attempts": sum(1 for a in self.attempts if a["error"] is not None),
                    **{state: states.count(state) for state in ("pending", "delivered", "given_up", "cancelled")}}

    def report(self, since: float = 0.0) -> dict[str, Any]:
        """What `GET /_sim/webhooks` answers: the settings, counts, messages and attempts (since `since`)."""
        counts = self.counts()
        with self._cond:
            return {**self.settings(), "counts": counts, "errors": list(self.errors),
                    "messages": [m.summary() for m in self.messages if m.created_at >= since],
                    "attempts": [a for a in self.attempts if a["t"] >= since]}

    def clear(self) -> None:
        """Forget finished messages and every recorded attempt (pending messages are kept)."""
        with self._cond:
            self.messages = [m for m in self.messages if m.state == "pending"]
            self.attempts.clear()


def copy_of(incident: Incident) -> Incident:
    """A snapshot of an incident record (the world keeps changing it)."""
    return copy.copy(incident)
