"""The newer classes (signals, escalations, platform actions, identities, external ports, organizations):
derived fields, signal details -> entity columns, the batch entry point with its invalid-record callback,
and arbitrary JSON objects in every normalizer."""

from __future__ import annotations

import json

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huntress_dagster.parsing import (
    AGENT_CLASS,
    ENTITY_COLUMNS,
    ESCALATION_CLASS,
    EXTERNAL_PORT_CLASS,
    IDENTITY_CLASS,
    INCIDENT_CLASS,
    MSG_CLASSES,
    ORGANIZATION_CLASS,
    PARSED_SYSLOG_SCHEMA,
    PLATFORM_ACTION_CLASS,
    RECORD_NORMALIZERS,
    SIGNAL_CLASS,
    InvalidRecord,
    ParseContext,
    normalize_agents,
    normalize_escalation_record,
    normalize_external_port_record,
    normalize_identity_record,
    normalize_incident,
    normalize_incidents,
    normalize_json,
    normalize_platform_action_record,
    normalize_records,
    normalize_signal_record,
    rows_to_table,
    signal_category,
)
from huntress_dagster.parsing.details import KEY_COLUMNS, detail_entities
from huntress_dagster.parsing.fields import alert_uid

CONTEXT = ParseContext("tenant-1", "Tenant One", "api.huntress.io", "acme")
SIGNAL = {
    "id": 3001499,
    "created_at": "2026-11-30T05:25:18Z",
    "details": {
        "rule_name": "Whoami",
        "username": "jdoe",
        "process_name": "C:\\Windows\\System32\\whoami.exe",
    },
    "entity": {"id": 10189, "name": "srv-10189", "type": "agent"},
    "investigated_at": "2026-11-30T06:33:46Z",
    "investigation_context": "False Positive",
    "name": "Whoami Execution by Service Account",
    "organization": {"id": 504, "name": "Umbrella Clinic"},
    "status": "closed",
    "type": "Process Insights",
    "updated_at": "2026-11-30T06:58:54Z",
}
ESCALATION = {
    "id": 5,
    "account": {"id": 4242, "name": "Acme MSSP"},
    "organizations": [{"id": 501, "name": "Acme Inc."}, {"id": 502, "name": "Globex Holdings"}],
    "created_at": "2026-11-28T01:15:08Z",
    "resolved_at": None,
    "severity": "high",
    "status": "open",
    "subject": "Defender Disabled",
    "subtype": None,
    "type": "Environmental Issue",
    "updated_at": "2026-11-30T06:58:54Z",
}
IDENTITY = {
    "id": 7000200,
    "account": {"id": 4242, "name": "Acme MSSP"},
    "organization": {"id": 504, "name": "Umbrella Clinic"},
    "tenant": {"id": 5504, "type": "microsoft_365"},
    "username": "omar@org504.example.com",
    "enabled": True,
    "enabled_products": ["itdr"],
    "updated_at": "2026-11-30T04:46:27Z",
}
PORT = {
    "id": 40048,
    "ip_address": "203.0.113.5",
    "port": 22,
    "protocol": "TCP",
    "service": "ssh",
    "risky_service": True,
    "last_scan_at": "2026-11-30T01:48:10Z",
    "last_external_scan_at": "2026-11-29T14:43:18Z",
    "organization_ids": [501, 505],
}
ORGANIZATION = {
    "id": 505,
    "name": "Stark Manufacturing",
    "key": "org505",
    "account_id": 4242,
    "agents_count": 31,
}
INCIDENT = {
    "id": 41,
    "account_id": 5,
    "organization_id": 4,
    "severity": "high",
    "status": "sent",
    "body": "x",
}
AGENT = {"id": 12, "account_id": 5, "organization_id": 4, "hostname": "WS-12"}
SAMPLES = {
    INCIDENT_CLASS: INCIDENT,
    AGENT_CLASS: AGENT,
    SIGNAL_CLASS: SIGNAL,
    ESCALATION_CLASS: ESCALATION,
    PLATFORM_ACTION_CLASS: {**ESCALATION, "id": 60025},
    IDENTITY_CLASS: IDENTITY,
    EXTERNAL_PORT_CLASS: PORT,
    ORGANIZATION_CLASS: ORGANIZATION,
}


