"""Parsing layer (plain Python, no Dagster): raw Huntress API objects -> parsed_syslog rows and OCSF events.

- `syslog`: `ParseContext`, `normalize_incident(s)`, `normalize_agent(s)`, `with_all_remediations`,
  `asset_fields`, `host_context`; `schema.PARSED_SYSLOG_SCHEMA` is the table they produce.
- `body`: size thresholds (`KEEP_MAX_BYTES`, `FULL_MAX_BYTES`) and `parse_body`; `entities`: indicator
  and entity extraction (`extract_entities`).
- `fields`: value coercion and derived alert fields (severity/status ids, alert_uid, portal_url, product).
- `ocsf`: OCSF Detection Finding and Device Inventory Info events, their Arrow schemas and `to_table`.
"""

from .body import FULL_MAX_BYTES, KEEP_MAX_BYTES, BodyParse, parse_body
from .entities import ENTITY_COLUMNS, extract_entities
from .decode import InvalidRecord
from .msg_classes import (
    AGENT_CLASS,
    ESCALATION_CLASS,
    EXTERNAL_PORT_CLASS,
    IDENTITY_CLASS,
    INCIDENT_CLASS,
    MSG_CLASSES,
    ORGANIZATION_CLASS,
    PLATFORM_ACTION_CLASS,
    SIGNAL_CLASS,
)
from .schema import PARSED_SYSLOG_SCHEMA
from .syslog import (
    ASSET_FIELDS,
    ParseContext,
    asset_fields,
    host_context,
    normalize_agent,
    normalize_agent_record,
    normalize_agents,
    normalize_incident,
    normalize_incident_record,
    normalize_incidents,
    rows_to_table,
    with_all_remediations,
)

__all__ = [
    "AGENT_CLASS",
    "ASSET_FIELDS",
    "ESCALATION_CLASS",
    "EXTERNAL_PORT_CLASS",
    "IDENTITY_CLASS",
    "INCIDENT_CLASS",
    "MSG_CLASSES",
    "ORGANIZATION_CLASS",
    "PLATFORM_ACTION_CLASS",
    "SIGNAL_CLASS",
    "ENTITY_COLUMNS",
    "FULL_MAX_BYTES",
    "KEEP_MAX_BYTES",
    "PARSED_SYSLOG_SCHEMA",
    "BodyParse",
    "InvalidRecord",
    "ParseContext",
    "asset_fields",
    "extract_entities",
    "host_context",
    "normalize_agent",
    "normalize_agent_record",
    "normalize_agents",
    "normalize_incident",
    "normalize_incident_record",
    "normalize_incidents",
    "parse_body",
    "rows_to_table",
    "with_all_remediations",
]
