"""User Inventory Info events of `identities` rows, validated like test_ocsf: against the official compiled
OCSF schema of the pinned version from the `ocsf-json-schema` package (offline), with `jsonschema`
(Draft 2020-12; required attributes, types, enums and patterns checked, unknown attributes are errors)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from huntress_dagster.parsing import ocsf, ocsf_inventory
from huntress_dagster.parsing.ocsf import _compact

_SCHEMAS = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=ocsf.OCSF_VERSION))
# The events claim no profile (metadata.profiles is absent), so the class is checked without any: an
# attribute a profile would add (a device, say) is an error too.
USER_INVENTORY = jsonschema.Draft202012Validator(_SCHEMAS.get_class_schema("user_inventory", []))

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def identity(**changes: object) -> dict:
    row = {
        "tenantid": "tenant-1",
        "identity_id": 501,
        "account_id": 7,
        "organization_id": 4,
        "organization_name": "Acme Corp",
        "username": "jane.doe@acme.example.com",
        "email": "jane.doe@acme.example.com",
        "enabled": True,
        "mfa_enabled": False,
        "risk_level": "high",
        "risk_state": "atRisk",
        "billable": True,
        "external": False,
        "enabled_products": ["itdr", "edr"],
        "tenant_id": "6f1c2b9e-0d4a-4a57-9d2b-3e8c1f0a7b11",
        "tenant_type": "microsoft_365",
        "created_at": T0,
        "updated_at": T0 + timedelta(days=2),
        "first_seen_at": T0 + timedelta(hours=1),
        "last_seen_at": T0 + timedelta(days=3),
        "snapshots_seen": 12,  # an identities column the event does not read
        "in_latest_snapshot": True,
        "mfa_changed_at": T0 + timedelta(days=1),
        "risk_changed_at": None,
    }
    return {**row, **changes}


NONE_HEAVY = {column: None for column in ocsf_inventory.USER_INVENTORY_INFO_INPUTS} | {"identity_id": 9}
ROWS = [
    identity(),
    identity(
        identity_id=502,
        username="bob.roe@google.example.com",
        email="bob.roe@google.example.com",
        mfa_enabled=True,
        risk_level="none",
        risk_state="none",
        tenant_id="C03abc123",
        tenant_type="google_workspace",
        in_latest_snapshot=False,
    ),
    identity(  # a guest: Microsoft 365 username, e-mail of another domain
        identity_id=503,
        username="ann.lee_partner-3.example.net#EXT#@acme.example.com",
        email="ann.lee@partner-3.example.net",
        external=True,
        billable=False,
        risk_level="medium",
        risk_changed_at=T0 + timedelta(days=2),
    ),
    identity(risk_level="hidden", tenant_type="okta", email="not an address", enabled_products=[]),
    identity(last_seen_at=datetime(2025, 3, 4, 9, 30, tzinfo=timezone(timedelta(hours=-5)))),
    NONE_HEAVY,
    {column: None for column in ocsf_inventory.USER_INVENTORY_INFO_INPUTS},  # not even a key
    {},  # no columns at all
]


@pytest.mark.parametrize("row", ROWS, ids=range(len(ROWS)))
def test_every_identity_is_a_valid_user_inventory_info(row: dict) -> None:
    event = ocsf_inventory.user_inventory_info(row)
    USER_INVENTORY.validate(event)
    assert (event["class_uid"], event["category_uid"], event["activity_id"], event["type_uid"]) == (
        5003,
        5,
        2,
        500302,
    )
    assert event["metadata"]["version"] == ocsf.OCSF_VERSION
    assert event["metadata"]["product"] == {"name": "Huntress Managed ITDR", "vendor_name": "Huntress"}
    json.dumps(event)  # plain JSON: no datetimes or other Python objects inside


def test_user_inventory_info_content() -> None:
    event = ocsf_inventory.user_inventory_info(identity())
    assert event["time"] == 1741089600000  # last_seen_at, epoch milliseconds
    assert event["metadata"]["uid"] == "501" and event["metadata"]["tenant_uid"] == "tenant-1"
    assert event["user"] == {
        "uid": "501",
        "name": "jane.doe@acme.example.com",
        "email_addr": "jane.doe@acme.example.com",
        "has_mfa": False,
        "risk_level": "High",
        "risk_level_id": 3,
        "account": {"uid": "6f1c2b9e-0d4a-4a57-9d2b-3e8c1f0a7b11", "type": "M365 Tenant", "type_id": 17},
        "org": {"uid": "4", "name": "Acme Corp"},
    }
    assert event["unmapped"] == {
        "enabled": True,
        "risk_state": "atRisk",
        "billable": True,
        "external": False,
        "enabled_products": ["itdr", "edr"],
        "tenant_type": "microsoft_365",
        "account_id": 7,
        "in_latest_snapshot": True,
        "created_time": 1740830400000,
        "modified_time": 1741003200000,
        "first_seen_time": 1740834000000,
        "mfa_changed_time": 1740916800000,
    }
    assert "device" not in event and "actor" not in event


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("none", (0, "Info")),
        ("low", (1, "Low")),
        ("medium", (2, "Medium")),
        ("high", (3, "High")),
        ("HIGH", (3, "High")),
        ("hidden", (99, "hidden")),  # a label OCSF has no level for: Other, carrying the label
    ],
)
def test_risk_levels(level: str, expected: tuple) -> None:
    user = ocsf_inventory.user_inventory_info(identity(risk_level=level))["user"]
    assert (user["risk_level_id"], user["risk_level"]) == expected


def test_tenants_are_the_users_accounts() -> None:
    def account(**changes: object) -> dict | None:
        return ocsf_inventory.user_inventory_info(identity(**changes))["user"].get("account")

    assert account(tenant_type="google_workspace", tenant_id="C03abc") == {
        "uid": "C03abc",
        "type": "Google Workspace",
        "type_id": 15,
    }
    assert account(tenant_type="okta", tenant_id="x1") == {"uid": "x1", "type": "okta", "type_id": 99}
    assert account(tenant_type=None, tenant_id="x1") == {"uid": "x1"}
    assert account(tenant_type="microsoft_365", tenant_id=None) is None  # OCSF wants an account identified


def test_none_heavy_rows() -> None:
    event = ocsf_inventory.user_inventory_info(NONE_HEAVY)
    assert event["user"] == {"uid": "9"}
    assert "unmapped" not in event
    assert isinstance(event["time"], int)  # no source time at all: the processing time, as OCSF requires one
    assert ocsf_inventory.user_inventory_info({})["user"] == {"name": "unknown"}
    # no username: the e-mail (the sign-in name of both identity providers) names the user
    unnamed = ocsf_inventory.user_inventory_info(identity(username=None))
    assert unnamed["user"]["name"] == "jane.doe@acme.example.com"


def test_an_address_outside_email_t_stays_unmapped() -> None:
    event = ocsf_inventory.user_inventory_info(identity(email="jane.doe@localhost", username=None))
    USER_INVENTORY.validate(event)
    assert "email_addr" not in event["user"] and event["unmapped"]["email"] == "jane.doe@localhost"


def test_time_prefers_last_seen_then_updated_created_first_seen() -> None:
    def time_of(**changes: object) -> int:
        return ocsf_inventory.user_inventory_info(identity(**changes))["time"]

    assert time_of() == 1741089600000
    assert time_of(last_seen_at=None) == 1741003200000
    assert time_of(last_seen_at=None, updated_at=None) == 1740830400000
    assert time_of(last_seen_at=None, updated_at=None, created_at=None) == 1740834000000


def test_the_validator_catches_mistakes() -> None:
    event = ocsf_inventory.user_inventory_info(identity())
    for broken in (
        {k: v for k, v in event.items() if k != "user"},
        {**event, "user": {"has_mfa": True}},  # a user must be identified
        {**event, "user": {**event["user"], "email_addr": "not an address"}},
        {**event, "user": {**event["user"], "risk_level_id": 7}},
        {**event, "device": {"hostname": "laptop01"}},  # the host profile is not claimed
        {**event, "not_an_ocsf_attribute": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            USER_INVENTORY.validate(broken)


def test_events_fit_their_arrow_schema_losslessly() -> None:
    events = [ocsf_inventory.user_inventory_info(row) for row in ROWS]
    table = ocsf.to_table(events, ocsf_inventory.USER_INVENTORY_INFO_SCHEMA)
    assert table.schema == ocsf_inventory.USER_INVENTORY_INFO_SCHEMA and table.num_rows == len(events)
    assert [_compact(row) for row in table.to_pylist()] == events  # every attribute has its column


def test_inputs_are_all_it_reads() -> None:
    row = {**ROWS[2], "risk_changed_at": T0}  # username and e-mail differ
    only_inputs = {column: row[column] for column in ocsf_inventory.USER_INVENTORY_INFO_INPUTS}
    assert ocsf_inventory.user_inventory_info(only_inputs) == ocsf_inventory.user_inventory_info(row)
    for column in ocsf_inventory.USER_INVENTORY_INFO_INPUTS:  # and each input shows in the event
        without = {**only_inputs, column: None}
        assert ocsf_inventory.user_inventory_info(without) != ocsf_inventory.user_inventory_info(
            only_inputs
        ), column


def test_no_ocsf_class_of_the_pinned_version_holds_open_ports() -> None:
    """Why `external_ports` has no OCSF form: the device of the pinned version has no port attribute (its
    network_interface gets `open_ports` in 1.6.0, the home for exposures once the project moves up)."""
    device = _SCHEMAS.get_class_schema("inventory_info", ["host"])["$defs"]
    assert not any("port" in name for name in device["device"]["properties"])
    assert not any("port" in name for name in device["network_interface"]["properties"])


_MOMENT = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
_TEXT = st.text(max_size=40)
_TYPED = {
    "tenantid": _TEXT,
    "identity_id": st.integers(min_value=0, max_value=2**63 - 1),
    "account_id": st.integers(min_value=0, max_value=2**63 - 1),
    "organization_id": st.integers(min_value=0, max_value=2**63 - 1),
    "organization_name": _TEXT,
    "username": _TEXT,
    "email": _TEXT | st.emails(),
    "enabled": st.booleans(),
    "mfa_enabled": st.booleans(),
    "risk_level": st.sampled_from(["none", "low", "medium", "high"]) | _TEXT,
    "risk_state": _TEXT,
    "billable": st.booleans(),
    "external": st.booleans(),
    "enabled_products": st.lists(_TEXT, max_size=3),
    "tenant_id": _TEXT,
    "tenant_type": st.sampled_from(["microsoft_365", "google_workspace"]) | _TEXT,
    "created_at": _MOMENT,
    "updated_at": _MOMENT,
    "first_seen_at": _MOMENT,
    "last_seen_at": _MOMENT,
    "in_latest_snapshot": st.booleans(),
    "mfa_changed_at": _MOMENT,
    "risk_changed_at": _MOMENT,
}
_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=2)
    ),
    max_leaves=6,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={column: st.none() | kind for column, kind in _TYPED.items()}))
def test_identities_of_any_column_values_stay_valid(row: dict) -> None:
    event = ocsf_inventory.user_inventory_info(row)
    USER_INVENTORY.validate(event)
    ocsf.to_table([event], ocsf_inventory.USER_INVENTORY_INFO_SCHEMA)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(ocsf_inventory.USER_INVENTORY_INFO_INPUTS), _ANY))
def test_identities_with_mistyped_values_stay_valid(row: dict) -> None:
    USER_INVENTORY.validate(ocsf_inventory.user_inventory_info(row))
