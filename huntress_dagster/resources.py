"""Dagster resources: the Huntress connections and the lake. Thin wrappers over the plain modules."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field

from .client import DEFAULT_BASE_URL, DEFAULT_MAX_PAGES, DEFAULT_MAX_RESPONSE_BYTES, HuntressClient
from .connections import DEFAULT_CONNECTION, Connection, parse_connection
from .errors import HuntressConfigError
from .lake import DEFAULT_UMASK, Lake
from .parsing import DEFAULT_EXCLUDED_INDICATOR_DOMAINS
from .processes import release_unused_memory
from .ratelimit import RateLimiter, bucket_name_for
from .settings import default_rate_limit_state


class HuntressConnection(dg.Config):
    """One API key of a deployment (connections.py): its secrets are named by environment variable, so run
    config and the UI only ever show the variables' names."""

    name: str
    api_key_env: str
    api_secret_env: str
    host_url: str = DEFAULT_BASE_URL
    tenant: str | None = None
    tenants: dict[str, str] = {}
    organization_ids: list[int] = []
    rate_limit: int = 60

    @classmethod
    def of(cls, connection: Connection) -> HuntressConnection:
        return cls(**{**connection.described(), "tenants": {str(k): v for k, v in connection.tenants.items()}})

    def to_connection(self) -> Connection:
        connection, problems = parse_connection(self.model_dump(), f"connection {self.name!r}")
        if connection is None:
            raise HuntressConfigError("Invalid Huntress connection: " + "; ".join(problems))
        return connection


class HuntressResource(dg.ConfigurableResource):
    """The Huntress API keys of a deployment: either `connections` (any number, secrets named by environment
    variable), or one key given by api_key / api_secret (HUNTRESS_API_KEY / HUNTRESS_API_SECRET), which is
    the connection named "default"."""

    host_url: str = Field(default=DEFAULT_BASE_URL, description="Huntress API base URL (https required)")
    api_key: str = Field(default="", description="API key; set with EnvVar('HUNTRESS_API_KEY')")
    api_secret: str = Field(default="", description="API secret; set with EnvVar('HUNTRESS_API_SECRET'), "
                            "never shown")
    connections: list[HuntressConnection] = Field(
        default=[], description="Several keys (HUNTRESS_CONNECTIONS_FILE or the component's `connections:`); "
        "when set, api_key / api_secret / host_url / tenant / organization_ids / rate_limit_requests are unused")
    organization_ids: list[int] = Field(default=[], description="Organizations to collect; empty = all")
    tenant: str = Field(default="default", description="tenantid written to every row (alert dedup key)")
    rate_limit_requests: int = Field(default=60, description="Requests per window this integration may use")
    rate_limit_window_seconds: float = Field(default=60.0, description="Sliding window length in seconds")
    rate_limit_state_path: str = Field(
        default_factory=default_rate_limit_state,
        description="SQLite file of the request log shared by every process using this account")
    demo_mode: bool = Field(default=False, description="True when talking to the bundled simulator")
    account_discovery_seconds: float = Field(default=900.0, description="How old a listing of the accounts a "
                                             "key reaches (GET /v1/accounts) the sensor may reuse; every run lists "
                                             "them afresh once")
    # Retry tuning; tests shorten these against a fast simulator.
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    max_attempts: int = 8
    max_throttle_seconds: float = Field(default=900.0, description="How long a 429 storm is waited out")
    max_pages_per_walk: int = Field(default=DEFAULT_MAX_PAGES, description="A walk past this many pages is "
                                    "stopped as broken paging (HUNTRESS_MAX_PAGES_PER_WALK)")
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, description="A larger response is "
                                    "refused (HUNTRESS_MAX_RESPONSE_BYTES)")

    def connection_list(self) -> list[Connection]:
        """Every configured connection; the single-key fields as the connection "default" otherwise."""
        if self.connections:
            return [c.to_connection() for c in self.connections]
        return [Connection(name=DEFAULT_CONNECTION, api_key_env="HUNTRESS_API_KEY",
                           api_secret_env="HUNTRESS_API_SECRET", host_url=self.host_url, tenant=self.tenant,
                           organization_ids=tuple(self.organization_ids), rate_limit=self.rate_limit_requests)]

    def get_client(self, connection: Connection | None = None) -> HuntressClient:
        """A client of one connection, with that key's own rate budget (shared by every process using it)."""
        connection = connection or self.connection_list()[0]
        if self.connections:
            api_key, api_secret = connection.credentials(os.environ)
        else:
            api_key, api_secret = self.api_key, self.api_secret
        limiter = RateLimiter(connection.rate_limit, self.rate_limit_window_seconds,
                              state_path=self.rate_limit_state_path,
                              bucket=bucket_name_for(api_key, connection.host_url))
        return HuntressClient(api_key, api_secret, connection.host_url, rate_limiter=limiter,
                              backoff_base=self.backoff_base_seconds, backoff_max=self.backoff_max_seconds,
                              max_attempts=self.max_attempts, max_throttle_seconds=self.max_throttle_seconds,
                              max_pages=self.max_pages_per_walk, max_response_bytes=self.max_response_bytes)

    def describe(self, connection: Connection | None = None) -> dict[str, Any]:
        """Safe-to-show facts about a connection (never the secret)."""
        connection = connection or self.connection_list()[0]
        return {"connection": connection.name, "host_url": connection.host_url,
                "tenant": connection.tenant or "(account subdomain)", "demo_mode": self.demo_mode,
                "organization_ids": list(connection.organization_ids) or "all",
                "rate_budget": f"{connection.rate_limit}/{self.rate_limit_window_seconds:g}s"}


