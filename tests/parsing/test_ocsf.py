"""OCSF events validated against the official compiled OCSF schema of the pinned version, as shipped by the
`ocsf-json-schema` package (offline), with `jsonschema` (Draft 2020-12; unknown attributes are errors)."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from huntress_dagster.parsing import (
    AGENT_CLASS,
    ParseContext,
    asset_fields,
    host_context,
    normalize_agent,
    normalize_incident,
    normalize_records,
    ocsf,
    ocsf_devices,
    ocsf_findings,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CONTEXT = ParseContext("tenant-1", "Tenant One", "api.huntress.io", "acme")
_SCHEMAS = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=ocsf.OCSF_VERSION))
DETECTION_FINDING = jsonschema.Draft202012Validator(_SCHEMAS.get_class_schema("detection_finding", ["host"]))
INVENTORY_INFO = jsonschema.Draft202012Validator(_SCHEMAS.get_class_schema("inventory_info", ["host"]))


def golden_rows(prefix: str) -> list[dict]:
    normalize = normalize_agent if prefix == "agent_" else normalize_incident
    return [
        normalize((case / "input.json").read_text(encoding="utf-8"), CONTEXT)
        for case in sorted(GOLDEN.glob(f"{prefix}*"))
    ]


def alert_with_host(incident_row: dict, agent_row: dict | None) -> dict:
    return {**incident_row, **(host_context(asset_fields(agent_row)) if agent_row else {})}


@pytest.mark.parametrize("with_host", [True, False])
def test_every_golden_incident_is_a_valid_detection_finding(with_host: bool) -> None:
    agent_row = golden_rows("agent_")[0] if with_host else None
    for row in golden_rows("incident_"):
        event = ocsf.detection_finding(alert_with_host(row, agent_row))
        DETECTION_FINDING.validate(event)
        assert (event["class_uid"], event["category_uid"]) == (2004, 2)
        assert event["type_uid"] == 200400 + event["activity_id"]
        assert event["metadata"]["version"] == ocsf.OCSF_VERSION
        assert event["finding_info"]["uid"] == row["alert_uid"]


def test_detection_finding_content() -> None:
    incident = next(row for row in golden_rows("incident_") if row["huntress"]["id"] == 1)
    agent = golden_rows("agent_")[0]
    event = ocsf.detection_finding(alert_with_host(incident, agent))
    assert event["activity_id"] == 2  # updated after creation, still open
    assert (event["severity_id"], event["severity"], event["status_id"], event["status"]) == (
        4,
        "High",
        1,
        "New",
    )
    assert event["time"] == 1646168400000  # updated_at, epoch milliseconds
    assert event["finding_info"]["src_url"] == "https://acme.huntress.io/org/4/incident_reports/1"
    assert event["finding_info"]["types"] == ["footholds"]
    assert event["device"] == {
        "uid": "12",
        "hostname": "laptop01",
        "ip": "146.134.139.9",
        "mac": "7c:a7:b0:16:2f:78",
        "type_id": 0,
        "os": {"name": "Windows 8 Pro", "type_id": 100},
    }
    observed = {(o["type_id"], o["value"]) for o in event["observables"]}
    assert {
        (2, "185.220.101.34"),
        (1, "update-check.top"),
        (4, "ACME\\jsmith"),
        (1, "laptop01"),
        (8, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"),
        (2, "198.51.100.42"),
    } <= observed


def test_closed_incident_is_a_close_activity() -> None:
    closed = next(row for row in golden_rows("incident_") if row["huntress"]["status"] == "closed")
    event = ocsf.detection_finding(closed)
    assert (event["activity_id"], event["type_uid"], event["is_alert"], event["status_id"]) == (
        3,
        200403,
        False,
        4,
    )


def test_every_golden_agent_is_a_valid_device_inventory_info() -> None:
    for row in golden_rows("agent_"):
        event = ocsf.device_inventory_info(row)
        INVENTORY_INFO.validate(event)
        assert (event["class_uid"], event["category_uid"], event["activity_id"], event["type_uid"]) == (
            5001,
            5,
            2,
            500102,
        )
    full = ocsf.device_inventory_info(golden_rows("agent_")[0])
    assert full["device"]["os"] == {"name": "Windows 8 Pro", "type_id": 100, "build": "19044"}
    assert full["device"]["groups"] == [{"name": "Server"}, {"name": "Production"}]
    assert full["unmapped"]["defender_status"] == "Healthy"


def test_the_validator_catches_mistakes() -> None:
    event = ocsf.device_inventory_info(golden_rows("agent_")[0])
    for broken in (
        {k: v for k, v in event.items() if k != "device"},
        {**event, "severity_id": 42},
        {**event, "not_an_ocsf_attribute": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            INVENTORY_INFO.validate(broken)


def test_events_fit_their_arrow_schemas() -> None:
    findings = [ocsf.detection_finding(row) for row in golden_rows("incident_")]
    table = ocsf.to_table(findings, ocsf.DETECTION_FINDING_SCHEMA)
    assert table.schema == ocsf.DETECTION_FINDING_SCHEMA and table.num_rows == len(findings)
    inventory = ocsf.to_table(
        [ocsf.device_inventory_info(row) for row in golden_rows("agent_")], ocsf.DEVICE_INVENTORY_INFO_SCHEMA
    )
    assert inventory.column("device").to_pylist()[0]["hostname"] == "laptop01"
    json.dumps(findings)  # plain JSON: no datetimes or other Python objects inside


_ALERT_VALUES = {  # per alert: what the column-wise form decides itself, and what it hands to Python
    "hostname": st.sampled_from([None, "", "ws-01"]),
    "host_external_ip": st.sampled_from([None, "", "not an ip", "203.0.113.9", "2001:DB8::1"]),
    "host_ipv4": st.sampled_from([None, "10.0.0.7", "10.0.0.07", "::1"]),
    "host_os": st.sampled_from([None, "", "Windows Server 2022", "macOS 14"]),
    "host_mac_addresses": st.none() | st.lists(st.sampled_from(["00:1a:2b:3c:4d:5e", "nope", None]), max_size=2),
    "users": st.none() | st.lists(st.none() | st.text(max_size=5), max_size=3),
    "severity_id": st.sampled_from([None, 0, 3, 5, 99]),
    "status_id": st.sampled_from([None, 0, 1, 4, 99]),
    "security_product": st.sampled_from([None, "", "Huntress Managed EDR"]),
    "alert_uid": st.sampled_from([None, "", "a-1"]),
    "portal_url": st.sampled_from([None, "https://acme.huntress.io/incident_reports/1"]),
}
_INCIDENT_VALUES = {  # per alert, in its `huntress` object
    "id": st.sampled_from([None, 1, 2]),
    "status": st.sampled_from([None, "sent", "closed", "dismissed", "partner_dismissed", "odd"]),
    "subject": st.sampled_from([None, "", "Ransomware"]),
    "agent_id": st.sampled_from([None, 17]),
    "platform": st.sampled_from([None, "", "windows", "linux"]),
    "indicator_types": st.none() | st.lists(st.sampled_from(["footholds", None]), max_size=2),
    "created_at": st.sampled_from([None, datetime(2026, 11, 1, tzinfo=UTC)]),
    "updated_at": st.sampled_from([None, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC),
                                   datetime(2026, 11, 2, 3, 4, 5, 6789, tzinfo=UTC)]),  # before, at, after
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 100), st.fixed_dictionaries({}, optional=_ALERT_VALUES),
                          st.fixed_dictionaries({}, optional=_INCIDENT_VALUES)),
                min_size=1, max_size=6))
def test_findings_of_a_batch_equal_the_row_by_row_ones(cases: list) -> None:
    """The batch form builds every attribute column-wise: same values, same nulls, same dropped objects."""
    agent = golden_rows("agent_")[0]
    incidents = [row for row in golden_rows("incident_")  # (with no time at all, `time` is the processing time)
                 if any(row["huntress"].get(key) for key in ("updated_at", "created_at", "status_updated_at"))]
    alerts = []
    for index, alert_values, incident_values in cases:
        alert = alert_with_host(incidents[index % len(incidents)], agent if index % 2 else None)
        alert.update(alert_values)
        alert["huntress"] = {**alert["huntress"], **incident_values}
        if not any(alert["huntress"].get(key) for key in ("updated_at", "created_at", "status_updated_at")):
            alert["huntress"]["status_updated_at"] = datetime(2026, 11, 3, tzinfo=UTC)
        alerts.append({column: alert.get(column) for column in ocsf.DETECTION_FINDING_INPUTS})
    expected = ocsf.to_table([ocsf.detection_finding(alert) for alert in alerts], ocsf.DETECTION_FINDING_SCHEMA)
    batch = pa.RecordBatch.from_pylist(alerts)
    typed = {column: pa.list_(pa.string()) for column, _, _ in ocsf.OBSERVABLE_TYPES}
    typed.update(hostname=pa.string(), host_external_ip=pa.string())  # as in alerts, where no value is all-null
    batch = pa.RecordBatch.from_arrays(
        [batch.column(name).cast(typed[name]) if name in typed else batch.column(name) for name in batch.schema.names],
        batch.schema.names)
    assert ocsf_findings.detection_findings(batch).equals(expected)
    # a slice (an array offset, as a filtered or chunked batch may have)
    assert ocsf_findings.detection_findings(batch.slice(1)).equals(expected.slice(1))


_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=2)
    ),
    max_leaves=6,
)
_INCIDENT_FIELDS = [
    "severity",
    "status",
    "platform",
    "subject",
    "summary",
    "indicator_types",
    "agent_id",
    "organization_id",
    "created_at",
    "updated_at",
    "body",
]
_AGENT_FIELDS = [
    "hostname",
    "ipv4_address",
    "external_ip",
    "mac_addresses",
    "os",
    "platform",
    "tags",
    "arch",
    "serial_number",
    "version",
    "created_at",
    "updated_at",
    "last_callback_at",
    "domain_name",
]


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(_INCIDENT_FIELDS), _ANY),
    st.dictionaries(st.sampled_from(_AGENT_FIELDS), _ANY),
)
def test_events_from_arbitrary_field_values_stay_valid(incident: dict, agent: dict) -> None:
    agent_row = normalize_agent(json.dumps({"id": 3, **agent}), CONTEXT)
    INVENTORY_INFO.validate(ocsf.device_inventory_info(agent_row))
    incident_row = normalize_incident(json.dumps({"id": 9, **incident}), CONTEXT)
    DETECTION_FINDING.validate(ocsf.detection_finding(alert_with_host(incident_row, agent_row)))


_DEVICE_VALUES = {  # what the column-wise form decides itself, and what it hands to Python
    "ipv4_address": st.sampled_from(["10.0.0.7", "10.0.0.07", "256.1.1.1", "2001:DB8::1", "", " 10.0.0.7"]),
    "mac_addresses": st.lists(st.sampled_from(["00:1A:2b:3C:4d:5E", "00-1a-2b-3c-4d-5e", "00:1a", "", None]),
                              max_size=3),
    "os": st.sampled_from(["Windows Server 2019", "SERVER", "Windows 11", "", "Ṡerver", "ſerver", "İServer"]),
    "platform": st.sampled_from(["windows", "darwin", "linux", "haiku", ""]),
    "tags": st.lists(st.sampled_from(["Server", "", "Production"]) | st.none(), max_size=3),
    "updated_at": st.sampled_from(["2026-11-30T12:00:00.123456Z", "2026-11-30T12:00:00Z", "1969-12-31T23:59:59.9995Z"]),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(_AGENT_FIELDS + ["defender_status", "tamper_protection_actual"]),
                                _ANY) | st.fixed_dictionaries({}, optional=_DEVICE_VALUES), min_size=1, max_size=8))
def test_device_inventory_infos_of_a_batch_equal_the_row_by_row_ones(agents: list[dict]) -> None:
    """The batch form builds each attribute column-wise: same values, same nulls, same dropped objects."""
    raws = [json.dumps({"id": index, **agent}) for index, agent in enumerate(agents)]
    parsed = normalize_records(AGENT_CLASS, raws, CONTEXT)
    batch = parsed.select(["tenantid", "huntress"]).combine_chunks().to_batches()[0]
    before = ocsf._millis(datetime.now(UTC))
    rows = [ocsf.device_inventory_info(row) for row in batch.to_pylist()]
    expected = ocsf.to_table(rows, ocsf.DEVICE_INVENTORY_INFO_SCHEMA)
    for events in (ocsf_devices.device_inventory_infos(batch), ocsf_devices.device_inventory_infos(batch.slice(1))):
        wanted = expected.slice(len(expected) - len(events))
        assert events.drop_columns(["time"]).equals(wanted.drop_columns(["time"]))
        after = ocsf._millis(datetime.now(UTC))
        for got, want, agent in zip(events.column("time").to_pylist(), wanted.column("time").to_pylist(),
                                    batch.slice(len(batch) - len(events)).column("huntress").to_pylist(), strict=True):
            if any(agent[name] for name in ("updated_at", "created_at", "last_callback_at")):
                assert got == want
            else:  # no time at all: the processing time, which moved on between the two
                assert before <= got <= after


def test_an_agent_with_an_empty_os_name_and_no_platform_has_no_os() -> None:
    # found by the property test above: an OCSF os needs a name, and "" is none
    agent_row = normalize_agent(json.dumps({"id": 3, "os": ""}), CONTEXT)
    event = ocsf.device_inventory_info(agent_row)
    INVENTORY_INFO.validate(event)
    assert "os" not in event["device"]


_OCTETS = st.one_of(st.integers(0, 300).map(str), st.integers(0, 9).map(lambda n: f"0{n}"),
                    st.sampled_from(["", "a", "-1", "١", " 1", "1\n"]))


@given(st.lists(_OCTETS, min_size=1, max_size=6).map(".".join)
       | st.ip_addresses().map(str) | st.text(max_size=20))
@settings(max_examples=500)
def test_ip_or_none_takes_exactly_what_ipaddress_takes_and_prints_it_as_ipaddress_does(value: str) -> None:
    # (its dotted-quad fast path must not widen or narrow what ipaddress accepts, nor change the text)
    try:
        expected = str(ipaddress.ip_address(value))
    except ValueError:
        expected = None
    assert ocsf.ip_or_none(value) == expected
