"""What every column of every lake table means, for analysts (plain Python: no Dagster).

`column_description(table, column)` gives a column's one-line description: the table's own entry in
`TABLE_COLUMN_DOCS` first (a name whose meaning depends on the table: `id` in a raw table, `huntress` in
parsed_syslog vs agent_inventory, `status` in connector_health vs alerts, the OCSF columns), else the shared entry in
`COLUMN_DOCS` (names that mean the same wherever they appear), else "". `TABLE_DOCS` says what each table is.
The Dagster layer turns these into `dagster/column_schema` metadata; `undocumented()` finds the gaps
(tests/test_table_docs.py checks that every column of every table has a description and none is stale).
"""

from __future__ import annotations

from collections.abc import Iterable

_ENTITIES = "from the incident body or signal details, sorted, de-duplicated (null when not parsed)"

# Names that mean the same in every table that has them.
COLUMN_DOCS: dict[str, str] = {
    "tenantid": "Tenant label of the account the row came from (configured override, else the account's "
                "subdomain); part of every key",
    "tenant_name": "Name of the Huntress account the row came from (else its tenantid)",
    "account_id": "Huntress account id of the object",
    "organization_id": "Huntress id of the organization the object belongs to",
    "organization_name": "Organization name: the organizations inventory's current one (follows renames), "
                         "else the record's own",
    "account": "Huntress account id the row was collected under (hive partition key, text)",
    "day": "UTC day partition: the day of updated_at for walked streams, the day the snapshot was taken for "
           "snapshot streams",
    "collected_at": "When this version was fetched: the start of the walk or fetch that read it, or the "
                    "snapshot's time",
    "created_at": "When Huntress created the object (API created_at, UTC)",
    "updated_at": "When Huntress last changed the object (API updated_at, UTC)",
    "first_seen_at": "Time of the first snapshot that held this object",
    "last_seen_at": "Time of the latest snapshot that held this object",
    "snapshots_seen": "Number of snapshots that held this object",
    "in_latest_snapshot": "Whether the account's newest snapshot holds it; false: gone from Huntress, row kept",
    "msg_class": "Content type of the row, one per stream (huntress_incident_report, huntress_signal, "
                 "huntress_agent, ...)",
    "msg_origin": "STRUCT {source, vendor: 'huntress', category}: category is mdr, edr, itdr, siem, endpoint, "
                  "identity, exposure, ...",
    "domain": "Host URL (reference name): the Huntress API host the row was collected from",
    "timestamp": "When the object's current version was made: updated_at, else its latest other time (UTC)",
    "huntress": "The object's normalized Huntress fields (STRUCT: id, account_id, organization_id(s), status, "
                "updated_at, ...; null if n/a)",
    "report_header": "Facts read from the incident body's header: incident_report_url, host_url, organization, "
                     "security_product",
    "processes": "Process names and executable paths " + _ENTITIES,
    "command_lines": "Command lines " + _ENTITIES,
    "files": "File paths " + _ENTITIES,
    "md5": "MD5 hashes " + _ENTITIES,
    "sha1": "SHA-1 hashes " + _ENTITIES,
    "sha256": "SHA-256 hashes " + _ENTITIES,
    "users": "User names (DOMAIN\\user, UPNs, e-mail addresses) " + _ENTITIES,
    "emails": "E-mail addresses (not Huntress's own) " + _ENTITIES,
    "ipv4": "IPv4 addresses " + _ENTITIES,
    "ipv6": "IPv6 addresses " + _ENTITIES,
    "domains": "Domains (refanged; Huntress's own excluded) " + _ENTITIES,
    "urls": "URLs (refanged; Huntress's own excluded) " + _ENTITIES,
    "registry_keys": "Registry keys " + _ENTITIES,
    "scheduled_tasks": "Scheduled task names " + _ENTITIES,
    "services": "Service names " + _ENTITIES,
    "parse_level": "How the incident body was parsed: full, full_body_dropped (>= 500 KiB) or partial (>= 5 "
                   "MiB: header only)",
    "body_size": "Size in bytes (UTF-8) of the original incident body, whether kept or not",
    "severity_id": "OCSF severity_id of the Huntress severity label: 2 Low, 4 High, 5 Critical, 0 Unknown "
                   "(other or none)",
    "status_id": "OCSF status_id of the Huntress status: 1 New, 2 In Progress, 3 Suppressed, 4 Resolved, "
                 "99 Other, 0 Unknown",
    "is_open": "False once the status takes it off the queue (closed, dismissed, partner_dismissed, "
               "deleting, resolved); else open",
    "security_product": "Huntress product that raised it (Managed EDR, ITDR, SIEM, Email Security, Defender "
                        "for Endpoint); null if none",
    "raw_json": "The API object verbatim (JSON text, exactly as served)",
}

