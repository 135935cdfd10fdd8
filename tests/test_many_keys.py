"""Several keys in one deployment, configured from YAML: a reseller key with customer accounts and a second,
independent key, collected by one asset graph over real HTTP, each account apart, each key isolated."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import parse_qs

import dagster as dg
import pytest

from huntress_dagster import catalog
from huntress_dagster.automation import COLLECT_JOB, INVENTORY_JOB, range_tags
from huntress_dagster.connections import ACCOUNT_TAG, CONNECTION_TAG
from huntress_dagster.definitions import build_definitions
from huntress_dagster.lake import Lake
from huntress_dagster.settings import Settings
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET

from .conftest import admin
from .dagster_helpers import start_day, today

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")

DIRECT_KEY, DIRECT_SECRET = "direct-key", "direct-secret"


def connections_yaml(url: str, override_id: int) -> str:
    return f"""
connections:
  - name: msp
    api_key_env: HUNTRESS_MSP_API_KEY
    api_secret_env: HUNTRESS_MSP_API_SECRET
    host_url: {url}
    tenant: msp
    tenants: {{{override_id}: contoso-override}}
    rate_limit: 10000
  - name: direct
    api_key_env: HUNTRESS_DIRECT_API_KEY
    api_secret_env: HUNTRESS_DIRECT_API_SECRET
    host_url: {url}
    rate_limit: 10000
"""


@pytest.fixture
def deployment(make_simulator, tmp_path, monkeypatch):
    sizes = {"incidents": 120, "signals": 100, "agents": 60, "escalations": 10, "identities": 20}
    server = make_simulator({"customer_accounts": 3, **sizes})
    direct = admin(server, "keys/add", {"api_key": DIRECT_KEY, "api_secret": DIRECT_SECRET, **sizes})["account"]
    customers = admin(server, "truth/accounts")["accounts"]
    path = tmp_path / "connections.yaml"
    path.write_text(connections_yaml(server.url, customers[0]["id"]))
    env = {"HUNTRESS_CONNECTIONS_FILE": str(path), "HUNTRESS_MSP_API_KEY": DEMO_API_KEY,
           "HUNTRESS_MSP_API_SECRET": DEMO_API_SECRET, "HUNTRESS_DIRECT_API_KEY": DIRECT_KEY,
           "HUNTRESS_DIRECT_API_SECRET": DIRECT_SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = dataclasses.replace(Settings.from_env(env), lake_dir=str(tmp_path / "lake"),
                                   start_date=start_day().isoformat(), rate_window_seconds=1.0,
                                   rate_limit_state=str(tmp_path / "ratelimit.sqlite"))
    assert not settings.demo and [c.name for c in settings.connections] == ["msp", "direct"]
    return server, direct, build_definitions(settings), dg.DagsterInstance.ephemeral(), Lake(tmp_path / "lake")


def query(lake: Lake, sql: str) -> list[tuple]:
    with lake.connect() as con:
        catalog.register_views(lake, con)
        return con.execute(sql).fetchall()


def expected_alerts(server, account_id: int, tenant: str, escalations: bool) -> set[tuple]:
    rows = {(tenant, "huntress_incident_report", r["id"], r["organization_id"], account_id)
            for r in admin(server, f"truth/incidents?account_id={account_id}")["incident_reports"]}
    if escalations:  # only with a key of the account itself
        rows |= {(tenant, "huntress_escalation", r["id"], org, account_id)
                 for r in admin(server, f"truth/escalations?account_id={account_id}")["escalations"]
                 for org in r["organization_ids"]}
    return rows


def first_pages(server, since: float, endpoint: str) -> Counter:
    """Walks made, by (key, path): requests of the endpoint's first page (no page_token)."""
    log = admin(server, f"requests?since={since}")["requests"]
    return Counter((r["key"], r["path"]) for r in log
                   if r["path"].endswith(endpoint) and "page_token" not in parse_qs(r["query"]))


