"""The parsed_syslog table: one Arrow schema for the rows of every class (incident reports, agents, signals,
escalations, platform actions, identities, external ports, organizations; fields that do not apply to a
row's class are null). New fields are only ever appended to `HUNTRESS_TYPE`, so older Parquet files read
as a prefix of it. Struct columns make the reference's dotted names work verbatim in DuckDB SQL
(`msg_origin.source`, `huntress.organization_id`), and `huntress.indicator_counts` is a MAP so that
`huntress.indicator_counts['footholds']` is a plain BIGINT.
"""

from __future__ import annotations

import pyarrow as pa

from .body import HEADER_FIELDS
from .entities import ENTITY_COLUMNS

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRINGS = pa.list_(pa.string())

REMEDIATION_TYPE = pa.struct(
    [
        ("id", pa.int64()),
        ("type", pa.string()),
        ("action", pa.string()),
        ("status", pa.string()),
        ("parameters", pa.string()),  # JSON text: its shape differs by remediation type
        ("approved_at", TIMESTAMP),
        ("approved_by", pa.struct([("id", pa.string()), ("email", pa.string()), ("name", pa.string())])),
        ("completed_at", TIMESTAMP),
    ]
)

HUNTRESS_TYPE = pa.struct(
    [
        # both kinds
        ("id", pa.int64()),
        ("account_id", pa.int64()),
        ("organization_id", pa.int64()),
        ("platform", pa.string()),
        ("created_at", TIMESTAMP),
        ("updated_at", TIMESTAMP),
        # incident reports
        ("agent_id", pa.int64()),
        ("status", pa.string()),
        ("severity", pa.string()),
        ("subject", pa.string()),
        ("summary", pa.string()),
        ("indicator_types", STRINGS),
        ("indicator_counts", pa.map_(pa.string(), pa.int64())),
        ("remediations_total", pa.int64()),
        ("remediations_has_more", pa.bool_()),
        ("remediations", pa.list_(REMEDIATION_TYPE)),
        ("sent_at", TIMESTAMP),
        ("closed_at", TIMESTAMP),
        ("status_updated_at", TIMESTAMP),
        # agents
        ("hostname", pa.string()),
        ("domain_name", pa.string()),
        ("os", pa.string()),
        ("os_build_version", pa.string()),
        ("arch", pa.string()),
        ("version", pa.string()),
        ("edr_version", pa.string()),
        ("ipv4_address", pa.string()),
        ("external_ip", pa.string()),
        ("mac_addresses", STRINGS),
        ("serial_number", pa.string()),
        ("defender_status", pa.string()),
        ("defender_substatus", pa.string()),
        ("defender_policy_status", pa.string()),
        ("firewall_status", pa.string()),
        ("tamper_protection_configured", pa.bool_()),
        ("tamper_protection_actual", pa.bool_()),
        ("tags", STRINGS),
        ("last_callback_at", TIMESTAMP),
        ("last_survey_at", TIMESTAMP),
        # organizations of objects that span several (escalations and platform actions: `organizations[]`,
        # external ports: `organization_ids`); `organization_id` is null in those rows
        ("organization_ids", pa.list_(pa.int64())),
        ("organization_name", pa.string()),  # an embedded `organization` object's name (or an organization's)
        ("organization_names", STRINGS),  # parallel to organization_ids, when the API gives names
        # signals, escalations, platform actions
        ("name", pa.string()),
        ("type", pa.string()),
        ("subtype", pa.string()),
        ("resolved_at", TIMESTAMP),
        ("investigated_at", TIMESTAMP),
        ("investigation_context", pa.string()),
        ("entity_type", pa.string()),
        ("entity_id", pa.int64()),
        ("entity_name", pa.string()),
        ("details", pa.string()),  # JSON text: its shape differs by signal type
        # identities
        ("username", pa.string()),
        ("email", pa.string()),
        ("enabled", pa.bool_()),
        ("billable", pa.bool_()),
        ("mfa_enabled", pa.bool_()),
        ("risk_level", pa.string()),
        ("risk_state", pa.string()),
        ("risk_detail", pa.string()),
        ("risk_last_updated_at", TIMESTAMP),
        ("password_last_changed_at", TIMESTAMP),
        ("enabled_products", STRINGS),
        ("external", pa.bool_()),
        ("on_premises_sync_enabled", pa.bool_()),
        ("tenant_id", pa.string()),
        ("tenant_type", pa.string()),
        # external ports
        ("ip_address", pa.string()),
        ("port", pa.int64()),
        ("protocol", pa.string()),
        ("service", pa.string()),
        ("risky_service", pa.bool_()),
        ("last_scan_at", TIMESTAMP),
        ("last_external_scan_at", TIMESTAMP),
        # organizations
        ("key", pa.string()),
        ("agents_count", pa.int64()),
        ("incident_reports_count", pa.int64()),
        ("logs_sources_count", pa.int64()),
        ("billable_identity_count", pa.int64()),
        ("sat_learner_count", pa.int64()),
        ("identity_provider_tenant_id", pa.string()),
    ]
)