# OCSF 1.5.0 columns shared by the three OCSF tables (merged into each below).
_OCSF: dict[str, str] = {
    "activity_id": "OCSF activity: findings 1 Create, 2 Update (changed since created), 3 Close; inventory "
                   "events 2 Collect",
    "activity_name": "Name of activity_id (Create, Update, Close, Collect)",
    "category_uid": "OCSF category: 2 Findings (detection findings) or 5 Discovery (inventory events)",
    "category_name": "Name of category_uid (Findings, Discovery)",
    "class_uid": "OCSF class: 2004 Detection Finding, 5001 Device Inventory Info, 5003 User Inventory Info",
    "class_name": "Name of class_uid",
    "type_uid": "OCSF event type: class_uid * 100 + activity_id",
    "type_name": "Name of type_uid, e.g. 'Detection Finding: Update'",
    "severity": "Name of severity_id (Unknown, Informational, Low, High, Critical)",
    "metadata": "STRUCT: OCSF version (1.5.0), product (Huntress product), uid (Huntress id), tenant_uid "
                "(tenantid), profiles",
    "unmapped": "Huntress fields OCSF 1.5.0 has no attribute for (STRUCT)",
}

_WALKED = {"raw_incidents": "incident report", "raw_signals": "signal", "raw_escalations": "escalation",
           "raw_platform_actions": "platform action"}
_SNAPSHOT = {"raw_agents": "agent", "raw_organizations": "organization", "raw_identities": "identity",
             "raw_external_ports": "external port"}


def _raw(table: str) -> dict[str, str]:
    label = _WALKED.get(table) or _SNAPSHOT[table]
    walked = table in _WALKED
    docs = {
        "id": f"Huntress id of the {label}" + ("; with updated_at, the key of a version" if walked else ""),
        "account_id": "The object's account_id (or embedded account.id); null when it carries none (signals, "
                      "external ports)",
        "organization_id": "The object's organization_id (or embedded organization.id); null when it spans "
                           "several organizations",
        "updated_at": ("The object's updated_at (UTC): which version this is, and its day partition" if walked
                       else "The object's updated_at (UTC) when the snapshot was taken; null if it has none"),
        "collected_at": ("Start of the walk (or fetch) that read this version" if walked
                         else "When the snapshot was taken (the same for every row of one snapshot)"),
        "day": ("UTC day of updated_at (hive partition)" if walked
                else "UTC day the snapshot was taken (hive partition)"),
    }
    if walked:
        docs["remediations_json"] = ('Incident reports: the complete remediations list as JSON {"remediations": '
                                     '[...]} when more than the embedded 10; else null')
    if table == "raw_organizations":
        docs["organization_id"] = "Null for an organization itself: its own id is in `id`"
    return docs


_HEALTH: dict[str, str] = {
    "evaluated_at": "When the run wrote this health row (UTC)",
    "connection": "Name of the connection (one API key) that collected",
    "account_id": "Huntress account collected; null when the failure was not tied to one account (a crashed run)",
    "tenantid": "Tenant label of the account; null in a run-failure row",
    "stream": "Stream collected: incident_reports, signals, escalations, platform_actions, agents, "
              "organizations, identities, external_ports",
    "status": "ok; degraded (collected, but late past the freshness window or throttled by 429s); failing "
              "(not collected)",
    "last_success_at": "Last complete collection: the walked stream's committed watermark, or the newest "
                       "snapshot",
    "lag_seconds": "evaluated_at minus last_success_at, in seconds; null if never collected",
    "http_status": "HTTP status of the API error that stopped collection; null if none or not an HTTP error",
    "error_class": "Class of the error that stopped collection (e.g. HuntressAuthenticationError); null when ok",
    "guidance": "What to do: the reference connector's troubleshooting text for the error, or why it is "
                "degraded",
    "error": "The error's message (first 500 characters); null when collected",
    "records_collected": "Records this run collected for the stream and account",
    "api_requests": "API requests made with the connection's key during this run's step",
    "api_429_responses": "HTTP 429 (rate limited) responses the connection's key got during this run's step",
    "rate_limit_wait_seconds": "Seconds this run's step waited on the key's rate limiter",
    "days_recollected": "Days before the run's last day that were incomplete and now are complete (read again "
                        "after an outage)",
    "run_id": "Dagster run id that collected (or failed)",
    "source": "run (written by the run itself) or run_failure (recorded for a run that crashed or was killed)",
    "day": "UTC day of evaluated_at (hive partition)",
}

