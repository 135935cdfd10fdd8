"""A real HTTP server that behaves like the documented Huntress API v1, over a simulated World.

Besides `/v1/...` it serves a small admin API under `/_sim/` (no auth, loopback only) that tests,
benchmarks and the demo use to move time, inject faults and read the request log:

    POST /_sim/tick                 {"new_incidents": 3, "new_signals": 3, ...}  (World.tick's counts)
    POST /_sim/faults, /_sim/rate_limit, /_sim/requests/clear
    POST /_sim/rename_organization  {"organization_id", "name"?, "account_id"?}
    POST /_sim/accounts/add         {"name"?, "status"?, WorldConfig sizes such as "agents"?}
    POST /_sim/accounts/remove      {"account_id"}
    POST /_sim/accounts/update      {"account_id", "name"?, "status"?, "support_type"?}
    POST /_sim/keys/add             {"api_key", "api_secret"?, WorldConfig sizes?}: a second, independent
                                    key with its own account and world
    POST /_sim/keys/revoke|restore  {"api_key"?}: the key answers 401 until restored (default: the main key)
    POST /_sim/deny                 {"paths": ["/v1/signals", ...]}: 403 on those path prefixes ([] clears)
    GET  /_sim/info, /_sim/requests?since=
    GET  /_sim/truth/<incidents|agents|signals|escalations|platform_actions|identities|external_ports|
                     organizations|accounts>?account_id=   (the latest state of every record)

Webhooks (webhooks.py): every tick of the main account's world (from /_sim/tick, the ticker thread or
`tick_all`) becomes Huntress webhook events (incident_report.created/.closed, escalation.* and
platform_action.* .created/.closed/.overdue), POSTed from a background thread to the configured URL and
signed as Svix signs them (svix-id / svix-timestamp / svix-signature), retried per `retry_delays`:

    POST /_sim/webhooks             {"url": "http://127.0.0.1:9000/hook" | null, "secret"?: "whsec_<base64>",
                                     "retry_delays"?: [0, 5, 300, ...], "timeout"?: 5.0}: configure (a null
                                     url disables and cancels pending retries; a url without a secret gets a
                                     new one); answers the settings. Omitted keys keep their value.
    GET  /_sim/webhooks?since=      the settings; "counts" {messages, attempts, failed_attempts, pending,
                                     delivered, given_up, cancelled}; "messages" [{svix_id, event_type,
                                     object_id, state, attempts, url, created_at}]; "attempts" [{svix_id,
                                     event_type, object_id, attempt, status (HTTP code or null), error (null,
                                     "HTTP 500" or the connection error), response, outcome (delivered |
                                     retrying | given_up | cancelled), svix_timestamp, t, url}]
    POST /_sim/webhooks/emit        {"event_type", "object_id"?, "comment"?, "message"?, "subject"?, "body"?}:
                                     send one event now (e.g. incident_report.comment_added or
                                     account_notice.notification, which ticks never make); answers its svix_id
    POST /_sim/webhooks/clear       forget the finished messages and the recorded attempts
"""

from __future__ import annotations

import base64
import collections
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import route
from .webhooks import DEFAULT_RETRY_DELAYS, DEFAULT_TIMEOUT, WebhookSender
from .world import BadRequest, World, WorldConfig

DEMO_API_KEY = "demo-key"
DEMO_API_SECRET = "demo-secret-not-for-production"
# Authenticates, but lacks permission: every /v1 request answers 403 (to exercise that error path).
FORBIDDEN_API_KEY = "no-permissions-key"

# /_sim/truth/<name> -> (envelope, World method): the current latest state of every record
TRUTH = {
    "incidents": ("incident_reports", "truth_incidents"), "agents": ("agents", "truth_agents"),
    "signals": ("signals", "truth_signals"), "escalations": ("escalations", "truth_escalations"),
    "platform_actions": ("platform_actions", "truth_platform_actions"),
    "identities": ("identities", "truth_identities"), "external_ports": ("external_ports", "truth_external_ports"),
    "organizations": ("organizations", "truth_organizations"), "accounts": ("accounts", "truth_accounts"),
}


