"""The lake on S3-compatible object storage (a real moto S3 server on loopback): the same pipeline, the same
tables as on a local disk; objects published whole; SQL over it without a catalog file."""

from __future__ import annotations

from datetime import timedelta

import pytest

from huntress_dagster.cli import main
from huntress_dagster.lake import Lake

from .dagster_helpers import make_pipeline, today
from .object_store import object_names

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::dagster.PreviewWarning")

COMPARED = {
    "raw_incidents": "account, id, updated_at",
    "raw_agents": "account, id, updated_at",
    "parsed_syslog": "msg_class, huntress.id, huntress.updated_at, tenantid",
    "alerts": "tenantid, msg_class, huntress_id, organization_id, account_id, updated_at, organization_name, "
              "hostname",
    "agent_inventory": "tenantid, account_id, agent_id, hostname, organization_name",
    "organizations": "tenantid, organization_id, name",
}


@pytest.mark.slow
def test_the_pipeline_on_an_object_store_lake_gives_the_same_tables_as_on_disk(make_simulator, tmp_path, s3_lake,
                                                                             postgres_url, capsys):
    server = make_simulator({"incidents": 60, "agents": 20, "signals": 30, "days": 4})
    first = today() - timedelta(days=4)  # the world's history: fewer day partitions, fewer S3 round trips
    local = make_pipeline(server, tmp_path / "local")
    # as deployed: the lake on the object store, the rate budget and the partition locks in PostgreSQL
    remote = make_pipeline(server, tmp_path / "remote", lake_dir=s3_lake, postgres_url=postgres_url)
    for pipeline in (local, remote):
        assert pipeline.run_agents().success and pipeline.run_incidents(first).success
    for table, columns in COMPARED.items():
        want = local.query(f"SELECT {columns} FROM {table} ORDER BY ALL")
        assert want and remote.query(f"SELECT {columns} FROM {table} ORDER BY ALL") == want, table
    names = object_names(s3_lake)
    # Only finished objects: no temporary, staging, lock or spill object ever reaches the bucket
    assert names and not [n for n in names if "/.tmp-" in n or "/_staging/" in n or "/_locks/" in n
                          or "/_tmp/" in n]
    assert any(n.endswith("/alerts/part-00.parquet") for n in names)
    # A second run over the same days changes nothing (watermarks and fingerprints read from the bucket)
    before = remote.query("SELECT count(*) FROM raw_incidents")
    assert remote.run_incidents(first).success and remote.query("SELECT count(*) FROM raw_incidents") == before

    # Analysts: SQL over the object-store lake with the installed DuckDB (no catalog file there)
    assert main(["sql", "--lake-dir", s3_lake, "SELECT count(*) AS n FROM alerts"]) == 0
    assert str(local.query("SELECT count(*) FROM alerts")[0][0]) in capsys.readouterr().out


def test_a_failed_write_leaves_the_published_object_as_it_was(s3_lake):
    lake = Lake(s3_lake)
    target = lake.root / "alerts" / "part-00.parquet"
    with lake.atomic_path(target) as tmp:
        tmp.write_bytes(b"first version")
    with pytest.raises(RuntimeError), lake.atomic_path(target) as tmp:
        tmp.write_bytes(b"half of a second")
        raise RuntimeError("the run died mid-write")
    assert target.read_bytes() == b"first version"  # readers never see the half-written one
    assert [n.rsplit("/", 1)[1] for n in object_names(s3_lake)] == ["part-00.parquet"]
    assert not list((lake.scratch / "_tmp" / "publish").glob("*"))  # the local temporary file is gone too
