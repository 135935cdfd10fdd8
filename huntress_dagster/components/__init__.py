"""Dagster components advertised to `dg` (entry point group `dagster_dg_cli.registry_modules`)."""

from .huntress_connector import HuntressConnectorComponent

__all__ = ["HuntressConnectorComponent"]
