"""Normalization into parsed_syslog rows and tables: derived fields, batch tables queried with DuckDB,
remediations of any length, bad input, and arbitrary JSON values in every field."""

from __future__ import annotations

import json
import uuid

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huntress_dagster.parsing import (
    ASSET_FIELDS,
    PARSED_SYSLOG_SCHEMA,
    InvalidRecord,
    ParseContext,
    asset_fields,
    host_context,
    normalize_agent,
    normalize_agents,
    normalize_incident,
    normalize_incidents,
    rows_to_table,
    with_all_remediations,
)
from huntress_dagster.parsing.fields import ALERT_NAMESPACE, alert_uid, security_product
from huntress_dagster.parsing.msg_classes import ESCALATION_CLASS, INCIDENT_CLASS, PLATFORM_ACTION_CLASS
from huntress_dagster.parsing.schema import (
    AGENT_FIELDS,
    ESCALATION_FIELDS,
    EXTERNAL_PORT_FIELDS,
    IDENTITY_FIELDS,
    INCIDENT_FIELDS,
    ORGANIZATION_FIELDS,
    SIGNAL_FIELDS,
)
from huntress_dagster.simulator.bodies import render_body

CONTEXT = ParseContext("tenant-1", "Tenant One", "api.huntress.io", "acme")
INCIDENT = {
    "id": 41,
    "account_id": 5,
    "organization_id": 4,
    "agent_id": 12,
    "platform": "windows",
    "severity": "critical",
    "status": "closed",
    "indicator_types": ["footholds"],
    "indicator_counts": {"footholds": 2, "process_detections": 1},
    "subject": "CRITICAL - x",
    "created_at": "2024-06-01T10:00:00Z",
    "updated_at": "2024-06-01T12:00:00Z",
    "remediations": {"total_count": 0, "has_more": False, "items": []},
}
AGENT = {
    "id": 12,
    "account_id": 5,
    "organization_id": 4,
    "hostname": "WS-12",
    "platform": "windows",
    "os": "Windows Server 2022 Datacenter",
    "ipv4_address": "10.0.0.12",
    "external_ip": "198.51.100.7",
    "mac_addresses": ["00:11:22:33:44:55"],
    "tags": ["prod"],
    "updated_at": "2024-06-02T00:00:00Z",
    "last_callback_at": "2024-06-02T00:00:00Z",
    "defender_status": "Healthy",
    "firewall_status": "Enabled",
    "tamper_protection_configured": True,
    "tamper_protection_actual": False,
}


def incident(**changes) -> str:
    return json.dumps({**INCIDENT, **changes})


def remediation(number: int) -> dict:
    return {
        "id": number,
        "type": "assisted",
        "action": "Delete File",
        "status": "completed",
        "parameters": [{"name": "path", "description": f"c:\\x{number}.exe"}],
    }


@pytest.mark.parametrize(
    ("severity", "severity_id"),
    [("low", 2), ("high", 4), ("critical", 5), ("unheard-of", 0), (None, 0)],
)
def test_severity_fields(severity, severity_id) -> None:
    row = normalize_incident(incident(severity=severity), CONTEXT)
    assert row["severity_id"] == severity_id


@pytest.mark.parametrize(
    ("status", "status_id", "is_open"),
    [("sent", 1, True), ("auto_remediating", 2, True), ("closed", 4, False), ("dismissed", 3, False),
     ("partner_dismissed", 3, False), ("deleting", 99, False), ("a-new-label", 0, True), (None, 0, True)],
)
def test_is_open_follows_the_documented_status_semantics(status, status_id, is_open) -> None:
    row = normalize_incident(incident(status=status), CONTEXT)
    assert (row["status_id"], row["is_open"]) == (status_id, is_open)


@pytest.mark.parametrize(
    ("status", "status_id"),
    [
        ("sent", 1),
        ("auto_remediating", 2),
        ("dismissed", 3),
        ("partner_dismissed", 3),
        ("closed", 4),
        ("deleting", 99),
        (None, 0),
        ("new-status", 0),
    ],
)
def test_status_id_follows_ocsf_finding_status(status, status_id) -> None:
    assert normalize_incident(incident(status=status), CONTEXT)["status_id"] == status_id


@pytest.mark.parametrize(
    ("indicator_types", "platform", "product"),
    [
        (["footholds", "mde_detections"], "windows", "Microsoft Defender for Endpoint"),
        (["managed_identity"], "microsoft_365", "Huntress Managed ITDR"),
        ([], "google", "Huntress Managed ITDR"),
        (["siem_detections"], "other", "Huntress Managed SIEM"),
        (["email_security_detections"], "email_security", "Huntress Managed Email Security"),
        (["footholds", "ransomware_canaries"], "darwin", "Huntress Managed EDR"),
        (None, None, "Huntress Managed EDR"),
    ],
)
def test_security_product(indicator_types, platform, product) -> None:
    assert security_product(indicator_types, platform) == product


