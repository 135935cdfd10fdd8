"""Lossless against a misbehaving API: real Dagster runs through a hostile proxy (tests/hostile.py) in front
of the simulator, then the same lake against the correct API. Each case says what broke before, and runs for
every walked stream (the proxy bends one stream's list; the others pass through)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from huntress_dagster.checks import duplicate_alert_keys, quarantined_records
from huntress_dagster.client import HuntressClient
from huntress_dagster.errors import HuntressPaginationError, HuntressResponseTooLargeError, HuntressTLSError
from huntress_dagster.ratelimit import RateLimiter
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET
from huntress_dagster.streams import INCIDENT_REPORTS, WALK_STREAMS, Stream

from .dagster_helpers import make_pipeline, truth_records
from .hostile import POISON, SURROGATE_FIELD, HostileProxy
from .test_pipeline import lake_alerts, truth_alerts

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")
per_stream = pytest.mark.parametrize("stream", WALK_STREAMS, ids=[s.name for s in WALK_STREAMS])


@pytest.fixture
def make_hostile(simulator):
    proxies = []

    def factory(stream: Stream) -> HostileProxy:
        proxies.append(HostileProxy(simulator.url, collection=stream.name).start())
        return proxies[-1]

    yield factory
    for proxy in proxies:
        proxy.stop()


def check_result(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def committed_versions(pipeline, stream: Stream) -> list[tuple]:
    return pipeline.query(f"SELECT id, updated_at FROM {stream.raw_table} ORDER BY ALL")


def committed_ids(pipeline, stream: Stream) -> set[int]:
    return {row[0] for row in pipeline.query(f"SELECT DISTINCT id FROM {stream.raw_table}")}


def assert_only_days_above_the_walk_are_complete(pipeline, stream: Stream) -> None:
    """A broken walk proves only the days wholly newer than the lowest updated_at it saw."""
    partitions = pipeline.lake.walked(stream, pipeline.account)
    oldest = pipeline.query(f"SELECT min(updated_at) FROM {stream.raw_table}")[0][0]
    for day in partitions.committed_days():
        assert partitions.complete_as_of(day) is None or day > oldest.date(), day


def assert_lake_equals_truth(pipeline, server, stream: Stream) -> None:
    assert committed_ids(pipeline, stream) == {r["id"] for r in truth_records(server, stream)}
    versions = committed_versions(pipeline, stream)
    assert len(versions) == len(set(versions))
    assert lake_alerts(pipeline) == truth_alerts(server)


@per_stream
def test_a_repeating_page_token_fails_the_run_within_two_requests_and_records_no_completeness(
        simulator, make_hostile, tmp_path, stream):
    hostile = make_hostile(stream)
    pipeline = make_pipeline(simulator, tmp_path, host_url=hostile.url)
    hostile.fault = "repeat_token"
    result = pipeline.run_incidents(full_refresh=True, raise_on_error=False)
    assert not result.success
    failure = str(result.failure_data_for_node(stream.raw_table).error)
    assert "repeats a next_page_token" in failure and stream.path in failure
    assert hostile.requests_to(stream.name) == 2  # the first page, then the page whose token repeats
    assert len(committed_versions(pipeline, stream)) == 2 * hostile.page_limit  # what the walk saw is kept
    assert_only_days_above_the_walk_are_complete(pipeline, stream)

    hostile.fault = None  # a correct API: the next run reads everything
    assert pipeline.run_incidents().success
    assert_lake_equals_truth(pipeline, simulator, stream)


@per_stream
def test_empty_pages_with_a_token_leave_the_watermark_so_a_correct_api_brings_every_record(
        simulator, make_hostile, tmp_path, stream):
    hostile = make_hostile(stream)
    pipeline = make_pipeline(simulator, tmp_path, host_url=hostile.url)
    hostile.fault = "empty_pages_with_token"
    result = pipeline.run_incidents(raise_on_error=False)
    assert not result.success
    assert "empty pages in a row" in str(result.failure_data_for_node(stream.raw_table).error)
    assert hostile.requests_to(stream.name) == 4  # one page of records, three empty ones
    assert len(committed_versions(pipeline, stream)) == hostile.page_limit  # what the walk saw is kept
    assert_only_days_above_the_walk_are_complete(pipeline, stream)

    hostile.fault = None
    assert pipeline.run_incidents().success
    assert_lake_equals_truth(pipeline, simulator, stream)


@per_stream
def test_repeats_on_a_page_are_stored_once_and_the_alerts_check_passes(simulator, make_hostile, tmp_path, stream):
    hostile = make_hostile(stream)
    pipeline = make_pipeline(simulator, tmp_path, host_url=hostile.url)
    hostile.fault = "repeats_on_page"
    result = pipeline.run_incidents()
    assert result.success
    assert check_result(result, "alerts_key_unique").passed
    assert_lake_equals_truth(pipeline, simulator, stream)
    ids = pipeline.query(f"SELECT huntress.id FROM parsed_syslog WHERE msg_class = '{stream.msg_class}'")
    assert len(ids) == len(set(ids)) == len(truth_records(simulator, stream))


@per_stream
def test_a_lake_already_holding_a_repeated_version_heals_on_the_next_run(simulator, tmp_path, stream):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_incidents().success
    partitions = pipeline.lake.walked(stream, pipeline.account)
    day = max(d for d in partitions.committed_days() if pq.read_metadata(partitions.day_path(d)).num_rows >= 3)
    path = partitions.day_path(day)
    table, metadata = pq.read_table(path), pq.read_metadata(path).metadata
    doubled = pa.concat_tables([table, table.slice(0, 3)]).replace_schema_metadata(metadata)
    pq.write_table(doubled, path)  # as an earlier version of this connector could have stored it
    assert partitions.has_repeated_versions([path])

    result = pipeline.run_incidents()
    assert result.success
    assert not partitions.has_repeated_versions([path])
    assert pq.read_metadata(path).num_rows == table.num_rows
    assert check_result(result, "alerts_key_unique").passed
    assert duplicate_alert_keys(pipeline.lake) == 0
    assert_lake_equals_truth(pipeline, simulator, stream)


@per_stream
def test_poison_records_are_quarantined_named_in_a_failing_check_and_the_rest_commits(
        simulator, make_hostile, tmp_path, stream):
    hostile = make_hostile(stream)
    pipeline = make_pipeline(simulator, tmp_path, host_url=hostile.url)
    hostile.fault = "poison"
    result = pipeline.run_incidents()
    assert result.success  # one bad record no longer stops collection
    total, named = quarantined_records(pipeline.lake, stream.name)
    assert total == len(POISON)
    text = "\n".join(named)
    for reason in ('id is not an integer: "77"', "updated_at is not an ISO-8601 timestamp: 'garbage'",
                   "updated_at is not a timestamp string: 1764450000", "missing id"):
        assert reason in text
    check = check_result(result, f"{stream.raw_table}_nothing_quarantined")
    assert not check.passed and '"77"' in check.description
    rows = pipeline.query('SELECT reason, endpoint, raw_json FROM "_quarantine"')
    assert {r[1] for r in rows} == {stream.path} and all(r[2].startswith("{") for r in rows)
    # every other record committed, the lone surrogate one included (escaped in the raw JSON, replaced when parsed)
    truth = truth_records(simulator, stream)
    assert len(committed_ids(pipeline, stream)) == len(truth) - len(POISON)
    field = SURROGATE_FIELD.get(stream.name, "subject")
    parsed = pipeline.query(f"SELECT huntress.{field} FROM parsed_syslog WHERE huntress.{field} LIKE 'lone%'")
    assert parsed == [("lone surrogate ? in a string",)]  # the parser replaces lone surrogates
    assert pipeline.query(f"SELECT count(*) FROM {stream.raw_table} WHERE raw_json LIKE '%\\ud800%'") == [(1,)]

    assert pipeline.run_incidents().success  # served again: quarantined once, not twice
    assert quarantined_records(pipeline.lake, stream.name)[0] == len(POISON)

    hostile.fault = None  # the API serves them correctly again: their days were left to be read again
    assert pipeline.run_incidents().success
    missing = {r["id"] for r in truth} - committed_ids(pipeline, stream)
    # only records whose updated_at was the poison cannot be placed in a day: they wait for their next change
    assert len(missing) <= 2


@per_stream
def test_records_out_of_order_prove_nothing_and_fail_the_run(simulator, make_hostile, tmp_path, stream):
    hostile = make_hostile(stream)
    pipeline = make_pipeline(simulator, tmp_path, host_url=hostile.url)
    hostile.fault = "out_of_order"
    result = pipeline.run_incidents(raise_on_error=False)
    assert not result.success
    assert "not in descending order" in str(result.failure_data_for_node(stream.raw_table).error)
    partitions = pipeline.lake.walked(stream, pipeline.account)
    assert all(partitions.complete_as_of(day) is None for day in partitions.committed_days())
    hostile.fault = None
    assert pipeline.run_incidents().success
    assert_lake_equals_truth(pipeline, simulator, stream)


def test_page_cap_and_response_size_cap_stop_a_walk_with_the_endpoint_named(simulator):
    limiter = RateLimiter(10_000, 1.0)
    with HuntressClient(DEMO_API_KEY, DEMO_API_SECRET, simulator.url, rate_limiter=limiter, max_pages=3) as client:
        with pytest.raises(HuntressPaginationError, match="/incident_reports served more than 3 pages"):
            list(client.incident_report_pages(limit=10))
        assert client.stats.requests == 3
    with HuntressClient(DEMO_API_KEY, DEMO_API_SECRET, simulator.url, rate_limiter=limiter,
                        max_response_bytes=10_000) as client:
        with pytest.raises(HuntressResponseTooLargeError, match="exceeds the cap"):
            next(client.incident_report_pages())
        assert client.stats.requests == 1  # not retried: the same page would be as large again


def test_https_to_a_plain_http_port_is_reported_as_tls_after_one_quick_retry(simulator):
    url = simulator.url.replace("http://", "https://")
    with HuntressClient(DEMO_API_KEY, DEMO_API_SECRET, url, rate_limiter=RateLimiter(10_000, 1.0),
                        backoff_base=0.05) as client:
        with pytest.raises(HuntressTLSError, match="TLS handshake with 127.0.0.1 failed") as caught:
            client.account()
        assert client.stats.requests == 2
    assert "https:// must point at a TLS port" in str(caught.value)


def test_lake_files_and_directories_are_owner_only(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    assert pipeline.run_agents().success and pipeline.run_incidents().success
    spill = pipeline.lake_dir / "_tmp" / "duckdb"
    paths = [p for p in [pipeline.lake_dir, *pipeline.lake_dir.rglob("*")] if spill not in p.parents]
    assert len(paths) > 30
    loose = [f"{p}: {p.stat().st_mode & 0o777:o}" for p in paths if p.stat().st_mode & 0o077]
    assert loose == []


def test_a_lake_dir_that_is_a_file_fails_before_any_request(simulator, tmp_path):
    pipeline = make_pipeline(simulator, tmp_path)
    pipeline.lake_dir.write_text("not a directory")
    before = len(simulator.request_log)
    result = pipeline.run_incidents(raise_on_error=False)
    assert not result.success
    assert "exists and is not a directory" in str(result.failure_data_for_node(INCIDENT_REPORTS.raw_table).error)
    assert len(simulator.request_log) == before
