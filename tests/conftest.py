"""Shared fixtures: every test talks real HTTP to the bundled simulator on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from huntress_dagster.client import HuntressClient
from huntress_dagster.ratelimit import RateLimiter
from huntress_dagster.simulator import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    SimulatorConfig,
    SimulatorServer,
    World,
    WorldConfig,
)

# Small worlds keep the suite fast; tests that need scale ask for it.
SMALL_WORLD = dict(organizations=3, agents=60, incidents=300, days=10, large_body_share=0.0)


def admin(server: SimulatorServer, path: str, payload: dict | None = None) -> dict:
    """Call the simulator's admin API over HTTP (GET, or POST with a JSON payload)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{server.admin_url}/{path}", data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators with a given world/config; all are stopped after the test."""
    started: list[SimulatorServer] = []

    def factory(world: dict | None = None, **config) -> SimulatorServer:
        # Fast tests: a generous budget unless a test asks for the real 60/min.
        config.setdefault("rate_limit", 10_000)
        config.setdefault("rate_window_seconds", 1.0)
        server = SimulatorServer(World(WorldConfig(**{**SMALL_WORLD, **(world or {})})), SimulatorConfig(**config))
        started.append(server.start())
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def simulator(make_simulator) -> SimulatorServer:
    return make_simulator()


def make_client(server: SimulatorServer, *, requests: int = 10_000, window: float = 1.0, state_path=None,
                key: str = DEMO_API_KEY, secret: str = DEMO_API_SECRET, **kwargs) -> HuntressClient:
    kwargs.setdefault("backoff_base", 0.05)
    kwargs.setdefault("backoff_max", 1.0)
    return HuntressClient(key, secret, server.url, rate_limiter=RateLimiter(requests, window, state_path=state_path),
                          **kwargs)


@pytest.fixture
def client(simulator) -> Iterator[HuntressClient]:
    with make_client(simulator) as c:
        yield c