@dataclass
class Faults:
    """Counters of faults still to inject; each /v1 request consumes at most one of each kind."""

    server_errors: int = 0  # respond 500 (or `server_error_code`)
    server_error_code: int = 500
    rate_limit_storm: int = 0  # respond 429 regardless of the window
    retry_after: float | None = None  # sent with injected 429s when set
    slow: int = 0  # delay responses by `slow_seconds`
    slow_seconds: float = 1.0
    drop: int = 0  # close the connection without an answer
    malformed: int = 0  # send truncated JSON


@dataclass
class SimulatorConfig:
    api_key: str = DEMO_API_KEY
    api_secret: str = DEMO_API_SECRET
    rate_limit: int = 60
    rate_window_seconds: float = 60.0
    retry_after_on_429: bool = False  # the API does not document Retry-After
    tick_seconds: float = 0.0  # > 0: move time automatically every so many seconds
    faults: Faults = field(default_factory=Faults)
    # Webhooks (webhooks.py): the receiver's URL (None: none sent), its Svix secret (whsec_<base64>; a new one
    # when None), the delays before each attempt (default Svix's schedule; one attempt per delay) and the
    # timeout of one attempt.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_retry_delays: list[float] = field(default_factory=lambda: list(DEFAULT_RETRY_DELAYS))
    webhook_timeout: float = DEFAULT_TIMEOUT


