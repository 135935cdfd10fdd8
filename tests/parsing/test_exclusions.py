"""The vendor's own infrastructure (Huntress's hosts, the configured API host) never lands in the entity
columns of a row, and the exclusion list is configurable through the parse context."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huntress_dagster.parsing import (
    AGENT_CLASS,
    DEFAULT_EXCLUDED_INDICATOR_DOMAINS,
    ENTITY_COLUMNS,
    INCIDENT_CLASS,
    ParseContext,
    asset_fields,
    extract_entities,
    host_context,
    normalize_incident,
    normalize_json,
    normalize_signal_record,
    ocsf,
)
from huntress_dagster.parsing.exclusions import indicator_exclusion, normalized_domains, without_excluded

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CONTEXT = ParseContext("tenant-1", "Tenant One", "https://api.huntress.io/v1", "acme")


def incident_row(body: str, ctx: ParseContext = CONTEXT) -> dict:
    return normalize_incident(json.dumps({"id": 1, "organization_id": 4, "body": body}), ctx)


def test_the_default_list_is_huntress_own_domains() -> None:
    assert DEFAULT_EXCLUDED_INDICATOR_DOMAINS == ("huntress.com", "huntress.io", "huntresslabs.com")
    assert CONTEXT.excluded_indicator_domains == DEFAULT_EXCLUDED_INDICATOR_DOMAINS


def test_portal_api_and_support_links_are_dropped_but_the_malicious_domain_stays() -> None:
    row = incident_row(
        "Report: https://acme-mssp.huntress.io/org/501/incident_reports/1 (API: api.huntress.io, help: "
        "https://support.huntress.io/hc/en-us, www.huntress.com, update.huntresslabs.com). "
        "C2: hxxps://evil-cdn[.]top/a.bin; contact soc@huntress.com, phish from billing@evil-cdn.top"
    )
    assert row["domains"] == ["evil-cdn.top"]
    assert row["urls"] == ["https://evil-cdn.top/a.bin"]
    assert row["emails"] == ["billing@evil-cdn.top"]
    assert row["users"] == ["billing@evil-cdn.top"]
    assert row["portal_url"] == "https://acme.huntress.io/org/4/incident_reports/1"  # links stay here


@pytest.mark.parametrize(
    "name",
    [
        "huntress.io",
        "acme.huntress.io",
        "API.Huntress.IO",
        "a.b.c.huntress.io",
        "support.huntress.io.",
        "www.huntress.com",
        "update.huntresslabs.com",
    ],
)
def test_the_domains_and_every_subdomain_are_excluded(name: str) -> None:
    assert CONTEXT.indicator_exclusion.excludes_domain(name)


@pytest.mark.parametrize(
    "name",
    [
        "nothuntress.io",
        "huntress.io.evil.com",
        "huntress-io.com",
        "myhuntress.com",
        "huntress.co",
        "huntresslabs.com.evil.top",
        "io",
    ],
)
def test_look_alikes_are_not_excluded(name: str) -> None:
    assert not CONTEXT.indicator_exclusion.excludes_domain(name)


def test_look_alikes_stay_in_rows() -> None:
    row = incident_row(
        "Lures: https://huntress.io.evil.com/login, nothuntress.io, huntress-io.com/x, "
        "https://huntress.io@evil.top/a (user info, not the host), https://evil.top/?next=https%3A//huntress.io, "
        "and mail from ceo@nothuntress.io"
    )
    assert row["domains"] == ["evil.top", "huntress-io.com", "huntress.io.evil.com", "nothuntress.io"]
    assert row["urls"] == [
        "https://evil.top/?next=https%3A//huntress.io",
        "https://huntress.io.evil.com/login",
        "https://huntress.io@evil.top/a",
    ]
    assert row["emails"] == ["ceo@nothuntress.io", "huntress.io@evil.top"]  # an address at evil.top


def test_defanged_and_upper_case_vendor_links_are_dropped_too() -> None:
    row = incident_row("hxxps://ACME.HUNTRESS[.]IO/org/1 and Api.Huntress[.]io/v1 and soc[@]huntress[.]com")
    assert (row["domains"], row["urls"], row["emails"], row["users"]) == ([], [], [], [])


def test_a_custom_list_replaces_the_default() -> None:
    ctx = ParseContext(
        "t", "T", "https://api.huntress.io/v1", excluded_indicator_domains=("mssp-portal.example",)
    )
    row = incident_row(
        "See https://portal.mssp-portal.example/t/1, https://acme.huntress.io/org/1 and evil.top", ctx
    )
    # huntress.io is no longer listed, but api.huntress.io (the host URL's host) still is.
    assert row["domains"] == ["acme.huntress.io", "evil.top"]
    assert row["urls"] == ["https://acme.huntress.io/org/1"]
    assert ctx.indicator_exclusion.excludes_domain("api.huntress.io")
    assert not ctx.indicator_exclusion.excludes_domain("huntress.io")


def test_the_list_can_extend_the_default() -> None:
    ctx = ParseContext(
        "t",
        "T",
        "api.huntress.io",
        excluded_indicator_domains=(*DEFAULT_EXCLUDED_INDICATOR_DOMAINS, "psa.example"),
    )
    row = incident_row("https://acme.huntress.io/x https://tickets.psa.example/1 https://evil.top/", ctx)
    assert row["urls"] == ["https://evil.top/"]


def test_entries_are_normalized_and_a_string_is_a_list() -> None:
    ctx = ParseContext("t", "T", "h", excluded_indicator_domains=" *.Example.COM., huntress.io  other.org,")
    assert ctx.excluded_indicator_domains == ("example.com", "huntress.io", "other.org")
    assert ParseContext(
        "t", "T", "h", excluded_indicator_domains=["B.org", "a.org", "b.org"]
    ) == ParseContext("t", "T", "h", excluded_indicator_domains=("a.org", "b.org"))
    assert normalized_domains(()) == ()
    with pytest.raises(TypeError):
        ParseContext("t", "T", "h", excluded_indicator_domains=("a.org", 3))  # type: ignore[arg-type]


def test_an_empty_list_still_excludes_the_host_url() -> None:
    ctx = ParseContext("t", "T", "https://huntress-proxy.corp.example:8443/v1", excluded_indicator_domains=())
    row = incident_row(
        "Proxied at https://huntress-proxy.corp.example:8443/v1/agents and acme.huntress.io; C2 evil.top", ctx
    )
    assert row["domains"] == ["acme.huntress.io", "evil.top"]
    assert row["urls"] == []


def test_a_host_url_that_is_an_ip_drops_only_its_own_urls_never_addresses() -> None:
    ctx = ParseContext("t", "T", "http://127.0.0.1:8765/v1")
    exclusion = ctx.indicator_exclusion
    assert exclusion.own_authority == ("127.0.0.1", 8765)
    row = incident_row(
        "Paged via http://127.0.0.1:8765/v1/incident_reports?page_token=x; the implant listens on "
        "http://127.0.0.1:4444/shell and the hosts file maps evil.top to 127.0.0.1",
        ctx,
    )
    assert row["urls"] == ["http://127.0.0.1:4444/shell"]
    assert row["ipv4"] == ["127.0.0.1"]  # an address in an alert is the customer's, not the collector's
    assert row["domains"] == ["evil.top"]


@pytest.mark.parametrize(
    ("host_url", "url", "excluded"),
    [
        ("http://127.0.0.1/v1", "http://127.0.0.1/x", True),  # default port on both sides
        ("http://127.0.0.1/v1", "https://127.0.0.1/x", False),  # 443 is another service
        ("http://[::1]:9000/v1", "http://[::1]:9000/v1/agents", True),
        ("http://[::1]:9000/v1", "http://[::1]:9001/", False),
        ("localhost", "http://localhost:1234/x", True),  # no port named: the host is enough
        ("http://localhost:8000", "http://localhost:8001/x", False),
        ("api.huntress.io", "https://api.huntress.io:8443/x", True),  # a DNS host: any port, any scheme
        ("https://API.Huntress.io/v1", "ftp://eu.api.huntress.io/", True),
    ],
)
def test_host_url_matching(host_url: str, url: str, excluded: bool) -> None:
    exclusion = indicator_exclusion((), host_url)
    assert exclusion.excludes_url(url) is excluded


def test_ipv4_and_ipv6_columns_are_never_filtered() -> None:
    entities = {column: [] for column in ENTITY_COLUMNS} | {"ipv4": ["127.0.0.1"], "ipv6": ["::1"]}
    assert without_excluded(entities, indicator_exclusion((), "http://127.0.0.1:1/v1")) == entities
    assert without_excluded(entities, indicator_exclusion((), "http://[::1]:1/v1")) == entities


def test_a_partial_parse_keeps_null_entity_columns() -> None:
    assert without_excluded(None, CONTEXT.indicator_exclusion) is None
    ctx = ParseContext("t", "T", "api.huntress.io", keep_max_bytes=10, full_max_bytes=20)
    row = incident_row("https://acme.huntress.io/org/4/incident_reports/1 " + "x" * 40, ctx)
    assert row["parse_level"] == "partial"
    assert row["domains"] is None and row["urls"] is None


def test_signal_details_are_filtered_too() -> None:
    row = normalize_signal_record(
        {
            "id": 1,
            "type": "Process Insights",
            "details": {
                "url": "https://acme.huntress.io/signals/1",
                "email": "Huntress SOC <soc@huntress.com>",
                "username": "analyst@huntress.io",
                "notes": "seen on api.huntress.io; beacon to evil.top",
            },
        },
        CONTEXT,
    )
    assert (row["domains"], row["urls"], row["emails"], row["users"]) == (["evil.top"], [], [], [])


def test_the_context_pickles_and_its_repr_names_the_list() -> None:
    ctx = ParseContext("t", "T", "http://127.0.0.1:8765/v1", excluded_indicator_domains=("a.org",))
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    assert "excluded_indicator_domains=('a.org',)" in repr(ctx)
    assert repr(ctx) != repr(ParseContext("t", "T", "http://127.0.0.1:8765/v1"))  # a change re-parses


def test_ocsf_observables_inherit_the_filtering() -> None:
    case = GOLDEN / "incident_vendor_links"
    row = normalize_json(INCIDENT_CLASS, (case / "input.json").read_text(encoding="utf-8"), CONTEXT)
    agent = normalize_json(AGENT_CLASS, (GOLDEN / "agent_full" / "input.json").read_text(), CONTEXT)
    event = ocsf.detection_finding({**row, **host_context(asset_fields(agent))})
    values = {observable["value"] for observable in event["observables"]}
    assert {"invoice-docs.top", "https://invoice-docs.top/stage2.ps1", "billing@nothuntress.io"} <= values
    raw = extract_entities(json.loads((case / "input.json").read_text(encoding="utf-8"))["body"])
    vendor = {
        *(d for d in raw["domains"] if d.endswith(("huntress.io", "huntress.com", "huntresslabs.com"))),
        *(u for u in raw["urls"] if ".huntress." in u.split("/")[2]),
        *(e for e in raw["emails"] if e.endswith(("@huntress.io", "@huntress.com"))),
    } - {"huntress.io.account-verify.com"}
    assert len(vendor) == 12  # the body does name the vendor: portal, API, support, site, mailboxes
    assert not vendor & values


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@given(st.lists(_LABEL, min_size=1, max_size=4), st.sampled_from(DEFAULT_EXCLUDED_INDICATOR_DOMAINS))
def test_excluded_exactly_when_the_name_ends_at_a_label_boundary(labels: list[str], base: str) -> None:
    exclusion = CONTEXT.indicator_exclusion
    assert exclusion.excludes_domain(".".join([*labels, base]))
    glued = "".join(labels) + base  # "nothuntress.io": same ending, no label boundary
    assert not exclusion.excludes_domain(glued)
    assert not exclusion.excludes_domain(f"{base}.{'.'.join(labels)}.top")