def test_two_keys_from_yaml_collect_every_account_apart_and_a_revoked_key_fails_only_its_runs(deployment):
    server, direct, defs, instance, lake = deployment
    assert defs.resolve_job_def(INVENTORY_JOB).execute_in_process(
        partition_key=today().isoformat(), instance=instance).success
    started = datetime.now(timezone.utc).timestamp()
    # "Backfill every account over the whole range": one run (single-run backfill), one walk per (key, account)
    result = defs.resolve_job_def(COLLECT_JOB).execute_in_process(tags=range_tags(start_day(), today()),
                                                                  instance=instance)
    assert result.success
    customers = admin(server, "truth/accounts")["accounts"]
    walks = first_pages(server, started, "/incident_reports")
    assert walks == Counter({(DEMO_API_KEY, "/v1/incident_reports"): 1, (DIRECT_KEY, "/v1/incident_reports"): 1,
                             **{(DEMO_API_KEY, f"/v1/accounts/{c['id']}/incident_reports"): 1 for c in customers}})

    own_id = server.world.config.account_id
    want = expected_alerts(server, own_id, "msp", escalations=True)
    want |= expected_alerts(server, direct["id"], direct["subdomain"], escalations=True)
    tenants = {c["id"]: c["subdomain"] for c in customers} | {customers[0]["id"]: "contoso-override"}
    for account_id, tenant in tenants.items():
        want |= expected_alerts(server, account_id, tenant, escalations=False)
    rows = query(lake, "SELECT tenantid, msg_class, huntress_id, organization_id, account_id FROM alerts")
    assert len(rows) == len(set(rows)) and set(rows) == want
    agents = set(query(lake, "SELECT tenantid, account_id, agent_id FROM agent_inventory"))
    want_agents = {("msp", own_id, a["id"]) for a in admin(server, "truth/agents")["agents"]}
    want_agents |= {(direct["subdomain"], direct["id"], a["id"])
                    for a in admin(server, f"truth/agents?account_id={direct['id']}")["agents"]}
    for account_id, tenant in tenants.items():
        want_agents |= {(tenant, account_id, a["id"])
                        for a in admin(server, f"truth/agents?account_id={account_id}")["agents"]}
    assert agents == want_agents

    # A customer account added at Huntress: collected by the next run, no configuration change
    added = admin(server, "accounts/add", {"name": "Initech Dental"})["account"]
    assert defs.resolve_job_def(COLLECT_JOB).execute_in_process(tags=range_tags(start_day(), today()),
                                                                instance=instance).success
    assert expected_alerts(server, added["id"], added["subdomain"], False) <= set(
        query(lake, "SELECT tenantid, msg_class, huntress_id, organization_id, account_id FROM alerts"))

    # The second key revoked: the schedule runs one run per key; only the revoked key's run fails
    admin(server, "keys/revoke", {"api_key": DIRECT_KEY})
    admin(server, "tick", {"new_incidents": 4})
    schedule = defs.get_schedule_def("huntress_collect_schedule")
    context = dg.build_schedule_context(instance=instance, resources=defs.resources,
                                        scheduled_execution_time=datetime.now(timezone.utc))
    requests = schedule.evaluate_tick(context).run_requests
    assert sorted(r.tags[CONNECTION_TAG] for r in requests) == ["direct", "msp"]
    outcome = {}
    for request in requests:
        run = defs.resolve_job_def(COLLECT_JOB).execute_in_process(tags=request.tags, instance=instance,
                                                                   raise_on_error=False)
        outcome[request.tags[CONNECTION_TAG]] = run
    assert outcome["msp"].success and not outcome["direct"].success
    failure = next(e for e in outcome["direct"].all_events if e.is_step_failure).step_failure_data.error
    assert "connection direct" in str(failure) and "401" in str(failure)
    ids = {r[0] for r in query(lake, f"SELECT huntress_id FROM alerts WHERE account_id = {own_id}")}
    assert {r["id"] for r in admin(server, "truth/incidents")["incident_reports"]} <= ids  # the reseller is current


