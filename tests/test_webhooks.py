"""The webhook receiver over real HTTP (uvicorn on loopback), deliveries signed with the `svix` package:
what is stored, what is rejected and why, and nothing stored for a rejected delivery."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import uvicorn
from svix.webhooks import Webhook

from huntress_dagster.errors import HuntressConfigError
from huntress_dagster.inbox import DeliveryStats, Inbox
from huntress_dagster.lake import Lake
from huntress_dagster.webhooks import PATH, create_app

from .object_store import free_port

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a test secret (base64 of 24 bytes)


class Receiver:
    def __init__(self, lake: Lake, max_bytes: int = 4096):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(lake, SECRET, max_bytes), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def receiver(tmp_path) -> Iterator[tuple[Receiver, Lake]]:
    lake = Lake(tmp_path / "lake")
    with Receiver(lake) as running:
        yield running, lake


def signed(payload: dict, msg_id: str | None = None, at: datetime | None = None, secret: str = SECRET
           ) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(timezone.utc)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return body, {"svix-id": msg_id, "svix-timestamp": str(int(at.timestamp())), "svix-signature": signature,
                  "content-type": "application/json"}


EVENT = {"event_type": "incident_report.created", "id": 100001, "updated_at": "2026-11-30T10:00:00Z",
         "account": {"id": 4242, "name": "Acme MSSP"}, "status": "sent", "severity": "high"}


def test_a_signed_delivery_is_stored_once_and_rejections_store_nothing(receiver):
    running, lake = receiver
    inbox = Inbox(lake)
    body, headers = signed(EVENT)
    assert httpx.post(running.url, content=body, headers=headers).status_code == 200
    assert len(inbox.pending()) == 1
    again = httpx.post(running.url, content=body, headers=headers)  # Svix retries keep the svix-id
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate" and len(inbox.pending()) == 1

    forged_body, forged = signed(EVENT, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    stale_body, stale = signed({**EVENT, "id": 100002}, at=datetime.now(timezone.utc) - timedelta(minutes=10))
    unsigned = {"content-type": "application/json"}
    assert httpx.post(running.url, content=forged_body, headers=forged).status_code == 401  # forged
    assert httpx.post(running.url, content=stale_body, headers=stale).status_code == 401  # replayed later
    assert httpx.post(running.url, content=body, headers=unsigned).status_code == 401  # unsigned
    big_body, big = signed({**EVENT, "body": "x" * 10_000})
    assert httpx.post(running.url, content=big_body, headers=big).status_code == 413  # over the limit
    assert httpx.post(running.url, content=body, headers={**headers, "content-type": "text/plain"}
                      ).status_code == 415
    tampered = body.replace(b"100001", b"100009")
    assert httpx.post(running.url, content=tampered, headers=headers).status_code == 401
    assert len(inbox.pending()) == 1  # nothing stored for any rejected delivery
    [event] = inbox.claim(inbox.pending(), "b1")
    assert (event.object_id, event.account_id, event.stream.name) == (100001, 4242, "incident_reports")
    counts = DeliveryStats(lake).read()
    assert counts == {"accepted": 1, "duplicate": 1, "rejected_signature": 4, "rejected_too_large": 1,
                      "rejected_content_type": 1}
    assert httpx.get(running.url.replace(PATH, "/health")).json()["deliveries"] == counts


def test_the_receiver_refuses_to_start_without_a_secret(tmp_path):
    with pytest.raises(HuntressConfigError, match="refuses to start"):
        create_app(Lake(tmp_path / "lake"), "")


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")
def test_pushed_events_reach_alerts_through_the_inbox_sensor_with_no_list_request(simulator, tmp_path):
    import dagster as dg

    from huntress_dagster.automation import COLLECT_JOB, INBOX_SENSOR

    from .conftest import admin
    from .dagster_helpers import make_pipeline

    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success and pipeline.run_incidents().success
    changed = admin(simulator, "tick", {"new_incidents": 3, "escalations_opened": 1})
    truth = {r["id"]: r for r in admin(simulator, "truth/incidents")["incident_reports"]}
    escalations = {r["id"]: r for r in admin(simulator, "truth/escalations")["escalations"]}
    events = [{"event_type": "incident_report.created", "id": i, "updated_at": truth[i]["updated_at"],
               "account": {"id": simulator.world.config.account_id}} for i in changed["new_incidents"]]
    events += [{"event_type": "escalation.created", "id": i, "updated_at": escalations[i]["updated_at"],
                "account": {"id": simulator.world.config.account_id}} for i in changed["escalations_opened"]]
    with Receiver(pipeline.lake) as running:
        for event in events:
            body, headers = signed(event)
            assert httpx.post(running.url, content=body, headers=headers).status_code == 200

    sensor = pipeline.defs.get_sensor_def(INBOX_SENSOR)
    with dg.build_sensor_context(instance=pipeline.instance, resources=pipeline.defs.resources) as context:
        [run] = sensor(context).run_requests
    assert not Inbox(pipeline.lake).pending()  # claimed by that run
    before = simulator.request_log[-1]["t"]
    pushed = pipeline.defs.resolve_job_def(COLLECT_JOB).execute_in_process(
        tags=run.tags, asset_selection=run.asset_selection, instance=pipeline.instance)
    assert pushed.success
    metadata = pushed.asset_materializations_for_node("raw_incidents")[-1].metadata
    assert metadata["pushed_objects"].value == 3 and metadata["webhook_accepted"].value == 4  # visible per run
    paths = [e["path"] for e in simulator.request_log if e["t"] > before]
    # one GET per announced object (and its remediations), no list walk, no account listing
    assert paths and all(p.rsplit("/", 1)[-1].isdigit() or "/remediations" in p for p in paths), paths
    alerts = {(c, i) for c, i in pipeline.query("SELECT msg_class, huntress_id FROM alerts")}
    assert {("huntress_incident_report", i) for i in changed["new_incidents"]} <= alerts
    assert {("huntress_escalation", i) for i in changed["escalations_opened"]} <= alerts

    # the polling path meets the same versions: still one version each, one alert per key
    assert pipeline.run_incidents().success
    rows = pipeline.query("SELECT id, updated_at, count(*) FROM raw_incidents GROUP BY ALL HAVING count(*) > 1")
    assert rows == []
    checks = {e.check_name: e.passed for e in pipeline.run_incidents().get_asset_check_evaluations()}
    assert checks["alerts_key_unique"]


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")
def test_the_simulator_pushes_and_a_receiver_killed_mid_stream_loses_nothing_thanks_to_polling(simulator, tmp_path):
    import dagster as dg

    from huntress_dagster.automation import COLLECT_JOB, INBOX_SENSOR

    from .conftest import admin
    from .dagster_helpers import make_pipeline

    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_incidents().success
    receiver = Receiver(pipeline.lake, max_bytes=1_048_576).__enter__()  # incident payloads carry the body
    admin(simulator, "webhooks", {"url": receiver.url, "secret": SECRET, "retry_delays": [0, 0.2]})
    first = admin(simulator, "tick", {"new_incidents": 4, "escalations_opened": 1})
    deadline = time.time() + 20
    while len(Inbox(pipeline.lake).pending()) < 5 and time.time() < deadline:
        time.sleep(0.1)
    receiver.__exit__()  # the receiver dies; the next tick's deliveries fail and are given up
    second = admin(simulator, "tick", {"new_incidents": 3, "status_changes": 2})
    deadline = time.time() + 20
    while admin(simulator, "webhooks")["counts"]["pending"] and time.time() < deadline:
        time.sleep(0.1)
    assert admin(simulator, "webhooks")["counts"]["given_up"] >= 3

    sensor = pipeline.defs.get_sensor_def(INBOX_SENSOR)
    with dg.build_sensor_context(instance=pipeline.instance, resources=pipeline.defs.resources) as context:
        [run] = sensor(context).run_requests
    assert pipeline.defs.resolve_job_def(COLLECT_JOB).execute_in_process(
        tags=run.tags, asset_selection=run.asset_selection, instance=pipeline.instance).success
    ids = {i for (i,) in pipeline.query("SELECT huntress_id FROM alerts WHERE msg_class = 'huntress_incident_report'")}
    assert set(first["new_incidents"]) <= ids and not set(second["new_incidents"]) & ids  # pushed: the first tick

    assert pipeline.run_incidents().success  # the polling safety net
    truth = {(r["id"], r["updated_at"]) for r in admin(simulator, "truth/incidents")["incident_reports"]}
    latest = pipeline.query("SELECT id, strftime(max(updated_at), '%Y-%m-%dT%H:%M:%SZ') FROM raw_incidents GROUP BY id")
    assert set(latest) == truth  # 0 missing: every object at its current version
    assert pipeline.query("SELECT count(*) FROM (SELECT id, updated_at FROM raw_incidents GROUP BY ALL "
                          "HAVING count(*) > 1)") == [(0,)]  # 0 duplicated
    keys = pipeline.query("SELECT count(*), count(DISTINCT (tenantid, msg_class, huntress_id, organization_id, "
                          "account_id)) FROM alerts")
    assert keys[0][0] == keys[0][1]
