"""Body size thresholds, header facts, the simulator's body generator, and bounded memory."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huntress_dagster.parsing import (
    FULL_MAX_BYTES,
    KEEP_MAX_BYTES,
    ParseContext,
    normalize_incident,
    parse_body,
)
from huntress_dagster.parsing.body import HEADER_SCAN_CHARS, extract_header, utf8_size
from huntress_dagster.simulator.bodies import expected_entities, header_facts, render_body

INCIDENT = {
    "id": 77,
    "account_id": 5,
    "organization_id": 4,
    "agent_id": 12,
    "platform": "windows",
    "severity": "high",
    "status": "sent",
    "indicator_types": ["footholds", "mde_detections"],
    "updated_at": "2024-06-01T12:00:00Z",
}
CONTEXT = ParseContext("tenant-1", "Tenant One", "api.huntress.io", "acme")


def without_the_portal(planted: dict[str, list[str]]) -> dict[str, list[str]]:
    """What a row keeps of the generator's plant: the portal links every body carries (report and host,
    `https://<account>.huntress.io/...`) are the vendor's infrastructure, not indicators."""
    portal = [u for u in planted["urls"] if u.split("://", 1)[1].split("/", 1)[0].endswith(".huntress.io")]
    assert portal  # the generator does link to the portal
    return {
        **planted,
        "urls": [u for u in planted["urls"] if u not in portal],
        "domains": [d for d in planted["domains"] if not d.endswith(".huntress.io")],
    }


@pytest.mark.parametrize(
    ("size", "level", "kept"),
    [
        (KEEP_MAX_BYTES - 1, "full", True),
        (KEEP_MAX_BYTES, "full_body_dropped", False),
        (KEEP_MAX_BYTES + 1, "full_body_dropped", False),
        (FULL_MAX_BYTES - 1, "full_body_dropped", False),
        (FULL_MAX_BYTES, "partial", False),
        (FULL_MAX_BYTES + 1, "partial", False),
    ],
)
def test_thresholds_at_and_around_the_limits(size: int, level: str, kept: bool) -> None:
    body = render_body(11, INCIDENT, size)
    assert len(body.encode()) == size
    row = normalize_incident(json.dumps({**INCIDENT, "body": body}), CONTEXT)
    assert (row["parse_level"], row["body_size"], row["body"] is not None) == (level, size, kept)
    assert row["report_header"] == header_facts(11, INCIDENT)
    planted = without_the_portal(expected_entities(11, INCIDENT))
    for column, values in planted.items():
        assert row[column] == (None if level == "partial" else values), column


def test_threshold_counts_utf8_bytes_not_characters() -> None:
    limit = 1_000
    under_in_chars = "é" * 600  # 600 characters, 1,200 bytes
    assert (
        parse_body(under_in_chars, keep_max_bytes=limit, full_max_bytes=2 * limit).parse_level
        == "full_body_dropped"
    )
    assert parse_body(under_in_chars, keep_max_bytes=limit, full_max_bytes=1_100).parse_level == "partial"
    assert parse_body("é" * 499, keep_max_bytes=limit).parse_level == "full"


def test_thresholds_are_configurable_through_the_context() -> None:
    small = ParseContext("t", "T", "api.huntress.io", keep_max_bytes=100, full_max_bytes=200)
    body = render_body(3, INCIDENT, 5_000)
    row = normalize_incident(json.dumps({**INCIDENT, "body": body}), small)
    assert (row["parse_level"], row["body"], row["sha256"]) == ("partial", None, None)
    assert row["report_header"]["security_product"] == "Microsoft Defender for Endpoint"


def test_null_and_empty_bodies() -> None:
    empty, missing = parse_body(""), parse_body(None)
    assert (empty.parse_level, empty.body_size, empty.body) == ("full", 0, "")
    assert (missing.parse_level, missing.body_size, missing.body) == ("full", 0, None)
    assert all(values == [] for values in empty.entities.values())


