"""Golden cases, in the style of security-content repos: `tests/golden/<case>/input.json` is a raw API object
as Huntress serves it, `expected.json` the reviewed parsed_syslog row in JSON form (timestamps as ISO-8601
UTC). `agent_*` cases are agents, the others incident reports. After a deliberate change, regenerate with
`UPDATE_GOLDEN=1 pytest tests/parsing/test_golden.py` and review the diff of the expected files.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from huntress_dagster.parsing import (
    PARSED_SYSLOG_SCHEMA,
    ParseContext,
    normalize_agent,
    normalize_incident,
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


def normalize(case: Path) -> dict:
    raw = (case / "input.json").read_text(encoding="utf-8")
    return (normalize_agent if case.name.startswith("agent_") else normalize_incident)(raw, CONTEXT)


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


def test_every_kind_of_case_is_covered() -> None:
    names = {case.name for case in CASES}
    assert {
        "incident_nulls",
        "incident_flat_remediations",
        "incident_fourteen_remediations",
        "incident_unicode_entities",
        "incident_script_body",
        "incident_empty_body",
        "incident_unknown_fields",
        "agent_full",
    } <= names
