"""The vendor's own infrastructure is not an indicator: Huntress's hosts and the configured API host are
dropped from the entity columns of parsed_syslog rows.

Every incident report links to the Huntress portal (`https://<account>.huntress.io/org/.../incident_reports/
...`), many to support articles, and some name the SOC's mailbox; extracted verbatim, these put the vendor
in the `domains` / `urls` of every alert and drown indicator hunting. So, after extraction (a filter over
the few values found, no extra pass over the text), with D the excluded domains of the `ParseContext`
(`excluded_indicator_domains`, default `DEFAULT_EXCLUDED_INDICATOR_DOMAINS`) plus the hostname of its
`host_url` when that is a DNS name:
- `domains`: a domain that is in D or a subdomain of one is dropped (label-wise: `huntress.io` covers
  `acme.huntress.io` and `api.huntress.io`, not `nothuntress.io` nor `huntress.io.evil.com`);
- `urls`: a URL whose host is such a domain is dropped (the host is what follows `scheme://` and any
  `user@`, so `https://huntress.io@evil.com/` stays, and so does `https://evil.com/?next=huntress.io`); so
  is a URL of the host URL's own host and port when that host is not a DNS name (the simulator's
  `http://127.0.0.1:<port>`; any port when the host URL names none, as a bare `localhost`);
- `emails`, and the e-mail-shaped `users`: an address at such a domain is dropped (the SOC's
  `soc@huntress.com` is the vendor, not an actor);
- `ipv4` / `ipv6` are never filtered, not even the host URL's address: an address in an alert is one of
  the customer's network, where the same loopback or private address means something else entirely.
The links stay where they belong: `portal_url` and `report_header` (incident report and host links).

Entries are matched case-insensitively; `*.`, a leading or a trailing dot are ignored (`*.example.com` is
`example.com`, which covers its subdomains anyway). The list is part of the context's repr, which the
lake's parsed-partition fingerprint hashes, so changing it re-parses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

# Huntress Labs' registrable domains: huntress.io (portal <account>.huntress.io, API api.huntress.io,
# support.huntress.io, agent traffic), huntress.com (company site, blog, docs) and huntresslabs.com (the
# former company domain).
DEFAULT_EXCLUDED_INDICATOR_DOMAINS: tuple[str, ...] = ("huntress.com", "huntress.io", "huntresslabs.com")

_DEFAULT_PORTS = {"http": 80, "hxxp": 80, "https": 443, "hxxps": 443, "ftp": 21, "ftps": 990, "sftp": 22}
_FILTERED = ("domains", "urls", "emails", "users")


def normalized_domains(domains: str | Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated, lower-case entries without `*.` or leading/trailing dots. A string is a list
    separated by commas or whitespace (as an environment variable would give it). TypeError for entries
    that are not strings."""
    if isinstance(domains, str):
        domains = domains.replace(",", " ").split()
    entries = set()
    for entry in domains:
        if not isinstance(entry, str):
            raise TypeError(f"excluded indicator domains must be strings, got {type(entry).__name__}")
        name = entry.strip().lower().removeprefix("*.").strip(".")
        if name:
            entries.add(name)
    return tuple(sorted(entries))


def _split_authority(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL as extraction gives it, or of a bare `host[:port][/path]` (the
    scheme then ""); host lower-cased without a trailing dot or IPv6 brackets, port None when absent or
    not a number."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority = rest
    for end in "/?#\\":
        authority = authority.partition(end)[0]
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        host, _, tail = authority[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else None
    return scheme.lower(), host.lower().rstrip("."), port


def _is_dns_name(host: str) -> bool:
    """True for a dotted name that is not an IP literal (`api.huntress.io`, not `127.0.0.1`, `::1`,
    `localhost`)."""
    if "." not in host or ":" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


@dataclass(frozen=True, slots=True)
class IndicatorExclusion:
    """The compiled exclusion of a context: `domains` (D), and the host URL's (host, port) when its host
    is not a DNS name."""

    domains: frozenset[str]
    subdomain_suffixes: tuple[str, ...]  # ".huntress.io", ... for one str.endswith call
    own_authority: tuple[str, int | None] | None = None
    needles: tuple[str, ...] = ()  # what an excluded URL contains: the domains and the own host

    def excludes_domain(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        return name in self.domains or name.endswith(self.subdomain_suffixes)

    def excludes_url(self, url: str) -> bool:
        lowered = url.lower()
        if not any(name in lowered for name in self.needles):
            return False  # the usual case, a few substring searches
        scheme, host, port = _split_authority(url)
        if self.excludes_domain(host):
            return True
        if self.own_authority is None or host != self.own_authority[0]:
            return False
        own_port = self.own_authority[1]  # None: the host URL names no port, so any port is its own
        return own_port is None or (port or _DEFAULT_PORTS.get(scheme)) == own_port

    def excludes_address(self, address: str) -> bool:
        """An e-mail address (or UPN) at an excluded domain; False for anything without an `@`."""
        _, at, domain = address.rpartition("@")
        return bool(at) and self.excludes_domain(domain)

    def apply(self, entities: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """The entity columns without the excluded values (columns and order otherwise kept)."""
        kept = dict(entities)
        if kept.get("domains"):
            kept["domains"] = [d for d in kept["domains"] if not self.excludes_domain(d)]
        if kept.get("urls"):
            kept["urls"] = [u for u in kept["urls"] if not self.excludes_url(u)]
        for column in ("emails", "users"):
            if kept.get(column):
                kept[column] = [v for v in kept[column] if not self.excludes_address(v)]
        return kept


@lru_cache(maxsize=64)
def indicator_exclusion(domains: tuple[str, ...], host_url: str | None) -> IndicatorExclusion:
    """The exclusion of normalized `domains` (see `normalized_domains`) plus the host URL's host: joined
    to the domains when it is a DNS name, else kept as (host, port) for exact URL matches."""
    excluded = set(domains)
    own_authority = None
    if host_url:
        scheme, host, port = _split_authority(host_url.strip())
        if _is_dns_name(host):
            excluded.add(host)
        elif host:
            own_authority = (host, port or _DEFAULT_PORTS.get(scheme))
    return IndicatorExclusion(
        domains=frozenset(excluded),
        subdomain_suffixes=tuple(sorted("." + name for name in excluded)),
        own_authority=own_authority,
        needles=tuple(sorted(excluded)) + ((own_authority[0],) if own_authority else ()),
    )


def without_excluded(
    entities: dict[str, list[str]] | None, exclusion: IndicatorExclusion
) -> dict[str, list[str]] | None:
    """`entities` (a row's entity columns) without the vendor's infrastructure; None (not parsed) stays
    None."""
    if entities is None or not any(entities.get(column) for column in _FILTERED):
        return entities
    return exclusion.apply(entities)
