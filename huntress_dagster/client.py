"""HTTP client for the Huntress API v1 (plain Python; built from Huntress's swagger document).

- HTTP Basic auth from API key + secret; JSON only.
- Every request first takes a slot from the shared sliding-window `RateLimiter`.
- Transient failures (5xx, timeouts, connection resets, truncated JSON, 429) are retried with
  jittered exponential backoff (tenacity); 400/401/403/404 are not retried and raise typed errors.
- Lists are generators of pages (`limit=500`), so memory stays bounded by one page.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception

from .errors import (
    HuntressConfigError,
    HuntressConnectionError,
    HuntressError,
    HuntressRateLimitError,
    HuntressResponseError,
    HuntressServerError,
    error_for_status,
)
from .ratelimit import RateLimiter

DEFAULT_BASE_URL = "https://api.huntress.io/v1"
MAX_PAGE_SIZE = 500

log = logging.getLogger(__name__)

_RETRYABLE = (HuntressServerError, HuntressConnectionError, HuntressResponseError, HuntressRateLimitError)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_base_url(base_url: str) -> str:
    """The base URL without a trailing slash; plain http is allowed only for loopback hosts."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HuntressConfigError(f"Invalid Huntress host URL {base_url!r}: expected https://api.huntress.io/v1")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise HuntressConfigError(
            f"Refusing plain http:// for non-loopback host {parts.hostname!r}: credentials would travel "
            "unencrypted. Use https://"
        )
    if parts.username or parts.password:
        raise HuntressConfigError("Put credentials in HUNTRESS_API_KEY / HUNTRESS_API_SECRET, not in the URL")
    return base_url.rstrip("/")


@dataclass
class Page:
    """One page of a list endpoint."""

    items: list[dict[str, Any]]
    next_page_token: str | None


