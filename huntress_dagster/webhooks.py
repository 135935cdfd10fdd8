"""The Huntress webhook receiver: `huntress-dagster webhooks --host 127.0.0.1 --port 8787`.

An ASGI app (Starlette, served by uvicorn) that accepts Svix-signed deliveries at `POST /webhooks/huntress`.
Every delivery is checked before anything is stored, in this order:

- content type not JSON -> 415; body over the limit (`HUNTRESS_WEBHOOK_MAX_BYTES`, 1 MiB) -> 413;
- missing or bad signature, or a timestamp outside Svix's 5-minute tolerance (a replay) -> 401, verified with
  the maintained `svix` package against `HUNTRESS_WEBHOOK_SECRET` (`whsec_...`);
- a body that is not a JSON object -> 400;
- a svix-id already stored (Svix retries, a duplicate) -> 200 and stored once.

A valid event is durable in the lake's inbox (inbox.py) before the 2xx. Counts per outcome are kept in the
lake (`_state/webhooks.json`) and shown on the inbox sensor's runs. Plain Python and Starlette: no Dagster.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from svix.webhooks import Webhook, WebhookVerificationError

from .errors import HuntressConfigError
from .inbox import DeliveryStats, Inbox
from .lake import Lake

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1_048_576
PATH = "/webhooks/huntress"


async def _body_within(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes `limit` (never held whole beyond it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(lake: Lake, secret: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Starlette:
    if not secret or not secret.startswith("whsec_"):
        raise HuntressConfigError("HUNTRESS_WEBHOOK_SECRET must be the endpoint's Svix signing secret (whsec_...); "
                                  "the receiver refuses to start without one")
    verifier, inbox, stats = Webhook(secret), Inbox(lake), DeliveryStats(lake)

    def outcome(name: str, status: int, detail: str) -> Response:
        stats.count(name)
        if status >= 400:
            log.warning("webhook delivery rejected (%s): %s", name, detail)
        return JSONResponse({"outcome": name, "detail": detail}, status_code=status)

    async def receive(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return outcome("rejected_content_type", 415, "expected application/json")
        body = await _body_within(request, max_bytes)
        if body is None:
            return outcome("rejected_too_large", 413, f"body over {max_bytes} bytes")
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:  # bad/missing signature, or timestamp outside the tolerance
            return outcome("rejected_signature", 401, str(exc))
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return outcome("rejected_body", 400, "the body is not a JSON object")
        if not inbox.accept(request.headers["svix-id"], payload):
            return outcome("duplicate", 200, "already received")
        return outcome("accepted", 200, "stored")

    async def health(_: Request) -> Response:
        return JSONResponse({"deliveries": stats.read()})

    return Starlette(routes=[Route(PATH, receive, methods=["POST"]), Route("/health", health, methods=["GET"])])


def serve(lake: Lake, secret: str, host: str = "127.0.0.1", port: int = 8787,
          max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    import uvicorn

    uvicorn.run(create_app(lake, secret, max_bytes), host=host, port=port, log_level="warning")