@pytest.mark.parametrize(
    ("signal_type", "category", "product"),
    [
        ("Process Insights", "edr", "Huntress Managed EDR"),
        ("Antivirus", "edr", "Huntress Managed EDR"),
        ("Footholds", "edr", "Huntress Managed EDR"),
        ("MDE Detections", "edr", "Microsoft Defender for Endpoint"),
        ("Ransomware Canaries", "edr", "Huntress Managed EDR"),
        ("Attack Disruptions", "edr", "Huntress Managed EDR"),
        ("App Control", "edr", "Huntress Managed EDR"),
        ("Managed ITDR", "itdr", "Huntress Managed ITDR"),
        ("Favicon Detections", "itdr", "Huntress Managed ITDR"),
        ("SIEM", "siem", "Huntress Managed SIEM"),
        (" siem ", "siem", "Huntress Managed SIEM"),
        ("Something New", "mdr", None),
        (None, "mdr", None),
    ],
)
def test_signal_category_and_product_follow_the_type(signal_type, category, product) -> None:
    row = normalize_signal_record({**SIGNAL, "type": signal_type}, CONTEXT)
    assert row["msg_origin"] == {"source": "huntress", "vendor": "huntress", "category": category}
    assert signal_category(signal_type) == category
    assert row["security_product"] == product


@pytest.mark.parametrize(
    ("status", "status_id"), [("reported", 1), ("closed", 4), ("unheard-of", 0), (None, 0)]
)
def test_signal_status_id(status, status_id) -> None:
    assert normalize_signal_record({**SIGNAL, "status": status}, CONTEXT)["status_id"] == status_id


@pytest.mark.parametrize("normalize", [normalize_escalation_record, normalize_platform_action_record])
@pytest.mark.parametrize(
    ("severity", "status", "is_open", "severity_id", "status_id"),
    [
        ("low", "open", True, 2, 1),
        ("high", "sent", True, 4, 1),
        ("critical", "overdue", True, 5, 1),
        ("critical", "resolved", False, 5, 4),
        ("urgent", "parked", True, 0, 0),  # a status we cannot read stays on the queue
        (None, None, True, 0, 0),
    ],
)
def test_ticket_alert_fields(normalize, severity, status, is_open, severity_id, status_id) -> None:
    row = normalize({**ESCALATION, "severity": severity, "status": status}, CONTEXT)
    assert (row["is_open"], row["severity_id"], row["status_id"]) == (is_open, severity_id, status_id)
    assert row["alert_uid"] is None  # one alert per organization, built later


def test_escalations_span_organizations() -> None:
    row = normalize_escalation_record(ESCALATION, CONTEXT)
    huntress = row["huntress"]
    assert (huntress["organization_id"], huntress["organization_ids"], huntress["organization_names"]) == (
        None,
        [501, 502],
        ["Acme Inc.", "Globex Holdings"],
    )
    assert huntress["account_id"] == 4242
    uids = {
        alert_uid(row["tenantid"], huntress["id"], org, huntress["account_id"], row["msg_class"])
        for org in huntress["organization_ids"]
    }
    incident_uid = normalize_incident(json.dumps({**INCIDENT, "id": 5, "organization_id": 501}), CONTEXT)
    assert len(uids) == 2 and incident_uid["alert_uid"] not in uids


def test_account_comes_from_the_record_else_the_context() -> None:
    with_account = ParseContext("tenant-1", "Tenant One", "api.huntress.io", account_id=77)
    assert normalize_signal_record(SIGNAL, CONTEXT)["huntress"]["account_id"] is None
    assert normalize_signal_record(SIGNAL, with_account)["huntress"]["account_id"] == 77
    assert normalize_signal_record({**SIGNAL, "account_id": 5}, with_account)["huntress"]["account_id"] == 5
    assert normalize_external_port_record(PORT, with_account)["huntress"]["account_id"] == 77
    assert normalize_identity_record(IDENTITY, with_account)["huntress"]["account_id"] == 4242
    # incident rows never take the context's account (their alert ids must not change)
    row = normalize_incident(json.dumps({**INCIDENT, "account_id": None}), with_account)
    assert row["huntress"]["account_id"] is None


