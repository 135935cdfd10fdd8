"""Connections and accounts (plain Python: no Dagster).

A deployment holds any number of **connections** (one Huntress API key each, with its own rate budget),
configured by a YAML file (`HUNTRESS_CONNECTIONS_FILE`) or the component's YAML, in the same schema:

    connections:
      - name: msp                      # unique; shown in run tags and health rows
        api_key_env: HUNTRESS_MSP_API_KEY       # secrets only as environment variable NAMES
        api_secret_env: HUNTRESS_MSP_API_SECRET
        host_url: https://api.huntress.io/v1    # optional
        tenant: msp                    # optional; a reseller's customer accounts default to their subdomain
        tenants: {21: acme}            # optional per-account tenant overrides
        organization_ids: []           # optional filter
        rate_limit: 60                 # optional

A connection reaches one or more **accounts**: its own, and, for a reseller key, every customer account that
`GET /v1/accounts` lists, collected through `/v1/accounts/{account_id}/...` (the swagger serves agents,
incident reports, organizations, signals and external ports there; escalations, identities and platform
actions only to a key of the account itself). `discover_accounts` finds them at run time, so an account
added at Huntress is collected from the next discovery on with no code or configuration change.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .client import DEFAULT_BASE_URL, HuntressClient, validate_base_url
from . import layout
from .errors import HuntressConfigError, HuntressNotFoundError, HuntressPermissionError
from .lake import Lake
from .streams import Stream

# Run tags that narrow a run to some connections / accounts (comma-separated); no tag: all of them.
CONNECTION_TAG = "huntress/connection"
ACCOUNT_TAG = "huntress/account"
DEFAULT_CONNECTION = "default"  # the single-key variables (HUNTRESS_API_KEY ...) as a connection

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_FIELDS = {"name", "api_key_env", "api_secret_env", "host_url", "tenant", "tenants", "organization_ids",
           "rate_limit"}


@dataclass(frozen=True)
class Connection:
    name: str
    api_key_env: str
    api_secret_env: str
    host_url: str = DEFAULT_BASE_URL
    tenant: str | None = None
    tenants: dict[int, str] = field(default_factory=dict)
    organization_ids: tuple[int, ...] = ()
    rate_limit: int = 60

    def credentials(self, environ: Mapping[str, str]) -> tuple[str, str]:
        """The key and secret from the environment variables the connection names (never from config)."""
        missing = [name for name in (self.api_key_env, self.api_secret_env) if not (environ.get(name) or "").strip()]
        if missing:
            raise HuntressConfigError(f"Connection {self.name!r}: environment variable(s) {', '.join(missing)} "
                                      "not set (the connection names its key and secret variables)")
        return environ[self.api_key_env].strip(), environ[self.api_secret_env].strip()

    def described(self) -> dict[str, Any]:
        """Safe to show and to compare (names of secret variables, never their values)."""
        return {**dataclasses.asdict(self), "organization_ids": list(self.organization_ids),
                "tenants": {str(k): v for k, v in self.tenants.items()}}


@dataclass(frozen=True)
class Account:
    """One Huntress account reached through a connection."""

    connection: str
    account_id: int
    name: str | None
    subdomain: str | None
    tenantid: str
    customer: bool  # reached through a reseller key: /v1/accounts/{account_id}/...

    @property
    def key(self) -> str:
        """Stable and readable: the account's partition / path key."""
        return f"{self.connection}-{self.account_id}"

    @property
    def path_prefix(self) -> str:
        return f"/accounts/{self.account_id}" if self.customer else ""

    def serves(self, stream: Stream) -> bool:
        """Whether this account's data of `stream` is reachable through its connection."""
        return not self.customer or stream.reseller_path


def _problem(where: str, text: str) -> str:
    return f"{where}: {text}"


