"""Parsing layer (plain Python, no Dagster): raw Huntress API objects -> parsed_syslog rows and OCSF events.

- `batch`: `normalize_records(msg_class, raws, ctx, on_invalid=None)`, the table of a batch of any class
  (invalid records reported to `on_invalid` and skipped), and `normalize_json` for one record.
- `msg_classes`: the `msg_class` constants (`INCIDENT_CLASS`, `AGENT_CLASS`, `SIGNAL_CLASS`,
  `ESCALATION_CLASS`, `PLATFORM_ACTION_CLASS`, `IDENTITY_CLASS`, `EXTERNAL_PORT_CLASS`,
  `ORGANIZATION_CLASS`) and each class's `msg_origin.category`.
- `syslog`: `ParseContext`, `normalize_incident(s)`, `normalize_agent(s)`, `with_all_remediations`,
  `asset_fields`, `host_context`; `schema.PARSED_SYSLOG_SCHEMA` is the table every class produces.
- `records`: `normalize_signal_record`, `normalize_escalation_record`, `normalize_platform_action_record`,
  `normalize_identity_record`, `normalize_external_port_record`, `normalize_organization_record`;
  `details`: a signal's `details` -> entity columns.
- `body`: size thresholds (`KEEP_MAX_BYTES`, `FULL_MAX_BYTES`) and `parse_body`; `entities`: indicator
  and entity extraction (`extract_entities`); `exclusions`: the vendor's own infrastructure kept out of
  the rows' entity columns (`DEFAULT_EXCLUDED_INDICATOR_DOMAINS`, `ParseContext.excluded_indicator_domains`).
- `fields`: value coercion and derived alert fields (severity/status ids, portal_url, product, and
  `alert_uid(tenantid, huntress_id, organization_id, account_id, msg_class=None)`, which the alerts build
  calls per organization of an escalation).
- `ocsf`: OCSF Detection Finding and Device Inventory Info events, their Arrow schemas and `to_table`.
"""

from .arrow_rows import rows_to_table
from .batch import RECORD_NORMALIZERS, normalize_json, normalize_records, record_normalizer
from .body import FULL_MAX_BYTES, KEEP_MAX_BYTES, BodyParse, parse_body
from .decode import InvalidRecord, load_record
from .entities import ENTITY_COLUMNS, extract_entities
from .exclusions import DEFAULT_EXCLUDED_INDICATOR_DOMAINS
from .fields import alert_uid
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
from .records import (
    normalize_escalation_record,
    normalize_external_port_record,
    normalize_identity_record,
    normalize_organization_record,
    normalize_platform_action_record,
    normalize_signal_record,
    signal_category,
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
    record_with_all_remediations,
    with_all_remediations,
)

__all__ = [
    "AGENT_CLASS",
    "ASSET_FIELDS",
    "DEFAULT_EXCLUDED_INDICATOR_DOMAINS",
    "ENTITY_COLUMNS",
    "ESCALATION_CLASS",
    "EXTERNAL_PORT_CLASS",
    "FULL_MAX_BYTES",
    "IDENTITY_CLASS",
    "INCIDENT_CLASS",
    "KEEP_MAX_BYTES",
    "MSG_CLASSES",
    "ORGANIZATION_CLASS",
    "PARSED_SYSLOG_SCHEMA",
    "PLATFORM_ACTION_CLASS",
    "RECORD_NORMALIZERS",
    "SIGNAL_CLASS",
    "BodyParse",
    "InvalidRecord",
    "ParseContext",
    "alert_uid",
    "asset_fields",
    "extract_entities",
    "host_context",
    "load_record",
    "normalize_agent",
    "normalize_agent_record",
    "normalize_agents",
    "normalize_escalation_record",
    "normalize_external_port_record",
    "normalize_identity_record",
    "normalize_incident",
    "normalize_incident_record",
    "normalize_incidents",
    "normalize_json",
    "normalize_organization_record",
    "normalize_platform_action_record",
    "normalize_records",
    "normalize_signal_record",
    "parse_body",
    "record_normalizer",
    "record_with_all_remediations",
    "rows_to_table",
    "signal_category",
    "with_all_remediations",
]
