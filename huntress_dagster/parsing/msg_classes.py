"""The parsed_syslog classes: one `msg_class` per Huntress content type, and each class's `msg_origin`.

`msg_origin.source` = `msg_origin.vendor` = `huntress` for every row; `msg_origin.category` says which kind
of data a row is, so a query can take e.g. every identity-related row (`category = 'itdr'` signals beside
`identity` inventory rows) without knowing the classes:

| msg_class                  | category    | what                                                         |
|----------------------------|-------------|--------------------------------------------------------------|
| huntress_incident_report   | mdr         | the SOC's findings                                           |
| huntress_agent             | endpoint    | agent inventory                                              |
| huntress_signal            | per type    | see `SIGNAL_CATEGORY`: edr / itdr / siem (else mdr)          |
| huntress_escalation        | mdr         | the SOC asking the partner to act                            |
| huntress_platform_action   | platform    | what the Huntress platform says is broken (integrations...)  |
| huntress_identity          | identity    | identity inventory (M365 / Google Workspace users)           |
| huntress_external_port     | exposure    | internet-facing ports found by external scans                |
| huntress_organization      | inventory   | the account's organizations                                  |
"""

from __future__ import annotations

INCIDENT_CLASS = "huntress_incident_report"
AGENT_CLASS = "huntress_agent"
SIGNAL_CLASS = "huntress_signal"
ESCALATION_CLASS = "huntress_escalation"
PLATFORM_ACTION_CLASS = "huntress_platform_action"
IDENTITY_CLASS = "huntress_identity"
EXTERNAL_PORT_CLASS = "huntress_external_port"
ORGANIZATION_CLASS = "huntress_organization"

MSG_CLASSES = (
    INCIDENT_CLASS,
    AGENT_CLASS,
    SIGNAL_CLASS,
    ESCALATION_CLASS,
    PLATFORM_ACTION_CLASS,
    IDENTITY_CLASS,
    EXTERNAL_PORT_CLASS,
    ORGANIZATION_CLASS,
)

CATEGORY = {
    INCIDENT_CLASS: "mdr",
    AGENT_CLASS: "endpoint",
    SIGNAL_CLASS: "mdr",  # the fallback of a signal whose type is missing or unknown (see SIGNAL_CATEGORY)
    ESCALATION_CLASS: "mdr",
    PLATFORM_ACTION_CLASS: "platform",
    IDENTITY_CLASS: "identity",
    EXTERNAL_PORT_CLASS: "exposure",
    ORGANIZATION_CLASS: "inventory",
}

# Signal `type` (lower-cased) -> category: what watched the thing the signal is about.
# - edr: detections on an endpoint, by the Huntress agent or the Defender it manages (the entity is an agent);
# - itdr: identity threats in Microsoft 365 / Google Workspace; Favicon Detections are the ITDR canary that
#   flags cloned (adversary-in-the-middle) login pages of the organization's identity provider;
# - siem: rules over the log sources of Huntress Managed SIEM.
# Any other type (a type Huntress adds later) is `mdr`: a signal is what the Huntress SOC investigated.
SIGNAL_CATEGORY = {
    "antivirus": "edr",
    "process insights": "edr",
    "footholds": "edr",
    "mde detections": "edr",
    "ransomware canaries": "edr",
    "attack disruptions": "edr",
    "app control": "edr",
    "managed itdr": "itdr",
    "favicon detections": "itdr",
    "siem": "siem",
}

# Signal `type` (lower-cased) -> `security_product` (the endpoint types not listed are Managed EDR).
SIGNAL_PRODUCT = {
    "mde detections": "Microsoft Defender for Endpoint",
    "managed itdr": "Huntress Managed ITDR",
    "favicon detections": "Huntress Managed ITDR",
    "siem": "Huntress Managed SIEM",
}


def origin(category: str) -> dict[str, str]:
    """A row's `msg_origin`."""
    return {"source": "huntress", "vendor": "huntress", "category": category}