def test_organization_comes_from_the_field_else_the_embedded_object() -> None:
    assert (
        normalize_signal_record({**SIGNAL, "organization_id": 9}, CONTEXT)["huntress"]["organization_id"] == 9
    )
    huntress = normalize_identity_record({**IDENTITY, "organization": {"id": "12"}}, CONTEXT)["huntress"]
    assert (huntress["organization_id"], huntress["organization_name"]) == (12, None)


@pytest.mark.parametrize(
    ("details", "column", "values"),
    [
        ({"sample_event": {"user": "jdoe"}}, "users", ["jdoe"]),
        ({"actor": {"user": {"name": "CORP\\admin2"}}}, "users", ["CORP\\admin2"]),
        ({"user": {"display_name": "Jane Roe"}}, "users", ["Jane Roe"]),
        ({"user_principal_name": "Backup App"}, "users", ["Backup App"]),
        ({"email": "Jane Roe <Jane@Example.com>"}, "emails", ["jane@example.com"]),
        ({"email": "no address"}, "emails", []),
        ({"ip_address": "2001:DB8:0::1"}, "ipv6", ["2001:db8::1"]),
        ({"src_ip": "198.51.100.7"}, "ipv4", ["198.51.100.7"]),
        ({"ip_address": "not an address"}, "ipv4", []),
        ({"hash": "A" * 40}, "sha1", ["a" * 40]),
        ({"sha256": "a" * 40}, "sha256", []),
        ({"md5": "z" * 32}, "md5", []),
        ({"file_rename_target": "/tmp/x.locked"}, "files", ["/tmp/x.locked"]),
        ({"canary_file_path": "C:\\Users\\a\\~hc.docx"}, "files", ["C:\\Users\\a\\~hc.docx"]),
        ({"url": "login-org1.top/abc"}, "urls", ["login-org1.top/abc"]),
        ({"url": "login-org1.top/abc"}, "domains", ["login-org1.top"]),
        ({"url": "hxxps://evil[.]top/x."}, "urls", ["https://evil.top/x"]),
        ({"url": "https://198.51.100.9/x"}, "domains", []),
        ({"task_name": "\\Microsoft\\Windows\\Sync92"}, "scheduled_tasks", ["\\Microsoft\\Windows\\Sync92"]),
        ({"service_name": "EvilSvc"}, "services", ["EvilSvc"]),
        ({"registry_key": ""}, "registry_keys", []),
        ({"process_name": ["a.exe", None, 3, {"x": "b.exe"}]}, "processes", ["a.exe", "b.exe"]),
        ({"notes": "dropped 0cc175b9c0f1b6a831c399e269772661 from evil[.]com"}, "domains", ["evil.com"]),
        ({"notes": "dropped 0cc175b9c0f1b6a831c399e269772661"}, "md5", ["0cc175b9c0f1b6a831c399e269772661"]),
        (["C:\\Temp\\a.exe", {"username": "x"}], "users", ["x"]),
        ("free text 10.1.2.3", "ipv4", ["10.1.2.3"]),
        (None, "users", []),
        (42, "users", []),
    ],
)
def test_details_map_into_entity_columns(details, column, values) -> None:
    found = detail_entities(details)
    assert list(found) == list(ENTITY_COLUMNS)
    assert found[column] == values


def test_details_deeper_than_the_recursion_limit_are_walked() -> None:
    details: object = {"src_ip": "198.51.100.7"}
    for _ in range(5_000):
        details = {"next": details}
    assert detail_entities(details)["ipv4"] == ["198.51.100.7"]


def test_every_key_column_is_a_column_or_resolved_by_value() -> None:
    assert set(KEY_COLUMNS.values()) <= {*ENTITY_COLUMNS, "ip", "url", "email", "hash"}


@pytest.mark.parametrize("msg_class", MSG_CLASSES)
def test_invalid_records_are_reported_and_skipped(msg_class) -> None:
    good = json.dumps(SAMPLES[msg_class])
    raws = [good, "[]", "null", b"not json", '"text"', good.encode(), '{"a":' * 5_000 + "1" + "}" * 5_000]
    reported: list[tuple[int, str]] = []
    table = normalize_records(msg_class, raws, CONTEXT, on_invalid=lambda i, why: reported.append((i, why)))
    assert table.schema == PARSED_SYSLOG_SCHEMA and table.num_rows == 2
    assert [index for index, _ in reported] == [1, 2, 3, 4, 6]
    assert all(" record " in why and "not json" not in why for _, why in reported)
    assert [h["id"] for h in table.column("huntress").to_pylist()] == [SAMPLES[msg_class]["id"]] * 2
    with pytest.raises(InvalidRecord, match="record is a JSON list"):
        normalize_records(msg_class, raws, CONTEXT)


