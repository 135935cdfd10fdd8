"""Lake I/O without Dagster: real Parquet files in a temporary lake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from huntress_dagster import catalog, layout
from huntress_dagster.lake import Lake, parquet_writer
from huntress_dagster.streams import INCIDENT_REPORTS

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_staging_holds_at_most_a_batch_across_days_and_keeps_every_row(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    base = datetime(2026, 11, 20, tzinfo=UTC)
    rows = [{"tenantid": "t", "account_id": 1, "organization_id": 2, "id": i,
             "updated_at": base - timedelta(minutes=7 * i), "collected_at": base,
             "raw_json": json.dumps({"id": i}), "remediations_json": None} for i in range(5_000)]
    written = []  # rows per Parquet write
    write_table = pq.ParquetWriter.write_table
    monkeypatch.setattr(pq.ParquetWriter, "write_table", lambda self, table, **kw: (written.append(table.num_rows),
                                                                                   write_table(self, table, **kw)))
    most_held = 0

    def walk():  # the rows taken from the walk but not yet on disk, as each next row is taken
        nonlocal most_held
        for consumed, row in enumerate(rows):
            most_held = max(most_held, consumed - sum(written))
            yield row

    stage_dir = (tmp_path / "stage")
    stage_dir.mkdir()
    staged = lake.walked(INCIDENT_REPORTS, "1").stage(walk(), stage_dir, batch_rows=700)

    assert set(staged) == {row["updated_at"].date() for row in rows}
    stored = []
    for day, paths in staged.items():
        for path in paths:
            table = pq.read_table(path)
            assert {t.date() for t in table.column("updated_at").to_pylist()} == {day}
            stored += table.column("id").to_pylist()
    assert sorted(stored) == list(range(5_000))
    assert most_held < 700  # across all days, not 700 per day
    assert all(len(paths) == 1 for paths in staged.values())  # a walk in day order: one file per day


def _raw_row(record_id: int, updated_at: datetime, collected_at: datetime, record: dict) -> dict:
    """A walked incident row of account 1 (what `WalkedPartitions.stage` takes)."""
    return {"tenantid": "t", "account_id": 1, "organization_id": 2, "id": record_id, "updated_at": updated_at,
            "collected_at": collected_at, "raw_json": json.dumps(record), "remediations_json": None}


def test_a_day_new_to_the_lake_is_published_as_staged_and_one_with_a_partition_is_merged(tmp_path):
    lake = Lake(tmp_path / "lake")
    walked = lake.walked(INCIDENT_REPORTS, "1", scope="s1")
    day = datetime(2026, 11, 20, tzinfo=UTC)
    walk_started = day + timedelta(days=2)

    def walk(ids: range, collected_at: datetime, proven: bool) -> list:
        rows = [_raw_row(i, day + timedelta(minutes=i), collected_at, {"id": i}) for i in ids]
        stage_dir = tmp_path / f"stage-{collected_at:%d%H}"
        stage_dir.mkdir()
        staged = walked.stage(rows, stage_dir, complete_as_of=collected_at)
        inodes = [path.stat().st_ino for path in staged[day.date()]]
        walked.commit([day.date()], staged, collected_at, proven_days={day.date()} if proven else set())
        return inodes

    inodes = walk(range(3), walk_started, proven=True)
    final = walked.day_path(day.date())
    assert final.stat().st_ino == inodes[0]  # the staged file itself: written once
    assert walked.complete_as_of(day.date()) == walk_started
    assert lake.file_metadata(final)[b"scope"] == b"s1"
    later = walk_started + timedelta(hours=1)
    inodes = walk(range(2, 5), later, proven=True)  # the day has a partition now: merged
    assert final.stat().st_ino != inodes[0]
    assert sorted(pq.read_table(final).column("id").to_pylist()) == [0, 1, 2, 3, 4]
    assert walked.complete_as_of(day.date()) == later
    other = lake.walked(INCIDENT_REPORTS, "2")  # a walk that proved nothing: its marker is not the staged one
    stage_dir = tmp_path / "stage-unproven"
    stage_dir.mkdir()
    rows = [{"tenantid": "t", "account_id": 2, "organization_id": 2, "id": 9, "updated_at": day,
             "collected_at": later, "raw_json": "{}", "remediations_json": None}]
    other.commit([day.date()], other.stage(rows, stage_dir, complete_as_of=later), later, proven_days=set())
    assert other.complete_as_of(day.date()) is None
    assert pq.read_table(other.day_path(day.date())).num_rows == 1


def _dictionary_encoded(path) -> dict[str, bool]:
    row_group = pq.ParquetFile(path).metadata.row_group(0)
    return {row_group.column(i).path_in_schema: row_group.column(i).has_dictionary_page
            for i in range(row_group.num_columns)}


def test_whole_documents_are_written_without_a_dictionary_and_other_columns_with_one(tmp_path):
    """A dictionary of raw JSON or incident bodies never pays (every value differs) and hashing each value
    cost ~40% of writing the column; the short columns keep theirs (repeated tenants, statuses, names)."""
    lake = Lake(tmp_path / "lake")
    walked = lake.walked(INCIDENT_REPORTS, "1")
    day = datetime(2026, 11, 20, tzinfo=UTC)
    for hour in (1, 2):  # published as staged (pyarrow), then merged with the stored day (DuckDB's COPY)
        collected_at = day + timedelta(days=2, hours=hour)
        rows = [_raw_row(i, day + timedelta(minutes=i), collected_at, {"id": i, "body": "x" * i})
                for i in range(hour * 50)]
        stage_dir = tmp_path / f"stage-{hour}"
        stage_dir.mkdir()
        staged = walked.stage(rows, stage_dir, complete_as_of=collected_at)
        if hour == 1:
            encoded = _dictionary_encoded(staged[day.date()][0])
            assert encoded["tenantid"] and not encoded["raw_json"]
        walked.commit([day.date()], staged, collected_at, proven_days={day.date()})
        assert not _dictionary_encoded(walked.day_path(day.date()))["raw_json"]
    assert pq.read_table(walked.day_path(day.date())).num_rows == 100

    table = pa.table({"body": [f"<p>report {i}</p>" for i in range(100)], "huntress": [
        {"status": "closed", "subject": f"s{i}"} for i in range(100)]})
    lake.write_table(lake.root / "t.parquet", table)
    encoded = _dictionary_encoded(lake.root / "t.parquet")
    assert encoded == {"body": False, "huntress.status": True, "huntress.subject": True}
    assert pq.read_table(lake.root / "t.parquet").equals(table)


def test_a_file_being_written_is_in_no_table_until_it_is_published(tmp_path):
    """A CI run of 2026-12-02 failed on this: a walk's catalog refresh listed a Parquet file another run was
    still writing, and read its footer. Every table (and the webhook inbox) beside a writer's file."""
    lake = Lake(tmp_path / "lake")
    patterns = {**layout.TABLE_GLOBS, "inbox": layout.INBOX_PENDING_GLOB}
    for name, pattern in patterns.items():
        final = lake.root / pattern.replace("*", "1")
        if name == "inbox":
            final.parent.mkdir(parents=True)
            final.write_text("{}")
        else:
            lake.write_table(final, pa.table({"connection": ["c"], "account_id": ["1"], "stream": ["s"],
                                              "evaluated_at": [1]}))  # connector_status's columns
        lake.tmp_path(final).write_bytes(b"PAR1")  # a writer's first bytes: no footer yet

        assert lake.glob(pattern) == [final], name
    with lake.connect() as con:
        views = catalog.register_views(lake, con)
        assert {view: con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] for view in layout.TABLE_GLOBS} \
            == dict.fromkeys(layout.TABLE_GLOBS, 1)  # DuckDB's glob, the views' own
    assert set(layout.TABLE_GLOBS) <= set(views)
    assert catalog.refresh_catalog(lake)


