"""A hostile Huntress API on loopback: a real HTTP proxy in front of the bundled simulator that serves the
swagger's envelopes but bends them the way a misbehaving API would (repeating page tokens, empty pages
that still carry a token, repeats on a page, records that cannot be keyed).

`HostileProxy(simulator).start()`; set `.fault` to one of FAULTS (None = pass everything through, i.e. a
correct API). It forwards the client's own Authorization header, so credentials are checked upstream.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

FAULTS = ("repeat_token", "empty_pages_with_token", "repeats_on_page", "poison", "out_of_order")
POISON = {  # what each poisoned record gets instead of its id / updated_at, by position on the first page
    0: {"id": "77"},
    1: {"updated_at": "garbage"},
    2: {"updated_at": 1764450000},
    3: {"id": None},
    4: {"id": "__missing__"},
}
SURROGATE_FIELD = {"signals": "name"}  # a string field the stream's records have (default: subject)


class HostileProxy:
    def __init__(self, upstream_url: str, *, page_limit: int = 10, collection: str = "incident_reports"):
        self.upstream = upstream_url.rstrip("/")  # .../v1
        self.page_limit = page_limit  # forces several pages on a small world (a server may serve fewer)
        self.collection = collection
        self.fault: str | None = None
        self.held_back: dict | None = None  # "out_of_order": a record moved to a later page
        self.forbidden_prefix: str | None = None  # paths under it answer 403 (a permission the key lacks)
        self.requests: list[str] = []  # paths+queries of /v1 requests served
        self._http = httpx.Client(timeout=30)
        self._lock = threading.Lock()
        handler = type("BoundHostile", (_Handler,), {"proxy": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> HostileProxy:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._http.close()

    def requests_to(self, collection: str) -> int:
        return sum(1 for r in self.requests if urlsplit(r).path.endswith("/" + collection))

    # --- the faults ------------------------------------------------------------------------------

    def bend(self, path: str, query: dict[str, str], payload: dict[str, Any]) -> dict[str, Any]:
        """The upstream page as the fault bends it ("empty_pages_with_token" never reaches upstream: after the
        first page it answers empty pages, each with a fresh token, so there is no cycle to detect)."""
        if self.fault is None or not path.endswith("/" + self.collection) or not isinstance(payload, dict):
            return payload
        items = payload.get(self.collection) or []
        pagination = payload.setdefault("pagination", {})
        first_page = "page_token" not in query
        if self.fault == "repeat_token" and not first_page:
            pagination["next_page_token"] = query["page_token"]  # the same page, forever
        elif self.fault == "repeats_on_page" and len(items) >= 3:
            items.append(dict(items[0]))  # a non-adjacent repeat of the page's first (id, updated_at)
            items.insert(2, dict(items[1]))
        elif self.fault == "poison" and first_page:
            for position, change in POISON.items():
                for field, value in change.items():
                    if value == "__missing__":
                        items[position].pop(field, None)
                    else:
                        items[position][field] = value
            items[5][SURROGATE_FIELD.get(self.collection, "subject")] = "lone surrogate \ud800 in a string"
        elif self.fault == "out_of_order" and len(items) >= 2:
            if first_page:  # the newest record is held back...
                self.held_back = items.pop(0)
            elif self.held_back is not None and str(items[-1].get("updated_at")) < self.held_back["updated_at"]:
                items.append(self.held_back)  # ...and served after strictly older ones, on a later page
                self.held_back = None
        return payload


class _Handler(BaseHTTPRequestHandler):
    proxy: HostileProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        proxy = self.proxy
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with proxy._lock:
            proxy.requests.append(self.path)
        if parts.path.endswith("/" + proxy.collection):
            query["limit"] = str(min(int(query.get("limit", 500)), proxy.page_limit))
        if proxy.forbidden_prefix and parts.path.startswith(proxy.forbidden_prefix):
            self._answer(403, json.dumps({"status": 403, "error": "Forbidden"}).encode())
            return
        if proxy.fault == "empty_pages_with_token" and "page_token" in query:  # tokens upstream never issued
            self._answer(200, json.dumps({proxy.collection: [],
                                          "pagination": {"next_page_token": uuid.uuid4().hex}}).encode())
            return
        upstream = proxy.upstream + parts.path.removeprefix("/v1") + ("?" + urlencode(query) if query else "")
        response = proxy._http.get(upstream, headers={"Authorization": self.headers.get("Authorization", "")})
        body = response.content
        if response.status_code == 200:
            payload = proxy.bend(parts.path, query, response.json())
            # ensure_ascii keeps a lone surrogate as the escape \ud800, as a real API's JSON would carry it
            body = json.dumps(payload).encode()
        self._answer(response.status_code, body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
