"""HTTP client for the Huntress API v1 (plain Python; built from Huntress's swagger document).

- HTTP Basic auth from API key + secret; JSON only.
- Every request first takes a slot from the shared sliding-window `RateLimiter`.
- Transient failures (5xx, timeouts, connection resets, truncated JSON, 429) are retried with
  jittered exponential backoff (tenacity); 400/401/403/404 are not retried and raise typed errors.
- Lists are generators of pages (`limit=500`), so memory stays bounded by one page, and a page walk
  cannot run away: a repeating page token, endless empty pages or more than `max_pages` pages stop it
  with `HuntressPaginationError` naming the endpoint; a response over `max_response_bytes` is refused.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception

from .errors import (
    HuntressConfigError,
    HuntressConnectionError,
    HuntressError,
    HuntressPaginationError,
    HuntressRateLimitError,
    HuntressResponseError,
    HuntressResponseTooLargeError,
    HuntressServerError,
    HuntressTLSError,
    error_for_status,
)
from .ratelimit import RateLimiter

DEFAULT_BASE_URL = "https://api.huntress.io/v1"
MAX_PAGE_SIZE = 500
# A page of 500 incident reports with typical bodies is ~6 MB; one with several 5 MB bodies tens of MB.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
# 50 million records at 500 a page: beyond any real account, short of forever at 60 requests a minute.
DEFAULT_MAX_PAGES = 100_000
# Empty pages that still carry a next token, in a row, before the walk is declared broken.
MAX_EMPTY_PAGES_IN_A_ROW = 3
# A TLS handshake failure is a misconfiguration far more often than a blip: retry once, quickly.
TLS_MAX_ATTEMPTS = 2

log = logging.getLogger(__name__)

_RETRYABLE = (HuntressServerError, HuntressConnectionError, HuntressResponseError, HuntressRateLimitError)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RETRYABLE) and not isinstance(exc, HuntressResponseTooLargeError)


def _tls_cause(exc: BaseException) -> BaseException | None:
    """The ssl error behind an httpx transport error, if any (httpx wraps it in ConnectError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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
        shown = base_url.replace(f"{parts.netloc}", parts.netloc.rsplit("@", 1)[-1]) if "@" in parts.netloc \
            else base_url  # credentials in a URL are never repeated
        raise HuntressConfigError(f"Invalid Huntress host URL {shown!r}: expected https://api.huntress.io/v1")
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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_pages: int = DEFAULT_MAX_PAGES,
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
        self.max_response_bytes = max_response_bytes
        self.max_pages = max_pages
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
        self.rate_limiter.close()

    def __enter__(self) -> HuntressClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one request, with rate limiting and retries -------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET `path` (relative to the base URL) and return the decoded JSON object."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        retrying = Retrying(
            retry=retry_if_exception(_is_retryable),
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
            with self._http.stream("GET", self.base_url + path, params=params) as response:
                content = self._read_capped(response, path)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            tls = _tls_cause(exc)
            if tls is not None:
                reason = getattr(tls, "reason", None) or type(tls).__name__
                raise HuntressTLSError(f"TLS handshake with {urlsplit(self.base_url).hostname} failed ({reason})",
                                       path=path) from None
            raise HuntressConnectionError(f"{type(exc).__name__} talking to the Huntress API", path=path) from None
        if response.status_code >= 400:
            if response.status_code == 429:
                self.stats.throttled_responses += 1
            error = error_for_status(response.status_code, _error_text(response, content), path)
            error.retry_after = _retry_after_seconds(response)  # type: ignore[attr-defined]
            raise error
        data = _decode_json(content, path)
        if not isinstance(data, dict):
            raise HuntressResponseError("Huntress API returned JSON that is not an object", path=path)
        return data

    def _read_capped(self, response: httpx.Response, path: str) -> bytes:
        """The body, refusing more than `max_response_bytes` (declared or actually sent)."""
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
            raise HuntressResponseTooLargeError(
                f"Huntress API response of {int(declared):,} bytes exceeds the cap of {self.max_response_bytes:,}",
                path=path)
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise HuntressResponseTooLargeError(
                    f"Huntress API response exceeds the cap of {self.max_response_bytes:,} bytes", path=path)
            chunks.append(chunk)
        return b"".join(chunks)

    def _should_stop(self, state: RetryCallState) -> bool:
        """Give up after `max_attempts` failures, not counting 429s: being throttled is the budget working
        (other tools share it), so a 429 storm is waited out for up to `max_throttle_seconds`."""
        exc = state.outcome.exception() if state.outcome else None
        throttled = getattr(state, "throttled", 0)
        if isinstance(exc, HuntressRateLimitError):
            state.throttled = throttled + 1  # type: ignore[attr-defined]
            return state.seconds_since_start >= self.max_throttle_seconds
        if isinstance(exc, HuntressTLSError):
            return state.attempt_number - throttled >= min(TLS_MAX_ATTEMPTS, self.max_attempts)
        return state.attempt_number - throttled >= self.max_attempts

    def _backoff(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.backoff_max)
        # Full jitter: spreads retries of concurrent processes instead of synchronising them.
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (state.attempt_number - 1)))
        if isinstance(exc, HuntressTLSError):
            ceiling = min(ceiling, 2.0)
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
        """Yield the pages of a list endpoint, following `pagination.next_page_token`.

        The walk ends when a page carries no token. It is stopped with `HuntressPaginationError` (naming the
        endpoint) when a token comes back that this walk already followed (the API would serve the same
        pages forever), when MAX_EMPTY_PAGES_IN_A_ROW empty pages still carry a token, or past `max_pages`.
        An empty page with a token is followed rather than taken as the end: ending there would take the
        rest of the list for absent."""
        query = dict(params or {})
        query.setdefault("limit", MAX_PAGE_SIZE)
        token: str | None = None
        followed: set[str] = set()
        empty_in_a_row = 0
        for number in range(1, self.max_pages + 1):
            data = self.get(path, {**query, "page_token": token})
            items = data.get(collection)
            if not isinstance(items, list):
                raise HuntressResponseError(f"Huntress API response has no {collection!r} list", path=path)
            pagination = data.get("pagination")
            if not isinstance(pagination, dict) and len(items) >= int(query["limit"]):
                raise HuntressPaginationError(f"page {number} of {path} is full but has no pagination object: "
                                              "the end of the list cannot be told from a cut-off answer", path=path)
            token = (pagination.get("next_page_token") if isinstance(pagination, dict) else None) or None
            if token is not None and not isinstance(token, str):
                raise HuntressPaginationError(f"page {number} of {path} has a next_page_token that is not a "
                                              f"string ({type(token).__name__})", path=path)
            yield Page(items=items, next_page_token=token)
            if token is None:
                return
            if token in followed:
                raise HuntressPaginationError(f"page {number} of {path} repeats a next_page_token this walk "
                                              "already followed (the walk would never end)", path=path)
            followed.add(token)
            empty_in_a_row = 0 if items else empty_in_a_row + 1
            if empty_in_a_row >= MAX_EMPTY_PAGES_IN_A_ROW:
                raise HuntressPaginationError(f"{empty_in_a_row} empty pages in a row of {path} still carry a "
                                              "next_page_token", path=path)
        raise HuntressPaginationError(f"{path} served more than {self.max_pages:,} pages in one walk "
                                      "(HUNTRESS_MAX_PAGES_PER_WALK)", path=path)

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

    def remediations(self, incident_report_id: int, *, path_prefix: str = "", **filters: Any) -> Iterator[dict]:
        """All remediations of an incident report (the report itself embeds only the first 10); `path_prefix`
        ("/accounts/<id>") for a reseller's customer account."""
        path = f"{path_prefix}/incident_reports/{int(incident_report_id)}/remediations"
        return self.iter_items(path, "remediations", filters)


def _decode_json(content: bytes, path: str) -> Any:
    """A response body as Python objects: orjson (~4x the stdlib on pages of incident reports, the walk's
    largest cost after the wire), else the stdlib, which also takes what orjson refuses (lone surrogates,
    integers beyond 64 bits, nesting deeper than 1,024 levels)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # nested beyond the parser's depth
        raise HuntressResponseError("Huntress API returned malformed JSON", path=path) from None


def _error_text(response: httpx.Response, content: bytes) -> str:
    try:
        data = json.loads(content)
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