def test_a_single_account_lake_of_the_first_wave_is_moved_under_its_account(tmp_path):
    lake = Lake(tmp_path / "lake")
    legacy = [lake.root / "raw_incidents" / "day=2026-11-01" / "data.parquet",
              lake.root / "raw_agents" / "day=2026-11-01" / "snapshot-20261101T000000000000Z.parquet",
              lake.root / "parsed_syslog" / "msg_class=huntress_incident_report" / "day=2026-11-01" / "data.parquet"]
    for path in legacy:
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"id": [1]}), path)
    assert lake.adopt_legacy_layout("4242") == 3
    assert not any(path.exists() for path in legacy)
    assert (lake.root / "raw_incidents" / "account=4242" / "day=2026-11-01" / "data.parquet").exists()
    assert (lake.root / "parsed_syslog" / "msg_class=huntress_incident_report" / "account=4242" / "day=2026-11-01"
            / "data.parquet").exists()
    assert lake.accounts(INCIDENT_REPORTS) == ["4242"]
    assert lake.adopt_legacy_layout("4242") == 0  # nothing left to move


def test_a_re_fetched_identical_version_keeps_its_row_and_a_different_one_replaces_it(tmp_path):
    lake = Lake(tmp_path / "lake")
    walked = lake.walked(INCIDENT_REPORTS, "1")
    day = datetime(2026, 11, 20, tzinfo=UTC)
    first, second = day + timedelta(hours=1), day + timedelta(hours=5)

    def commit(bodies: dict[int, str], collected_at: datetime) -> dict[int, tuple[str, datetime]]:
        rows = [{"tenantid": "t", "account_id": 1, "organization_id": 2, "id": i, "updated_at": day,
                 "collected_at": collected_at, "raw_json": body, "remediations_json": None}
                for i, body in bodies.items()]
        stage_dir = tmp_path / f"stage-{collected_at:%H}"
        stage_dir.mkdir()
        walked.commit([day.date()], walked.stage(rows, stage_dir), collected_at)
        table = pq.read_table(walked.day_path(day.date())).to_pylist()
        return {r["id"]: (r["raw_json"], r["collected_at"]) for r in table}

    assert commit({1: '{"id": 1}', 2: '{"id": 2}'}, first) == {1: ('{"id": 1}', first), 2: ('{"id": 2}', first)}
    # The re-walk serves 1 unchanged, 2 with another body for the same updated_at (a misbehaving API), 3 new.
    stored = commit({1: '{"id": 1}', 2: '{"id": 2, "x": 1}', 3: '{"id": 3}'}, second)
    assert stored == {1: ('{"id": 1}', first), 2: ('{"id": 2, "x": 1}', second), 3: ('{"id": 3}', second)}