def test_partial_parse_reads_only_the_header_prefix() -> None:
    header = "Incident Report: https://acme.huntress.io/org/4/incident_reports/9\n"
    late = "x" * HEADER_SCAN_CHARS + "\nOrganization: Too Late Inc\n"
    parsed = parse_body(header + late, keep_max_bytes=10, full_max_bytes=20)
    assert parsed.parse_level == "partial"
    assert parsed.header == {
        "incident_report_url": "https://acme.huntress.io/org/4/incident_reports/9",
        "host_url": None,
        "organization": None,
        "security_product": None,
    }


def test_header_prefers_the_link_target_and_decodes_entities() -> None:
    assert extract_header(
        '<b>Host</b>: <a class="x" href="https://a.huntress.io/org/1/agents/2">PC-1</a>'
        "<dt>Organization</dt><dd>Smith &amp; Sons</dd>"
    ) == {
        "incident_report_url": None,
        "host_url": "https://a.huntress.io/org/1/agents/2",
        "organization": "Smith & Sons",
        "security_product": None,
    }


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=200))
def test_utf8_size_matches_the_encoded_length(text: str) -> None:
    assert utf8_size(text) == len(text.encode("utf-8", "surrogatepass"))


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    )
)
def test_parse_body_never_raises_on_json_values(value: object) -> None:
    parsed = parse_body(value, keep_max_bytes=50, full_max_bytes=100)
    assert parsed.parse_level in {"full", "full_body_dropped", "partial"}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("size", [2_000, 9_000, 20_000])
def test_parser_recovers_what_the_generator_planted(seed: int, size: int) -> None:
    incident = {**INCIDENT, "id": 1000 + seed, "platform": ["windows", "microsoft_365"][seed % 2]}
    body = render_body(seed, incident, size)
    parsed = parse_body(body)
    assert parsed.entities == expected_entities(seed, incident)
    assert parsed.header == header_facts(seed, incident)
    # The row keeps every planted indicator but the portal links, which stay in its header.
    row = normalize_incident(json.dumps({**incident, "body": body}), CONTEXT)
    assert {column: row[column] for column in parsed.entities} == without_the_portal(parsed.entities)
    assert row["report_header"] == header_facts(seed, incident)


def test_generator_is_deterministic_exact_and_fast() -> None:
    assert render_body(5, INCIDENT, 8_000) == render_body(5, INCIDENT, 8_000)
    assert render_body(5, INCIDENT, 8_000) != render_body(6, INCIDENT, 8_000)
    started = time.perf_counter()
    body = render_body(5, INCIDENT, 5 * 1024 * 1024)
    assert time.perf_counter() - started < 0.5  # ~0.05 s here; generous for a loaded CI machine
    assert len(body.encode()) == 5 * 1024 * 1024
    assert "hxxp" in body and "[.]" in body  # some indicators are defanged


def test_generator_honours_the_simulator_context() -> None:
    context = {
        **INCIDENT,
        "portal_url": "https://sim.huntress.io/org/4/incident_reports/77",
        "organization_name": "Globex",
        "hostname": "WS-0042",
    }
    body = render_body(1, context, 3_000)
    assert header_facts(1, context)["organization"] == "Globex"
    assert parse_body(body).header["incident_report_url"] == context["portal_url"]
    assert "WS-0042" in body


def test_memory_stays_bounded_for_a_20_mb_body() -> None:
    body = render_body(2, INCIDENT, 20 * 1024 * 1024) + "é"  # non-ASCII: sizing must not copy it whole
    raw = json.dumps({**INCIDENT, "body": body}, ensure_ascii=False)
    del body
    tracemalloc.start()
    row = normalize_incident(raw, CONTEXT)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert row["parse_level"] == "partial"
    # The decoded body (2 bytes a character once it holds a non-ASCII one) is the one full-size allocation.
    assert peak < 2 * len(raw) + 16 * 2**20
