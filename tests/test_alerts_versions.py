"""The alerts build's version selection on hand-made version rows (real DuckDB): an object's organizations
are those of its latest version, so an organization an escalation stops listing loses its alert row."""

from __future__ import annotations

import duckdb

from huntress_dagster.alerts import LATEST_VERSIONS_SQL

VERSIONS = """CREATE TABLE versions AS SELECT * FROM (VALUES
 ('t', 'huntress_escalation', 1, 10, 5, TIMESTAMPTZ '2026-01-01 00:00:00+00', TIMESTAMPTZ '2026-01-01 01:00:00+00',
  '2026-01-01', 'a', 0),
 ('t', 'huntress_escalation', 1, 20, 5, TIMESTAMPTZ '2026-01-01 00:00:00+00', TIMESTAMPTZ '2026-01-01 01:00:00+00',
  '2026-01-01', 'a', 0),
 ('t', 'huntress_escalation', 1, 10, 5, TIMESTAMPTZ '2026-01-02 00:00:00+00', TIMESTAMPTZ '2026-01-02 01:00:00+00',
  '2026-01-02', 'b', 0),
 ('t', 'huntress_incident_report', 1, 10, 5, TIMESTAMPTZ '2026-01-01 00:00:00+00',
  TIMESTAMPTZ '2026-01-01 01:00:00+00', '2026-01-01', 'a', 1)
) v(tenantid, cls, hid, oid, aid, updated_at, collected_at, day, src_file, src_row)"""


def test_an_organization_an_escalation_no_longer_lists_has_no_latest_version():
    con = duckdb.connect()
    con.execute(VERSIONS)
    con.execute("CREATE TABLE touched AS SELECT DISTINCT tenantid, cls, hid, oid, aid FROM versions")
    latest = con.sql(f"SELECT cls, hid, oid, day, version_count FROM ({LATEST_VERSIONS_SQL}) ORDER BY ALL").fetchall()
    assert latest == [("huntress_escalation", 1, 10, "2026-01-02", 2),
                      ("huntress_incident_report", 1, 10, "2026-01-01", 1)]  # incident 1 is not escalation 1


def test_a_full_build_runs_on_one_duckdb_thread_within_256_mib_or_the_lake_s_lower_limit():
    from huntress_dagster.alerts import _narrow_for_a_full_build

    settings = "SELECT current_setting('memory_limit'), current_setting('threads')"
    for configured, expected in (("512MB", "256.0 MiB"), ("2GiB", "256.0 MiB"), ("100MB", "95.3 MiB")):
        con = duckdb.connect(config={"memory_limit": configured, "threads": 2})
        _narrow_for_a_full_build(con)
        assert con.execute(settings).fetchone() == (expected, 1), configured