# Table -> the meaning of a name in that table, where it is not (only) the shared one.
TABLE_COLUMN_DOCS: dict[str, dict[str, str]] = {
    "alerts": {
        "alert_id": "Stable id of the alert: UUIDv5 of its key (tenantid, msg_class, huntress_id, organization_id, "
                    "account_id)",
        "msg_class": "huntress_incident_report or huntress_escalation",
        "huntress_id": "Huntress id of the incident report or escalation",
        "organization_id": "Organization the alert concerns (an escalation has one row per organization it "
                           "affects)",
        "type": "Escalation type (null for incident reports)",
        "subtype": "Escalation subtype (null for incident reports)",
        "agent_id": "Huntress agent (endpoint) the incident report is about; joins agent_inventory.agent_id",
        "severity": "Huntress severity label (low, high, critical)",
        "status": "Huntress status label (incidents: sent, auto_remediating, closed, dismissed, ...; "
                  "escalations: open, sent, overdue, resolved)",
        "subject": "Title of the incident report or escalation",
        "summary": "Summary of the incident report",
        "platform": "Platform of the incident report as Huntress gives it (e.g. windows, darwin, microsoft_365)",
        "indicator_types": "Huntress indicator types of the incident report (e.g. footholds, mde_detections)",
        "incident_report_url": "The incident report's page in the Huntress portal; null for escalations or "
                               "without the account subdomain",
        "sent_at": "When the incident report was sent to the partner",
        "closed_at": "When the incident report was closed, or the escalation resolved",
        "status_updated_at": "When the incident report's status last changed",
        "updated_at": "API updated_at of the latest version (the one this row shows)",
        "version_count": "Number of distinct versions (updated_at) of this alert stored in the lake",
        "first_collected_at": "Earliest collection time among the alert's stored versions (about when the lake "
                              "first saw it)",
        "last_collected_at": "When the version this row shows was collected",
        "hostname": "Host name of the alert's agent, from agent_inventory (current inventory)",
        "host_os": "Operating system of the alert's agent, from agent_inventory",
        "host_ipv4": "Internal IPv4 address of the alert's agent, from agent_inventory",
        "host_external_ip": "External (public) IP of the alert's agent, from agent_inventory",
        "host_mac_addresses": "MAC addresses of the alert's agent, from agent_inventory",
        "host_domain_name": "Windows domain of the alert's agent, from agent_inventory",
        "huntress": "The latest version's normalized Huntress fields (STRUCT as in parsed_syslog: remediations, "
                    "indicator_counts, ...)",
        "day": "UTC day of the latest version's updated_at (its parsed_syslog partition)",
    },
    "agent_inventory": {
        "agent_id": "Huntress id of the agent (one row each)",
        "organization_name": "Organization name from the organizations inventory (null before its first snapshot)",
        "hostname": "Host name the agent reports",
        "domain_name": "Windows domain the host belongs to",
        "platform": "Agent platform (windows, darwin, linux)",
        "os": "Operating system name and version",
        "os_build_version": "Operating system build",
        "arch": "CPU architecture (e.g. x86_64, arm64)",
        "ipv4_address": "Internal IPv4 address the agent reports",
        "external_ip": "Public IP address the agent was last seen from",
        "mac_addresses": "MAC addresses of the host",
        "serial_number": "Hardware serial number",
        "agent_version": "Huntress agent version",
        "edr_version": "Huntress EDR component version",
        "defender_status": "Microsoft Defender status as Huntress reports it (e.g. Healthy)",
        "defender_substatus": "Microsoft Defender substatus (e.g. Up to date)",
        "defender_policy_status": "Whether Microsoft Defender matches the Huntress-managed policy (e.g. Compliant)",
        "firewall_status": "Host firewall status as Huntress reports it (Isolated: host isolated by Huntress)",
        "tamper_protection_configured": "Whether Defender tamper protection is configured (policy)",
        "tamper_protection_actual": "Whether Defender tamper protection is actually on at the host",
        "tags": "Huntress tags of the agent",
        "last_callback_at": "When the agent last checked in with Huntress",
        "days_since_callback": "Days from last_callback_at to when agent_inventory was built (day boundaries; null without "
                               "a callback)",
        "is_stale": "True when no callback in over 30 days (or ever), or the agent is gone from the latest "
                    "snapshot",
        "huntress": "The agent's full normalized record from its latest snapshot (STRUCT, as in parsed_syslog)",
    },
    "connector_health": _HEALTH,
    "connector_status": {name: text for name, text in _HEALTH.items() if name != "day"},
    "external_ports": {
        "ip_address": "Public IP address the port is exposed on",
        "port": "Port number",
        "protocol": "Protocol (TCP, UDP)",
        "service": "Service Huntress identified on the port (e.g. rdp, ssh, https)",
        "risky_service": "Whether Huntress flags the service as risky to expose to the internet",
        "port_id": "Huntress id of the latest record of this exposure (one row per ip, port, protocol)",
        "organization_ids": "Huntress ids of the organizations the exposure belongs to",
        "organization_names": "Names of organization_ids, from the organizations inventory (parallel list)",
        "last_scan_at": "When Huntress last scanned the port (API last_scan_at)",
        "last_external_scan_at": "When Huntress's last external scan saw it (API last_external_scan_at)",
    },
    "identities": {
        "identity_id": "Huntress id of the identity (one row each)",
        "username": "Sign-in name at the identity provider",
        "email": "E-mail address of the identity",
        "enabled": "Whether the account is enabled at the identity provider",
        "mfa_enabled": "Whether the identity has MFA",
        "risk_level": "Identity provider's risk level (none, low, medium, high)",
        "risk_state": "Identity provider's risk state (e.g. none, atRisk, remediated)",
        "billable": "Whether the identity counts toward Huntress ITDR billing",
        "external": "Whether it is an external (guest) identity",
        "enabled_products": "Huntress products enabled for the identity",
        "tenant_id": "Identity provider tenant id (Microsoft 365 / Google Workspace), not the Huntress tenantid",
        "tenant_type": "Identity provider of the tenant (microsoft_365, google_workspace)",
        "mfa_changed_at": "Snapshot time when mfa_enabled last differed from the previous snapshot; null if never",
        "risk_changed_at": "Snapshot time when risk_level last differed from the previous snapshot; null if never",
    },
    "ocsf_detection_finding": {
        **_OCSF,
        "time": "Epoch ms of the alert's updated_at (else created_at, else status_updated_at)",
        "severity_id": "OCSF severity_id of the alert: 2 Low, 4 High, 5 Critical, 0 Unknown",
        "status_id": "OCSF finding status of the alert: 1 New, 2 In Progress, 3 Suppressed, 4 Resolved, 99 Other",
        "status": "Name of status_id; for 99 Other, the Huntress label",
        "message": "Subject of the alert",
        "is_alert": "False once the activity is Close (closed or dismissed)",
        "finding_info": "STRUCT: uid (alerts.alert_id), title, desc (summary), times, types (indicator types), "
                        "src_url (portal link)",
        "device": "The alert's host (STRUCT: uid agent id, hostname, ip, mac, os); null when unknown",
        "observables": "List of {name, type_id, value}: the alert's hostname, entity columns and external IP",
        "unmapped": "STRUCT: Huntress status, severity, platform; organization, account, agent ids; "
                    "remediations_total",
    },
    "ocsf_device_inventory_info": {
        **_OCSF,
        "time": "Epoch ms of the agent's updated_at (else created_at, else last_callback_at)",
        "severity_id": "Always 1 Informational",
        "device": "The agent as an OCSF device (STRUCT: uid, hostname, domain, ip, mac, os, hw_info, agent_list, "
                  "groups = tags)",
        "unmapped": "STRUCT: Defender, firewall and tamper protection status; external IP; organization and "
                    "account ids",
    },
    "ocsf_user_inventory_info": {
        **_OCSF,
        "time": "Epoch ms of the identity's last_seen_at (else updated_at, created_at, first_seen_at)",
        "severity_id": "Always 1 Informational",
        "user": "The identity as an OCSF user (STRUCT: uid, name, email_addr, has_mfa, risk level, account = "
                "IdP tenant, org)",
        "unmapped": "STRUCT: enabled, risk_state, billable, external, products, tenant type, account id, "
                    "in_latest_snapshot, times",
    },
    "organizations": {
        "organization_id": "Huntress id of the organization (one row each)",
        "name": "Organization name (current: follows renames)",
        "key": "Organization key in Huntress (the ORG_KEY agents are installed with)",
        "agents_count": "Number of agents the API reports for the organization",
        "incident_reports_count": "Number of incident reports the API reports for the organization",
        "logs_sources_count": "Number of Managed SIEM log sources",
        "billable_identity_count": "Number of billable ITDR identities",
        "sat_learner_count": "Number of Security Awareness Training learners",
        "identity_provider_tenant_id": "Identity provider tenant (Microsoft 365 / Google Workspace) the "
                                       "organization's ITDR watches",
    },
    "parsed_syslog": {
        "body": "Incident body text, kept when under 500 KiB (else null; see parse_level)",
        "alert_uid": "alerts.alert_id of the row; null for escalations and platform actions (one per "
                     "organization) and inventories",
        "portal_url": "The incident report's page in the Huntress portal; null without the account subdomain",
    },
    "_quarantine": {
        "stream": "Stream whose record could not be keyed or normalized",
        "endpoint": "API endpoint that served it",
        "record_id": "The record's id as JSON text, as the API sent it (the id itself may be the problem)",
        "reason": "Why the record was quarantined",
        "collected_at": "Collection time of the run that met the record",
        "raw_json": "The poison record verbatim (JSON text)",
    },
    **{table: _raw(table) for table in (*_WALKED, *_SNAPSHOT)},
}

