"""The simulator delivers Huntress webhooks over real HTTP, signed as Svix signs them, with Svix's retries."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from huntress_dagster.simulator import SimulatorServer, webhooks
from huntress_dagster.simulator.webhooks import DEFAULT_RETRY_DELAYS, EVENT_TYPES, new_secret

from .conftest import admin

SPEC = json.loads((Path(webhooks.__file__).parent / "huntress_webhooks.json").read_text())
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Svix's documentation example
FAST = [0, 0.2, 0.5]
# One tick with exactly the changes a test asks for.
QUIET = dict(new_incidents=0, status_changes=0, agent_changes=0, new_signals=0, signal_status_changes=0,
             escalations_opened=0, escalations_closed=0, platform_actions_opened=0, platform_actions_closed=0,
             identity_changes=0, port_scans=0)


def validator(event_type: str) -> jsonschema.Draft202012Validator:
    """The webhook's request-body schema (OpenAPI 3.1 = JSON Schema 2020-12), with its $refs resolvable."""
    ref = SPEC["webhooks"][event_type]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return jsonschema.Draft202012Validator({"$ref": ref, "components": SPEC["components"]})


class Receiver:
    """A webhook endpoint on 127.0.0.1: records every request, verifies it with svix, answers per script."""

    def __init__(self, secret: str = SECRET, statuses: list[int] | None = None, delay: float = 0.0):
        self.secret, self.statuses, self.delay = secret, list(statuses or []), delay
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each keep-alive answer stalls ~40 ms

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                time.sleep(receiver.delay)
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append({"headers": {k.lower(): v for k, v in headers.items()},
                                              "body": body, "json": json.loads(body), "verified": verified,
                                              "status": status, "path": self.path})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/huntress/webhooks"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def factory(**kwargs: Any) -> Receiver:
        started.append(Receiver(**kwargs))
        return started[-1]

    yield factory
    for receiver in started:
        receiver.close()


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def settled(server: SimulatorServer) -> dict[str, Any]:
    """GET /_sim/webhooks once no message is waiting for an attempt."""
    return wait_for(lambda: (r := admin(server, "webhooks"))["counts"]["pending"] == 0 and r)


def webhook_simulator(make_simulator, url: str | None, **config: Any) -> SimulatorServer:
    config.setdefault("webhook_retry_delays", FAST)
    return make_simulator(webhook_url=url, webhook_secret=SECRET, **config)