def test_a_preview_that_cannot_be_read_gives_no_rows_and_a_warning_not_a_failed_run(tmp_path, caplog):
    # e.g. another run replaced an object-store file while it was read (s3fs: FileExpired)
    lake = Lake(tmp_path / "lake")
    with caplog.at_level("WARNING"):
        assert catalog.preview(lake, "SELECT * FROM read_parquet('gone.parquet')") == []
    assert "No preview for run metadata" in caplog.text


def test_counting_new_and_updated_versions_reads_only_days_from_the_walked_versions_creation_on(tmp_path):
    lake = Lake(tmp_path / "lake")
    walked = lake.walked(INCIDENT_REPORTS, "1")
    first_day, later_day = datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)

    def commit(updated_at: datetime, name: str, created_since: datetime | None):
        rows = [{"tenantid": "t", "account_id": 1, "organization_id": 2, "id": 7, "updated_at": updated_at,
                 "collected_at": updated_at, "raw_json": "{}", "remediations_json": None}]
        stage_dir = tmp_path / name
        stage_dir.mkdir()
        return walked.commit([updated_at.date()], walked.stage(rows, stage_dir), updated_at,
                             created_since=created_since)

    assert commit(first_day, "a", first_day).new == 1
    # id 7 updated ten days later: an earlier version can only be in days from its creation on
    assert commit(later_day, "b", first_day).updated == 1
    assert commit(later_day + timedelta(hours=1), "c", None).updated == 1  # unknown creation: every day
    # what the bound means: days before it are not read (a creation time said to be later hides day 10)
    assert commit(later_day + timedelta(hours=2), "d", later_day).updated == 1  # day 20 holds two versions
    assert commit(later_day + timedelta(days=3), "e", later_day + timedelta(days=3)).new == 1


