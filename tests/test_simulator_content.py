"""The simulator's later content types: signals, escalations, platform actions, identities, external ports,
organizations and reseller accounts behave like the documented API (filters, sorts, keyset paging with
ties, 400 on bad values) and move in time (tick), with truth_* matching what the API serves."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from huntress_dagster.simulator import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    SimulatorConfig,
    SimulatorServer,
    World,
    WorldConfig,
)

from .conftest import SMALL_WORLD, admin

AUTH = (DEMO_API_KEY, DEMO_API_SECRET)
DAY = 86_400


@pytest.fixture(scope="module")
def shared_simulator():
    """One read-only simulator for the tests that only ask questions."""
    with SimulatorServer(World(WorldConfig(**SMALL_WORLD)), SimulatorConfig(rate_limit=100_000)) as server:
        yield server


_HTTP = httpx.Client(auth=AUTH, timeout=30)  # keep-alive: walks make hundreds of requests


def get(server, path: str, **params) -> httpx.Response:
    return _HTTP.get(server.url + path, params=params)


def walk(server, path: str, envelope: str, **params) -> list[list[dict]]:
    """Every page of a list, following next_page_token."""
    pages, token = [], None
    while True:
        response = get(server, path, **params, **({"page_token": token} if token else {}))
        assert response.status_code == 200, response.text
        data = response.json()
        pages.append(data[envelope])
        token = data["pagination"].get("next_page_token")
        if not token:
            return pages


def flat(pages: list[list[dict]]) -> list[dict]:
    return [record for page in pages for record in page]


# --- signals ----------------------------------------------------------------------------------------


def test_signals_walk_with_ties_straddling_pages_sees_every_id_once(simulator):
    truth = {s["id"]: s for s in simulator.world.truth_signals()}
    ties = Counter(s["updated_at"] for s in truth.values())
    assert max(ties.values()) >= 5  # blocks of records sharing one updated_at
    for direction in ("desc", "asc"):
        pages = walk(simulator, "/signals", "signals", limit=7, sort_field="updated_at", sort_direction=direction)
        ids = [s["id"] for s in flat(pages)]
        assert len(ids) == len(set(ids)) == len(truth) and set(ids) == set(truth)
        keys = [(s["updated_at"], s["id"]) for s in flat(pages)]
        assert keys == sorted(keys, reverse=direction == "desc")
        straddling = [i for i in range(len(pages) - 1) if pages[i][-1]["updated_at"] == pages[i + 1][0]["updated_at"]]
        assert straddling, "some tied updated_at block crosses a page boundary"


def test_signals_investigated_at_window_is_inclusive_and_exact(simulator):
    truth = simulator.world.truth_signals()
    times = sorted({s["investigated_at"] for s in truth})
    low, high = times[len(times) // 4], times[len(times) // 2]
    expected = {s["id"] for s in truth if low <= s["investigated_at"] <= high}
    served = flat(walk(simulator, "/signals", "signals", limit=50, investigated_at_min=low,
                       investigated_at_max=high))
    assert {s["id"] for s in served} == expected and len(served) == len(expected)
    assert any(s["investigated_at"] == low for s in served) and any(s["investigated_at"] == high for s in served)
    # Other ISO-8601 spellings of the same instant filter the same way.
    offset = low.replace("Z", "+00:00")
    assert len(flat(walk(simulator, "/signals", "signals", limit=500, investigated_at_min=offset,
                         investigated_at_max=high))) == len(expected)


def test_signal_filters_and_sorts(simulator):
    truth = simulator.world.truth_signals()
    org_id = truth[0]["organization_id"]
    by_org = flat(walk(simulator, "/signals", "signals", limit=500, organization_id=org_id))
    assert {s["id"] for s in by_org} == {s["id"] for s in truth if s["organization_id"] == org_id}
    assert all(s["organization"]["id"] == org_id for s in by_org)
    chosen = {"Process Insights", "Managed ITDR"}
    typed = flat(walk(simulator, "/signals", "signals", limit=500, types="Process Insights, Managed ITDR",
                      statuses="reported"))
    assert typed and {s["type"] for s in typed} == chosen and {s["status"] for s in typed} == {"reported"}
    assert len(typed) == sum(1 for s in truth if s["type"] in chosen and s["status"] == "reported")
    agent_signal = next(s for s in truth if s["entity_type"] == "agent")
    by_entity = flat(walk(simulator, "/signals", "signals", limit=500, entity_type="agent",
                          entity_id=str(agent_signal["entity_id"])))
    assert {s["entity"]["id"] for s in by_entity} == {agent_signal["entity_id"]}
    assert {s["entity"]["type"] for s in flat(walk(simulator, "/signals", "signals", limit=500))} >= {
        "agent", "source", "identity"}
    by_status = flat(walk(simulator, "/signals", "signals", limit=9, sort_field="status", sort_direction="asc"))
    assert [(s["status"], s["id"]) for s in by_status] == sorted((s["status"], s["id"]) for s in truth)
    by_created = flat(walk(simulator, "/signals", "signals", limit=100, sort_field="created_at"))
    assert [s["created_at"] for s in by_created] == sorted((s["created_at"] for s in by_created), reverse=True)


def test_signal_details_are_realistic_per_type(simulator):
    signals = flat(walk(simulator, "/signals", "signals", limit=500))
    by_type = {s["type"]: s for s in signals}
    assert {"Process Insights", "Managed ITDR", "SIEM", "MDE Detections", "Antivirus"} <= set(by_type)
    process = by_type["Process Insights"]["details"]
    assert set(process) == {"rule_name", "username", "process_name", "command_line", "registry_key", "file_path",
                            "file_rename_target", "cleartext"}  # the swagger example's keys
    itdr = next(s for s in signals if s["type"] == "Managed ITDR" and s["entity"]["type"] == "identity")
    assert {"user_principal_name", "ip_address", "country_code"} <= set(itdr["details"])
    assert itdr["details"]["user_principal_name"] == itdr["entity"]["name"]
    assert {"source_name", "event_count", "sample_event"} <= set(by_type["SIEM"]["details"])
    assert {"alert_id", "mitre_techniques", "sha256"} <= set(by_type["MDE Detections"]["details"])
    assert by_type["Antivirus"]["details"]["product"] == "Microsoft Defender Antivirus"
    assert all(s["name"] and s["entity"]["name"] for s in signals)


def test_tick_changes_status_of_old_signals_and_adds_new_ones(simulator):
    world = simulator.world
    before = {s["id"]: s for s in world.truth_signals()}
    now = world.now() + 3_600
    changed = admin(simulator, "tick", {"new_signals": 4, "signal_status_changes": 6, "now": now})
    after = {s["id"]: s for s in world.truth_signals()}
    assert len(changed["signal_status_changes"]) == 6 and len(changed["new_signals"]) == 4
    assert set(after) - set(before) == set(changed["new_signals"])
    for signal_id in changed["signal_status_changes"]:
        old, new = before[signal_id], after[signal_id]
        assert new["status"] != old["status"] and new["updated_at"] > old["updated_at"]
        assert new["investigated_at"] == old["investigated_at"] <= _iso(now - 2 * DAY)  # investigated days ago
        served = get(simulator, f"/signals/{signal_id}").json()["signal"]
        assert (served["status"], served["updated_at"]) == (new["status"], new["updated_at"])
    # The changed ones lead an updated_at walk, one tied block, while an investigated_at filter never sees them.
    newest = get(simulator, "/signals", limit=10, sort_field="updated_at").json()["signals"]
    assert {s["id"] for s in newest} == set(changed["signal_status_changes"]) | set(changed["new_signals"])
    assert len({s["updated_at"] for s in newest}) == 1
    recent = flat(walk(simulator, "/signals", "signals", limit=500, investigated_at_min=_iso(now - 60)))
    assert {s["id"] for s in recent} == set(changed["new_signals"])


def test_walk_while_time_moves_never_repeats_a_signal(simulator):
    seen: list[int] = []
    token = None
    for step in range(1_000):
        data = get(simulator, "/signals", limit=25, sort_field="updated_at",
                   **({"page_token": token} if token else {})).json()
        seen += [s["id"] for s in data["signals"]]
        if step % 5 == 0:
            admin(simulator, "tick", {"new_signals": 2, "signal_status_changes": 5})
        token = data["pagination"].get("next_page_token")
        if not token:
            break
    assert len(seen) == len(set(seen))


# --- escalations and platform actions ----------------------------------------------------------------


def test_escalations_span_several_organizations_and_filter_by_each(simulator):
    truth = simulator.world.truth_escalations()
    multi = [e for e in truth if len(e["organization_ids"]) > 1]
    assert multi
    for org_id in multi[0]["organization_ids"]:
        served = flat(walk(simulator, "/escalations", "escalations", limit=500, organization_id=org_id))
        assert multi[0]["id"] in {e["id"] for e in served}
        assert all(org_id in [o["id"] for o in e["organizations"]] for e in served)
    single = get(simulator, f"/escalations/{multi[0]['id']}").json()["escalation"]
    assert [o["id"] for o in single["organizations"]] == multi[0]["organization_ids"]
    assert all(o["name"] for o in single["organizations"])
    assert set(single["entities"]) == {"total_count", "has_more", "items"}


def test_escalation_filters_sorts_and_ties(simulator):
    world = simulator.world
    truth = world.truth_escalations()
    for status, expected in (("resolved", {e["id"] for e in truth if e["status"] == "resolved"}),
                             ("open", {e["id"] for e in truth if e["status"] != "resolved"})):
        served = flat(walk(simulator, "/escalations", "escalations", limit=500, status=status))
        assert {e["id"] for e in served} == expected
    overdue = {t.id for t in world.escalations.values() if t.status != "resolved" and t.due_at < world.now()}
    assert {e["id"] for e in flat(walk(simulator, "/escalations", "escalations", limit=500,
                                       status="overdue"))} == overdue
    critical = flat(walk(simulator, "/escalations", "escalations", limit=500, severity="critical"))
    assert critical and {e["severity"] for e in critical} == {"critical"}
    rank = {"low": 0, "high": 1, "critical": 2}
    for direction in ("asc", "desc"):  # few severities: long tied runs across pages of 4
        pages = walk(simulator, "/escalations", "escalations", limit=4, sort_field="severity",
                     sort_direction=direction)
        keys = [(rank[e["severity"]], e["id"]) for e in flat(pages)]
        assert keys == sorted(keys, reverse=direction == "desc") and len(keys) == len(truth) == len(set(keys))
    by_due = flat(walk(simulator, "/escalations", "escalations", limit=6, sort_field="due_at",
                       sort_direction="asc"))
    due = {t.id: t.due_at for t in world.escalations.values()}
    assert [e["id"] for e in by_due] == sorted(due, key=lambda i: (due[i], i))


def test_tick_opens_and_resolves_escalations_and_platform_actions(simulator):
    before = {e["id"]: e for e in simulator.world.truth_escalations()}
    changed = admin(simulator, "tick", {"escalations_opened": 3, "escalations_closed": 2,
                                        "platform_actions_opened": 2, "platform_actions_closed": 1,
                                        "now": simulator.world.now() + 60})
    after = {e["id"]: e for e in simulator.world.truth_escalations()}
    assert set(after) - set(before) == set(changed["escalations_opened"]) and len(changed["escalations_opened"]) == 3
    for escalation_id in changed["escalations_closed"]:
        assert before[escalation_id]["status"] != "resolved" and after[escalation_id]["status"] == "resolved"
        assert after[escalation_id]["updated_at"] > before[escalation_id]["updated_at"]
        served = get(simulator, f"/escalations/{escalation_id}").json()["escalation"]
        assert served["resolved_at"] == served["updated_at"] == after[escalation_id]["updated_at"]
    for escalation_id in changed["escalations_opened"]:
        assert after[escalation_id]["status"] == "open" and after[escalation_id]["resolved_at"] is None
    moved = set(changed["escalations_opened"]) | set(changed["escalations_closed"]) | set(changed["escalations_sent"])
    newest = get(simulator, "/escalations", limit=len(moved) + 1, sort_field="updated_at").json()["escalations"]
    assert {e["id"] for e in newest[:len(moved)]} == moved and newest[-1]["id"] not in moved
    assert len(changed["platform_actions_opened"]) == 2 and len(changed["platform_actions_closed"]) == 1
    actions = {a["id"]: a for a in simulator.world.truth_platform_actions()}
    assert actions[changed["platform_actions_closed"][0]]["status"] == "resolved"
    served = flat(walk(simulator, "/platform_actions", "platform_actions", limit=500))
    assert {a["id"] for a in served} == set(actions)


# --- identities, external ports, organizations --------------------------------------------------------


def test_identities_filters_and_escalation_link(simulator):
    world = simulator.world
    truth = world.truth_identities()
    served = flat(walk(simulator, "/identities", "identities", limit=33, sort_field="updated_at"))
    assert sorted(i["id"] for i in served) == sorted(i["id"] for i in truth)
    for name, value in (("mfa_enabled", "false"), ("enabled", "true")):
        got = flat(walk(simulator, "/identities", "identities", limit=500, **{name: value}))
        assert got and all(i[name] is (value == "true") for i in got)
        assert len(got) == sum(1 for i in truth if i[name] is (value == "true"))
    google = flat(walk(simulator, "/identities", "identities", limit=500, tenant_type="google_workspace"))
    assert all(i["tenant"]["type"] == "google_workspace" for i in google)
    linked = next(t for t in world.escalations.values() if t.entity_ids and t.entity_ids[0] in world.identities)
    got = flat(walk(simulator, "/identities", "identities", limit=500, escalation_id=linked.id))
    assert {i["id"] for i in got} == set(linked.entity_ids)


def test_external_ports_shared_addresses_sorts_and_tick(simulator):
    world = simulator.world
    ports = flat(walk(simulator, "/external_ports", "external_ports", limit=5, sort_field="port",
                      sort_direction="asc"))
    assert [(p["port"], p["id"]) for p in ports] == sorted((p["port"], p["id"]) for p in ports)
    assert len(ports) == len(world.external_ports)
    assert any(len(p["organization_ids"]) > 1 for p in world.truth_external_ports())
    risky = flat(walk(simulator, "/external_ports", "external_ports", limit=500, risky_service="true",
                      protocol="TCP"))
    assert risky and all(p["risky_service"] and p["protocol"] == "TCP" for p in risky)
    changed = admin(simulator, "tick", {"ports_opened": 2, "ports_closed": 3, "port_scans": 0})
    ids = {p["id"] for p in flat(walk(simulator, "/external_ports", "external_ports", limit=500))}
    assert set(changed["ports_opened"]) <= ids and not set(changed["ports_closed"]) & ids
    assert get(simulator, f"/external_ports/{changed['ports_closed'][0]}").status_code == 404


def test_organizations_have_live_counts_and_renames(simulator):
    world = simulator.world
    orgs = {o["id"]: o for o in flat(walk(simulator, "/organizations", "organizations", limit=2))}
    assert set(orgs) == set(world.organizations)
    for org_id, org in orgs.items():
        assert org["agents_count"] == sum(1 for a in world.agents.values() if a.organization_id == org_id)
        assert org["incident_reports_count"] == sum(1 for x in world.incidents.values() if x.organization_id == org_id)
    org_id = next(iter(orgs))
    renamed = admin(simulator, "rename_organization", {"organization_id": org_id, "name": "Renamed & Co"})
    assert renamed["organization"]["name"] == "Renamed & Co"
    assert renamed["organization"]["updated_at"] > orgs[org_id]["updated_at"]
    assert get(simulator, f"/organizations/{org_id}").json()["organization"]["name"] == "Renamed & Co"
    signal = next(s for s in world.signals.values() if s.organization_id == org_id)
    assert get(simulator, f"/signals/{signal.id}").json()["signal"]["organization"]["name"] == "Renamed & Co"
    changed = admin(simulator, "tick", {"organization_renames": 1, "new_incidents": 5})
    [other] = changed["organization_renames"]
    assert world.organizations[other].name != orgs[other]["name"] or other == org_id
    counts = {o["id"]: o["incident_reports_count"] for o in flat(walk(simulator, "/organizations",
                                                                      "organizations", limit=500))}
    assert sum(counts.values()) == sum(1 for x in world.incidents.values() if x.organization_id)
    by_name = flat(walk(simulator, "/organizations", "organizations", limit=1, sort_field="name",
                        sort_direction="asc"))
    assert [o["name"] for o in by_name] == sorted(o.name for o in world.organizations.values())


# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "params"), [
    ("/signals", {"types": "Bogus"}), ("/signals", {"types": "SIEM,Nope"}), ("/signals", {"statuses": "open"}),
    ("/signals", {"entity_type": "host"}), ("/signals", {"entity_id": "12"}),
    ("/signals", {"investigated_at_min": "yesterday"}), ("/signals", {"sort_field": "investigated_at"}),
    ("/signals", {"organization_id": "x"}), ("/signals", {"limit": 501}), ("/signals", {"limit": 0}),
    ("/escalations", {"status": "sent"}), ("/escalations", {"severity": "medium"}),
    ("/escalations", {"sort_field": "status"}), ("/platform_actions", {"status": "closed"}),
    ("/identities", {"risk_level": "extreme"}), ("/identities", {"tenant_type": "okta"}),
    ("/identities", {"billable": "maybe"}), ("/external_ports", {"protocol": "ICMP"}),
    ("/external_ports", {"port": "ssh"}), ("/external_ports", {"sort_field": "service"}),
    ("/accounts", {"status": "active"}), ("/organizations", {"sort_field": "agents_count"}),
    ("/signals", {"page_token": "garbage"}), ("/escalations", {"sort_field": "severity", "page_token": "xx"}),
])
def test_bad_values_are_rejected_with_400(shared_simulator, path, params):
    assert get(shared_simulator, path, **params).status_code == 400


def test_unknown_records_are_404(shared_simulator):
    simulator = shared_simulator
    for path in ("/signals/1", "/escalations/1", "/platform_actions/1", "/identities/1", "/external_ports/1",
                 "/organizations/1", "/accounts/1", "/accounts/1/agents", "/incident_reports/100001/remediations/1"):
        assert get(simulator, path).status_code == 404, path


# --- reseller accounts -------------------------------------------------------------------------------


def test_reseller_accounts_serve_their_own_worlds_and_come_and_go(make_simulator):
    server = make_simulator({"customer_accounts": 2})
    accounts = get(server, "/accounts", limit=500).json()["accounts"]
    assert len(accounts) == 2 and all(a["status"] == "enabled" for a in accounts)
    first = server.world.accounts[accounts[0]["id"]]
    agents = flat(walk(server, f"/accounts/{accounts[0]['id']}/agents", "agents", limit=500))
    assert {a["id"] for a in agents} == set(first.agents) and {a["account_id"] for a in agents} == {
        accounts[0]["id"]}
    assert not {a["id"] for a in agents} & set(server.world.agents)  # ids never collide across accounts
    page = get(server, f"/accounts/{accounts[0]['id']}/signals", limit=3).json()
    assert page["pagination"]["next_page_url"].startswith(f"{server.url}/accounts/{accounts[0]['id']}/signals?")
    for scoped in ("escalations", "identities", "platform_actions"):  # top level only
        assert get(server, f"/accounts/{accounts[0]['id']}/{scoped}").status_code == 404
    added = admin(server, "accounts/add", {"name": "New Customer LLC", "agents": 7})["account"]
    assert added["subdomain"] == "new-customer-llc"
    assert len(get(server, f"/accounts/{added['id']}/agents", limit=500).json()["agents"]) == 7
    changed = admin(server, "tick", {"new_incidents": 2, "new_signals": 1})
    assert set(changed["accounts"]) == {str(a["id"]) for a in accounts} | {str(added["id"])}
    child_truth = admin(server, f"truth/incidents?account_id={added['id']}")["incident_reports"]
    assert set(changed["accounts"][str(added["id"])]["new_incidents"]) <= {x["id"] for x in child_truth}
    assert admin(server, "accounts/update", {"account_id": added["id"], "status": "disabled"})["account"][
        "status"] == "disabled"
    assert [a["id"] for a in get(server, "/accounts", status="disabled").json()["accounts"]] == [added["id"]]
    assert admin(server, "accounts/remove", {"account_id": accounts[1]["id"]})["removed"]
    assert get(server, f"/accounts/{accounts[1]['id']}/agents").status_code == 404
    assert {a["id"] for a in get(server, "/accounts", limit=500).json()["accounts"]} == {
        accounts[0]["id"], added["id"]}


# --- determinism ---------------------------------------------------------------------------------------


def test_new_types_are_deterministic_and_leave_agents_and_incidents_alone():
    config = dict(SMALL_WORLD, seed=11, anchor=1_790_000_000)
    one, two = World(WorldConfig(**config)), World(WorldConfig(**config))
    for name in ("signals", "escalations", "platform_actions", "identities", "external_ports", "organizations"):
        assert getattr(one, f"truth_{name}")() == getattr(two, f"truth_{name}")(), name
    assert [one.signal_json(s) for s in one.signals.values()] == [two.signal_json(s) for s in two.signals.values()]
    bare = World(WorldConfig(**config, signals=0, escalations=0, platform_actions=0, identities=0,
                             external_ports=0))
    assert bare.truth_incidents() == one.truth_incidents() and bare.truth_agents() == one.truth_agents()
    assert [bare.incident_json(x) for x in bare.incidents.values()] == [
        one.incident_json(x) for x in one.incidents.values()]
    for world in (one, bare):
        world.tick(now=1_790_000_500, new_signals=9, escalations_opened=4, identity_changes=3)
    assert bare.truth_incidents() == one.truth_incidents() and bare.truth_agents() == one.truth_agents()


def _iso(ts: int) -> str:
    from huntress_dagster.simulator.paging import iso

    return iso(ts)
