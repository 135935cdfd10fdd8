"""The Dagster component: advertised to `dg`, scaffolded by `dg scaffold defs`, and building the same
definitions as the module."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from huntress_dagster.components import HuntressConnectorComponent
from huntress_dagster.simulator import DEMO_API_KEY, DEMO_API_SECRET

from .dagster_helpers import ALL_ASSET_KEYS

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DG = VENV_BIN / "dg"
COMPONENT_TYPE = "huntress_dagster.HuntressConnectorComponent"

# What `create-dagster project` would write, minus what needs the network (uv, a project .venv): dg runs the
# project in the environment it is started from, where huntress_dagster is installed.
FRESH_PYPROJECT = """\
[project]
name = "fresh_project"
version = "0.1.0"
requires-python = ">=3.11"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "fresh_project"
"""
FRESH_DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def test_dg_lists_the_component():
    out = subprocess.run([str(DG), "list", "components"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert COMPONENT_TYPE in out.stdout


def test_package_root_exports_the_component_without_importing_dagster_eagerly():
    # A fresh interpreter: this one has imported Dagster already.
    probe = """
import sys
import huntress_dagster, huntress_dagster.client, huntress_dagster.lake, huntress_dagster.parsing
import huntress_dagster.simulator, huntress_dagster.settings
assert not [m for m in sys.modules if m.split(".")[0] == "dagster"], "a plain-Python layer imported Dagster"
assert "HuntressConnectorComponent" in dir(huntress_dagster)  # how dg finds registry objects
from huntress_dagster.components import HuntressConnectorComponent
assert huntress_dagster.HuntressConnectorComponent is HuntressConnectorComponent
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]


def uncomment_attribute_examples(text: str) -> str:
    """The defs.yaml with each one-line attribute example (`  # name: value`) made a value."""
    fields = set(HuntressConnectorComponent.model_fields)
    return re.sub(r"^  # (\w+): ", lambda match: f"  {match[1]}: " if match[1] in fields else match[0], text,
                  flags=re.MULTILINE)


@pytest.fixture
def live_credentials(monkeypatch) -> None:
    """Credentials (never used: nothing is requested at load), so loading starts no demo simulator."""
    for name in [name for name in os.environ if name.startswith("HUNTRESS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HUNTRESS_API_KEY", "key-from-env")
    monkeypatch.setenv("HUNTRESS_API_SECRET", "secret-from-env")


def test_scaffolded_defs_yaml_documents_every_attribute_with_valid_examples(live_credentials, tmp_path):
    lake_dir = tmp_path / "my lake: #1"  # quoted in YAML, or it would not read back as one path
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=HuntressConnectorComponent,
                                          scaffold_params={"lake_dir": str(lake_dir), "tenant": "acme"})
        text = (path / "defs.yaml").read_text()
        documented = set(re.findall(r"^  (?:# )?(\w+):", text, flags=re.MULTILINE))
        assert documented == set(HuntressConnectorComponent.model_fields)
        assert "HUNTRESS_API_KEY" in text and "DEMO MODE" in text
        assert yaml.safe_load(text)["attributes"] == {"lake_dir": str(lake_dir), "tenant": "acme"}
        (path / "defs.yaml").write_text(uncomment_attribute_examples(text))
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, HuntressConnectorComponent)
    # the examples are the defaults (but for the two that have none): uncommenting them changes nothing
    assert defs.get_schedule_def("huntress_organizations_schedule").cron_schedule == "5 * * * *"
    assert defs.resources["huntress"].organization_ids == [501, 502]
    assert defs.resources["huntress"].tenant == "acme"
    assert defs.resources["lake"].lake_dir == str(lake_dir)


def test_scaffolded_lake_is_in_the_project_unless_huntress_lake_dir_is_set(live_credentials, monkeypatch,
                                                                           tmp_path):
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=HuntressConnectorComponent)
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            assert defs.resources["lake"].lake_dir == str(sandbox.project_root.resolve() / "lake")
        monkeypatch.setenv("HUNTRESS_LAKE_DIR", str(tmp_path / "elsewhere"))
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            assert defs.resources["lake"].lake_dir == str(tmp_path / "elsewhere")


def test_component_builds_the_connector_from_yaml_attributes(live_credentials, tmp_path):
    attributes = {"lake_dir": str(tmp_path / "lake"), "tenant": "acme", "organization_ids": [501, 502],
                  "rate_limit": 30, "organizations_cron": "0 * * * *",
                  "excluded_indicator_domains": ["example.org"]}
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=HuntressConnectorComponent,
            # the module's own name works as a `type:` too (defs.yaml written before the package-root export)
            defs_yaml_contents={"type": "huntress_dagster.components.HuntressConnectorComponent",
                                "attributes": attributes})
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, HuntressConnectorComponent)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == ALL_ASSET_KEYS
    huntress = defs.resources["huntress"]
    assert huntress.tenant == "acme" and huntress.organization_ids == [501, 502]
    assert huntress.rate_limit_requests == 30 and not huntress.demo_mode
    assert defs.resources["lake"].lake_dir == str(tmp_path / "lake")
    assert defs.resources["lake"].excluded_indicator_domains == ["example.org"]
    assert defs.get_schedule_def("huntress_organizations_schedule").cron_schedule == "0 * * * *"


@pytest.fixture
def fresh_project(tmp_path, simulator) -> tuple[Path, dict[str, str]]:
    """An empty dg project in tmp_path, and the environment to run `dg` in it: this venv, a private
    DAGSTER_HOME, and credentials for the test's simulator (so loading the definitions starts no demo
    simulator or webhook receiver, which would outlive the test)."""
    project = tmp_path / "fresh_project"
    (project / "fresh_project" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(FRESH_PYPROJECT)
    (project / "fresh_project" / "__init__.py").write_text("")
    (project / "fresh_project" / "defs" / "__init__.py").write_text("")
    (project / "fresh_project" / "definitions.py").write_text(FRESH_DEFINITIONS)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("HUNTRESS_", "DAGSTER_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(VENV_BIN.parent),
               DAGSTER_HOME=str(dagster_home), HUNTRESS_HOST_URL=simulator.url,
               HUNTRESS_API_KEY=DEMO_API_KEY, HUNTRESS_API_SECRET=DEMO_API_SECRET)
    return project, env


def run_dg(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([str(DG), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, f"dg {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


def test_dg_scaffolds_the_component_into_a_fresh_project_that_checks_and_lists(fresh_project):
    project, env = fresh_project
    # the path is relative to the project's defs folder: fresh_project/defs/huntress/defs.yaml
    run_dg(project, env, "scaffold", "defs", COMPONENT_TYPE, "huntress")
    defs_yaml = (project / "fresh_project" / "defs" / "huntress" / "defs.yaml").read_text()
    # the lake in the project (HUNTRESS_LAKE_DIR unset); every other attribute a comment
    assert yaml.safe_load(defs_yaml) == {"type": COMPONENT_TYPE, "attributes": {
        "lake_dir": "{{ env.HUNTRESS_LAKE_DIR or (context.project_root ~ '/lake') }}"}}
    assert "  # tenant: default\n" in defs_yaml and "  # connections:\n" in defs_yaml

    assert "All definitions loaded successfully" in run_dg(project, env, "check", "defs").stdout
    listed = json.loads(run_dg(project, env, "list", "defs", "--json").stdout)
    assert {asset["asset_key"] for asset in listed["assets"]} == ALL_ASSET_KEYS
    assert all(asset["source"].startswith("fresh_project/defs/huntress/defs.yaml")
               for asset in listed["assets"])
