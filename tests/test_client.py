"""The Huntress API client against the simulator over real loopback HTTP."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from huntress_dagster.client import HuntressClient, validate_base_url
from huntress_dagster.errors import (
    HuntressAuthenticationError,
    HuntressBadRequestError,
    HuntressConfigError,
    HuntressNotFoundError,
    HuntressPermissionError,
    HuntressRateLimitError,
    HuntressServerError,
)
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET, FORBIDDEN_API_KEY

from .conftest import admin, make_client


def test_full_pagination_of_10000_agents_delivers_each_exactly_once(make_simulator):
    server = make_simulator({"agents": 10_250, "incidents": 0})
    with make_client(server) as client:
        pages = list(client.agent_pages())
        ids = [agent["id"] for page in pages for agent in page.items]
    truth = {a["id"] for a in admin(server, "truth/agents")["agents"]}
    assert len(ids) == 10_250
    assert len(set(ids)) == len(ids)
    assert set(ids) == truth
    assert len(pages) == 21  # ceil(10250 / 500): limit=500 is used
    assert all(len(page.items) <= 500 for page in pages)


def test_incident_walk_by_updated_at_desc_is_ordered_and_complete(client, simulator):
    reports = list(client.incident_reports(sort_field="updated_at", sort_direction="desc"))
    stamps = [r["updated_at"] for r in reports]
    assert stamps == sorted(stamps, reverse=True)
    assert {r["id"] for r in reports} == {r["id"] for r in admin(simulator, "truth/incidents")["incident_reports"]}


def test_filters_and_single_object_envelopes(client):
    critical = list(client.incident_reports(severity="critical"))
    assert critical and all(r["severity"] == "critical" for r in critical)
    org_id = next(client.organizations())["id"]
    agents = list(client.agents(organization_id=org_id))
    assert agents and all(a["organization_id"] == org_id for a in agents)
    assert client.agent(agents[0]["id"])["hostname"] == agents[0]["hostname"]
    first = critical[0]
    assert client.incident_report(first["id"])["subject"] == first["subject"]
    assert client.account()["subdomain"] == "acme-mssp"
    assert client.organization(org_id)["id"] == org_id


def test_remediations_beyond_the_embedded_ten(make_simulator):
    server = make_simulator({"many_remediations_share": 1.0, "flat_remediations_share": 0.0, "incidents": 5})
    with make_client(server) as client:
        report = next(client.incident_reports())
        embedded = report["remediations"]
        assert embedded["has_more"] and len(embedded["items"]) == 10
        everything = list(client.remediations(report["id"], limit=7))
    assert len(everything) == embedded["total_count"] > 10
    assert len({r["id"] for r in everything}) == len(everything)
    assert {r["id"] for r in embedded["items"]} <= {r["id"] for r in everything}


@pytest.mark.parametrize(
    ("kwargs", "call", "error", "guidance"),
    [
        ({"secret": "wrong-secret"}, lambda c: c.account(), HuntressAuthenticationError,
         "Did you enter your credentials correctly? Are your credentials expired?"),
        ({"key": FORBIDDEN_API_KEY}, lambda c: c.account(), HuntressPermissionError, "permissions"),
        ({}, lambda c: c.incident_report(1), HuntressNotFoundError, "does not exist"),
        ({}, lambda c: c.get("/agents", {"limit": 501}), HuntressBadRequestError, "limit (1..500)"),
        ({}, lambda c: c.get("/incident_reports", {"severity": "apocalyptic"}), HuntressBadRequestError,
         "Check filters"),
    ],
)
def test_typed_errors_carry_guidance_and_are_not_retried(simulator, kwargs, call, error, guidance):
    with make_client(simulator, **kwargs) as client:
        with pytest.raises(error) as raised:
            call(client)
        assert guidance in str(raised.value)
        assert client.stats.requests == 1  # 4xx other than 429 is final: no retry


def test_survives_429_storm_5xx_bursts_drops_and_malformed_json_with_no_loss(simulator, caplog):
    truth = {r["id"] for r in admin(simulator, "truth/incidents")["incident_reports"]}
    caplog.set_level(logging.WARNING)
    ids = []
    with make_client(simulator) as client:
        # A 429 storm and a 5xx burst before the first page, dropped connections and truncated JSON mid-walk.
        admin(simulator, "faults", {"rate_limit_storm": 6, "server_errors": 5, "slow": 1, "slow_seconds": 0.2})
        for number, page in enumerate(client.incident_report_pages(limit=100, sort_field="updated_at")):
            ids += [r["id"] for r in page.items]
            if number == 0:
                admin(simulator, "faults", {"drop": 2, "malformed": 2})
    assert len(ids) == len(set(ids)) == len(truth)
    assert set(ids) == truth
    assert client.stats.throttled_responses == 6
    assert client.stats.retries >= 6 + 5 + 2 + 2
    statuses = [e["status"] for e in admin(simulator, "requests")["requests"]]
    assert statuses.count(429) == 6 and statuses.count(500) == 5
    assert "retrying" in caplog.text


def test_honours_retry_after_on_429(simulator):
    admin(simulator, "faults", {"rate_limit_storm": 1, "retry_after": 0.5})
    with make_client(simulator) as client:
        client.account()
    times = [e["t"] for e in admin(simulator, "requests")["requests"]]
    assert len(times) == 2 and times[1] - times[0] >= 0.5


def test_gives_up_with_typed_error_after_max_attempts(simulator):
    admin(simulator, "faults", {"server_errors": 50})
    with make_client(simulator, max_attempts=3) as client:
        with pytest.raises(HuntressServerError) as raised:
            client.account()
        assert client.stats.requests == 3
    assert "retried" in str(raised.value)
    admin(simulator, "faults", {"server_errors": 0, "rate_limit_storm": 500})
    with make_client(simulator, max_attempts=2, max_throttle_seconds=1.0) as client:
        with pytest.raises(HuntressRateLimitError):
            client.account()
        assert client.stats.throttled_responses > 2  # 429s are waited out longer than other failures


def test_real_rate_limit_without_retry_after_is_survived(make_simulator):
    # The simulator enforces 5 requests / 0.5 s; the client budget is deliberately too high.
    server = make_simulator({"agents": 2_000, "incidents": 0}, rate_limit=5, rate_window_seconds=0.5)
    with make_client(server, requests=50, window=0.5, backoff_base=0.1) as client:
        ids = [a["id"] for a in client.agents(limit=100)]
    assert len(ids) == len(set(ids)) == 2_000
    assert client.stats.throttled_responses > 0


LIMITED_WORKER = textwrap.dedent(
    """
    import sys
    from huntress_dagster.client import HuntressClient
    from huntress_dagster.ratelimit import RateLimiter
    url, state, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limiter = RateLimiter(8, 3.0, state_path=state)
    with HuntressClient("{key}", "{secret}", url, rate_limiter=limiter, backoff_base=0.05) as client:
        for _ in range(n):
            client.account()
        print(client.stats.throttled_responses)
    """
).format(key=DEMO_API_KEY, secret=DEMO_API_SECRET)


def test_two_processes_sharing_the_limiter_never_exceed_the_budget(make_simulator, tmp_path):
    # Scaled: 8 requests per 3 s window enforced by the simulator; two processes each make 14 requests.
    server = make_simulator({"agents": 5, "incidents": 0}, rate_limit=8, rate_window_seconds=3.0)
    state = tmp_path / "ratelimit.sqlite"
    workers = [subprocess.Popen([sys.executable, "-c", LIMITED_WORKER, server.url, str(state), "14"],
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0].strip() for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert outputs == ["0", "0"]  # no 429 seen by either process
    log = admin(server, "requests")["requests"]
    times = sorted(e["t"] for e in log)
    assert len(times) == 28 and all(e["status"] == 200 for e in log)
    # Sliding window over the simulator's own log: never more than 8 requests inside any 3 s.
    worst = max(sum(1 for t in times if start <= t < start + 3.0) for start in times)
    assert worst <= 8
    # ...and the budget was used, not starved: 28 requests need 3 windows after the first burst (9 s).
    assert times[-1] - times[0] < 13.0


def test_secret_never_appears_in_logs_errors_or_repr(simulator, caplog):
    caplog.set_level(logging.DEBUG)
    admin(simulator, "faults", {"server_errors": 2, "drop": 1, "rate_limit_storm": 1})
    with make_client(simulator) as client:
        list(client.agents())
        assert DEMO_API_SECRET not in repr(client)
        assert DEMO_API_SECRET not in repr(client.rate_limiter)
    errors = []
    for kwargs in ({"secret": "wrong-" + DEMO_API_SECRET}, {"key": FORBIDDEN_API_KEY}):
        with make_client(simulator, **kwargs) as client, pytest.raises(Exception) as raised:
            client.account()
        errors.append(raised.value)
    for exc in errors:
        assert DEMO_API_SECRET not in str(exc) and DEMO_API_SECRET not in repr(exc)
        assert DEMO_API_SECRET not in str(exc.__cause__ or "") and DEMO_API_SECRET not in str(exc.__context__ or "")
    assert DEMO_API_SECRET not in caplog.text
    assert caplog.records  # something was logged, so the check above is meaningful


def test_refuses_plain_http_for_non_loopback_hosts():
    with pytest.raises(HuntressConfigError, match="Refusing plain http"):
        HuntressClient("k", "s", "http://api.huntress.io/v1")
    assert validate_base_url("https://api.huntress.io/v1/") == "https://api.huntress.io/v1"
    assert validate_base_url("http://127.0.0.1:8765/v1") == "http://127.0.0.1:8765/v1"
    assert validate_base_url("http://[::1]:8765/v1") == "http://[::1]:8765/v1"
    with pytest.raises(HuntressConfigError):
        HuntressClient("k", "s", "https://user:pw@api.huntress.io/v1")
    with pytest.raises(HuntressConfigError, match="required"):
        HuntressClient("k", "", "https://api.huntress.io/v1")


def test_credentials_in_an_invalid_url_are_not_repeated():
    with pytest.raises(HuntressConfigError) as caught:
        validate_base_url("ftp://user:topsecret@api.huntress.io/v1")
    assert "topsecret" not in str(caught.value) and "api.huntress.io" in str(caught.value)
