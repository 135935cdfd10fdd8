"""Parsing-layer benchmark: normalization throughput on one core, and peak memory for a 20 MB body.

    python benchmarks/bench_parsing.py [--incidents N] [--agents N]

Incident reports carry realistic 2-20 KB bodies (uniform) from the simulator's generator. Rates are given
per CPU-second of this process (what one core sustains, robust to other load on the machine) and per
wall-clock second. The stage split shows where an incident's time goes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import time
import tracemalloc

from huntress_dagster.parsing import (
    ParseContext,
    extract_entities,
    normalize_agents,
    normalize_incident,
    normalize_incidents,
)
from huntress_dagster.parsing.arrow_rows import collector_paused, rows_to_table
from huntress_dagster.parsing.syslog import load_record, normalize_incident_record
from huntress_dagster.simulator.bodies import render_body

CONTEXT = ParseContext("tenant-1", "Tenant One", "api.huntress.io", "acme")


def incident_records(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    records = []
    for number in range(count):
        incident = {
            "id": number,
            "account_id": 5,
            "organization_id": rng.randrange(1, 50),
            "agent_id": rng.randrange(1, 5000),
            "platform": rng.choice(["windows", "darwin", "microsoft_365"]),
            "severity": rng.choice(["low", "high", "critical"]),
            "status": rng.choice(["sent", "closed"]),
            "subject": f"HIGH - Incident on host-{number}",
            "summary": "Huntress detected malicious activity.",
            "indicator_types": ["footholds"],
            "indicator_counts": {"footholds": 1},
            "remediations": {
                "total_count": 2,
                "has_more": False,
                "items": [
                    {
                        "id": number * 10 + k,
                        "type": "assisted",
                        "action": "Delete File",
                        "status": "completed",
                        "parameters": [{"name": "path", "description": "c:\\x.exe"}],
                        "approved_at": "2024-06-01T12:00:00Z",
                        "completed_at": "2024-06-01T12:01:00Z",
                    }
                    for k in range(2)
                ],
            },
            "sent_at": "2024-06-01T11:00:00Z",
            "closed_at": None,
            "status_updated_at": "2024-06-01T11:00:00Z",
            "created_at": "2024-06-01T10:00:00Z",
            "updated_at": "2024-06-01T12:00:00Z",
        }
        incident["body"] = render_body(seed * 100_003 + number, incident, rng.randint(2_000, 20_000))
        records.append(json.dumps(incident))
    return records


def agent_records(count: int) -> list[str]:
    return [
        json.dumps(
            {
                "id": number,
                "account_id": 5,
                "organization_id": number % 50,
                "arch": "x86_64",
                "hostname": f"ws-{number}",
                "domain_name": "CORP",
                "platform": "windows",
                "os": "Windows 11 Enterprise",
                "os_build_version": "22631",
                "os_major": 10,
                "os_minor": 0,
                "os_patch": 0,
                "version": "0.13.42",
                "edr_version": "2.4.7",
                "ipv4_address": f"10.0.{number // 250 % 250}.{number % 250}",
                "external_ip": "198.51.100.42",
                "mac_addresses": ["7c:a7:b0:16:2f:78"],
                "serial_number": f"SN{number:08d}",
                "defender_status": "Healthy",
                "defender_substatus": "Up to date",
                "defender_policy_status": "Compliant",
                "firewall_status": "Enabled",
                "tamper_protection_configured": True,
                "tamper_protection_actual": True,
                "tags": ["workstation"],
                "service_pack_major": 0,
                "service_pack_minor": 0,
                "version_number": 720899,
                "win_build_number": 22631,
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-06-01T12:00:00Z",
                "last_callback_at": "2024-06-01T12:00:00Z",
                "last_survey_at": "2024-06-01T11:00:00Z",
            }
        )
        for number in range(count)
    ]


def timed(function, *args):
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    result = function(*args)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def rate_line(label: str, count: int, cpu: float, wall: float) -> str:
    return (
        f"{label:<34} {count / cpu:>10,.0f} /CPU-s {count / wall:>10,.0f} /wall-s "
        f"{cpu / count * 1e6:>8.1f} us/record (CPU)"
    )


@collector_paused()
def stage_split(records: list[str]) -> None:
    """Per-record CPU time of each stage of incident normalization, with the cyclic garbage collector
    paused as `normalize_records` pauses it: left on, it rescans the batch's rows while Arrow converts
    them, which had this split report 50-150 us for an Arrow conversion that takes ~55."""
    decoded, load_cpu, _ = timed(lambda: [load_record(raw, "incident") for raw in records])
    bodies = [record["body"] for record in decoded]
    _, entity_cpu, _ = timed(lambda: [extract_entities(body) for body in bodies])
    rows, row_cpu, _ = timed(lambda: [normalize_incident_record(record, CONTEXT) for record in decoded])
    _, arrow_cpu, _ = timed(rows_to_table, rows)
    count = len(records)
    per_record = {
        name: seconds / count * 1e6
        for name, seconds in (
            ("JSON decode", load_cpu),
            ("row build", row_cpu),
            ("of which entity extraction", entity_cpu),
            ("Arrow", arrow_cpu),
        )
    }
    print(
        "  stages (us/record, CPU): " + "; ".join(f"{name} {value:.1f}" for name, value in per_record.items())
    )


def peak_memory(size: int, label: str) -> None:
    raw = json.dumps(
        {
            "id": 1,
            "account_id": 5,
            "organization_id": 4,
            "updated_at": "2024-06-01T12:00:00Z",
            "body": render_body(3, {"id": 1, "organization_id": 4}, size),
        }
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    row = normalize_incident(raw, CONTEXT)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(
        f"{label:<34} parse_level={row['parse_level']:<17} {elapsed * 1e3:7.1f} ms  Python peak "
        f"{peak / 2**20:6.1f} MiB for {len(raw) / 2**20:.1f} MiB of JSON; max RSS grew {rss_growth:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=2_000)
    parser.add_argument("--agents", type=int, default=50_000)
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} cores (os.cpu_count), load average {os.getloadavg()[0]:.2f}; one process"
    )
    incidents = incident_records(args.incidents)
    agents = agent_records(args.agents)
    normalize_incidents(incidents[:50], CONTEXT)  # warm-up: TLD list, compiled patterns, Arrow kernels
    normalize_agents(agents[:1000], CONTEXT)
    body_kib = sum(len(raw) for raw in incidents) / len(incidents) / 1024
    table, cpu, wall = timed(normalize_incidents, incidents, CONTEXT)
    print(rate_line(f"incident reports (~{body_kib:.1f} KiB each)", table.num_rows, cpu, wall))
    stage_split(incidents[: min(500, len(incidents))])

    table, cpu, wall = timed(normalize_agents, agents, CONTEXT)
    print(rate_line("agents", table.num_rows, cpu, wall))

    peak_memory(4_900_000, "4.9 MB body (full parse)")
    peak_memory(20 * 1024 * 1024, "20 MiB body (partial parse)")


if __name__ == "__main__":
    main()
