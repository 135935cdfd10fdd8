"""The simulator behaves like the documented API: schemas from Huntress's swagger, limits, time moving."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from huntress_dagster.simulator import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    SimulatorConfig,
    SimulatorServer,
    World,
    WorldConfig,
)

from .conftest import SMALL_WORLD, admin, make_client

SWAGGER = json.loads((Path(__file__).parent / "fixtures" / "huntress_swagger.json").read_text())


def _allow_null(schema: dict) -> None:
    """Swagger 2.0 cannot say "nullable"; the API documents null for many fields (summary, agent_id,
    organization_id, closed_at, sent_at, tamper_protection_*, ...), so every property may be null."""
    for prop in schema.get("properties", {}).values():
        if "$ref" in prop:
            ref = prop.pop("$ref")
            prop["anyOf"] = [{"$ref": ref}, {"type": "null"}]
            continue
        kind = prop.get("type")
        # Errata in the published document: `"type": "Object"`, `"Account"`, `"Organization"` (capitalised
        # model names) are not JSON-schema types; their examples show a JSON object (a reference such as
        # {"id": 1, "name": "..."} for Account and Organization).
        if isinstance(kind, str) and kind[:1].isupper():
            kind = prop["type"] = "object"
        if isinstance(kind, str):
            prop["type"] = [kind, "null"]
        _allow_null(prop)
        if isinstance(prop.get("items"), dict):
            _allow_null(prop["items"])


def response_validator(path: str) -> jsonschema.Draft4Validator:
    definitions = copy.deepcopy(SWAGGER["definitions"])
    for definition in definitions.values():
        _allow_null(definition)
    # Errata: Remediation.parameters says array of strings, but its own description and example (and the
    # embedded IncidentReport.remediations example) show key/value objects for assisted remediations.
    definitions["Remediation"]["properties"]["parameters"]["items"] = {"type": ["string", "object"]}
    # Errata: Escalation/PlatformAction `organizations` items say string, but the examples (and the escalation
    # webhook payload) show {"id", "name"} objects; `actual_usages` says string, its example is an object.
    for name in ("Escalation", "EscalationWithEntities", "PlatformAction", "PlatformActionWithEntities"):
        definitions[name]["properties"]["organizations"]["items"] = {
            "type": "object", "required": ["id", "name"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
    definitions["OrganizationWithActualProductUsages"]["properties"]["actual_usages"]["type"] = ["object", "null"]
    schema = copy.deepcopy(SWAGGER["paths"][path]["get"]["responses"]["200"]["schema"])
    schema["definitions"] = definitions
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize(
    ("swagger_path", "url_path"),
    [
        ("/v1/account", "/account"),
        ("/v1/actor", "/actor"),
        ("/v1/organizations", "/organizations?limit=500"),
        ("/v1/agents", "/agents?limit=500"),
        ("/v1/agents/{id}", "/agents/{agent_id}"),
        ("/v1/incident_reports", "/incident_reports?limit=500"),
        ("/v1/incident_reports/{id}", "/incident_reports/{incident_id}"),
        ("/v1/incident_reports/{incident_report_id}/remediations", "/incident_reports/{incident_id}/remediations"),
    ],
)
def test_responses_validate_against_the_huntress_swagger(make_simulator, swagger_path, url_path):
    # The current API shape only: the legacy flat remediations array is not in today's swagger.
    server = make_simulator({"flat_remediations_share": 0.0, "many_remediations_share": 0.3})
    with make_client(server) as client:
        agent_id = next(client.agents())["id"]
        incident_id = next(r["id"] for r in client.incident_reports() if r["remediations"]["total_count"])
        path = url_path.format(agent_id=agent_id, incident_id=incident_id)
        data = client.get(path.split("?")[0], dict(p.split("=") for p in path.split("?")[1:]))
    errors = sorted(response_validator(swagger_path).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    assert data  # something was validated


NEW_ENDPOINTS = [
    ("/v1/signals", "/signals"), ("/v1/signals/{id}", "/signals/{signal}"),
    ("/v1/escalations", "/escalations"), ("/v1/escalations/{id}", "/escalations/{escalation}"),
    ("/v1/platform_actions", "/platform_actions"),
    ("/v1/platform_actions/{id}", "/platform_actions/{platform_action}"),
    ("/v1/identities", "/identities"), ("/v1/identities/{id}", "/identities/{identity}"),
    ("/v1/external_ports", "/external_ports"), ("/v1/external_ports/{id}", "/external_ports/{external_port}"),
    ("/v1/organizations/{id}", "/organizations/{organization}"),
    ("/v1/incident_reports/{incident_report_id}/remediations/{remediation_id}",
     "/incident_reports/{incident}/remediations/{remediation}"),
    ("/v1/accounts", "/accounts"), ("/v1/accounts/{account_id}", "/accounts/{account}"),
    ("/v1/accounts/{account_id}/agents", "/accounts/{account}/agents"),
    ("/v1/accounts/{account_id}/agents/{id}", "/accounts/{account}/agents/{account_agent}"),
    ("/v1/accounts/{account_id}/incident_reports", "/accounts/{account}/incident_reports"),
    ("/v1/accounts/{account_id}/incident_reports/{id}", "/accounts/{account}/incident_reports/{account_incident}"),
    ("/v1/accounts/{account_id}/incident_reports/{incident_report_id}/remediations",
     "/accounts/{account}/incident_reports/{account_incident}/remediations"),
    ("/v1/accounts/{account_id}/incident_reports/{incident_report_id}/remediations/{remediation_id}",
     "/accounts/{account}/incident_reports/{account_incident}/remediations/{account_remediation}"),
    ("/v1/accounts/{account_id}/organizations", "/accounts/{account}/organizations"),
    ("/v1/accounts/{account_id}/organizations/{id}", "/accounts/{account}/organizations/{account_organization}"),
    ("/v1/accounts/{account_id}/signals", "/accounts/{account}/signals"),
    ("/v1/accounts/{account_id}/signals/{id}", "/accounts/{account}/signals/{account_signal}"),
    ("/v1/accounts/{account_id}/external_ports", "/accounts/{account}/external_ports"),
    ("/v1/accounts/{account_id}/external_ports/{id}",
     "/accounts/{account}/external_ports/{account_external_port}"),
]


@pytest.fixture(scope="module")
def reseller_simulator():
    world = World(WorldConfig(**{**SMALL_WORLD, "customer_accounts": 2, "flat_remediations_share": 0.0,
                                 "many_remediations_share": 0.3}))
    with SimulatorServer(world, SimulatorConfig(rate_limit=100_000, rate_window_seconds=1.0)) as server:
        yield server


def _ids(server) -> dict[str, int]:
    """One id per placeholder of NEW_ENDPOINTS: the richest record of each kind."""
    world = server.world
    account = next(iter(world.accounts))
    child = world.accounts[account]
    incident = next(x for x in world.incidents.values() if x.remediation_count)
    child_incident = next(x for x in child.incidents.values() if x.remediation_count)
    return {
        "signal": next(iter(world.signals)),
        "escalation": max(world.escalations.values(), key=lambda t: (len(t.organization_ids), t.entity_count)).id,
        "platform_action": max(world.platform_actions.values(), key=lambda t: t.entity_count).id,
        "identity": next(iter(world.identities)), "external_port": next(iter(world.external_ports)),
        "organization": next(iter(world.organizations)), "incident": incident.id,
        "remediation": incident.id * 100, "account": account, "account_agent": next(iter(child.agents)),
        "account_incident": child_incident.id, "account_remediation": child_incident.id * 100 + child_incident.remediation_count - 1,
        "account_organization": next(iter(child.organizations)), "account_signal": next(iter(child.signals)),
        "account_external_port": next(iter(child.external_ports)),
    }


@pytest.mark.parametrize(("swagger_path", "url_path"), NEW_ENDPOINTS)
def test_new_endpoints_validate_against_the_huntress_swagger(reseller_simulator, swagger_path, url_path):
    server = reseller_simulator
    response = httpx.get(server.url + url_path.format(**_ids(server)), params={"limit": 500} if
                         "{" not in swagger_path.rsplit("/", 1)[1] else None, auth=(DEMO_API_KEY, DEMO_API_SECRET))
    assert response.status_code == 200, response.text
    data = response.json()
    errors = sorted(response_validator(swagger_path).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    # Exact field names: every rendered field is one the swagger model declares.
    schema = SWAGGER["paths"][swagger_path]["get"]["responses"]["200"]["schema"]
    for envelope, prop in schema["properties"].items():
        ref = (prop.get("items") or prop).get("$ref", "")
        if envelope == "pagination" or not ref:
            continue
        model_name = ref.rsplit("/", 1)[1]
        model = SWAGGER["definitions"][model_name]
        declared = set(model["properties"]) | set(model.get("required", []))
        if model_name == "IncidentReport":
            declared.add("created_at")  # a sort_field of the endpoint, long served by the simulator
        records = data[envelope] if isinstance(data[envelope], list) else [data[envelope]]
        assert records
        for record in records:
            assert set(record) <= declared, set(record) - declared


def test_limit_bounds_and_defaults(simulator):
    auth = (DEMO_API_KEY, DEMO_API_SECRET)
    assert httpx.get(f"{simulator.url}/agents?limit=501", auth=auth).status_code == 400
    assert httpx.get(f"{simulator.url}/agents?limit=0", auth=auth).status_code == 400
    assert httpx.get(f"{simulator.url}/agents?sort_field=hostname", auth=auth).status_code == 400
    assert httpx.get(f"{simulator.url}/agents?page_token=garbage", auth=auth).status_code == 400
    default = httpx.get(f"{simulator.url}/agents", auth=auth).json()
    assert len(default["agents"]) == 10  # documented default limit
    assert default["pagination"]["next_page_token"]
    assert default["pagination"]["next_page_url"].startswith(simulator.url)
    assert httpx.get(f"{simulator.url}/agents", auth=(DEMO_API_KEY, "nope")).status_code == 401
    assert httpx.get(f"{simulator.url}/nothing", auth=auth).status_code == 404


def test_sliding_window_rate_limit_and_headers(make_simulator):
    server = make_simulator(rate_limit=3, rate_window_seconds=30)
    auth = (DEMO_API_KEY, DEMO_API_SECRET)
    responses = [httpx.get(f"{server.url}/account", auth=auth) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["x-huntress-api-call-limit"] == "3"
    assert [r.headers["x-huntress-api-call-remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert "Retry-After" not in responses[3].headers  # as documented: no Retry-After


def test_time_moves_new_incidents_and_status_changes(simulator):
    with make_client(simulator) as client:
        before = {r["id"]: r for r in client.incident_reports()}
        changed = admin(simulator, "tick", {"new_incidents": 4, "status_changes": 3, "agent_changes": 2})
        after = {r["id"]: r for r in client.incident_reports()}
    assert set(after) - set(before) == set(changed["new_incidents"]) and len(changed["new_incidents"]) == 4
    for incident_id in changed["status_changes"]:
        assert after[incident_id]["status"] != before[incident_id]["status"]
        assert after[incident_id]["updated_at"] > before[incident_id]["updated_at"]
    newest = sorted(after.values(), key=lambda r: (r["updated_at"], r["id"]), reverse=True)[:7]
    assert {r["id"] for r in newest} == set(changed["new_incidents"]) | set(changed["status_changes"])


def test_world_is_deterministic_for_a_seed():
    config = WorldConfig(seed=7, agents=30, incidents=50, anchor=1_790_000_000)
    one, two = World(config), World(config)
    assert one.truth_incidents() == two.truth_incidents()
    assert one.incident_json(next(iter(one.incidents.values()))) == two.incident_json(
        next(iter(two.incidents.values())))
    assert World(WorldConfig(seed=8, agents=30, incidents=50, anchor=1_790_000_000)).truth_incidents() != \
        one.truth_incidents()


def test_generated_data_is_realistic(make_simulator):
    server = make_simulator({"incidents": 2_000, "agents": 200, "null_share": 0.1})
    with make_client(server) as client:
        reports = list(client.incident_reports())
    statuses = [r["status"] for r in reports]
    severities = [r["severity"] for r in reports]
    assert statuses.count("closed") > statuses.count("sent") > statuses.count("deleting")
    assert severities.count("high") > severities.count("low") > 0 and severities.count("critical") > 0
    for field in ("summary", "agent_id", "organization_id", "sent_at"):
        assert any(r[field] is None for r in reports), field
    assert any(r["remediations"]["has_more"] for r in reports if isinstance(r["remediations"], dict))
    assert any(isinstance(r["remediations"], list) for r in reports)  # the older flat shape appears too