def test_alert_uid_is_stable_and_keyed_on_the_dedup_key() -> None:
    first = normalize_incident(incident(), CONTEXT)["alert_uid"]
    assert (
        normalize_incident(incident(status="sent", updated_at="2025-01-01T00:00:00Z"), CONTEXT)["alert_uid"]
        == first
    )
    other_tenant = ParseContext("tenant-2", "Tenant Two", "api.huntress.io")
    assert normalize_incident(incident(), other_tenant)["alert_uid"] != first
    assert normalize_incident(incident(organization_id=None), CONTEXT)["alert_uid"] != first
    assert normalize_incident(incident(id=42), CONTEXT)["alert_uid"] != first


def test_portal_url_needs_subdomain_and_organization() -> None:
    assert (
        normalize_incident(incident(), CONTEXT)["portal_url"]
        == "https://acme.huntress.io/org/4/incident_reports/41"
    )
    assert normalize_incident(incident(organization_id=None), CONTEXT)["portal_url"] is None
    assert normalize_incident(incident(), ParseContext("t", "T", "api.huntress.io"))["portal_url"] is None


def test_more_than_ten_remediations_survive() -> None:
    first_page = incident(
        remediations={"total_count": 25, "has_more": True, "items": [remediation(n) for n in range(10)]}
    )
    row = normalize_incident(first_page, CONTEXT)
    assert (row["huntress"]["remediations_total"], row["huntress"]["remediations_has_more"]) == (25, True)
    complete = with_all_remediations(first_page, [remediation(n) for n in range(25)])
    row = normalize_incident(complete, CONTEXT)
    assert [item["id"] for item in row["huntress"]["remediations"]] == list(range(25))
    assert (row["huntress"]["remediations_total"], row["huntress"]["remediations_has_more"]) == (25, False)
    assert json.loads(row["huntress"]["remediations"][24]["parameters"]) == [
        {"name": "path", "description": "c:\\x24.exe"}
    ]


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", "null", "42", '"text"', b"\xff\xfe"])
def test_input_that_is_not_a_json_object_is_a_clear_error(raw) -> None:
    with pytest.raises(InvalidRecord, match="incident record"):
        normalize_incident(raw, CONTEXT)


def test_lone_surrogates_and_huge_integers_are_tolerated() -> None:
    raw = (
        '{"id": 1, "account_id": 99999999999999999999999, "subject": "bad \\ud800 text", "body": "x\\udfff"}'
    )
    row = normalize_incident(raw, CONTEXT)
    assert row["huntress"]["account_id"] is None
    assert row["huntress"]["subject"] == "bad ? text"
    rows_to_table([row])  # every string is valid UTF-8 for Arrow


def test_batch_tables_are_queryable_with_the_reference_names() -> None:
    incidents = normalize_incidents(
        [incident(id=n, body=render_body(n, {**INCIDENT, "id": n}, 4_000)) for n in range(1, 4)], CONTEXT
    )
    agents = normalize_agents([json.dumps(AGENT)], CONTEXT)
    assert incidents.schema == agents.schema == PARSED_SYSLOG_SCHEMA
    con = duckdb.connect()
    con.register("incidents", incidents)
    con.register("agents", agents)
    rows = con.execute("""
        SELECT msg_class, msg_origin.source, msg_origin.vendor, msg_origin.category, huntress.organization_id,
               huntress.indicator_counts['footholds'], len(sha256), parse_level
        FROM (SELECT * FROM incidents UNION ALL SELECT * FROM agents)
        WHERE msg_class = 'huntress_incident_report' ORDER BY huntress.id""").fetchall()
    assert rows == [("huntress_incident_report", "huntress", "huntress", "mdr", 4, 2, 3, "full")] * 3
    assert con.execute(
        "SELECT msg_origin.category, huntress.hostname, huntress.tags FROM agents"
    ).fetchall() == [("endpoint", "WS-12", ["prod"])]


def test_asset_fields_and_host_context() -> None:
    row = normalize_agent(json.dumps(AGENT), CONTEXT)
    asset = asset_fields(row)
    assert set(asset) == {"tenantid", *ASSET_FIELDS}
    assert (asset["hostname"], asset["tamper_protection_actual"], asset["mac_addresses"]) == (
        "WS-12",
        False,
        ["00:11:22:33:44:55"],
    )
    assert host_context(asset) == {
        "hostname": "WS-12",
        "host_os": "Windows Server 2022 Datacenter",
        "host_ipv4": "10.0.0.12",
        "host_external_ip": "198.51.100.7",
        "host_mac_addresses": ["00:11:22:33:44:55"],
    }


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = sorted(
    set(INCIDENT) | set(AGENT) | {"body", "summary", "sent_at", "closed_at", "status_updated_at"}
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_FIELDS), _JSON_VALUES, max_size=len(_FIELDS)))
def test_any_json_values_in_fields_normalize_to_the_schema(fields: dict) -> None:
    raw = json.dumps({**INCIDENT, **fields})
    table = rows_to_table(
        [normalize_incident(raw, CONTEXT), normalize_agent(json.dumps({**AGENT, **fields}), CONTEXT)]
    )
    assert table.schema == PARSED_SYSLOG_SCHEMA and table.num_rows == 2