def test_a_normalizer_failure_is_reported_not_raised(monkeypatch) -> None:
    def broken(record, ctx):
        raise KeyError("secret field value")

    monkeypatch.setitem(RECORD_NORMALIZERS, SIGNAL_CLASS, broken)
    reported: list[tuple[int, str]] = []
    table = normalize_records(
        SIGNAL_CLASS, ["{}"], CONTEXT, on_invalid=lambda i, why: reported.append((i, why))
    )
    assert table.num_rows == 0
    assert reported == [(0, "signal record could not be normalized (KeyError)")]
    with pytest.raises(KeyError):
        normalize_records(SIGNAL_CLASS, ["{}"], CONTEXT)


def test_unknown_class_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown msg_class 'huntress_thing'"):
        normalize_records("huntress_thing", [], CONTEXT)


def test_incident_and_agent_batches_are_the_existing_fast_paths() -> None:
    incidents = [json.dumps({**INCIDENT, "id": n}) for n in range(3)]
    agents = [json.dumps({**AGENT, "id": n}) for n in range(3)]
    assert normalize_records(INCIDENT_CLASS, incidents, CONTEXT).equals(
        normalize_incidents(incidents, CONTEXT)
    )
    assert normalize_records(AGENT_CLASS, iter(agents), CONTEXT).equals(normalize_agents(agents, CONTEXT))
    with pytest.raises(InvalidRecord, match="agent record is a JSON NoneType"):
        normalize_agents([agents[0], "null"], CONTEXT)  # Arrow would read `null` as a row of nulls


def test_every_class_is_queryable_in_one_table() -> None:
    tables = [normalize_records(cls, [json.dumps(SAMPLES[cls])], CONTEXT) for cls in MSG_CLASSES]
    con = duckdb.connect()
    con.register("rows", rows_to_table(row for table in tables for row in table.to_pylist()))
    assert con.execute("""
        SELECT msg_class, msg_origin.category, huntress.organization_id, huntress.organization_ids
        FROM rows ORDER BY msg_class""").fetchall() == [
        ("huntress_agent", "endpoint", 4, None),
        ("huntress_escalation", "mdr", None, [501, 502]),
        ("huntress_external_port", "exposure", None, [501, 505]),
        ("huntress_identity", "identity", 504, None),
        ("huntress_incident_report", "mdr", 4, None),
        ("huntress_organization", "inventory", 505, None),
        ("huntress_platform_action", "platform", None, [501, 502]),
        ("huntress_signal", "edr", 504, None),
    ]
    assert con.execute(
        "SELECT huntress.entity_type, processes, users FROM rows WHERE msg_class = 'huntress_signal'"
    ).fetchall() == [("agent", ["C:\\Windows\\System32\\whoami.exe"], ["jdoe"])]


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
_KEYS = sorted(
    {key for sample in SAMPLES.values() for key in sample}
    | set(PARSED_SYSLOG_SCHEMA.field("huntress").type.names)
    | {"account", "organization", "organizations", "tenant", "entity", "details", *KEY_COLUMNS}
)
_OBJECTS = st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), _JSON_VALUES, max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MSG_CLASSES), _OBJECTS, _OBJECTS)
def test_no_normalizer_raises_on_any_json_object(msg_class, record, details) -> None:
    """Any JSON object, in any field (nested objects too: `details`, `organization`, ...)."""
    record = {**record, "details": details} if msg_class == SIGNAL_CLASS else record
    raw = json.dumps(record)
    row = normalize_json(msg_class, raw, CONTEXT)
    assert row["msg_class"] == msg_class
    table = normalize_records(msg_class, [raw, json.dumps({**SAMPLES[msg_class], **record})], CONTEXT)
    assert table.schema == PARSED_SYSLOG_SCHEMA and table.num_rows == 2
