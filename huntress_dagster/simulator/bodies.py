"""Deterministic, Huntress-style incident report bodies for the simulator.

`render_body(seed, incident, target_bytes)` returns an HTML body shaped like a Huntress incident report:
a header table near the top (incident report URL, host URL, organization, security product), detail
sections that plant processes with command lines, files with MD5/SHA1/SHA256, users (DOMAIN\\user, UPN,
email), network indicators (IPv4, IPv6, domains, URLs; some defanged), registry keys, a scheduled task and
a service, then a timeline of log lines and analyst notes that repeats the planted indicators until the
body is exactly `target_bytes` long in UTF-8 (or the planted part alone, when that is already longer).
Narrative lines carry the usual false-positive bait: version numbers (10.0.19041.1), document names
(report.docx), timestamps and MAC addresses.

`expected_entities(seed, incident)` returns what was planted, in the parser's normalized (refanged,
de-duplicated, sorted) form, so tests can check that parsing recovers exactly that.

Speed: a body is the planted part plus up to ~64 KB of distinct timeline lines; anything longer repeats
that block with str multiplication, so a 5 MB body costs a few memory copies rather than 5 MB of
formatting.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from dataclasses import dataclass

from huntress_dagster.parsing.fields import security_product

_UNIQUE_TIMELINE_BYTES = 64 * 1024

_ORG_NAMES = [
    "Acme Dental",
    "Globex Logistics",
    "Initech LLC",
    "Umbrella Clinic",
    "Wayne Holdings",
    "Hooli Law Group",
    "Vandelay Industries",
    "Tyrell Manufacturing",
    "Zoë & Søn Bakery",
]
_NETBIOS = ["ACME", "GLOBEX", "CORP", "INITECH", "HQ", "FINANCE"]
_MAIL_DOMAINS = ["acme.com", "globex.net", "initech.org", "contoso.co.uk", "example-corp.io"]
_FIRST = ["jdoe", "asmith", "bwayne", "ckent", "dprince", "svc_backup", "hr.admin", "mlopez"]
_C2_DOMAINS = [
    "cdn-update-check.top",
    "login-microsoftonline.support",
    "telemetry-sync.xyz",
    "files-share.ru",
    "secure-docs-view.com",
    "api.paste-relay.net",
    "static.cloud-mirror.io",
]
_HOST_PREFIX = ["DESKTOP", "LAPTOP", "WS", "SRV", "FS", "DC"]
_TASKS = [
    "\\Microsoft\\Windows\\UpdateOrchestrator\\Refresh Cache",
    "\\GoogleUpdateTaskMachineQA",
    "\\Microsoft\\Windows\\Maintenance\\SyncHelper",
    "\\OneDrive Reporting Task-S-1-5-21",
]
_SERVICES = ["WinSyncSvc", "PrintSpoolerHelper", "RemoteUtilitiesHost", "AteraAgentSvc", "MeshAgent"]
_RUN_VALUES = ["Updater", "OneDriveSync", "SecurityHealthTray", "AdobeHelper"]
_DROP_DIRS = [
    "C:\\Users\\{user}\\AppData\\Roaming\\{rand}",
    "C:\\ProgramData\\{rand}",
    "C:\\Users\\{user}\\AppData\\Local\\Temp\\{rand}",
    "C:\\Windows\\Temp\\{rand}",
]
_NARRATIVE = [
    (
        "The Huntress SOC reviewed the process tree and confirmed the activity was not initiated by an "
        "administrator. Version 10.0.19041.1 of the operating system was reported by the agent."
    ),
    (
        "The user opened report.docx and invoice_2024.pdf from a shared mailbox shortly before the alert; "
        "no further lateral movement was observed after isolation."
    ),
    (
        "Agent build 0.13.42 and EDR 2.4.7 were healthy at the time. The interface with MAC 7c:a7:b0:16:2f:78 "
        "remained connected to the corporate VLAN at 12:04:33 UTC."
    ),
    (
        "Persistence was established minutes after initial access. We recommend resetting the credentials of "
        "the affected account and reviewing sign-in logs for the previous 30 days."
    ),
    (
        "An analyst note was added: behaviour matches a commodity loader; the payload was quarantined and the "
        "host's network connectivity restored once remediation completed."
    ),
    "Zoë from the help desk confirmed the user did not expect the prompt — «Mise à jour» — at logon.",
]


@dataclass(frozen=True)
class _Process:
    image: str
    command_line: str


@dataclass(frozen=True)
class _File:
    path: str
    md5: str
    sha1: str
    sha256: str


@dataclass(frozen=True)
class _Plan:
    """Everything a body mentions; `expected_entities` is derived from it."""

    report_url: str
    host_url: str
    organization: str
    product: str
    hostname: str
    processes: tuple[_Process, ...]
    parent_image: str
    files: tuple[_File, ...]
    netbios_users: tuple[str, ...]
    emails: tuple[str, ...]
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    domains: tuple[str, ...]
    urls: tuple[str, ...]
    registry_keys: tuple[str, ...]
    scheduled_task: str
    service: str


def _defang_host(value: str) -> str:
    head, _, tld = value.rpartition(".")
    return f"{head}[.]{tld}"


def _defang_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.replace('tt', 'xx')}[:]//{_defang_host(host)}{slash}{path}"


def _hashes(rng: random.Random) -> tuple[str, str, str]:
    material = rng.randbytes(32)
    return (
        hashlib.md5(material).hexdigest(),
        hashlib.sha1(material).hexdigest(),
        hashlib.sha256(material).hexdigest(),
    )


def _plan(seed: int, incident: dict) -> _Plan:
    rng = random.Random(seed)
    org_id = incident.get("organization_id")
    agent_id = incident.get("agent_id")
    subdomain = incident.get("account_subdomain") or "acme-mssp"
    report_url = incident.get("portal_url") or (
        f"https://{subdomain}.huntress.io/org/{org_id}/incident_reports/{incident.get('id')}"
    )
    hostname = incident.get("hostname") or f"{rng.choice(_HOST_PREFIX)}-{rng.randrange(16**6):06X}"
    netbios = rng.choice(_NETBIOS)
    mail_domain = rng.choice(_MAIL_DOMAINS)
    users = rng.sample(_FIRST, 3)

    def rand_dir() -> str:
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=8))

    drop_dir = rng.choice(_DROP_DIRS).format(user=users[0], rand=rand_dir())
    payload = f"{drop_dir}\\{rng.choice(['svchost', 'update', 'OneDriveSetup', 'chrome_helper'])}.exe"
    dll_name = f"{rng.choice(['msvcr', 'vcruntime', 'libcurl'])}{rng.randrange(10, 99)}.dll"
    dll = f"C:\\ProgramData\\{rand_dir()}\\{dll_name}"
    script_name = f"{rng.choice(['invoice', 'scan', 'payroll'])}_{rng.randrange(1000)}.ps1"
    script = f"C:\\Users\\{users[0]}\\Downloads\\{script_name}"
    ip_c2 = (
        f"{rng.choice([45, 91, 185, 193])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    )
    ip_login = (
        f"{rng.choice([102, 146, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    )
    domains = rng.sample(_C2_DOMAINS, 2)
    urls = (
        f"https://{domains[0]}/{rand_dir()}/stage2.bin",
        f"http://{ip_c2}:8080/gate.php?id={rng.randrange(10**6)}",
        f"https://{domains[1]}/login?session={rand_dir()}",
    )
    powershell = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    rundll = "C:\\Windows\\System32\\rundll32.exe"
    processes = (
        _Process(powershell, f'powershell.exe -NoP -W Hidden -ExecutionPolicy Bypass -File "{script}"'),
        _Process(rundll, f"rundll32.exe {dll},DllRegisterServer"),
        _Process(payload, f'"{payload}" --silent --connect {ip_c2}'),
    )
    files = tuple(_File(path, *_hashes(rng)) for path in (payload, dll, script))
    return _Plan(
        report_url=report_url,
        host_url=f"https://{subdomain}.huntress.io/org/{org_id}/agents/{agent_id}",
        organization=incident.get("organization_name") or rng.choice(_ORG_NAMES),
        product=security_product(incident.get("indicator_types"), incident.get("platform")),
        hostname=hostname,
        processes=processes,
        parent_image="C:\\Windows\\explorer.exe",
        files=files,
        netbios_users=(f"{netbios}\\{users[0]}", f"{netbios}\\{users[1]}"),
        emails=(f"{users[0]}@{mail_domain}", f"{users[2]}@{mail_domain}"),
        ipv4=(ip_c2, ip_login),
        ipv6=(
            f"2001:db8:{rng.randrange(1, 0xFFFF):x}::{rng.randrange(1, 0xFFFF):x}",
            (
                f"2606:4700:{rng.randrange(1, 0xFFFF):x}:{rng.randrange(1, 0xFFFF):x}:0:"
                f"{rng.randrange(1, 0xFFFF):x}:{rng.randrange(1, 0xFFFF):x}:{rng.randrange(1, 0xFFFF):x}"
            ),
        ),
        domains=tuple(domains),
        urls=urls,
        registry_keys=(
            f"HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\{rng.choice(_RUN_VALUES)}",
            "HKCU\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon\\Shell",
        ),
        scheduled_task=rng.choice(_TASKS),
        service=rng.choice(_SERVICES),
    )


def _header_html(plan: _Plan, incident: dict) -> str:
    severity = str(incident.get("severity") or "high").upper()
    return (
        f'<div class="incident-report">\n<h2>{severity} - Incident on {plan.hostname}</h2>\n'
        '<table class="report-header">\n'
        f'<tr><th>Incident Report</th><td><a href="{plan.report_url}">{plan.report_url}</a></td></tr>\n'
        f'<tr><th>Host</th><td><a href="{plan.host_url}">{plan.hostname}</a></td></tr>\n'
        f"<tr><th>Organization</th><td>{_escape(plan.organization)}</td></tr>\n"
        f"<tr><th>Security Product</th><td>{plan.product}</td></tr>\n</table>\n"
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _details_html(plan: _Plan, rng: random.Random) -> str:
    parts = [
        "<h3>Summary</h3>\n<p>Huntress detected malicious activity on <b>",
        plan.hostname,
        "</b>. A user account signed in from ",
        plan.ipv4[1],
        " (",
        plan.ipv6[0],
        ") and launched a PowerShell script that contacted ",
        _defang_host(plan.domains[0]),
        " and ",
        plan.domains[1],
        ".</p>\n<h3>Process Details</h3>\n",
    ]
    for process in plan.processes:
        parts.append(
            '<table class="process">\n'
            f"<tr><th>Process</th><td>{process.image}</td></tr>\n"
            f"<tr><th>Command Line</th><td>{_escape(process.command_line)}</td></tr>\n"
            f"<tr><th>Parent Process</th><td>{plan.parent_image}</td></tr>\n"
            f"<tr><th>User</th><td>{plan.netbios_users[0]}</td></tr>\n"
            f"<tr><th>PID</th><td>{rng.randrange(1000, 65000)}</td></tr>\n</table>\n"
        )
    parts.append("<h3>Files</h3>\n<ul>\n")
    for file in plan.files:
        parts.append(
            f"<li>{file.path}<br>MD5: {file.md5}<br>SHA1: {file.sha1}<br>SHA256: {file.sha256}</li>\n"
        )
    parts += [
        "</ul>\n<h3>Persistence</h3>\n",
        f"<p>Scheduled Task: {plan.scheduled_task}</p>\n",
        f"<p>Service Name: {plan.service}</p>\n",
        f"<p>Registry Key: {plan.registry_keys[0]}</p>\n",
        f"<p>Registry Key: {plan.registry_keys[1]}</p>\n",
        "<h3>Identity</h3>\n",
        (
            f"<p>User Principal Name: {plan.emails[0]}; the sign-in alert was sent to "
            f'<a href="mailto:{plan.emails[1]}">{plan.emails[1]}</a>. Also seen: {plan.netbios_users[1]}.</p>\n'
        ),
        "<h3>Network Indicators</h3>\n<ul>\n",
        f"<li>{_defang_host(plan.ipv4[0])}</li>\n<li>{plan.ipv6[1]}</li>\n",
        f"<li>{_defang_url(plan.urls[0])}</li>\n<li>{plan.urls[1]}</li>\n",
        f'<li><a href="{plan.urls[2]}">{_defang_url(plan.urls[2])}</a></li>\n</ul>\n',
        (
            "<h3>Remediation Instructions</h3>\n<ol>\n<li>Remove the scheduled task and service listed above."
            "</li>\n<li>Delete the files listed above and reset the user's password.</li>\n</ol>\n"
        ),
        '<h3>Timeline</h3>\n<pre class="timeline">\n',
    ]
    return "".join(parts)


def _timeline_lines(plan: _Plan, rng: random.Random):
    """Endless log lines and notes that only mention planted indicators."""
    second = rng.randrange(86_400)
    while True:
        second += rng.randrange(1, 30)
        day, clock = 1 + second // 86_400 % 28, second % 86_400
        stamp = f"2024-06-{day:02d}T{clock // 3600:02d}:{clock // 60 % 60:02d}:{clock % 60:02d}Z"
        process = rng.choice(plan.processes)
        file = rng.choice(plan.files)
        kind = rng.randrange(11)  # six kinds of log line, else (about 45%) an analyst note
        if kind == 0:
            yield (
                f"{stamp} host={plan.hostname} event=ProcessCreate pid={rng.randrange(1000, 65000)} "
                f'image="{process.image}" parent="{plan.parent_image}" user="{plan.netbios_users[0]}"'
            )
        elif kind == 1:
            yield (
                f'{stamp} host={plan.hostname} event=NetworkConnect image="{process.image}" '
                f"dst={rng.choice(plan.ipv4)}:{rng.choice([443, 8080, 80])} proto=tcp"
            )
        elif kind == 2:
            yield (
                f"{stamp} host={plan.hostname} event=DnsQuery query={rng.choice(plan.domains)} "
                f"answer={plan.ipv4[0]}"
            )
        elif kind == 3:
            yield (
                f'{stamp} host={plan.hostname} event=FileCreate path="{file.path}" sha256={file.sha256} '
                f"size={rng.randrange(10_000, 9_000_000)}"
            )
        elif kind == 4:
            yield (
                f'{stamp} host={plan.hostname} event=RegistrySetValue key="{rng.choice(plan.registry_keys)}" '
                f'data="{plan.files[0].path}"'
            )
        elif kind == 5:
            yield (
                f"{stamp} signin user={rng.choice(plan.emails)} src={plan.ipv4[1]} "
                f"src6={plan.ipv6[0]} result=success url={rng.choice(plan.urls)}"
            )
        else:
            yield f"{stamp} note: {rng.choice(_NARRATIVE)}"


def _timeline_block(plan: _Plan, rng: random.Random, size: int) -> str:
    """Distinct timeline lines totalling at least `size` UTF-8 bytes (whole lines)."""
    lines, total = [], 0
    for line in _timeline_lines(plan, rng):
        lines.append(line)
        total += len(line.encode()) + 1
        if total >= size:
            break
    return "\n".join(lines) + "\n"


def _fill(block: str, size: int) -> str:
    """`block` repeated and cut to exactly `size` UTF-8 bytes, ending with spaces rather than half a line."""
    encoded = block.encode()
    copies = size // len(encoded) if encoded else 0
    remaining = size - copies * len(encoded)
    tail = encoded[:remaining]
    cut = tail.rfind(b"\n") + 1
    return block * copies + tail[:cut].decode() + " " * (remaining - cut)


_FOOTER = "</pre>\n</div>\n"


def render_body(seed: int, incident: dict, target_bytes: int) -> str:
    """A Huntress-style HTML incident body, deterministic in (seed, incident), of exactly `target_bytes`
    UTF-8 bytes when that is at least the planted part's size (a few KB), else just the planted part.

    `incident` is the API record, optionally with `portal_url`, `organization_name`, `hostname` and
    `account_subdomain` (the simulator passes these) to make the header match the world.
    """
    plan = _plan(seed, incident)
    rng = random.Random(seed ^ 0x5EED)
    head = _header_html(plan, incident) + _details_html(plan, rng)
    fixed_bytes = len((head + _FOOTER).encode())
    room = max(0, target_bytes - fixed_bytes)
    timeline = _timeline_block(plan, rng, min(room, _UNIQUE_TIMELINE_BYTES)) if room else ""
    return head + _fill(timeline, room) + _FOOTER


def expected_entities(seed: int, incident: dict) -> dict[str, list[str]]:
    """The entity columns a parser should produce for any `render_body(seed, incident, n)` body."""
    plan = _plan(seed, incident)
    images = {p.image for p in plan.processes} | {plan.parent_image}
    url_hosts = {u.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0] for u in plan.urls}
    header_hosts = {
        plan.report_url.split("://", 1)[1].split("/", 1)[0],
        plan.host_url.split("://", 1)[1].split("/", 1)[0],
    }
    return {
        "processes": sorted(images),
        "command_lines": sorted({p.command_line for p in plan.processes}),
        # The script and DLL named in command lines are planted files too.
        "files": sorted(images | {f.path for f in plan.files}),
        "md5": sorted(f.md5 for f in plan.files),
        "sha1": sorted(f.sha1 for f in plan.files),
        "sha256": sorted(f.sha256 for f in plan.files),
        "users": sorted(set(plan.netbios_users) | set(plan.emails)),
        "emails": sorted(plan.emails),
        "ipv4": sorted(plan.ipv4),
        "ipv6": sorted(str(ipaddress.ip_address(a)) for a in plan.ipv6),
        "domains": sorted((set(plan.domains) | url_hosts | header_hosts) - set(plan.ipv4)),
        "urls": sorted(set(plan.urls) | {plan.report_url, plan.host_url}),
        "registry_keys": sorted(plan.registry_keys),
        "scheduled_tasks": [plan.scheduled_task],
        "services": [plan.service],
    }


def header_facts(seed: int, incident: dict) -> dict[str, str]:
    """The header facts planted near the top of every body for (seed, incident)."""
    plan = _plan(seed, incident)
    return {
        "incident_report_url": plan.report_url,
        "host_url": plan.host_url,
        "organization": plan.organization,
        "security_product": plan.product,
    }
