"""The size and shape of a simulated world, and the counts a tick can move."""

from __future__ import annotations

from dataclasses import dataclass

TICK_COUNTS = {
    "new_incidents", "status_changes", "agent_changes", "new_agents", "new_signals", "signal_status_changes",
    "escalations_opened", "escalations_closed", "platform_actions_opened", "platform_actions_closed",
    "identity_changes", "new_identities", "port_scans", "ports_opened", "ports_closed", "organization_renames",
    "identities_removed",
}


@dataclass
class WorldConfig:
    seed: int = 1
    organizations: int = 5
    agents: int = 200
    incidents: int = 500
    days: int = 30
    anchor: int | None = None  # epoch seconds of "now" at creation; default: the current time
    account_id: int = 4242
    account_name: str = "Acme MSSP"
    subdomain: str = "acme-mssp"
    body_min_bytes: int = 2_000
    body_max_bytes: int = 20_000
    large_body_share: float = 0.01  # 500 KiB .. 5 MiB bodies
    huge_body_share: float = 0.0  # >= 5 MiB bodies (slow to serve: opt in)
    many_remediations_share: float = 0.01  # more than 10 remediations (has_more): rare in practice
    flat_remediations_share: float = 0.02  # the older payload shape: a flat array
    null_share: float = 0.08  # nullable fields (summary, agent_id, organization_id, ...) set to null
    # Later content types; each draws from its own random stream, so agents and incidents never change.
    signals: int = 1_500
    escalations: int = 60
    platform_actions: int = 25
    identities: int = 200
    external_ports: int = 60
    customer_accounts: int = 0  # reseller: customer accounts served under /v1/accounts/{id}/...
    customer_scale: float = 0.1  # a customer account's size relative to this one
    id_offset: int = 0  # added to every id (customer accounts: 10 million apart)
