"""Connections and accounts: the YAML schema, tenant mapping, and discovery of a reseller's customer accounts
over real HTTP against the simulator (each customer account its own world)."""

from __future__ import annotations

from datetime import date

import pytest

from huntress_dagster.collect import WalkStats, snapshot_stream, walk_stream
from huntress_dagster.connections import (Connection, discover_accounts, load_connections_file, parse_connections,
                                          tenant_for)
from huntress_dagster.errors import HuntressConfigError
from huntress_dagster.lake import day_start
from huntress_dagster.streams import AGENTS, ESCALATIONS, INCIDENT_REPORTS

from .conftest import admin, make_client

GOOD = """
connections:
  - name: msp
    api_key_env: HUNTRESS_MSP_API_KEY
    api_secret_env: HUNTRESS_MSP_API_SECRET
    tenant: msp
    tenants: {42421: contoso}
    rate_limit: 40
  - name: direct
    api_key_env: HUNTRESS_DIRECT_API_KEY
    api_secret_env: HUNTRESS_DIRECT_API_SECRET
    host_url: https://api.huntress.io/v1
    organization_ids: [501]
"""


def test_a_connections_file_gives_every_connection(tmp_path):
    path = tmp_path / "connections.yaml"
    path.write_text(GOOD)
    msp, direct = load_connections_file(path)
    assert (msp.name, msp.tenant, msp.tenants, msp.rate_limit) == ("msp", "msp", {42421: "contoso"}, 40)
    assert (direct.name, direct.organization_ids, direct.rate_limit) == ("direct", (501,), 60)


@pytest.mark.parametrize(("document", "problem"), [
    ({}, "expected a top-level 'connections:' list"),
    ({"connections": [{"name": "a", "api_key_env": "K", "api_secret_env": "s3cr3t-value"}]},
     "api_secret_env must be the NAME of an environment variable"),
    ({"connections": [{"name": "A b", "api_key_env": "K", "api_secret_env": "S"}]}, "name 'A b' must be"),
    ({"connections": [{"name": "a", "api_key_env": "K", "api_secret_env": "S", "host_url": "http://example.com"}]},
     "Refusing plain http://"),
    ({"connections": [{"name": "a", "api_key_env": "K", "api_secret_env": "S"}] * 2}, "is used twice"),
    ({"connections": [{"name": "a", "api_key_env": "K", "api_secret_env": "S", "api_secret": "x"}]},
     "unknown field 'api_secret'"),
    ({"connections": [{"name": "a", "api_key_env": "K", "api_secret_env": "S", "rate_limit": 0}]}, "rate_limit"),
])
def test_every_problem_is_named_and_no_secret_is_echoed(document, problem):
    with pytest.raises(HuntressConfigError) as caught:
        parse_connections(document, "connections.yaml")
    assert problem in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def test_tenants_come_from_configuration_or_the_subdomain():
    connection = Connection(name="msp", api_key_env="K", api_secret_env="S", tenant="msp", tenants={7: "acme"})
    assert tenant_for(connection, 7, "acme-corp", customer=True) == "acme"  # an override wins
    assert tenant_for(connection, 8, "globex", customer=True) == "globex"  # a customer: its subdomain
    assert tenant_for(connection, 1, "the-msp", customer=False) == "msp"  # the key's own account


def test_a_reseller_key_discovers_its_customer_accounts_and_walks_each_through_its_path(make_simulator):
    server = make_simulator({"customer_accounts": 3})
    connection = Connection(name="msp", api_key_env="K", api_secret_env="S", tenant="msp")
    with make_client(server) as client:
        accounts = discover_accounts(client, connection)
        assert [a.customer for a in accounts] == [False, True, True, True]
        assert accounts[0].tenantid == "msp" and len({a.tenantid for a in accounts}) == 4
        customer = accounts[1]
        assert customer.path_prefix == f"/accounts/{customer.account_id}" and not customer.serves(ESCALATIONS)
        stats = WalkStats()
        rows = list(walk_stream(client, INCIDENT_REPORTS, tenantid=customer.tenantid,
                                lower_bound=day_start(date(2000, 1, 1)),
                                upper_bound=day_start(date(2100, 1, 1)),
                                stats=stats, path_prefix=customer.path_prefix))
        truth = admin(server, f"truth/incidents?account_id={customer.account_id}")["incident_reports"]
        assert {r["id"] for r in rows} == {r["id"] for r in truth}
        assert {r["account_id"] for r in rows} == {customer.account_id} and stats.proven_down_to is not None
        agents = list(snapshot_stream(client, AGENTS, tenantid=customer.tenantid,
                                      path_prefix=customer.path_prefix))
        assert {r["account_id"] for r in agents} == {customer.account_id}

        added = admin(server, "accounts/add", {"name": "Initech Dental"})  # added at Huntress
        assert len(discover_accounts(client, connection)) == 5  # found by the next discovery, no config change
        admin(server, "accounts/remove", {"account_id": added["account"]["id"]})
        assert len(discover_accounts(client, connection)) == 4


