"""The accounts a run covers, and what it saw of each: failures isolated per connection and account, and a
connector_health row per (connection, account, stream), with the asset check that says what to do. The
Dagster side of connections.py and health.py."""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from .client import HuntressClient
from .connections import (ACCOUNT_TAG, Account, Connection, cached_accounts, discover_accounts, remember_accounts,
                          selected_accounts, selected_connections, tagged)
from .errors import HuntressError
from .health import DEGRADED, FAILING, Evaluation, last_success, write_health
from .inbox import INBOX_TAG
from .lake import Lake
from .resources import HuntressResource
from .streams import Stream

HEALTH_CHECK = "connector_healthy"


def client_metadata(client: HuntressClient) -> dict[str, Any]:
    stats = client.stats
    return {
        "api_requests": stats.requests,
        "api_retries": stats.retries,
        "api_429_responses": stats.throttled_responses,
        "rate_limit_waits": stats.rate_limit_waits,
        "rate_limit_wait_seconds": round(stats.rate_limit_wait_seconds, 2),
    }


def accounts_for(huntress: HuntressResource, connection: Connection, store: Lake, client: HuntressClient,
                 run_id: str | None = None, wanted: set[str] | None = None, reuse: bool = False) -> list[Account]:
    """The accounts a connection reaches: its own, then a reseller's customer accounts (`/v1/accounts`).
    Listed once per run (2 requests; every raw asset of the run reuses it), so an account added at Huntress
    is collected by the next run; outside runs (the sensor) a listing younger than
    `account_discovery_seconds` is reused; a run narrowed to `wanted` account ids (the sensor's runs) reuses
    any listing that names them all (2 requests saved per sensor run). A lake of the single-account layout is moved under the own
    account first."""
    if run_id is not None:
        accounts = cached_accounts(store, connection, run_id=run_id)
        if accounts is None and (wanted or reuse):  # a sensor's run: any listing (naming the wanted accounts)
            known = cached_accounts(store, connection) or []
            accounts = known if known and (wanted or set()) <= {str(a.account_id) for a in known} else None
    else:
        accounts = cached_accounts(store, connection, max_age_seconds=huntress.account_discovery_seconds)
    if accounts is None:
        accounts = discover_accounts(client, connection)
        store.adopt_legacy_layout(str(accounts[0].account_id))
        remember_accounts(store, connection, accounts, run_id)
    return accounts


class AccountsOfRun:
    """The (connection, client, account) triples a run of one stream covers, narrowed by its
    huntress/connection and huntress/account tags. A connection that cannot list its accounts (401, a
    missing secret) and an account whose walk fails are recorded in `failures`, never stopping the others;
    every outcome becomes a connector_health row (`record_health`)."""

    def __init__(self, context: dg.AssetExecutionContext, huntress: HuntressResource, store: Lake, stream: Stream):
        self.context, self.huntress, self.store, self.stream = context, huntress, store, stream
        self.failures: list[str] = []
        self.api: dict[str, float] = {}
        self.api_by_connection: dict[str, dict[str, float]] = {}
        self.evaluations: list[Evaluation] = []
        self.connections = selected_connections(huntress.connection_list(), context.run.tags)

    def __iter__(self) -> Iterator[tuple[Connection, HuntressClient, Account]]:
        for connection in self.connections:
            client = None
            try:
                with self.huntress.get_client(connection) as client:
                    accounts = accounts_for(self.huntress, connection, self.store, client, self.context.run.run_id,
                                            tagged(self.context.run.tags, ACCOUNT_TAG),
                                            reuse=INBOX_TAG in self.context.run.tags)
                    for account in selected_accounts(accounts, self.context.run.tags):
                        if account.serves(self.stream):
                            yield connection, client, account
            except HuntressError as exc:
                self.failed(connection, None, exc)
            finally:
                used = client_metadata(client) if client else {}
                self.api_by_connection[connection.name] = used
                for name, value in used.items():
                    self.api[name] = round(self.api.get(name, 0) + value, 2)

    def failed(self, connection: Connection, account: Account | None, exc: Exception) -> None:
        where = f"connection {connection.name}" + (f", account {account.account_id} ({account.tenantid})"
                                                   if account else "")
        self.context.log.error(f"{self.stream.label} of {where}: {exc}")
        self.failures.append(f"{where}: {exc}")
        # a connection that could not even list its accounts: a row for each account it is known to reach
        known = [account] if account else [a for a in cached_accounts(self.store, connection) or [] if
                                           a.serves(self.stream)] or [None]
        for each in known:
            self.evaluations.append(Evaluation(
                connection.name, each.account_id if each else None, each.tenantid if each else connection.tenant,
                self.stream, error=exc, run_id=self.context.run.run_id))

    def succeeded(self, connection: Connection, account: Account, records: int,
                  days_recollected: list[str] | None = None) -> None:
        self.evaluations.append(Evaluation(connection.name, account.account_id, account.tenantid, self.stream,
                                           records_collected=records, days_recollected=days_recollected or [],
                                           run_id=self.context.run.run_id))

    def record_health(self) -> list[dict[str, Any]]:
        """Write this run's connector_health rows (each with its connection's API figures); returns them."""
        now = datetime.now(timezone.utc)
        rows = []
        for evaluation in self.evaluations:
            evaluation.api = self.api_by_connection.get(evaluation.connection, {})
            if evaluation.account_id is not None:
                evaluation.last_success_at = last_success(self.store, self.stream, str(evaluation.account_id))
            rows.append(evaluation.row(now))
        write_health(self.store, rows, now)
        return rows

    def failure(self, done: int, what: str) -> dg.Failure:
        return dg.Failure(description=f"{self.stream.label}: {len(self.failures)} connection(s)/account(s) "
                                      f"failed, {done} {what}: " + " | ".join(self.failures),
                          metadata={"failed": "\n".join(self.failures), what: done})


