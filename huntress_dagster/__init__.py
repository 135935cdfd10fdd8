"""huntress_dagster: a Dagster integration that collects Huntress agents and incident reports into a
DuckDB/Parquet security data lake.

The plain-Python layers (client, collect, parsing, lake, simulator) import no Dagster; the Dagster
layer lives in `resources`, `assets`, `checks`, `automation`, `definitions` and `components`.

`huntress_dagster.HuntressConnectorComponent` is the Dagster component (`dg scaffold defs
huntress_dagster.HuntressConnectorComponent huntress`, into
`<project>/defs/huntress/`). It is imported on first access, so that
`import huntress_dagster.client` (or the simulator) still loads no Dagster; `dg` finds it because this
package is the `dagster_dg_cli.registry_modules` entry point and lists its objects with `dir()`.
"""

__version__ = "0.1.0"

# name -> the module that defines it; imported by `__getattr__` on first access (it imports Dagster)
_LAZY_DAGSTER_EXPORTS = {"HuntressConnectorComponent": "huntress_dagster.components"}


def __getattr__(name: str) -> object:
    module = _LAZY_DAGSTER_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    # dg discovers registry objects by dir(module) + getattr: the lazy names must be listed
    return sorted({*globals(), *_LAZY_DAGSTER_EXPORTS})