def parse_connection(entry: Any, where: str) -> tuple[Connection | None, list[str]]:
    """One connection from its YAML mapping, or the problems with it (named by `where`)."""
    if not isinstance(entry, dict):
        return None, [_problem(where, "expected a mapping with name, api_key_env and api_secret_env")]
    problems = [_problem(where, f"unknown field {name!r} (expected one of {', '.join(sorted(_FIELDS))})")
                for name in entry if name not in _FIELDS]
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(_problem(where, f"name {name!r} must be lowercase letters, digits, - or _"))
    for env_field in ("api_key_env", "api_secret_env"):
        value = entry.get(env_field)
        if not isinstance(value, str) or not _ENV_NAME.match(value):
            problems.append(_problem(where, f"{env_field} must be the NAME of an environment variable (e.g. "
                                            "HUNTRESS_MSP_API_KEY), never the secret itself"))
    host_url = entry.get("host_url") or DEFAULT_BASE_URL
    try:
        host_url = validate_base_url(str(host_url))
    except HuntressConfigError as exc:
        problems.append(_problem(where, f"host_url: {exc.detail}"))
    tenants = entry.get("tenants") or {}
    if not isinstance(tenants, dict) or not all(str(k).isdigit() and isinstance(v, str) and v
                                               for k, v in tenants.items()):
        problems.append(_problem(where, "tenants must map account ids to tenant names, e.g. {21: acme}"))
        tenants = {}
    organization_ids = entry.get("organization_ids") or []
    if not isinstance(organization_ids, list) or not all(type(i) is int and i > 0 for i in organization_ids):
        problems.append(_problem(where, "organization_ids must be a list of organization ids"))
        organization_ids = []
    rate_limit = entry.get("rate_limit", 60)
    if type(rate_limit) is not int or rate_limit < 1:
        problems.append(_problem(where, "rate_limit must be a whole number of requests per minute >= 1"))
    tenant = entry.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        problems.append(_problem(where, "tenant must be a non-empty string"))
    if problems:
        return None, problems
    return Connection(name=name, api_key_env=entry["api_key_env"], api_secret_env=entry["api_secret_env"],
                      host_url=host_url, tenant=tenant, tenants={int(k): v for k, v in tenants.items()},
                      organization_ids=tuple(organization_ids), rate_limit=rate_limit), []


def parse_connections(document: Any, source: str) -> list[Connection]:
    """Every connection of a `connections:` document; one HuntressConfigError listing every problem."""
    if not isinstance(document, dict) or not isinstance(document.get("connections"), list) \
            or not document["connections"]:
        raise HuntressConfigError(f"{source}: expected a top-level 'connections:' list with at least one entry")
    connections, problems = [], []
    for number, entry in enumerate(document["connections"], start=1):
        connection, found = parse_connection(entry, f"{source}, connection {number}")
        problems += found
        if connection:
            connections.append(connection)
    names = [c.name for c in connections]
    problems += [f"{source}: connection name {n!r} is used twice" for n in sorted(set(names)) if names.count(n) > 1]
    if problems:
        raise HuntressConfigError("Invalid Huntress connections:\n  - " + "\n  - ".join(problems))
    return connections


def load_connections_file(path: str | Path) -> list[Connection]:
    """The connections of a YAML file (HUNTRESS_CONNECTIONS_FILE)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise HuntressConfigError(f"HUNTRESS_CONNECTIONS_FILE {str(path)!r} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise HuntressConfigError(f"HUNTRESS_CONNECTIONS_FILE {str(path)!r} is not valid YAML: "
                                  f"{str(exc).splitlines()[0]}") from None
    return parse_connections(document, str(path))


def missing_credentials(connections: list[Connection], environ: Mapping[str, str]) -> list[str]:
    """A problem per connection whose key or secret variable is not set (names only, never values)."""
    problems = []
    for connection in connections:
        try:
            connection.credentials(environ)
        except HuntressConfigError as exc:
            problems.append(exc.detail)
    return problems


def tenant_for(connection: Connection, account_id: int, subdomain: str | None, customer: bool) -> str:
    """An account's tenantid: an override, else the connection's tenant for its own account, else the
    account's subdomain (so two customers never share a tenant by accident)."""
    if account_id in connection.tenants:
        return connection.tenants[account_id]
    if not customer and connection.tenant:
        return connection.tenant
    return subdomain or f"account-{account_id}"