TABLE_DOCS: dict[str, str] = {
    "raw_incidents": "Incident reports verbatim, every version, by UTC day of updated_at.",
    "raw_signals": "Signals (detections the SOC investigated) verbatim, every version, by UTC day of updated_at.",
    "raw_escalations": "Escalations (requests for partner action) verbatim, every version, by UTC day of "
                       "updated_at.",
    "raw_platform_actions": "Platform actions (what Huntress says is broken) verbatim, every version, by UTC "
                            "day of updated_at.",
    "raw_agents": "Agent inventory snapshots verbatim; every snapshot is kept.",
    "raw_organizations": "Organization snapshots verbatim; every snapshot is kept.",
    "raw_identities": "ITDR identity snapshots verbatim; every snapshot is kept.",
    "raw_external_ports": "External port snapshots verbatim; every snapshot is kept.",
    "parsed_syslog": "One normalized row per raw version of every content type (the reference Syslog index "
                     "shape), with parsed entities.",
    "alerts": "The triage queue: the latest version of each incident report and escalation, per organization, "
              "with host context.",
    "agent_inventory": "One row per agent: current state, organization name, first/last seen across snapshots, "
              "staleness.",
    "organizations": "One row per organization: name, key, the counts the API gives, first/last seen.",
    "identities": "One row per ITDR identity: MFA, risk, enabled, first/last seen, when MFA and risk last "
                  "changed.",
    "external_ports": "One row per exposure (ip, port, protocol): service, risk, organizations, first/last seen.",
    "ocsf_detection_finding": "alerts as OCSF 1.5.0 Detection Findings (class 2004).",
    "ocsf_device_inventory_info": "agent_inventory as OCSF 1.5.0 Device Inventory Info events (class 5001).",
    "ocsf_user_inventory_info": "identities as OCSF 1.5.0 User Inventory Info events (class 5003).",
    "connector_health": "One row per connection, account and stream each time a run collects it (or fails); "
                        "history.",
    "connector_status": "The latest connector_health row per connection, account and stream.",
    "_quarantine": "Poison records (not keyable or normalizable), verbatim, with the reason.",
}


def column_description(table: str, column: str) -> str:
    """The description of `column` in `table`: the table's own, else the shared one, else ""."""
    own = TABLE_COLUMN_DOCS.get(table, {}).get(column)
    return own if own is not None else COLUMN_DOCS.get(column, "")


def undocumented(table: str, columns: Iterable[str]) -> list[str]:
    """The columns of `table` (in the order given) that have no description."""
    return [column for column in columns if not column_description(table, column)]
