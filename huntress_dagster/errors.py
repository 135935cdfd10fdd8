"""Typed errors for the Huntress API, each carrying guidance a user can act on.

The guidance follows the reference connector's troubleshooting table. Messages never contain
credentials: they are built only from the status code, the request path and the API's own error
text (which never echoes the secret).
"""

from __future__ import annotations


class HuntressError(Exception):
    """Base class of every error this package raises about the Huntress API."""

    guidance = ""

    def __init__(self, message: str, *, status_code: int | None = None, path: str | None = None):
        self.status_code = status_code
        self.path = path
        self.detail = message
        text = message
        if path:
            text = f"{text} (request: {path})"
        if self.guidance:
            text = f"{text}. {self.guidance}"
        super().__init__(text)


class HuntressConfigError(HuntressError):
    """The connection is configured in a way that cannot work (bad URL, missing credentials)."""


class HuntressBadRequestError(HuntressError):
    guidance = (
        "HTTP 400: the API rejected a parameter value. Check filters (organization id, status, severity, "
        "platform), sort fields and limit (1..500); if this came from a scheduled run, report it as a bug"
    )


class HuntressAuthenticationError(HuntressError):
    guidance = (
        "HTTP 401: not authenticated. Did you enter your credentials correctly? Are your credentials "
        "expired? Generate a new API key and secret in the Huntress portal (Settings > API Credentials) "
        "and set HUNTRESS_API_KEY / HUNTRESS_API_SECRET"
    )


class HuntressPermissionError(HuntressError):
    guidance = (
        "HTTP 403: there was an issue with your API credential or its permissions. Check that the API "
        "credential is enabled and allowed to read this resource; a reseller credential may need an "
        "account-scoped path"
    )


class HuntressNotFoundError(HuntressError):
    guidance = (
        "HTTP 404: the resource does not exist or this credential may not see it. Check the host URL "
        "(expected https://api.huntress.io/v1) and the organization id filter"
    )


class HuntressRateLimitError(HuntressError):
    guidance = (
        "HTTP 429: rate limited (60 requests per minute per account, shared with every tool using the "
        "same account). Lower the rate budget (HUNTRESS_RATE_LIMIT) or stop other tools sharing the account, "
        "then retry"
    )


class HuntressServerError(HuntressError):
    guidance = "HTTP 5xx: the Huntress API had a server error. It was retried; try again later"


class HuntressConnectionError(HuntressError):
    guidance = (
        "The Huntress API could not be reached (timeout or connection reset). It was retried; check the "
        "host URL and network, then try again"
    )


class HuntressResponseError(HuntressError):
    guidance = "The API answered with a body that is not the expected JSON. It was retried; try again later"


class HuntressTLSError(HuntressConnectionError):
    guidance = (
        "The TLS handshake with the Huntress API failed. Check the host URL: https:// must point at a TLS "
        "port (a plain-HTTP server answers TLS with garbage), and the server's certificate must be trusted"
    )


class HuntressPaginationError(HuntressError):
    """The API's paging cannot be trusted for this walk (a repeating token, endless empty pages, too many
    pages, records out of order). What was walked is kept; completeness is not recorded."""

    guidance = (
        "The walk was stopped so it cannot drain the account's shared rate budget, and the committed "
        "watermark was left where it was, so the next run re-reads this range. If it persists, report the "
        "request to Huntress support"
    )


class HuntressResponseTooLargeError(HuntressResponseError):
    guidance = (
        "The response exceeded the configured size cap (HUNTRESS_MAX_RESPONSE_BYTES); a page of 500 records "
        "should be far smaller. Raise the cap only if the account really has such records"
    )


_BY_STATUS: dict[int, type[HuntressError]] = {
    400: HuntressBadRequestError,
    401: HuntressAuthenticationError,
    403: HuntressPermissionError,
    404: HuntressNotFoundError,
    429: HuntressRateLimitError,
}


def error_for_status(status_code: int, message: str, path: str) -> HuntressError:
    """The typed error for an HTTP error status."""
    if status_code >= 500:
        cls: type[HuntressError] = HuntressServerError
    else:
        cls = _BY_STATUS.get(status_code, HuntressError)
    return cls(f"Huntress API returned HTTP {status_code}: {message}", status_code=status_code, path=path)


class RateLimiterStalled(HuntressError):
    """No request slot could be had from the shared rate limiter within its maximum wait."""

    guidance = (
        "The request budget stayed used up for longer than any request of this integration should wait. "
        "Another process or tool sharing the rate limiter state (HUNTRESS_RATE_LIMIT_STATE) may be spending "
        "the whole budget, or the state file holds entries that keep it full; stop the other tool or lower "
        "its share, or delete the state file (with a PostgreSQL state: its rows in huntress_rate_log; either "
        "only holds the last window of request times), then retry"
    )


class RateLimiterUnavailable(HuntressError):
    """The rate limiter's shared state on PostgreSQL could not be reached or used."""

    guidance = (
        "The request budget is shared through PostgreSQL (HUNTRESS_RATE_LIMIT_STATE is a postgresql:// URL) "
        "and that server could not be used. Check that it is up and reachable from this machine, and the user, "
        "database and password (PGPASSWORD or ~/.pgpass rather than the URL); the user needs to create the "
        "table huntress_rate_log once (or be given it), then read, insert and delete its rows"
    )