INCIDENT_FIELDS = (
    "id",
    "account_id",
    "organization_id",
    "platform",
    "created_at",
    "updated_at",
    "agent_id",
    "status",
    "severity",
    "subject",
    "summary",
    "indicator_types",
    "indicator_counts",
    "remediations_total",
    "remediations_has_more",
    "remediations",
    "sent_at",
    "closed_at",
    "status_updated_at",
)
AGENT_FIELDS = (
    "id",
    "account_id",
    "organization_id",
    "platform",
    "created_at",
    "updated_at",
    "hostname",
    "domain_name",
    "os",
    "os_build_version",
    "arch",
    "version",
    "edr_version",
    "ipv4_address",
    "external_ip",
    "mac_addresses",
    "serial_number",
    "defender_status",
    "defender_substatus",
    "defender_policy_status",
    "firewall_status",
    "tamper_protection_configured",
    "tamper_protection_actual",
    "tags",
    "last_callback_at",
    "last_survey_at",
)

# The fields each of the newer classes fills (see `msg_classes`).
SIGNAL_FIELDS = (
    "id",
    "account_id",
    "organization_id",
    "organization_name",
    "created_at",
    "updated_at",
    "status",
    "name",
    "type",
    "investigated_at",
    "investigation_context",
    "entity_type",
    "entity_id",
    "entity_name",
    "details",
)
ESCALATION_FIELDS = (  # platform actions have the same shape
    "id",
    "account_id",
    "organization_ids",
    "organization_names",
    "created_at",
    "updated_at",
    "resolved_at",
    "status",
    "severity",
    "subject",
    "type",
    "subtype",
)
IDENTITY_FIELDS = (
    "id",
    "account_id",
    "organization_id",
    "organization_name",
    "created_at",
    "updated_at",
    "username",
    "email",
    "enabled",
    "billable",
    "mfa_enabled",
    "risk_level",
    "risk_state",
    "risk_detail",
    "risk_last_updated_at",
    "password_last_changed_at",
    "enabled_products",
    "external",
    "on_premises_sync_enabled",
    "tenant_id",
    "tenant_type",
)
EXTERNAL_PORT_FIELDS = (
    "id",
    "account_id",
    "organization_ids",
    "created_at",  # not in swagger's ExternalPort; read when present
    "updated_at",
    "ip_address",
    "port",
    "protocol",
    "service",
    "risky_service",
    "last_scan_at",
    "last_external_scan_at",
)
ORGANIZATION_FIELDS = (
    "id",
    "account_id",
    "organization_id",  # the organization's own id, so that joins on huntress.organization_id work for it too
    "organization_name",  # and its name
    "name",
    "created_at",
    "updated_at",
    "key",
    "agents_count",
    "incident_reports_count",
    "logs_sources_count",
    "billable_identity_count",
    "sat_learner_count",
    "identity_provider_tenant_id",
)

PARSED_SYSLOG_SCHEMA = pa.schema(
    [
        pa.field("msg_class", pa.string(), nullable=False),
        pa.field(
            "msg_origin",
            pa.struct([("source", pa.string()), ("vendor", pa.string()), ("category", pa.string())]),
            nullable=False,
        ),
        pa.field("tenantid", pa.string()),
        pa.field("tenant_name", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("timestamp", TIMESTAMP),
        pa.field("huntress", HUNTRESS_TYPE, nullable=False),
        pa.field("report_header", pa.struct([(name, pa.string()) for name in HEADER_FIELDS])),
    ]
    + [pa.field(column, STRINGS) for column in ENTITY_COLUMNS]
    + [
        pa.field("parse_level", pa.string()),
        pa.field("body_size", pa.int64()),
        pa.field("body", pa.large_string()),  # up to KEEP_MAX per row: large offsets avoid 2 GiB chunks
        pa.field("severity_id", pa.int32()),
        pa.field("status_id", pa.int32()),
        pa.field("is_open", pa.bool_()),  # see fields.CLOSED_STATUS_IDS
        pa.field("alert_uid", pa.string()),
        pa.field("portal_url", pa.string()),
        pa.field("security_product", pa.string()),
    ]
)
