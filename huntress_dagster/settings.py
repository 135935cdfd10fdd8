"""Environment-driven settings: every HUNTRESS_* variable is read here and nowhere else.

`Settings.from_env` validates every variable before anything is requested from the API, collects all
the problems and raises one `HuntressConfigError` naming each variable with what is expected. The
values of HUNTRESS_API_KEY / HUNTRESS_API_SECRET never appear in a message.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .streams import AGENTS, EXTERNAL_PORTS, IDENTITIES, ORGANIZATIONS, SNAPSHOT_STREAMS, Stream
from .parsing import DEFAULT_EXCLUDED_INDICATOR_DOMAINS
from .connections import Connection, load_connections_file, missing_credentials
from .client import DEFAULT_BASE_URL, DEFAULT_MAX_PAGES, DEFAULT_MAX_RESPONSE_BYTES, validate_base_url
from .errors import HuntressConfigError
from .ratelimit_sqlite import default_state_path

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_LAKE_UMASK = 0o077  # lake files 0600, directories 0700: incident data is confidential
DEFAULT_INCIDENTS_CRON = "*/5 * * * *"
DEFAULT_AGENTS_CRON = AGENTS.default_cron
MIN_SENSOR_INTERVAL_SECONDS = 5
DEFAULT_SENSOR_REQUESTS_PER_TICK = 6
MAX_TENANT_LENGTH = 128
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_OCTAL = re.compile(r"(?:0o)?([0-7]{1,4})")
_SHOWN_CHARS = 80

# Read by this module, or set by the package itself (the demo secret); any other HUNTRESS_* is a typo.
KNOWN_VARIABLES = frozenset({
    "HUNTRESS_API_KEY", "HUNTRESS_API_SECRET", "HUNTRESS_HOST_URL", "HUNTRESS_ORGANIZATION_ID",
    "HUNTRESS_TENANT", "HUNTRESS_LAKE_DIR", "HUNTRESS_RATE_LIMIT", "HUNTRESS_RATE_WINDOW_SECONDS",
    "HUNTRESS_RATE_LIMIT_STATE", "HUNTRESS_START_DATE", "HUNTRESS_INCIDENTS_CRON", "HUNTRESS_AGENTS_CRON",
    "HUNTRESS_SENSOR_INTERVAL_SECONDS", "HUNTRESS_DEMO_TICK_SECONDS", "HUNTRESS_UMASK",
    "HUNTRESS_MAX_PAGES_PER_WALK", "HUNTRESS_MAX_RESPONSE_BYTES", "HUNTRESS_ORGANIZATIONS_CRON",
    "HUNTRESS_IDENTITIES_CRON", "HUNTRESS_EXTERNAL_PORTS_CRON", "HUNTRESS_EXCLUDED_INDICATOR_DOMAINS",
    "HUNTRESS_DEMO_API_SECRET", "HUNTRESS_CONNECTIONS_FILE", "HUNTRESS_SENSOR_REQUESTS_PER_TICK",
    "HUNTRESS_WEBHOOK_SECRET", "HUNTRESS_WEBHOOK_MAX_BYTES",
})
SECRET_VARIABLES = ("HUNTRESS_API_SECRET", "HUNTRESS_API_KEY", "HUNTRESS_DEMO_API_SECRET", "HUNTRESS_WEBHOOK_SECRET")


def default_start_date(today: date | None = None) -> str:
    """First day of the month 30 days ago: covers a month of history and moves only once a month,
    so the partition set is stable between deploys."""
    day = (today or datetime.now(UTC).date()) - timedelta(days=30)
    return day.replace(day=1).isoformat()


def default_rate_limit_state(environ: Mapping[str, str] | None = None) -> str:
    """The limiter's shared state in a private directory (0700) of the Dagster instance
    (`$DAGSTER_HOME/.huntress_dagster/ratelimit.sqlite`) or else of the user
    (`${XDG_CACHE_HOME:-~/.cache}/huntress_dagster/ratelimit.sqlite`); never the shared temp directory."""
    return default_state_path(environ)


# --- parsers: each returns the value or raises _Invalid("is not ...: expected ...") -------------------------


class _Invalid(ValueError):
    """A problem with one value; the message continues "NAME='value' ..."."""


def _shown(raw: str) -> str:
    """The value as quoted in a message: credentials in a URL masked, long values cut."""
    text = _redact_url(raw)
    text = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
    return repr(text)


def parse_whole(raw: str, *, minimum: int, what: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise _Invalid(f"is not a whole number: expected a whole number of {what} >= {minimum}") from None
    if value < minimum:
        raise _Invalid(f"is too small: expected a whole number of {what} >= {minimum}")
    return value


def parse_seconds(raw: str, *, positive: bool) -> float:
    expected = "a number of seconds " + ("> 0" if positive else ">= 0") + ", e.g. 60 or 0.5"
    try:
        value = float(raw.strip())
    except ValueError:
        raise _Invalid(f"is not a number: expected {expected}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _Invalid(f"is out of range: expected {expected}")
    return value


def parse_start_date(raw: str, *, today: date) -> str:
    text = raw.strip()
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise _Invalid("is not a date: expected YYYY-MM-DD (the first daily partition), "
                       "e.g. 2024-01-01") from None
    if day > today:
        raise _Invalid(f"is in the future: expected a date on or before today ({today.isoformat()}, UTC)")
    return day.isoformat()


def parse_organization_ids(raw: str) -> list[int]:
    expected = "expected organization ids (whole numbers >= 1) separated by commas, e.g. 501,502"
    ids: list[int] = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise _Invalid(f"has {part!r}, not an organization id: {expected}")
        if int(part) not in ids:
            ids.append(int(part))
    return ids


def parse_tenant(raw: str) -> str:
    text = raw.strip()
    if len(text) > MAX_TENANT_LENGTH or not _TENANT.fullmatch(text):
        raise _Invalid(f"is not a tenant id: expected 1-{MAX_TENANT_LENGTH} letters, digits and . _ - : @ +, "
                       "starting with a letter or digit (it is written to every row and keys alert dedup)")
    return text


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    netloc = "***@" + parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc))


def parse_host_url(raw: str) -> str:
    text = raw.strip()
    try:
        return validate_base_url(text)
    except HuntressConfigError as exc:
        raise _Invalid(f"is not usable: {exc.detail.replace(text, _redact_url(text))}") from None


def parse_cron(raw: str) -> str:
    text = raw.strip()
    if not _is_valid_cron(text):
        raise _Invalid("is not a cron schedule: expected 5 fields "
                       "(minute hour day-of-month month day-of-week), e.g. '*/5 * * * *'")
    return text


def _is_valid_cron(text: str) -> bool:
    try:  # the check Dagster's ScheduleDefinition applies, so a schedule never fails to load later
        from dagster._utils.schedules import is_valid_cron_string
    except ImportError:  # pragma: no cover - a Dagster without it: the 5 fields at least
        return len(text.split()) == 5
    try:
        return bool(is_valid_cron_string(text))
    except Exception:  # noqa: BLE001 - a validator crashing on odd input has found it invalid
        return False


def parse_umask(raw: str) -> int:
    expected = ("expected an octal umask of 3 digits, e.g. 077 (files owner-only, the default) or 027 "
                "(group may read)")
    match = _OCTAL.fullmatch(raw.strip().lower())
    if not match:
        raise _Invalid(f"is not an octal umask: {expected}")
    value = int(match.group(1), 8)
    if value > 0o777:
        raise _Invalid(f"is out of range: {expected}")
    if value & 0o700:
        raise _Invalid("masks the owner's own permissions (the connector could not use its files): "
                       + expected)
    return value


def _requests(raw: str) -> int:
    return parse_whole(raw, minimum=1, what="requests")


def _domains(raw: str) -> tuple[str, ...]:
    domains = tuple(part.strip().lower().strip(".") for part in raw.split(",") if part.strip())
    bad = [d for d in domains if " " in d or "/" in d or "." not in d]
    if bad:
        raise _Invalid(f"has entries that are not domain names ({', '.join(bad)}): expected domains separated "
                       "by commas, e.g. huntress.io,huntress.com")
    return domains


def _pages(raw: str) -> int:
    return parse_whole(raw, minimum=1, what="pages per walk")


def _response_bytes(raw: str) -> int:
    return parse_whole(raw, minimum=1 << 20, what="bytes")


def _sensor_requests(raw: str) -> int:
    return parse_whole(raw, minimum=1, what="requests")


def _sensor_interval(raw: str) -> int:
    return parse_whole(raw, minimum=MIN_SENSOR_INTERVAL_SECONDS, what="seconds")


def _positive_seconds(raw: str) -> float:
    return parse_seconds(raw, positive=True)


def _seconds(raw: str) -> float:
    return parse_seconds(raw, positive=False)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


_BUCKET_URL = re.compile(r"s3a?://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?")


def parse_lake_dir(raw: str) -> str:
    if raw.strip().startswith(("s3://", "s3a://")):  # object storage: checked when a run first writes
        if not _BUCKET_URL.fullmatch(raw.strip()):
            raise _Invalid("expected s3://bucket/prefix (a bucket name, then an optional prefix)")
        return raw.strip().rstrip("/")
    path = Path(os.path.abspath(os.path.expanduser(raw.strip())))
    expected = "expected a directory this user can write (created if missing)"
    if path.exists() and not path.is_dir():
        raise _Invalid(f"is not a directory: {expected}")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise _Invalid(f"cannot be created: {existing} is not a directory; {expected}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} is where it would be created)"
        raise _Invalid(f"is not writable by this user{where}: {expected}")
    return str(path)


def parse_state_path(raw: str) -> str:
    """A local file (its directory must be creatable), or a postgresql:// URL taken as is: that database then
    holds the request log shared across machines, checked when a client first connects (where any error
    names the URL with its password hidden). No URL check here: a message about it would quote the value."""
    if raw.strip().lower().startswith(("postgresql://", "postgres://")):
        return raw.strip()
    path = Path(os.path.abspath(os.path.expanduser(raw.strip())))
    expected = "expected a file path for the rate limiter's SQLite state (its directory is created 0700)"
    if path.is_dir():
        raise _Invalid(f"is a directory: {expected}")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise _Invalid(f"cannot be created: {existing} is not a directory; {expected}")
    return str(path)


# --- settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    demo: bool
    host_url: str = DEFAULT_BASE_URL
    organization_ids: list[int] = field(default_factory=list)
    tenant: str = "default"
    lake_dir: str = "lake"
    rate_limit: int = 60
    rate_window_seconds: float = 60.0
    rate_limit_state: str = field(default_factory=default_rate_limit_state)
    start_date: str = field(default_factory=default_start_date)
    incidents_cron: str = DEFAULT_INCIDENTS_CRON
    agents_cron: str = DEFAULT_AGENTS_CRON
    organizations_cron: str = ORGANIZATIONS.default_cron  # hourly: names follow renames within the hour
    identities_cron: str = IDENTITIES.default_cron
    external_ports_cron: str = EXTERNAL_PORTS.default_cron
    # 30 s: one request per alert stream per tick, 240 requests/h (6.7% of the budget)
    sensor_interval_seconds: int = 30
    # per connection and tick: 6 requests every 30 s is 720 requests/h (20% of a 60/min key)
    sensor_requests_per_tick: int = DEFAULT_SENSOR_REQUESTS_PER_TICK
    # the webhook inbox sensor: no API request per tick (it reads the lake), so it can look often; 4 s, not 5:
    # the daemon's sensor loop runs every 5 s, and a 5 s minimum makes every other evaluation skip
    inbox_interval_seconds: int = 4
    # ... and, finding the inbox empty, keeps looking for this long before it returns (a long poll): the daemon
    # starts a sensor evaluation at most every 5 s, so without it an event waits up to 5 s for the next one
    inbox_wait_seconds: float = 4.0
    # several keys (HUNTRESS_CONNECTIONS_FILE or the component's `connections:`); empty: the single-key variables
    connections: tuple[Connection, ...] = ()
    demo_tick_seconds: float = 60.0  # demo mode: the simulator's clock (new incidents, status changes)
    # umask of lake files and directories (HUNTRESS_UMASK, octal): 0o077 owner only; 0o027 a group may read
    lake_umask: int = DEFAULT_LAKE_UMASK
    # Walk guards: a walk stops (and records no completeness) past this many pages; a bigger response is refused
    max_pages_per_walk: int = DEFAULT_MAX_PAGES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    # the vendor's own infrastructure is not an indicator: these domains (and subdomains) are left out of them
    excluded_indicator_domains: tuple[str, ...] = DEFAULT_EXCLUDED_INDICATOR_DOMAINS

    def cron_for(self, stream: Stream) -> str:
        """When the inventory schedule snapshots a snapshot stream (HUNTRESS_<STREAM>_CRON)."""
        return getattr(self, f"{stream.name}_cron")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, today: date | None = None) -> Settings:
        """Settings from HUNTRESS_* variables; raises one `HuntressConfigError` listing every bad one."""
        env = os.environ if environ is None else environ
        today = today or datetime.now(UTC).date()
        problems: list[str] = []

        def read(name: str, parse: Callable[[str], T], default: T) -> T:
            raw = env.get(name)
            if not _is_set(env, name):  # unset or empty: the default
                return default
            assert raw is not None
            try:
                return parse(raw)
            except _Invalid as exc:
                problems.append(f"{name}={_shown(raw)} {exc}")
                return default

        connections = _read_connections(env, problems)
        api_key = env.get("HUNTRESS_API_KEY") or ""
        demo = not api_key and not connections  # no credentials of either kind: the bundled simulator
        if api_key and not connections:
            _check_credentials(env, problems)
        settings = cls(
            demo=demo, connections=tuple(connections),
            host_url=read("HUNTRESS_HOST_URL", parse_host_url, DEFAULT_BASE_URL),
            organization_ids=read("HUNTRESS_ORGANIZATION_ID", parse_organization_ids, []),
            tenant=read("HUNTRESS_TENANT", parse_tenant, "default"),
            lake_dir=read("HUNTRESS_LAKE_DIR", parse_lake_dir, os.path.abspath("lake"))
            if _is_set(env, "HUNTRESS_LAKE_DIR") else _default_lake_dir(problems),
            rate_limit=read("HUNTRESS_RATE_LIMIT", _requests, 60),
            rate_window_seconds=read("HUNTRESS_RATE_WINDOW_SECONDS", _positive_seconds, 60.0),
            rate_limit_state=read("HUNTRESS_RATE_LIMIT_STATE", parse_state_path, "")
            or default_rate_limit_state(env),
            start_date=read("HUNTRESS_START_DATE", lambda raw: parse_start_date(raw, today=today),
                            default_start_date(today)),
            incidents_cron=read("HUNTRESS_INCIDENTS_CRON", parse_cron, DEFAULT_INCIDENTS_CRON),
            agents_cron=read("HUNTRESS_AGENTS_CRON", parse_cron, DEFAULT_AGENTS_CRON),
            organizations_cron=read("HUNTRESS_ORGANIZATIONS_CRON", parse_cron, ORGANIZATIONS.default_cron),
            identities_cron=read("HUNTRESS_IDENTITIES_CRON", parse_cron, IDENTITIES.default_cron),
            external_ports_cron=read("HUNTRESS_EXTERNAL_PORTS_CRON", parse_cron, EXTERNAL_PORTS.default_cron),
            sensor_interval_seconds=read("HUNTRESS_SENSOR_INTERVAL_SECONDS", _sensor_interval, 30),
            sensor_requests_per_tick=read("HUNTRESS_SENSOR_REQUESTS_PER_TICK", _sensor_requests,
                                          DEFAULT_SENSOR_REQUESTS_PER_TICK),
            demo_tick_seconds=read("HUNTRESS_DEMO_TICK_SECONDS", _seconds, 60.0),
            lake_umask=read("HUNTRESS_UMASK", parse_umask, DEFAULT_LAKE_UMASK),
            max_pages_per_walk=read("HUNTRESS_MAX_PAGES_PER_WALK", _pages, DEFAULT_MAX_PAGES),
            max_response_bytes=read("HUNTRESS_MAX_RESPONSE_BYTES", _response_bytes, DEFAULT_MAX_RESPONSE_BYTES),
            excluded_indicator_domains=read("HUNTRESS_EXCLUDED_INDICATOR_DOMAINS", _domains,
                                            DEFAULT_EXCLUDED_INDICATOR_DOMAINS),
        )
        if problems:
            raise config_error(problems, env)
        named = {name for c in connections for name in (c.api_key_env, c.api_secret_env)}
        unknown = sorted(name for name in env if name.startswith("HUNTRESS_") and name not in KNOWN_VARIABLES | named)
        if unknown:
            log.warning("Ignoring unknown environment variables %s (a typo? known: %s)", ", ".join(unknown),
                        ", ".join(sorted(KNOWN_VARIABLES - {"HUNTRESS_DEMO_API_SECRET"})))
        return settings

    def validate(self) -> Settings:
        """Check values set in code or YAML (e.g. `dataclasses.replace` overrides) like `from_env` checks the
        environment; raises one `HuntressConfigError` naming each field. Returns self."""
        problems: list[str] = []
        today = datetime.now(UTC).date()

        def check(name: str, variable: str, value: Any, parse: Callable[[str], Any]) -> None:
            try:
                parse(str(value))
            except _Invalid as exc:
                problems.append(f"{name} ({variable})={_shown(str(value))} {exc}")

        check("host_url", "HUNTRESS_HOST_URL", self.host_url, parse_host_url)
        if self.organization_ids:
            check("organization_ids", "HUNTRESS_ORGANIZATION_ID", ",".join(map(str, self.organization_ids)),
                  parse_organization_ids)
        check("tenant", "HUNTRESS_TENANT", self.tenant, parse_tenant)
        check("lake_dir", "HUNTRESS_LAKE_DIR", self.lake_dir, parse_lake_dir)
        check("rate_limit", "HUNTRESS_RATE_LIMIT", self.rate_limit, _requests)
        check("rate_window_seconds", "HUNTRESS_RATE_WINDOW_SECONDS", self.rate_window_seconds,
              _positive_seconds)
        check("rate_limit_state", "HUNTRESS_RATE_LIMIT_STATE", self.rate_limit_state, parse_state_path)
        check("start_date", "HUNTRESS_START_DATE", self.start_date,
              lambda raw: parse_start_date(raw, today=today))
        check("incidents_cron", "HUNTRESS_INCIDENTS_CRON", self.incidents_cron, parse_cron)
        for stream in SNAPSHOT_STREAMS:
            name = f"{stream.name}_cron"
            check(name, f"HUNTRESS_{name.upper()}", getattr(self, name), parse_cron)
        check("sensor_interval_seconds", "HUNTRESS_SENSOR_INTERVAL_SECONDS", self.sensor_interval_seconds,
              _sensor_interval)
        check("demo_tick_seconds", "HUNTRESS_DEMO_TICK_SECONDS", self.demo_tick_seconds, _seconds)
        check("sensor_requests_per_tick", "HUNTRESS_SENSOR_REQUESTS_PER_TICK", self.sensor_requests_per_tick,
              _sensor_requests)
        umask = format(self.lake_umask, "03o") if isinstance(self.lake_umask, int) else self.lake_umask
        check("lake_umask", "HUNTRESS_UMASK", umask, parse_umask)
        check("max_pages_per_walk", "HUNTRESS_MAX_PAGES_PER_WALK", self.max_pages_per_walk, _pages)
        check("max_response_bytes", "HUNTRESS_MAX_RESPONSE_BYTES", self.max_response_bytes, _response_bytes)
        if problems:
            raise config_error(problems, os.environ)
        return self


def _read_connections(env: Mapping[str, str], problems: list[str]) -> list[Connection]:
    """The connections of HUNTRESS_CONNECTIONS_FILE, each with its secret variables set; [] when unset."""
    if not _is_set(env, "HUNTRESS_CONNECTIONS_FILE"):
        return []
    try:
        connections = load_connections_file(env["HUNTRESS_CONNECTIONS_FILE"].strip())
    except HuntressConfigError as exc:
        problems.append(str(exc))
        return []
    problems += missing_credentials(connections, env)
    return connections


def _is_set(env: Mapping[str, str], name: str) -> bool:
    return bool((env.get(name) or "").strip())


def _default_lake_dir(problems: list[str]) -> str:
    """./lake, checked like an explicit HUNTRESS_LAKE_DIR."""
    try:
        return parse_lake_dir("lake")
    except _Invalid as exc:
        problems.append(f"HUNTRESS_LAKE_DIR is unset, and the default ./lake ({os.path.abspath('lake')}) "
                        f"{exc}")
        return os.path.abspath("lake")


def _check_credentials(env: Mapping[str, str], problems: list[str]) -> None:
    """Credential problems, described without their values."""
    key, secret = env.get("HUNTRESS_API_KEY") or "", env.get("HUNTRESS_API_SECRET") or ""
    portal = "as shown in the Huntress portal (Settings > API Credentials)"
    if key != key.strip():
        problems.append("HUNTRESS_API_KEY has leading or trailing whitespace: expected the key exactly "
                        + portal)
    if not secret.strip():
        problems.append("HUNTRESS_API_SECRET is not set: expected the secret paired with HUNTRESS_API_KEY, "
                        + portal)
    elif secret != secret.strip():
        problems.append("HUNTRESS_API_SECRET has leading or trailing whitespace: expected the secret exactly "
                        f"{portal}")


def config_error(problems: list[str], env: Mapping[str, str]) -> HuntressConfigError:
    """One error listing every problem; any credential value that slipped into one (a secret pasted into the
    wrong variable) is masked."""
    secrets = [value.strip() for name in SECRET_VARIABLES if len(value := (env.get(name) or "").strip()) >= 4]

    def mask(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
            # a long value is cut before it is shown: mask what is left of a secret's beginning too
            for length in range(min(len(secret) - 1, _SHOWN_CHARS), 7, -1):
                text = text.replace(secret[:length], "***")
        return text

    problems = [mask(problem) for problem in problems]
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    error = HuntressConfigError(
        f"Invalid Huntress connector configuration ({count}); nothing was requested from the API:\n"
        + "\n".join(f"  - {problem}" for problem in problems))
    error.problems = problems  # type: ignore[attr-defined]
    return error