class SimulatorServer:
    """The simulator on 127.0.0.1; `start()` serves in a background thread."""

    def __init__(self, world: World | None = None, config: SimulatorConfig | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.world = world or World(WorldConfig())
        self.config = config or SimulatorConfig()
        self.faults = self.config.faults
        self.request_log: list[dict[str, Any]] = []
        self._admitted: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        handler = type("BoundHandler", (_Handler,), {"sim": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []
        self.last_request_at = time.monotonic()
        self.key_worlds: dict[str, tuple[str, World]] = {}  # independent keys: api_key -> (secret, world)
        self.revoked: set[str] = set()
        self.denied_paths: list[str] = []
        self.webhooks = WebhookSender(self.world, lambda: self.url, url=self.config.webhook_url,
                                      secret=self.config.webhook_secret,
                                      retry_delays=self.config.webhook_retry_delays,
                                      timeout=self.config.webhook_timeout)

    def add_key(self, api_key: str, api_secret: str | None = None, **sizes: Any) -> World:
        """A second, independent key: its own account (its own id, names and ids), as a direct key of it."""
        n = len(self.key_worlds) + 1
        base = self.world.config
        config = WorldConfig(**{**asdict(base), "seed": base.seed * 7_919 + n, "account_id": 5_000 + n,
                                "account_name": f"Independent Co {n}", "subdomain": f"independent-co-{n}",
                                "customer_accounts": 0, "id_offset": (90 + n) * 10_000_000,
                                "anchor": self.world.anchor, **sizes})
        world = World(config)
        self.key_worlds[api_key] = (api_secret or self.config.api_secret, world)
        return world

    def world_for_key(self, api_key: str, api_secret: str) -> World | None:
        """The world a key and secret reach, or None (unknown, wrong secret or revoked: 401)."""
        if api_key in self.revoked:
            return None
        if api_key in (self.config.api_key, FORBIDDEN_API_KEY):
            return self.world if api_secret == self.config.api_secret else None
        secret, world = self.key_worlds.get(api_key, (None, None))
        return world if secret is not None and api_secret == secret else None

    def tick_all(self, **counts: Any) -> dict[str, Any]:
        """Move every world's clock (the main world's counts are returned)."""
        for _, world in list(self.key_worlds.values()):
            world.tick(**counts)
        return self.world.tick(**counts)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def admin_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/_sim"

    def start(self) -> SimulatorServer:
        serve = threading.Thread(target=self.httpd.serve_forever, name="huntress-simulator", daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.config.tick_seconds > 0:
            ticker = threading.Thread(target=self._tick_forever, name="huntress-simulator-clock", daemon=True)
            ticker.start()
            self._threads.append(ticker)
        self.webhooks.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.webhooks.stop()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tick_forever(self) -> None:
        while not self._stop.wait(self.config.tick_seconds):
            self.tick_all()

    # --- rate limit, faults, log --------------------------------------------------------------

    def admit(self, api_key: str) -> tuple[bool, int]:
        """Sliding window per account: (admitted?, remaining after this request)."""
        now = time.monotonic()
        with self._lock:
            window = self._admitted[api_key]
            while window and window[0] <= now - self.config.rate_window_seconds:
                window.popleft()
            if len(window) >= self.config.rate_limit:
                return False, 0
            window.append(now)
            return True, self.config.rate_limit - len(window)

    def take_fault(self, kind: str) -> bool:
        with self._lock:
            left = getattr(self.faults, kind)
            if left > 0:
                setattr(self.faults, kind, left - 1)
                return True
            return False

    def log_request(self, entry: dict[str, Any]) -> None:
        self.last_request_at = time.monotonic()
        with self._lock:
            self.request_log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    sim: SimulatorServer
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle on, each keep-alive answer stalls ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr noise
        pass

    # --- plumbing -------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self._logged(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"status": status, "error": message}, headers)

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _credentials(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            key, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return None
        return key, secret

    # --- admin API ------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        path = urlsplit(self.path).path
        body = self._read_json()
        try:
            self._admin_post(path, body)
        except (TypeError, KeyError, ValueError) as exc:  # unknown tick counts, unknown ids
            self._error(400, f"{type(exc).__name__}: {exc}")

    def _admin_post(self, path: str, body: dict[str, Any]) -> None:
        sim = self.sim
        if path == "/_sim/tick":
            self._send(200, sim.tick_all(**body))
        elif path == "/_sim/faults":
            with sim._lock:
                for name, value in body.items():
                    if not hasattr(sim.faults, name):
                        return self._error(400, f"unknown fault {name!r}")
                    setattr(sim.faults, name, value)
            self._send(200, asdict(sim.faults))
        elif path == "/_sim/rate_limit":
            sim.config.rate_limit = int(body.get("rate_limit", sim.config.rate_limit))
            sim.config.rate_window_seconds = float(body.get("rate_window_seconds", sim.config.rate_window_seconds))
            self._send(200, {"rate_limit": sim.config.rate_limit, "rate_window_seconds": sim.config.rate_window_seconds})
        elif path == "/_sim/requests/clear":
            with sim._lock:
                sim.request_log.clear()
            self._send(200, {"cleared": True})
        elif path == "/_sim/rename_organization":  # {"organization_id", "name"?, "account_id"?}
            world = self._world_of(body.get("account_id"))
            self._send(200, {"organization": world.rename_organization(int(body["organization_id"]),
                                                                       body.get("name"))})
        elif path == "/_sim/accounts/add":  # {"name"?, "status"?, any WorldConfig size: "agents", ...}
            self._send(200, {"account": sim.world.add_account(**body)})
        elif path == "/_sim/accounts/remove":  # {"account_id"}
            self._send(200, {"removed": sim.world.remove_account(int(body["account_id"]))})
        elif path == "/_sim/accounts/update":  # {"account_id", "name"?, "status"?, "support_type"?}
            account_id = int(body.pop("account_id"))
            self._send(200, {"account": sim.world.update_account(account_id, **body)})
        elif path == "/_sim/keys/add":  # {"api_key", "api_secret"?, any WorldConfig size}
            world = sim.add_key(**body)
            self._send(200, {"account": world.account_json()})
        elif path in ("/_sim/keys/revoke", "/_sim/keys/restore"):  # {"api_key"?}
            key = body.get("api_key", sim.config.api_key)
            (sim.revoked.add if path.endswith("revoke") else sim.revoked.discard)(key)
            self._send(200, {"revoked": sorted(sim.revoked)})
        elif path == "/_sim/deny":  # {"paths": [...]}
            sim.denied_paths = [str(p) for p in body.get("paths", [])]
            self._send(200, {"denied_paths": sim.denied_paths})
        elif path == "/_sim/webhooks":  # {"url", "secret"?, "retry_delays"?, "timeout"?}
            self._send(200, sim.webhooks.configure(**body))
        elif path == "/_sim/webhooks/emit":  # {"event_type", "object_id"?, ...}
            message = sim.webhooks.emit(**body)
            self._send(200, {"svix_id": message.svix_id, "event_type": message.event_type,
                             "object_id": message.object_id})
        elif path == "/_sim/webhooks/clear":
            sim.webhooks.clear()
            self._send(200, {"cleared": True})
        else:
            self._error(404, "not found")

    def _world_of(self, account_id: Any) -> World:
        """The top-level world, an independent key's, or a customer account's, by account id."""
        if account_id in (None, "", self.sim.world.config.account_id, str(self.sim.world.config.account_id)):
            return self.sim.world
        for _, world in self.sim.key_worlds.values():
            if str(world.config.account_id) == str(account_id):
                return world
        return self.sim.world.accounts[int(account_id)]

    def _admin_get(self, path: str, query: dict[str, str]) -> None:
        sim = self.sim
        if path == "/_sim/info":
            world = sim.world
            # pid: which process answers (demo.py tells its own simulator from another on a reused port)
            self._send(200, {"url": sim.url, "pid": os.getpid(), "api_key": sim.config.api_key,
                             "seed": world.config.seed,
                             "anchor": world.anchor, "ticks": world.tick_count,
                             "incidents": len(world.incidents), "agents": len(world.agents),
                             "signals": len(world.signals), "escalations": len(world.escalations),
                             "platform_actions": len(world.platform_actions), "identities": len(world.identities),
                             "external_ports": len(world.external_ports), "organizations": len(world.organizations),
                             "accounts": sorted(world.accounts), "rate_limit": sim.config.rate_limit,
                             "rate_window_seconds": sim.config.rate_window_seconds})
        elif path == "/_sim/requests":
            since = float(query.get("since", 0))
            with sim._lock:
                entries = [e for e in sim.request_log if e["t"] >= since]
            self._send(200, {"requests": entries})
        elif path == "/_sim/webhooks":
            self._send(200, sim.webhooks.report(float(query.get("since", 0))))
        elif path.startswith("/_sim/truth/") and path[len("/_sim/truth/"):] in TRUTH:
            # ?account_id=<customer account> reads that account's world
            envelope, method = TRUTH[path[len("/_sim/truth/"):]]
            try:
                world = self._world_of(query.get("account_id"))
            except (KeyError, ValueError):
                return self._error(404, "no such account")
            self._send(200, {envelope: getattr(world, method)()})
        else:
            self._error(404, "not found")

    # --- the API --------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.path.startswith("/_sim/"):
            return self._admin_get(parts.path, query)
        creds = self._credentials()
        self._log_entry = {"t": time.time(), "path": parts.path, "query": parts.query,
                           "key": creds[0] if creds else None}
        try:
            self._serve_api(parts.path, query, creds)
        except Exception as exc:  # a simulator bug must look like a server error, not a hang
            self._error(500, f"simulator error: {type(exc).__name__}: {exc}")

    def _logged(self, status: int) -> None:
        """Log the API request as answered, BEFORE the client can see the answer: whoever reads the log
        after a response must find that request in it."""
        entry = getattr(self, "_log_entry", None)
        if entry is not None:
            self._log_entry = None
            self.sim.log_request({**entry, "status": status, "duration": time.time() - entry["t"]})

    def _serve_api(self, path: str, query: dict[str, str], creds: tuple[str, str] | None) -> int:
        sim = self.sim
        if sim.take_fault("drop"):
            self._logged(0)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 0
        if sim.take_fault("slow"):
            time.sleep(sim.faults.slow_seconds)
        world = sim.world_for_key(*creds) if creds else None
        if world is None:
            self._error(401, "Unauthorized: invalid API key or secret")
            return 401
        if creds[0] == FORBIDDEN_API_KEY or any(path.startswith(p) for p in sim.denied_paths):
            self._error(403, "There was an issue with your API credential or permissions.")
            return 403
        if sim.take_fault("server_errors"):
            code = sim.faults.server_error_code
            self._error(code, "Internal Server Error")
            return code
        retry_headers = {"Retry-After": str(sim.faults.retry_after)} if sim.faults.retry_after is not None else {}
        if sim.take_fault("rate_limit_storm"):
            self._error(429, "Too Many Requests", retry_headers)
            return 429
        admitted, remaining = sim.admit(creds[0])
        limit_headers = {"x-huntress-api-call-limit": str(sim.config.rate_limit),
                         "x-huntress-api-call-remaining": str(remaining)}
        if not admitted:
            if sim.config.retry_after_on_429:
                limit_headers["Retry-After"] = str(int(sim.config.rate_window_seconds) or 1)
            self._error(429, "Too Many Requests", limit_headers)
            return 429
        try:
            status, payload = route(world, path, query, sim.url)
        except BadRequest as exc:
            self._error(400, str(exc), limit_headers)
            return 400
        if sim.take_fault("malformed"):
            text = json.dumps(payload).encode()
            self._send(status, None, limit_headers, raw=text[: max(1, len(text) // 2)])
            return status
        self._send(status, payload, limit_headers)
        return status