def test_parse_batches_hold_a_bounded_amount_of_raw_json_and_every_row():
    from huntress_dagster.parsed import _byte_bounded

    texts = ["x" * size for size in (5, 5, 5, 30, 2, 2, 2, 2, 9)]
    batch = pa.RecordBatch.from_pydict({"raw_json": texts, "id": list(range(len(texts)))})
    parts = list(_byte_bounded(batch, 10))
    assert [part.column("id").to_pylist() for part in parts] == [[0, 1], [2], [3], [4, 5, 6, 7], [8]]
    assert list(_byte_bounded(batch.slice(0, 0), 10)) == []


def _arrow_pool_of_this_process() -> tuple[str, int, int]:
    pool = pa.default_memory_pool()
    buffer = pa.allocate_buffer(64 << 20)  # (alive until its pool's figure is read)
    return pool.backend_name, pool.bytes_allocated(), buffer.size


def _parse_without_pandas(lake_dir: str) -> tuple[bool, int]:
    """In a parse worker: normalize a golden incident (Python values into Arrow) and write it to the lake."""
    import sys

    from huntress_dagster import parsing

    raw = next(GOLDEN.glob("incident_*")).joinpath("input.json").read_bytes()
    table = parsing.normalize_records(parsing.INCIDENT_CLASS, [raw], parsing.ParseContext("t", "T", "h", None))
    with parquet_writer(Path(lake_dir) / "one.parquet", table.schema) as writer:
        writer.write_table(table)
    return "pandas" in sys.modules, pq.read_metadata(Path(lake_dir) / "one.parquet").num_rows


def test_parse_workers_allocate_arrow_memory_from_jemalloc_and_the_caller_keeps_its_pool(tmp_path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from huntress_dagster.parsed import prepare_parse_worker

    ours = pa.default_memory_pool().backend_name
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=prepare_parse_worker) as pool:
        backend, allocated, size = pool.submit(_arrow_pool_of_this_process).result()
        # pyarrow imports pandas at its first conversion of Python values: refused, it parses without it
        assert pool.submit(_parse_without_pandas, str(tmp_path)).result() == (False, 1)
    assert backend == "jemalloc" and allocated >= size
    assert pa.default_memory_pool().backend_name == ours  # the calling process keeps its own pool


def test_duplicate_alert_keys_are_counted_across_parts_of_one_schema_and_of_several(tmp_path: Path) -> None:
    from huntress_dagster.checks import duplicate_alert_keys

    lake = Lake(tmp_path)
    keys = {"tenantid": ["t"] * 3, "msg_class": ["huntress_incident"] * 3, "huntress_id": [1, 2, 3],
            "organization_id": [7] * 3, "account_id": [5] * 3}
    lake.write_table(tmp_path / "alerts" / "part-00.parquet", pa.table({**keys, "status": ["sent"] * 3}))
    lake.write_table(tmp_path / "alerts" / "part-01.parquet",
                     pa.table({**{k: v[:1] for k, v in keys.items()}, "status": ["closed"]}))
    assert lake.share_one_schema(lake.files("alerts"))
    assert duplicate_alert_keys(lake) == 1  # huntress_id 1 in both parts
    # a part written by a later version, with a column more before the keys: read by name, not position
    lake.write_table(tmp_path / "alerts" / "part-02.parquet",
                     pa.table({"is_open": [True, True], **{k: v[1:] for k, v in keys.items()}}))
    assert not lake.share_one_schema(lake.files("alerts"))
    assert duplicate_alert_keys(lake) == 3  # keys read by name from every part