@dataclass
class ClientStats:
    """What the client spent, for run metadata and benchmarks."""

    requests: int = 0
    retries: int = 0
    throttled_responses: int = 0  # HTTP 429 received
    rate_limit_wait_seconds: float = 0.0
    rate_limit_waits: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class HuntressClient:
    """A Huntress API v1 client for one account credential."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        rate_limiter: RateLimiter | None = None,
        timeout: float = 30.0,
        max_attempts: int = 8,
        max_throttle_seconds: float = 900.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        if not api_key or not api_secret:
            raise HuntressConfigError("Huntress API key and secret are both required")
        self.base_url = validate_base_url(base_url)
        self.rate_limiter = rate_limiter or RateLimiter()
        self.max_attempts = max_attempts
        self.max_throttle_seconds = max_throttle_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stats = ClientStats()
        self._http = httpx.Client(
            auth=httpx.BasicAuth(api_key, api_secret),
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "huntress-dagster/0.1"},
            transport=transport,
        )

    def __repr__(self) -> str:  # never show credentials
        return f"HuntressClient(base_url={self.base_url!r}, secret=***)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HuntressClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one request, with rate limiting and retries -------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET `path` (relative to the base URL) and return the decoded JSON object."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, _RETRYABLE)),
            stop=self._should_stop,
            wait=self._backoff,
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._get_once, path, params)

    def _get_once(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        waited = self.rate_limiter.acquire()
        if waited > 0.01:  # below 10 ms is lock overhead, not throttling
            self.stats.rate_limit_wait_seconds += waited
            self.stats.rate_limit_waits += 1
        self.stats.requests += 1
        self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1
        try:
            response = self._http.get(self.base_url + path, params=params)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise HuntressConnectionError(f"{type(exc).__name__} talking to the Huntress API", path=path) from None
        if response.status_code >= 400:
            if response.status_code == 429:
                self.stats.throttled_responses += 1
            error = error_for_status(response.status_code, _error_text(response), path)
            error.retry_after = _retry_after_seconds(response)  # type: ignore[attr-defined]
            raise error
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HuntressResponseError("Huntress API returned malformed JSON", path=path) from None
        if not isinstance(data, dict):
            raise HuntressResponseError("Huntress API returned JSON that is not an object", path=path)
        return data

    def _should_stop(self, state: RetryCallState) -> bool:
        """Give up after `max_attempts` failures, not counting 429s: being throttled is the budget working
        (other tools share it), so a 429 storm is waited out for up to `max_throttle_seconds`."""
        exc = state.outcome.exception() if state.outcome else None
        throttled = getattr(state, "throttled", 0)
        if isinstance(exc, HuntressRateLimitError):
            state.throttled = throttled + 1  # type: ignore[attr-defined]
            return state.seconds_since_start >= self.max_throttle_seconds
        return state.attempt_number - throttled >= self.max_attempts

    def _backoff(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.backoff_max)
        # Full jitter: spreads retries of concurrent processes instead of synchronising them.
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (state.attempt_number - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def _log_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Huntress API attempt %d failed (%s); retrying in %.2fs",
            state.attempt_number,
            getattr(exc, "detail", type(exc).__name__),
            delay,
        )

    # --- pagination --------------------------------------------------------------------------

    def iter_pages(self, path: str, collection: str, params: dict[str, Any] | None = None) -> Iterator[Page]:
        """Yield the pages of a list endpoint, following `pagination.next_page_token`."""
        query = dict(params or {})
        query.setdefault("limit", MAX_PAGE_SIZE)
        token: str | None = None
        while True:
            data = self.get(path, {**query, "page_token": token})
            items = data.get(collection)
            if not isinstance(items, list):
                raise HuntressResponseError(f"Huntress API response has no {collection!r} list", path=path)
            token = (data.get("pagination") or {}).get("next_page_token") or None
            yield Page(items=items, next_page_token=token)
            if not token or not items:
                return

    def iter_items(self, path: str, collection: str, params: dict[str, Any] | None = None) -> Iterator[dict]:
        for page in self.iter_pages(path, collection, params):
            yield from page.items

    def get_one(self, path: str, singular: str) -> dict[str, Any]:
        """A single object from its `{"<singular>": {...}}` envelope."""
        data = self.get(path)
        obj = data.get(singular, data)
        if not isinstance(obj, dict):
            raise HuntressResponseError(f"Huntress API response has no {singular!r} object", path=path)
        return obj

    # --- endpoints ---------------------------------------------------------------------------

    def account(self) -> dict[str, Any]:
        return self.get_one("/account", "account")

    def actor(self) -> dict[str, Any]:
        return self.get("/actor")

    def organizations(self, **filters: Any) -> Iterator[dict]:
        return self.iter_items("/organizations", "organizations", filters)

    def organization(self, organization_id: int) -> dict[str, Any]:
        return self.get_one(f"/organizations/{int(organization_id)}", "organization")

    def agent_pages(self, **filters: Any) -> Iterator[Page]:
        """Filters: organization_id, platform, hostname, os, version, sort_field, sort_direction."""
        return self.iter_pages("/agents", "agents", filters)

    def agents(self, **filters: Any) -> Iterator[dict]:
        return self.iter_items("/agents", "agents", filters)

    def agent(self, agent_id: int) -> dict[str, Any]:
        return self.get_one(f"/agents/{int(agent_id)}", "agent")

    def incident_report_pages(self, **filters: Any) -> Iterator[Page]:
        """Filters: status, severity, platform, indicator_type, organization_id, agent_id,
        sort_field (id, created_at, updated_at), sort_direction."""
        return self.iter_pages("/incident_reports", "incident_reports", filters)

    def incident_reports(self, **filters: Any) -> Iterator[dict]:
        return self.iter_items("/incident_reports", "incident_reports", filters)

    def incident_report(self, incident_report_id: int) -> dict[str, Any]:
        return self.get_one(f"/incident_reports/{int(incident_report_id)}", "incident_report")

    def remediations(self, incident_report_id: int, **filters: Any) -> Iterator[dict]:
        """All remediations of an incident report (the report itself embeds only the first 10)."""
        return self.iter_items(f"/incident_reports/{int(incident_report_id)}/remediations", "remediations", filters)


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(data, dict):
        for key in ("error", "message", "errors"):
            if data.get(key):
                return str(data[key])[:300]
    return response.reason_phrase or "error"


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


__all__ = ["HuntressClient", "HuntressError", "Page", "ClientStats", "DEFAULT_BASE_URL", "validate_base_url"]
