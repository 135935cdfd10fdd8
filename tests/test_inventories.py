"""Inventories from snapshot streams: organizations, identities, external ports (and agents), real Dagster runs
over real HTTP; each inventory equals the simulator's truth after changes, and alerts follow renames."""

from __future__ import annotations

import math

import pytest

from huntress_dagster.streams import EXTERNAL_PORTS, IDENTITIES, ORGANIZATIONS, SNAPSHOT_STREAMS

from .conftest import admin
from .dagster_helpers import make_pipeline, truth_records

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")

WORLD = {"identities": 700, "external_ports": 80, "escalations": 30}


def identities(pipeline) -> dict[int, tuple]:
    rows = pipeline.query("SELECT identity_id, mfa_enabled, risk_level, in_latest_snapshot FROM identities")
    assert len(rows) == len({r[0] for r in rows})
    return {r[0]: r[1:] for r in rows}


def exposures(pipeline, latest_only: bool = True) -> set[tuple]:
    where = "WHERE in_latest_snapshot" if latest_only else ""
    rows = pipeline.query(f"SELECT ip_address, port, protocol FROM external_ports {where}")
    assert len(rows) == len(set(rows))
    return set(rows)


def truth_exposures(server) -> set[tuple]:
    return {(r["ip_address"], r["port"], r["protocol"]) for r in truth_records(server, EXTERNAL_PORTS)}


def test_inventories_follow_adds_removals_flips_and_renames(make_simulator, tmp_path):
    server = make_simulator(WORLD)
    pipeline = make_pipeline(server, tmp_path)
    before = len(server.request_log)
    assert pipeline.run_agents().success  # the inventory job: every snapshot stream
    made = server.request_log[before:]
    for stream in SNAPSHOT_STREAMS:  # requests per snapshot = ceil(objects / 500)
        objects = len(truth_records(server, stream))
        requests = sum(e["path"] == f"/v1/{stream.name}" for e in made)
        assert requests == max(1, math.ceil(objects / 500)), (stream.name, requests, objects)
    assert pipeline.run_incidents().success

    truth = {r["id"]: (r["mfa_enabled"], r["risk_level"], True) for r in truth_records(server, IDENTITIES)}
    assert identities(pipeline) == truth
    assert exposures(pipeline) == truth_exposures(server)
    names = dict(pipeline.query("SELECT organization_id, name FROM organizations"))
    assert names == {r["id"]: r["name"] for r in truth_records(server, ORGANIZATIONS)}

    changes = admin(server, "tick", {"new_incidents": 0, "status_changes": 0, "identity_changes": 40,
                                     "new_identities": 5, "identities_removed": 3, "ports_opened": 4,
                                     "ports_closed": 3, "organization_renames": 1})
    [renamed] = changes["organization_renames"]
    assert pipeline.run_agents().success

    now = identities(pipeline)
    truth = {r["id"]: (r["mfa_enabled"], r["risk_level"], True) for r in truth_records(server, IDENTITIES)}
    assert {k: v for k, v in now.items() if v[2]} == truth  # current identities, current state
    gone = {k for k, v in now.items() if not v[2]}
    assert gone == set(changes["identities_removed"])  # a removed identity stays, marked
    flipped = pipeline.query("SELECT count(*) FROM identities WHERE mfa_changed_at IS NOT NULL "
                             "OR risk_changed_at IS NOT NULL")[0][0]
    expected_flips = sum(1 for i in changes["identity_changes"] if i in truth)
    assert 0 < flipped <= expected_flips  # some changes were password changes only
    assert pipeline.query("SELECT count(*) FROM identities WHERE mfa_changed_at IS NOT NULL AND "
                          "mfa_changed_at < first_seen_at")[0][0] == 0
    assert exposures(pipeline) == truth_exposures(server)
    assert len(exposures(pipeline, latest_only=False) - exposures(pipeline)) == 3  # closed ports, kept, marked

    new_name = next(r["name"] for r in truth_records(server, ORGANIZATIONS) if r["id"] == renamed)
    assert pipeline.query(f"SELECT name FROM organizations WHERE organization_id = {renamed}") == [(new_name,)]
    for table in ("alerts", "agent_inventory", "identities"):  # the new name everywhere, nothing else recollected
        names = pipeline.query(f"SELECT DISTINCT organization_name FROM {table} WHERE organization_id = {renamed}")
        assert names == [(new_name,)], table