def test_a_key_that_is_not_a_resellers_reaches_only_its_own_account(simulator):
    with make_client(simulator) as client:
        [own] = discover_accounts(client, Connection(name="direct", api_key_env="K", api_secret_env="S"))
    assert not own.customer and own.path_prefix == "" and own.tenantid == own.subdomain


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")
def test_a_reseller_key_collects_every_customer_account_apart_and_a_new_one_from_the_next_discovery(
        make_simulator, tmp_path):
    from .dagster_helpers import make_pipeline

    server = make_simulator({"customer_accounts": 3, "incidents": 120, "signals": 100})
    pipeline = make_pipeline(server, tmp_path, account_discovery_seconds=0)
    assert pipeline.run_agents().success and pipeline.run_incidents().success

    def expected(account_id: int, tenant: str, own: bool) -> set[tuple]:
        incidents = {(tenant, "huntress_incident_report", r["id"], r["organization_id"], account_id)
                     for r in admin(server, f"truth/incidents?account_id={account_id}")["incident_reports"]}
        escalations = {(tenant, "huntress_escalation", r["id"], org, account_id)
                       for r in admin(server, "truth/escalations")["escalations"] for org in r["organization_ids"]}
        return incidents | (escalations if own else set())  # escalations: only with the account's own key

    def collected() -> set[tuple]:
        rows = pipeline.query("SELECT tenantid, msg_class, huntress_id, organization_id, account_id FROM alerts")
        assert len(rows) == len(set(rows))
        return set(rows)

    customers = admin(server, "truth/accounts")["accounts"]
    own_id = server.world.config.account_id
    want = expected(own_id, "default", own=True)
    for customer in customers:
        want |= expected(customer["id"], customer["subdomain"], own=False)
    assert collected() == want  # every account's alerts, with its own account_id and tenant (its subdomain)
    agents = dict(pipeline.query("SELECT account_id, count(*) FROM agent_inventory GROUP BY 1"))
    assert set(agents) == {own_id, *(c["id"] for c in customers)}

    added = admin(server, "accounts/add", {"name": "Initech Dental"})["account"]
    assert pipeline.run_incidents().success  # no configuration change: found by the next discovery
    assert expected(added["id"], added["subdomain"], own=False) <= collected()


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")
def test_one_customer_accounts_failure_never_stops_the_others(make_simulator, tmp_path):
    from .dagster_helpers import make_pipeline
    from .hostile import HostileProxy

    server = make_simulator({"customer_accounts": 2, "incidents": 80, "signals": 60})
    proxy = HostileProxy(server.url).start()
    try:
        pipeline = make_pipeline(server, tmp_path, host_url=proxy.url, account_discovery_seconds=0)
        broken, healthy = admin(server, "truth/accounts")["accounts"]
        proxy.forbidden_prefix = f"/v1/accounts/{broken['id']}/"  # 403 for one customer account only
        result = pipeline.run_incidents(raise_on_error=False)
        assert not result.success
        error = str(result.failure_data_for_node("raw_incidents").error)
        assert f"account {broken['id']}" in error and "HTTP 403" in error and f"account {healthy['id']}" not in error
        accounts = {row[0] for row in pipeline.query("SELECT DISTINCT account_id FROM raw_incidents")}
        assert accounts == {server.world.config.account_id, healthy["id"]}  # the others were committed

        proxy.forbidden_prefix = None
        assert pipeline.run_incidents().success
        accounts = {row[0] for row in pipeline.query("SELECT DISTINCT account_id FROM raw_incidents")}
        assert broken["id"] in accounts
    finally:
        proxy.stop()
