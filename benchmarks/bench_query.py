"""6. Query speed: typical analyst queries through DuckDB over the lake's `huntress.duckdb` views.

The catalog is opened read-only, as an analyst would (a run in progress is not disturbed). Each query
runs once cold (first touch of its files), then REPEAT times; the median of those is reported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import header, median, table

REPEAT = 5


def rare_indicator(con, column: str) -> str:
    """The value of an entity column found in the fewest incidents (a specific indicator, as hunted for)."""
    row = con.execute(f"""
        SELECT value FROM (
            SELECT unnest({column}) AS value FROM parsed_syslog WHERE msg_class = 'huntress_incident_report')
        GROUP BY value ORDER BY count(*), value LIMIT 1""").fetchone()
    return row[0] if row else "none"


def queries(con) -> list[tuple[str, str, list[Any]]]:
    """(name, SQL, parameters), with parameters drawn from the lake itself (a busy host, a real indicator)."""
    host = con.execute(
        "SELECT hostname FROM alerts WHERE hostname IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    agent_id = con.execute("SELECT agent_id FROM alerts WHERE hostname = ? LIMIT 1", [host]).fetchone()[0]
    sha256, domain, ip = (rare_indicator(con, column) for column in ("sha256", "domains", "ipv4"))
    return [
        (
            "alerts by severity and organization",
            "SELECT organization_id, severity, count(*) AS n FROM alerts GROUP BY ALL ORDER BY n DESC",
            [],
        ),
        (
            "open critical/high alerts per organization, last 7 days",
            "SELECT organization_id, count(*) FROM alerts WHERE severity IN ('critical', 'high') "
            "AND status IN ('sent', 'auto_remediating') AND updated_at >= now() - INTERVAL 7 DAY GROUP BY 1",
            [],
        ),
        (
            "one host's incidents (alerts by hostname)",
            "SELECT huntress_id, severity, status, subject, updated_at FROM alerts WHERE hostname = ? "
            "ORDER BY updated_at DESC",
            [host],
        ),
        (
            "one host's incident history (parsed_syslog by agent_id)",
            "SELECT huntress.id, huntress.status, huntress.updated_at FROM parsed_syslog "
            "WHERE msg_class = 'huntress_incident_report' AND huntress.agent_id = ? ORDER BY 3 DESC",
            [agent_id],
        ),
        (
            "indicator search: a SHA-256 in parsed_syslog.sha256",
            "SELECT huntress.id, huntress.organization_id, timestamp FROM parsed_syslog "
            "WHERE list_contains(sha256, ?)",
            [sha256],
        ),
        (
            "indicator search: a domain or an IP in any incident",
            "SELECT huntress.id, tenantid FROM parsed_syslog WHERE msg_class = 'huntress_incident_report' "
            "AND (list_contains(domains, ?) OR list_contains(ipv4, ?))",
            [domain, ip],
        ),
        (
            "reference-style filter: msg_class and huntress.organization_id",
            "SELECT count(*) FROM parsed_syslog WHERE msg_class = 'huntress_incident_report' "
            'AND "huntress".organization_id = (SELECT min(organization_id) FROM alerts)',
            [],
        ),
    ]


def run(lake_dir: str | Path | None, incidents: int) -> dict[str, Any]:
    from huntress_dagster.catalog import open_catalog

    header(
        f"6. Query speed (DuckDB over huntress.duckdb views; lake of {incidents:,} incidents; "
        f"median of {REPEAT} warm runs)"
    )
    if not lake_dir or not (Path(lake_dir) / "huntress.duckdb").exists():
        print("  no lake was built (end-to-end benchmark did not complete): skipped")
        return {"rows": [], "skipped": True}
    rows = []
    con = open_catalog(lake_dir)  # read-only, views relative to the lake (file_search_path)
    try:
        for name, sql, params in queries(con):
            started = time.perf_counter()
            result = con.execute(sql, params).fetchall()
            cold = time.perf_counter() - started
            warm = []
            for _ in range(REPEAT):
                started = time.perf_counter()
                con.execute(sql, params).fetchall()
                warm.append(time.perf_counter() - started)
            rows.append(
                {"query": name, "rows": len(result), "cold_ms": cold * 1000, "median_ms": median(warm) * 1000}
            )
        sizes = dict(
            con.execute(
                "SELECT 'alerts', count(*) FROM alerts UNION ALL "
                "SELECT 'parsed_syslog', count(*) FROM parsed_syslog"
            ).fetchall()
        )
    finally:
        con.close()
    table(rows)
    print(f"  table sizes: {sizes}")
    return {"rows": rows, "sizes": sizes}