def discover_accounts(client: HuntressClient, connection: Connection) -> list[Account]:
    """The connection's own account, then every customer account a reseller key lists (`/v1/accounts`).
    A key that is not a reseller's answers 403/404 there, or an empty list: only its own account."""
    own = client.account()
    accounts = [Account(connection=connection.name, account_id=int(own["id"]), name=own.get("name"),
                        subdomain=own.get("subdomain"), customer=False,
                        tenantid=tenant_for(connection, int(own["id"]), own.get("subdomain"), customer=False))]
    try:
        customers = list(client.iter_items("/accounts", "accounts", {"sort_field": "id", "sort_direction": "asc"}))
    except (HuntressPermissionError, HuntressNotFoundError):
        customers = []
    for record in customers:
        if not isinstance(record, dict) or type(record.get("id")) is not int or record["id"] == accounts[0].account_id:
            continue
        accounts.append(Account(connection=connection.name, account_id=record["id"], name=record.get("name"),
                                subdomain=record.get("subdomain"), customer=True,
                                tenantid=tenant_for(connection, record["id"], record.get("subdomain"),
                                                    customer=True)))
    return accounts


def tagged(tags: Mapping[str, str], name: str) -> set[str] | None:
    """The comma-separated values of a run tag, or None when the tag is absent (= no narrowing)."""
    value = (tags.get(name) or "").strip()
    return {v.strip() for v in value.split(",") if v.strip()} or None if value else None


def selected_connections(connections: list[Connection], tags: Mapping[str, str]) -> list[Connection]:
    """The connections a run covers: those its huntress/connection tag names, else all. An unknown name is a
    configuration error, not a silently empty run."""
    wanted = tagged(tags, CONNECTION_TAG)
    if wanted is None:
        return connections
    unknown = wanted - {c.name for c in connections}
    if unknown:
        raise HuntressConfigError(f"Run tag {CONNECTION_TAG}={','.join(sorted(unknown))} names no configured "
                                  f"connection (configured: {', '.join(c.name for c in connections)})")
    return [c for c in connections if c.name in wanted]


def selected_accounts(accounts: list[Account], tags: Mapping[str, str]) -> list[Account]:
    """The accounts a run covers: those its huntress/account tag names (account ids), else all."""
    wanted = tagged(tags, ACCOUNT_TAG)
    return accounts if wanted is None else [a for a in accounts if str(a.account_id) in wanted]


def cached_accounts(lake: Lake, connection: Connection, max_age_seconds: float | None = None,
                    run_id: str | None = None) -> list[Account] | None:
    """The accounts of the connection's last discovery, if it was made with this configuration and, given
    `run_id`, by that run, or given `max_age_seconds`, recently enough; None otherwise."""
    try:
        cached = json.loads((lake.root / layout.accounts_state(connection.name)).read_text())
        if cached["connection"] != json.loads(json.dumps(connection.described())):
            return None
        if run_id is not None and cached.get("run_id") != run_id:
            return None
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(cached["discovered_at"])).total_seconds()
        if max_age_seconds is not None and age >= max_age_seconds:
            return None
        return [Account(**a) for a in cached["accounts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_accounts(lake: Lake, connection: Connection, accounts: list[Account], run_id: str | None = None) -> None:
    path = lake.root / layout.accounts_state(connection.name)
    with lake.atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"connection": connection.described(), "run_id": run_id,
                                   "discovered_at": datetime.now(timezone.utc).isoformat(),
                                   "accounts": [dataclasses.asdict(a) for a in accounts]}))
