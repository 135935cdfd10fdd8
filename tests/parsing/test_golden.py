"""Golden cases, in the style of security-content repos: `tests/golden/<case>/input.json` is a raw API object
as Huntress serves it, `expected.json` the reviewed parsed_syslog row in JSON form (timestamps as ISO-8601
UTC). A case's name starts with its class (`CASE_CLASSES`: `agent_*` are agents, `signal_*` signals, ...,
`incident_*` incident reports). After a deliberate change, regenerate with
`UPDATE_GOLDEN=1 pytest tests/parsing/test_golden.py` and review the diff of the expected files.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from huntress_dagster.parsing import (
    AGENT_CLASS,
    ESCALATION_CLASS,
    EXTERNAL_PORT_CLASS,
    IDENTITY_CLASS,
    INCIDENT_CLASS,
    MSG_CLASSES,
    ORGANIZATION_CLASS,
    PARSED_SYSLOG_SCHEMA,
    PLATFORM_ACTION_CLASS,
    SIGNAL_CLASS,
    ParseContext,
    normalize_json,
    normalize_records,
    rows_to_table,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(path for path in GOLDEN.iterdir() if (path / "input.json").is_file())
CONTEXT = ParseContext(
    tenantid="tenant-1", tenant_name="Tenant One", host_url="api.huntress.io", account_subdomain="acme"
)


def as_json(value):
    """A row in JSON form: datetimes as ISO-8601 with Z, Arrow's map pairs back to an object."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {key: as_json(item) for key, item in value}
        return [as_json(item) for item in value]
    return value


# case name prefix -> msg_class (longest prefixes first: `platform_action_` before any shorter one)
CASE_CLASSES = {
    "incident_": INCIDENT_CLASS,
    "agent_": AGENT_CLASS,
    "signal_": SIGNAL_CLASS,
    "escalation_": ESCALATION_CLASS,
    "platform_action_": PLATFORM_ACTION_CLASS,
    "identity_": IDENTITY_CLASS,
    "external_port_": EXTERNAL_PORT_CLASS,
    "organization_": ORGANIZATION_CLASS,
}


def case_class(case: Path) -> str:
    return next(msg_class for prefix, msg_class in CASE_CLASSES.items() if case.name.startswith(prefix))


def normalize(case: Path) -> dict:
    return normalize_json(case_class(case), (case / "input.json").read_text(encoding="utf-8"), CONTEXT)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden_row(case: Path) -> None:
    row = as_json(normalize(case))
    expected_path = case / "expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(row, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert row == json.loads(expected_path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden_row_round_trips_through_the_schema(case: Path) -> None:
    row = normalize(case)
    table = rows_to_table([row])
    assert table.schema == PARSED_SYSLOG_SCHEMA
    assert as_json(table.to_pylist()[0]) == as_json(row)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden_row_is_the_batch_row(case: Path) -> None:
    table = normalize_records(case_class(case), [(case / "input.json").read_bytes()], CONTEXT)
    assert as_json(table.to_pylist()) == [as_json(normalize(case))]


def test_every_kind_of_case_is_covered() -> None:
    names = {case.name for case in CASES}
    assert all(any(case.name.startswith(prefix) for prefix in CASE_CLASSES) for case in CASES)
    assert set(CASE_CLASSES.values()) == set(MSG_CLASSES)
    assert {
        "signal_process_insights",
        "signal_managed_itdr",
        "signal_mde_detection",
        "signal_antivirus_unknown_fields",
        "signal_nulls",
        "signal_wrong_types",
        "escalation_multi_org",
        "escalation_nulls",
        "escalation_wrong_types",
        "platform_action_integration",
        "platform_action_nulls_and_wrong_types",
        "identity_full",
        "identity_nulls_and_unknown_fields",
        "identity_wrong_types",
        "external_port_full",
        "external_port_nulls_and_wrong_types",
        "organization_full",
        "organization_nulls_and_wrong_types",
    } <= names
    assert {
        "incident_nulls",
        "incident_flat_remediations",
        "incident_fourteen_remediations",
        "incident_unicode_entities",
        "incident_script_body",
        "incident_empty_body",
        "incident_unknown_fields",
        "incident_vendor_links",
        "signal_vendor_links",
        "agent_full",
    } <= names


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_no_golden_row_names_the_vendor_as_an_indicator(case: Path) -> None:
    """The portal, API, support site and mailboxes of Huntress are no indicators (see `exclusions`)."""
    row = normalize(case)
    exclusion = CONTEXT.indicator_exclusion
    assert not any(exclusion.excludes_domain(domain) for domain in row["domains"] or ())
    assert not any(exclusion.excludes_url(url) for url in row["urls"] or ())
    assert not any(
        exclusion.excludes_address(value) for value in (row["emails"] or []) + (row["users"] or [])
    )