class HuntressLakeResource(dg.ConfigurableResource):
    """The local lake directory: Parquet per table and partition, plus huntress.duckdb views."""

    lake_dir: str = Field(description="Lake directory (HUNTRESS_LAKE_DIR)")
    keep_body_max_bytes: int = Field(default=512_000, description="Bodies below this are kept (500 KiB)")
    full_parse_max_bytes: int = Field(default=5_242_880, description="Bodies from this size are only "
                                      "partially parsed (5 MiB)")
    overlap_seconds: int = Field(default=300, description="Incremental walks re-read this much before the "
                                 "committed watermark (absorbs clock skew)")
    duckdb_memory_limit: str = Field(default="512MB", description="Memory DuckDB may use in a process before it "
                                     "spills to disk: DuckDB's share of a run's memory, not all of it (README, "
                                     "'Memory of a run pod')")
    excluded_indicator_domains: list[str] = Field(
        default=list(DEFAULT_EXCLUDED_INDICATOR_DOMAINS), description="Domains (and their subdomains) never "
        "taken as indicators: the vendor's own infrastructure (HUNTRESS_EXCLUDED_INDICATOR_DOMAINS)")
    umask: int = Field(default=DEFAULT_UMASK, description="umask of lake files and directories (HUNTRESS_UMASK): "
                       "0o077 owner only, 0o027 for a group that may read")
    parse_workers: int = Field(default=0, description="Processes parsing days of a backfill in parallel; "
                               "0 = one per CPU core")

    def parse_worker_count(self) -> int:
        return self.parse_workers or os.cpu_count() or 1

    locks_url: str = Field(default="", description="PostgreSQL URL of the locks guarding partitions across "
                           "machines (the rate limiter's HUNTRESS_RATE_LIMIT_STATE when that is PostgreSQL); "
                           "empty: file locks, one machine")

    def lake_for_step(self) -> Lake:
        """The lake, for an asset step: its process first gives back what the step before it freed."""
        release_unused_memory()
        return self.get_lake()

    def get_lake(self) -> Lake:
        return Lake(self.lake_dir, duckdb_memory_limit=self.duckdb_memory_limit, umask=self.umask,
                    locks_url=self.locks_url or None)