_TIMESTAMPS = st.sampled_from(
    [
        "2024-06-01T12:00:00Z",
        "2024-06-01T12:00:00.5+02:00",
        "2024-06-01 12:00:00",
        "2024-06-01",
        "2024-06-01T12:00:00.123456789Z",
        "20240601T120000Z",
        "soon",
    ]
)
_AGENT_VALUES = {
    **{name: st.integers(-(2**63), 2**63 - 1) for name in ("id", "account_id", "organization_id")},
    **{
        name: st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8)
        for name in (
            "hostname",
            "domain_name",
            "platform",
            "os",
            "os_build_version",
            "arch",
            "version",
            "edr_version",
            "ipv4_address",
            "external_ip",
            "serial_number",
            "defender_status",
            "defender_substatus",
            "defender_policy_status",
            "firewall_status",
        )
    },
    **{name: st.lists(st.none() | st.text(max_size=4), max_size=3) for name in ("mac_addresses", "tags")},
    **{name: st.booleans() for name in ("tamper_protection_configured", "tamper_protection_actual")},
    **{name: _TIMESTAMPS for name in ("created_at", "updated_at", "last_callback_at", "last_survey_at")},
    "os_major": st.integers(0, 20),
    "new_field": _JSON_VALUES,
}
_AGENTS = st.fixed_dictionaries(
    {}, optional={name: st.none() | values for name, values in _AGENT_VALUES.items()}
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_AGENTS, min_size=1, max_size=6))
def test_agent_batches_match_row_by_row_normalization(agents: list[dict]) -> None:
    raws = [json.dumps(agent) for agent in agents]
    assert normalize_agents(raws, CONTEXT).equals(
        rows_to_table([normalize_agent(raw, CONTEXT) for raw in raws])
    )


def test_agent_batch_with_a_badly_typed_record_is_coerced_row_by_row() -> None:
    raws = [
        json.dumps(AGENT),
        json.dumps({**AGENT, "id": "13", "tags": "solo", "hostname": 7}),
        json.dumps(AGENT, indent=2),
    ]
    table = normalize_agents(raws, CONTEXT)
    assert [(h["id"], h["tags"], h["hostname"]) for h in table.column("huntress").to_pylist()] == [
        (12, ["prod"], "WS-12"),
        (13, ["solo"], "7"),
        (12, ["prod"], "WS-12"),
    ]
    with pytest.raises(InvalidRecord, match="agent record"):
        normalize_agents([json.dumps(AGENT), "[]"], CONTEXT)


def test_empty_batches_are_empty_tables_of_the_schema() -> None:
    for table in (normalize_incidents([], CONTEXT), normalize_agents([], CONTEXT)):
        assert table.num_rows == 0 and table.schema == PARSED_SYSLOG_SCHEMA


@given(st.text(max_size=10), st.none() | st.integers(), st.none() | st.integers(), st.none() | st.integers())
def test_alert_uid_is_a_uuid5_of_the_key(tenant, huntress_id, organization_id, account_id) -> None:
    key = "|".join(
        "" if part is None else str(part) for part in (tenant, huntress_id, organization_id, account_id)
    )
    assert alert_uid(tenant, huntress_id, organization_id, account_id) == str(
        uuid.uuid5(ALERT_NAMESPACE, key)
    )


def test_the_huntress_struct_is_the_union_of_the_class_fields() -> None:
    names = PARSED_SYSLOG_SCHEMA.field("huntress").type.names
    assert sorted(names) == sorted(
        set(INCIDENT_FIELDS).union(
            AGENT_FIELDS,
            SIGNAL_FIELDS,
            ESCALATION_FIELDS,
            IDENTITY_FIELDS,
            EXTERNAL_PORT_FIELDS,
            ORGANIZATION_FIELDS,
        )
    )
    assert len(names) == len(set(names))
    # fields are only ever appended: the incident and agent fields keep their places
    assert names[: len(set(INCIDENT_FIELDS) | set(AGENT_FIELDS))] == [
        name for name in names if name in INCIDENT_FIELDS or name in AGENT_FIELDS
    ]


@given(st.text(max_size=10), st.none() | st.integers(), st.none() | st.integers(), st.none() | st.integers())
def test_alert_uid_of_other_classes_names_the_class(tenant, huntress_id, organization_id, account_id) -> None:
    key = (tenant, huntress_id, organization_id, account_id)
    assert alert_uid(*key, INCIDENT_CLASS) == alert_uid(*key)
    name = "|".join("" if part is None else str(part) for part in key) + "|huntress_escalation"
    assert alert_uid(*key, ESCALATION_CLASS) == str(uuid.uuid5(ALERT_NAMESPACE, name))
    assert alert_uid(*key, ESCALATION_CLASS) not in (alert_uid(*key), alert_uid(*key, PLATFORM_ACTION_CLASS))