def of_type(events: list[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [e["json"] for e in events if e["json"]["event_type"] in types]


def test_default_schedule_is_svix() -> None:
    assert list(DEFAULT_RETRY_DELAYS) == [0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
    assert set(EVENT_TYPES) == set(SPEC["webhooks"])  # every event type of the specification can be sent


def test_tick_delivers_signed_events_that_match_the_world(make_simulator, make_receiver) -> None:
    receiver = make_receiver()
    server = webhook_simulator(make_simulator, receiver.url)
    changed = server.tick_all(**{**QUIET, "new_incidents": 3, "escalations_opened": 1,
                                 "platform_actions_opened": 1, "platform_actions_closed": 1})
    kinds = ("incident_report.created", "escalation.created", "platform_action.created", "platform_action.closed")
    wait_for(lambda: len(of_type(receiver.events(), *kinds)) >= 3 + 1 + 2)
    time.sleep(0.1)
    events = receiver.events()
    assert all(e["verified"] for e in events)
    assert len({e["headers"]["svix-id"] for e in events}) == len(events)  # one message each
    for event in events:
        headers = event["headers"]
        assert headers["svix-id"].startswith("msg_") and len(headers["svix-id"]) == 31
        assert abs(int(headers["svix-timestamp"]) - time.time()) < 10
        assert headers["svix-signature"].startswith("v1,")
        assert headers["content-type"] == "application/json"
        validator(event["json"]["event_type"]).validate(event["json"])

    created = of_type(events, "incident_report.created")
    assert [p["id"] for p in created] == changed["new_incidents"]
    truth = {x["id"]: x for x in server.world.truth_incidents()}
    for payload in created:
        rest = server.world.get_json("incident_reports", payload["id"])
        assert payload["status"] == truth[payload["id"]]["status"] == "sent"
        assert payload["severity"] == rest["severity"]
        assert payload["organization"]["id"] == rest["organization_id"] == payload["organization_id"]
        assert payload["account"] == {"id": server.world.config.account_id, "name": server.world.config.account_name}
        assert payload["body"] == rest["body"] and payload["subject"] == rest["subject"]
        assert payload["api_url"] == f"{server.url}/incident_reports/{payload['id']}"
        assert "remediations" not in payload and "indicator_types" not in payload  # the webhook omits them

    [escalation] = of_type(events, "escalation.created")
    assert [escalation["id"]] == changed["escalations_opened"]
    [action] = of_type(events, "platform_action.created")
    assert [action["id"]] == changed["platform_actions_opened"]
    [closed] = of_type(events, "platform_action.closed")
    assert [closed["id"]] == changed["platform_actions_closed"]
    tickets = {t["id"]: t for t in server.world.truth_escalations()}
    assert escalation["status"] == tickets[escalation["id"]]["status"] == "open"
    assert escalation["total_organizations_impacted"] == len(escalation["organizations"]) >= 1
    assert "subtype" not in escalation and "entities" not in escalation
    assert closed["status"] == "resolved" and closed["resolved_at"] is not None

    report = admin(server, "webhooks")
    assert report["url"] == receiver.url and report["retry_delays"] == FAST
    assert report["counts"]["delivered"] == report["counts"]["messages"] == len(events)
    assert {a["svix_id"] for a in report["attempts"]} == {e["headers"]["svix-id"] for e in events}
    assert all(a["status"] == 200 and a["attempt"] == 1 and a["outcome"] == "delivered"
               for a in report["attempts"])


def test_admin_tick_closes_incidents(make_simulator, make_receiver) -> None:
    receiver = make_receiver()
    server = webhook_simulator(make_simulator, receiver.url)
    changed = admin(server, "tick", {**QUIET, "status_changes": 8, "escalations_closed": 2})
    truth = {x["id"]: x for x in server.world.truth_incidents()}
    closed_ids = [i for i in changed["status_changes"] if truth[i]["status"] == "closed"]
    expected = len(closed_ids) + len(changed["escalations_closed"])
    wait_for(lambda: len(of_type(receiver.events(), "incident_report.closed", "escalation.closed")) >= expected)
    time.sleep(0.1)
    closed = of_type(receiver.events(), "incident_report.closed")
    assert [p["id"] for p in closed] == closed_ids  # dismissed or auto-remediating: no closed event
    assert all(p["status"] == "closed" and p["closed_at"] for p in closed)
    assert [p["id"] for p in of_type(receiver.events(), "escalation.closed")] == changed["escalations_closed"]


def test_retries_keep_the_svix_id_and_body(make_simulator, make_receiver) -> None:
    receiver = make_receiver(statuses=[500, 500, 200])
    server = webhook_simulator(make_simulator, receiver.url)
    [incident_id] = server.tick_all(**{**QUIET, "new_incidents": 1})["new_incidents"]
    report = wait_for(lambda: (r := admin(server, "webhooks"))["counts"]["delivered"] == 1 and r)
    events = receiver.events()
    assert [e["status"] for e in events] == [500, 500, 200]
    assert all(e["verified"] for e in events)
    assert len({e["headers"]["svix-id"] for e in events}) == 1
    assert len({e["body"] for e in events}) == 1 and events[0]["json"]["id"] == incident_id
    attempts = report["attempts"]
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"), (2, 500, "retrying"), (3, 200, "delivered")]
    assert attempts[0]["error"] == "HTTP 500" and attempts[2]["error"] is None
    assert attempts[1]["t"] - attempts[0]["t"] >= 0.18 and attempts[2]["t"] - attempts[1]["t"] >= 0.45
    assert report["messages"] == [{**report["messages"][0], "state": "delivered", "attempts": 3,
                                   "object_id": incident_id, "event_type": "incident_report.created"}]


def test_receiver_down_is_retried_then_given_up(make_simulator) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = webhook_simulator(make_simulator, f"http://127.0.0.1:{port}/hook", webhook_retry_delays=[0, 0.1, 0.2])
    server.tick_all(**{**QUIET, "new_incidents": 1})
    report = wait_for(lambda: (r := admin(server, "webhooks"))["counts"]["given_up"] == 1 and r)
    assert report["counts"] == {"messages": 1, "attempts": 3, "failed_attempts": 3, "pending": 0,
                                "delivered": 0, "given_up": 1, "cancelled": 0}
    assert [(a["attempt"], a["status"], a["outcome"]) for a in report["attempts"]] == [
        (1, None, "retrying"), (2, None, "retrying"), (3, None, "given_up")]
    assert all("ConnectError" in a["error"] for a in report["attempts"])
    sender = server.webhooks
    thread = sender._thread
    assert thread is not None and thread.is_alive()
    server.stop()
    assert not thread.is_alive()  # stopping the server stops the delivery thread


def test_nothing_sent_without_a_url_then_configured_by_the_admin_api(make_simulator, make_receiver) -> None:
    receiver = make_receiver()
    server = make_simulator()  # no webhook_url
    server.tick_all(**{**QUIET, "new_incidents": 2, "escalations_opened": 1})
    time.sleep(0.3)
    assert receiver.events() == []
    assert admin(server, "webhooks")["counts"]["messages"] == 0

    settings = admin(server, "webhooks", {"url": receiver.url, "secret": SECRET, "retry_delays": FAST})
    assert settings == {"url": receiver.url, "secret": SECRET, "retry_delays": FAST, "timeout": 5.0}
    [incident_id] = admin(server, "tick", {**QUIET, "new_incidents": 1})["new_incidents"]
    wait_for(lambda: receiver.events())
    assert [e["json"]["id"] for e in receiver.events()] == [incident_id] and receiver.events()[0]["verified"]

    assert admin(server, "webhooks", {"url": None})["url"] is None
    admin(server, "tick", {**QUIET, "new_incidents": 1})
    time.sleep(0.3)
    assert len(receiver.events()) == 1
    # A url without a secret gets a fresh Svix secret, which signs from then on.
    fresh = admin(server, "webhooks", {"url": receiver.url, "secret": None})["secret"]
    assert fresh.startswith("whsec_") and fresh != SECRET
    receiver.secret = fresh
    admin(server, "tick", {**QUIET, "new_incidents": 1})
    wait_for(lambda: len(receiver.events()) == 2)
    assert receiver.events()[1]["verified"]


def test_a_slow_receiver_never_blocks_a_tick(make_simulator, make_receiver) -> None:
    receiver = make_receiver(delay=0.3)
    server = webhook_simulator(make_simulator, receiver.url)
    started = time.monotonic()
    server.tick_all(**{**QUIET, "new_incidents": 2})
    server.tick_all(**{**QUIET, "new_incidents": 1})
    assert time.monotonic() - started < 0.25
    wait_for(lambda: admin(server, "webhooks")["counts"]["delivered"] == 3)
    # One delivery thread: events arrive in the order they happened.
    ids = [e["json"]["id"] for e in receiver.events()]
    assert ids == sorted(ids)


def test_overdue_emitted_and_admin_errors(make_simulator, make_receiver) -> None:
    receiver = make_receiver()
    server = webhook_simulator(make_simulator, receiver.url)
    world = server.world
    before = {t["id"] for t in world.truth_escalations() if t["status"] != "resolved"}
    # Ten days on, every escalation still open is overdue: announced once.
    server.tick_all(**QUIET, now=world.now() + 10 * 86_400)
    server.tick_all(**QUIET, now=world.now() + 11 * 86_400)
    assert settled(server)["counts"]["delivered"] == len(receiver.events())
    overdue = of_type(receiver.events(), "escalation.overdue")
    assert overdue and {p["id"] for p in overdue} <= before and len(overdue) == len({p["id"] for p in overdue})
    for payload in overdue + of_type(receiver.events(), "platform_action.overdue"):
        validator(payload["event_type"]).validate(payload)
        assert payload["message"] and payload["status"] != "resolved"

    # Events no tick makes, on request.
    incident_id = next(iter(world.incidents))
    count = len(receiver.events())
    admin(server, "webhooks/emit", {"event_type": "incident_report.comment_added", "object_id": incident_id,
                                    "comment": "Please isolate the host."})
    admin(server, "webhooks/emit", {"event_type": "account_notice.notification", "subject": "Maintenance",
                                    "body": "Saturday 02:00 UTC"})
    wait_for(lambda: len(receiver.events()) == count + 2)
    comment, notice = (e["json"] for e in receiver.events()[count:])
    assert comment["comment"] == "Please isolate the host." and comment["id"] == incident_id
    assert notice["subject"] == "Maintenance"
    for payload in (comment, notice):
        validator(payload["event_type"]).validate(payload)

    for bad in ({"secret": "whsec_"}, {"url": "ftp://x"}, {"retry_delays": []}, {"colour": 1}):
        with pytest.raises(Exception, match="400"):
            admin(server, "webhooks", bad)
    with pytest.raises(Exception, match="400"):
        admin(server, "webhooks/emit", {"event_type": "incident_report.deleted"})
    assert new_secret() != new_secret()
