"""The Dagster component: advertised to `dg`, and building the same definitions as the module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster.components.testing import create_defs_folder_sandbox

from huntress_dagster.inventory import INVENTORIES
from huntress_dagster.streams import STREAMS
from huntress_dagster.components import HuntressConnectorComponent

REPO = Path(__file__).resolve().parents[1]


def test_dg_lists_the_component():
    dg_cli = Path(sys.executable).with_name("dg")
    out = subprocess.run([str(dg_cli), "list", "components"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HuntressConnectorComponent" in out.stdout


def test_component_builds_the_connector_from_yaml_attributes(monkeypatch, tmp_path):
    monkeypatch.setenv("HUNTRESS_API_KEY", "key-from-env")
    monkeypatch.setenv("HUNTRESS_API_SECRET", "secret-from-env")
    attributes = {"lake_dir": str(tmp_path / "lake"), "tenant": "acme", "organization_ids": [501, 502],
                  "rate_limit": 30, "organizations_cron": "0 * * * *", "excluded_indicator_domains": ["example.org"]}
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=HuntressConnectorComponent,
            defs_yaml_contents={"type": "huntress_dagster.components.HuntressConnectorComponent",
                                "attributes": attributes})
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, HuntressConnectorComponent)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {*(s.raw_table for s in STREAMS), "parsed_syslog", "alerts", *(i.table for i in INVENTORIES)}
    huntress = defs.resources["huntress"]
    assert huntress.tenant == "acme" and huntress.organization_ids == [501, 502]
    assert huntress.rate_limit_requests == 30 and not huntress.demo_mode
    assert defs.resources["lake"].lake_dir == str(tmp_path / "lake")
    assert defs.resources["lake"].excluded_indicator_domains == ["example.org"]
    assert defs.get_schedule_def("huntress_organizations_schedule").cron_schedule == "0 * * * *"
