"""Reseller accounts: `/v1/accounts` lists the customer accounts a reseller key reaches, and
`/v1/accounts/{account_id}/...` serves each one's agents, incident reports (+ remediations), organizations,
signals and external ports. Each customer account is a smaller World of its own (its own seed, ids offset
by 10 million per account so they never collide), moved by the parent's tick. Customer accounts are added
and removed at run time through the admin API.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .paging import page

CUSTOMER_NAMES = ["Contoso Health", "Fabrikam Legal", "Northwind Traders", "Tailspin Toys", "Litware Inc",
                  "Adventure Works", "Wide World Importers", "Proseware", "Woodgrove Bank", "Coho Winery"]


@dataclass(slots=True)
class AccountEntry:
    id: int
    name: str
    subdomain: str
    status: str
    support_type: str
    created_at: int
    updated_at: int


class AccountsMixin:
    """The customer accounts of a reseller World."""

    def _init_accounts(self) -> None:
        self.accounts: dict[int, Any] = {}  # account id -> World
        self.account_entries: dict[int, AccountEntry] = {}
        self._accounts_added = 0

    def _build_accounts(self) -> None:
        for _ in range(self.config.customer_accounts):
            self.add_account(now=self.anchor)

    def add_account(self, name: str | None = None, status: str = "enabled", now: int | None = None,
                    **sizes: Any) -> dict[str, Any]:
        """A new customer account with its own world; `sizes` override WorldConfig fields (agents, ...)."""
        with self.lock:
            from .world import World

            cfg, k = self.config, self._accounts_added
            self._accounts_added += 1
            account_id = cfg.account_id * 10 + k + 1
            name = name or CUSTOMER_NAMES[k % len(CUSTOMER_NAMES)] + (f" {k}" if k >= len(CUSTOMER_NAMES) else "")
            subdomain = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
            scale = cfg.customer_scale
            child = dataclasses.replace(
                cfg, seed=cfg.seed * 1_000 + k + 1, account_id=account_id, account_name=name, subdomain=subdomain,
                anchor=self.now() if now is None else now, customer_accounts=0,
                id_offset=cfg.id_offset + (k + 1) * 10_000_000,
                organizations=max(1, round(cfg.organizations * scale * 4)), agents=max(5, round(cfg.agents * scale)),
                incidents=max(10, round(cfg.incidents * scale)), signals=max(20, round(cfg.signals * scale)),
                escalations=max(2, round(cfg.escalations * scale)),
                platform_actions=max(2, round(cfg.platform_actions * scale)),
                identities=max(10, round(cfg.identities * scale)),
                external_ports=max(5, round(cfg.external_ports * scale)))
            child = dataclasses.replace(child, **sizes)
            world = World(child)
            self.accounts[account_id] = world
            created = world.anchor
            self.account_entries[account_id] = AccountEntry(
                id=account_id, name=name, subdomain=subdomain, status=status,
                support_type=["partner_supported", "huntress_supported"][k % 2], created_at=created,
                updated_at=created)
            return self.customer_account_json(self.account_entries[account_id])

    def remove_account(self, account_id: int) -> bool:
        with self.lock:
            self.account_entries.pop(account_id, None)
            return self.accounts.pop(account_id, None) is not None

    def update_account(self, account_id: int, **changes: Any) -> dict[str, Any]:
        with self.lock:
            entry = self.account_entries[account_id]
            for name in ("name", "status", "support_type"):
                if name in changes:
                    setattr(entry, name, changes[name])
            entry.updated_at = max(self.now(), entry.updated_at)
            if "name" in changes:
                self.accounts[account_id].config.account_name = changes["name"]
            return self.customer_account_json(entry)

    def account_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "id": cfg.account_id, "name": cfg.account_name, "subdomain": cfg.subdomain, "status": "enabled",
            "support_type": "partner_supported",
            "neighborhood_watch": {"edr": 0, "ispm": 0, "itdr": 0, "sat": 0, "siem": 0},
            "billing_address": None, "shipping_address": None,
        }

    def actor_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "account": {"id": cfg.account_id, "name": cfg.account_name, "subdomain": cfg.subdomain,
                        "status": "enabled"},
            "user": {"id": 77, "email": "api@acme-mssp.example", "name": "API User"},
        }

    def customer_account_json(self, entry: AccountEntry) -> dict[str, Any]:
        world = self.accounts[entry.id]
        return {
            "id": entry.id, "name": entry.name, "subdomain": entry.subdomain, "status": entry.status,
            "support_type": entry.support_type,
            "neighborhood_watch": {"edr": len(world.agents) // 10, "ispm": 0, "itdr": len(world.identities) // 10,
                                   "sat": 0, "siem": 0},
            "billing_address": None, "shipping_address": None,
        }

    def list_accounts(self, filters, sort_field, direction, limit, token):
        def keep(entry: AccountEntry) -> bool:
            return all(getattr(entry, name) == value for name, value in filters.items())

        with self.lock:
            found, next_token = page(self.account_entries, None, keep, sort_field, direction, limit, token,
                                     key=lambda e, field: getattr(e, field))
            return [self.customer_account_json(e) for e in found], next_token

    def _tick_accounts(self, now: int, counts: dict[str, Any]) -> dict[str, Any]:
        return {str(account_id): world.tick(**counts, now=now) for account_id, world in self.accounts.items()}

    def truth_accounts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": e.id, "name": e.name, "subdomain": e.subdomain, "status": e.status}
                    for e in self.account_entries.values()]
