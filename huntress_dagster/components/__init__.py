"""Dagster components. `dg` finds them through the package root, `huntress_dagster` (entry point group
`dagster_dg_cli.registry_modules`), which exports `HuntressConnectorComponent` lazily; this module's name
(`huntress_dagster.components.HuntressConnectorComponent`) keeps working as a `type:` too."""

from .huntress_connector import HuntressConnectorComponent

__all__ = ["HuntressConnectorComponent"]
