"""huntress_dagster: a Dagster integration that collects Huntress agents and incident reports into a
DuckDB/Parquet security data lake.

The plain-Python layers (client, collect, parsing, lake, simulator) import no Dagster; the Dagster
layer lives in `resources`, `assets`, `checks`, `automation` and `definitions`.
"""

__version__ = "0.1.0"