def test_the_sensor_watches_every_account_of_every_key_within_its_per_tick_budget(deployment):
    server, _, defs, instance, _ = deployment
    sensor = defs.get_sensor_def("huntress_alert_sensor")
    context = dg.build_sensor_context(instance=instance, resources=defs.resources)
    first = sensor(context)  # no cursor: every watched pair is new
    assert {r.tags[CONNECTION_TAG] for r in first.run_requests} == {"msp", "direct"}
    cursor = first.cursor
    # The msp key watches 2 own streams + 3 customers' incidents = 5 pairs; 6 requests per tick cover them all
    customers = admin(server, "truth/accounts")["accounts"]
    msp = next(r for r in first.run_requests if r.tags[CONNECTION_TAG] == "msp")
    assert set(msp.tags[ACCOUNT_TAG].split(",")) == {str(server.world.config.account_id),
                                                      *(str(c["id"]) for c in customers)}
    quiet = sensor(dg.build_sensor_context(instance=instance, resources=defs.resources, cursor=cursor))
    assert not quiet.run_requests  # nothing changed: no run
    admin(server, "tick", {"new_incidents": 2, "accounts": True})
    changed = sensor(dg.build_sensor_context(instance=instance, resources=defs.resources, cursor=quiet.cursor))
    assert changed.run_requests and all(r.tags.get(ACCOUNT_TAG) for r in changed.run_requests)
    # The run it asks for walks the changed accounts only, reusing the sensor's listing of the accounts
    run = changed.run_requests[0]
    started = datetime.now(timezone.utc).timestamp()
    assert defs.resolve_job_def(COLLECT_JOB).execute_in_process(
        tags=run.tags, asset_selection=run.asset_selection, instance=instance).success
    paths = {r["path"] for r in admin(server, f"requests?since={started}")["requests"]}
    assert paths and not paths & {"/v1/account", "/v1/accounts"}


def test_a_run_narrowed_to_one_customer_walks_only_that_account_and_the_graph_is_one(deployment, tmp_path):
    server, _, defs, instance, lake = deployment
    customer = admin(server, "truth/accounts")["accounts"][1]
    started = datetime.now(timezone.utc).timestamp()
    tags = {**range_tags(today(), today()), ACCOUNT_TAG: str(customer["id"])}  # "re-run this customer's day"
    assert defs.resolve_job_def(COLLECT_JOB).execute_in_process(tags=tags, instance=instance).success
    walked = {r["path"] for r in admin(server, f"requests?since={started}")["requests"]}
    assert walked - {"/v1/account", "/v1/accounts"} and all(
        p.startswith(f"/v1/accounts/{customer['id']}/") for p in walked - {"/v1/account", "/v1/accounts"})
    assert {a for (a,) in query(lake, "SELECT DISTINCT account FROM raw_incidents")} == {customer["id"]}

    unknown = defs.resolve_job_def(COLLECT_JOB).execute_in_process(
        tags={**range_tags(today(), today()), CONNECTION_TAG: "nope"}, instance=instance, raise_on_error=False)
    assert not unknown.success and "names no configured connection" in str(
        next(e for e in unknown.all_events if e.is_step_failure).step_failure_data.error)

    # One graph whatever the number of keys: the same assets, jobs and schedules as a single-key deployment
    single = build_definitions(dataclasses.replace(Settings.from_env({}), lake_dir=str(tmp_path / "other")))
    assert {k for k in defs.resolve_all_asset_keys()} == {k for k in single.resolve_all_asset_keys()}


def test_the_connection_test_reports_every_key(deployment, capsys):
    from huntress_dagster.cli import main

    server, direct, *_ = deployment
    assert main(["test-connection"]) == 0
    out = capsys.readouterr().out
    assert "OK [msp]: account 'Acme MSSP'" in out and "3 customer account(s)" in out
    assert f"OK [direct]: account {direct['name']!r}" in out
    admin(server, "keys/revoke", {"api_key": DIRECT_KEY})
    assert main(["test-connection"]) == 2
    captured = capsys.readouterr()
    assert "OK [msp]" in captured.out and "FAILED [direct]" in captured.err and "HTTP 401" in captured.err
    assert DIRECT_SECRET not in captured.err + captured.out