def run_tenant(run: AccountsOfRun) -> str:
    """The tenant named on a run's quarantined records: its connections' (a record failed to key has no
    account of its own)."""
    return ",".join(c.tenant or c.name for c in run.connections)




def health_check(stream: Stream, rows: list[dict[str, Any]]) -> dg.AssetCheckResult:
    """connector_healthy: failing (ERROR) or degraded (WARN) per account, with what to do."""
    bad = [r for r in rows if r["status"] in (FAILING, DEGRADED)]
    failing = any(r["status"] == FAILING for r in bad)
    lines = [f"{r['connection']}/{r['account_id']} ({r['tenantid']}): {r['status']}"
             + (f" — {r['error_class']}" if r["error_class"] else "")
             + (f" (HTTP {r['http_status']})" if r["http_status"] else "") + (f": {r['guidance']}" if r["guidance"]
                                                                            else "") for r in bad]
    lags = [r["lag_seconds"] for r in rows if r["lag_seconds"] is not None]
    return dg.AssetCheckResult(
        check_name=HEALTH_CHECK, asset_key=dg.AssetKey(stream.raw_table), passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR if failing else dg.AssetCheckSeverity.WARN,
        description="\n".join(lines) if bad else f"{len(rows)} account(s) collected, none late or throttled",
        metadata={"accounts": len(rows), "failing": sum(r["status"] == FAILING for r in rows),
                  "degraded": sum(r["status"] == DEGRADED for r in rows),
                  "max_lag_seconds": float(max(lags)) if lags else 0.0})


def health_check_spec(stream: Stream) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(HEALTH_CHECK, asset=stream.raw_table,
                             description=f"Every account's {stream.label} collected by this run, not late (lag under "
                                         f"{stream.fresh_within}) and not throttled; on failure, the error class, "
                                         "HTTP status and what to do (also in the connector_health table)")


# A run's process, recorded by its raw steps, so a run whose process died (SIGKILL, the OOM killer) can be told
# from a running one on this machine, where Dagster's default launcher has no run-worker health check.
PID_TAG, HOST_TAG = "huntress/pid", "huntress/host"


def run_worker_pid() -> int:
    """The pid of the process running the whole run: this one (in-process executor), or, for a step in its
    own process (the multiprocess executor of a UI "Materialize"), the run worker that started it."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getpid()


def tag_run_process(context: dg.AssetExecutionContext) -> None:
    pid = str(run_worker_pid())
    if context.run.tags.get(PID_TAG) != pid:
        context.instance.add_run_tags(context.run.run_id, {PID_TAG: pid, HOST_TAG: socket.gethostname()})
