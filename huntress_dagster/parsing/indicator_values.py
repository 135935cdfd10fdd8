"""What a token found in a report is: a domain, an IPv4 address, an e-mail address, the canonical text of
an IPv6 address, or a bare program name. Shared by body extraction (`entities`) and the detail fields of
signals (`details`), so both judge a value the same way.

TLDs are checked against the Public Suffix List's ICANN section as shipped by the maintained
`publicsuffixlist` package, so `evil.exe` and `report.docx` are not domains while `evil.top` is.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import cache, lru_cache

import publicsuffixlist

# Punctuation trimmed from the ends of values: ASCII, and the Unicode quotes, brackets and dashes that
# byte patterns cannot tell from letters.
_OPENERS = "«“‘‹「『（【"
CLOSERS = "»”’›」』）】…–—"
_EMAIL_LOCAL = re.compile(r"[\w.+\-]+")
_DNS_LABEL = re.compile(r"(?!-)[^\W_][\w\-]{0,62}(?<!-)")
# Hex digests by length: the entity column each goes to.
HASH_COLUMNS = {"md5": 32, "sha1": 40, "sha256": 64}
HASH_COLUMN_BY_LENGTH = {length: column for column, length in HASH_COLUMNS.items()}
_BARE_PROCESS_EXTENSIONS = (".exe", ".scr")  # "evil.com" alone is a domain, not a program
# File extensions that are TLDs too; a two-label token ending in one is read as a file name.
_FILE_EXTENSIONS = frozenset(
    {
        "zip",
        "mov",
        "sh",
        "py",
        "pl",
        "ps",
        "rs",
        "md",
        "so",
        "app",
        "run",
        "bat",
        "exe",
        "dll",
        "docx",
        "doc",
        "pdf",
        "txt",
        "log",
        "js",
        "php",
        "html",
        "cc",
        "mp4",
        "mp3",
        "bin",
        "dat",
        "tmp",
        "ini",
        "cfg",
        "csv",
        "xml",
        "json",
        "jar",
    }
)


@cache
def tlds() -> frozenset[str]:
    """Every ICANN top-level domain (Unicode and punycode forms), from the bundled Public Suffix List."""
    with open(publicsuffixlist.PSLFILE, encoding="utf-8") as handle:
        text = handle.read()
    icann = text.split("===BEGIN ICANN DOMAINS===", 1)[1].split("===END ICANN DOMAINS===", 1)[0]
    names = set()
    for line in icann.splitlines():
        rule = line.strip()
        if rule and not rule.startswith("//"):
            tld = rule.lstrip("!*.").rsplit(".", 1)[-1].lower()
            names.add(tld)
            if not tld.isascii():
                names.add(tld.encode("idna").decode())
    return frozenset(names)


def decode_utf8(value: bytes) -> str:
    return value.decode("utf-8", "surrogatepass")


def url_host(url: str) -> str:
    authority = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = authority.rpartition("@")[2]
    return host.strip("[]") if host.startswith("[") else host.rpartition(":")[0] or host


def as_domain(token: str, *, from_url: bool = False) -> str | None:
    labels = token.rstrip(".").split(".")
    tld = labels[-1]
    if len(labels) < 2 or not (tld.islower() or tld.isupper()):
        return None  # CamelCase names (WScript.Network) are code, not hosts
    name = ".".join(labels).lower()
    tld = tld.lower()
    if tld not in tlds() or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return None
    if not from_url and len(labels) == 2 and tld in _FILE_EXTENSIONS:
        return None
    return name


@lru_cache(maxsize=1 << 12)
def host_domain(host: str) -> str | None:
    """The domain a URL's host names (None for an IP address or no domain). Cached: every report links
    the account's portal host, and the same C2 hosts recur across reports."""
    return None if as_ipv4(host) is not None else as_domain(host, from_url=True)


def as_ipv4(token: str) -> str | None:
    octets = token.split(".")
    if len(octets) != 4 or not all(o.isdigit() and o.isascii() and len(o) <= 3 for o in octets):
        return None
    if any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in octets):
        return None
    return token


def as_email(token: str) -> str | None:
    local, at, domain = token.rpartition("@")
    if not at or "@" in local or not _EMAIL_LOCAL.fullmatch(local or "-"):
        return None
    host = as_domain(domain, from_url=True)
    return f"{local}@{host}".lower() if host and local else None


@lru_cache(maxsize=1 << 16)
def classify_dot_token(raw: bytes) -> tuple[str, str] | None:
    """(column, value) of a dotted token: an e-mail, IPv4 address, domain, or bare program name (cmd.exe,
    column "processes"); None for other dotted words (file names, versions). Cached, because the same
    tokens recur across a batch (program names, product and C2 domains)."""
    token = decode_utf8(raw).strip(_OPENERS + CLOSERS)
    if not token:
        return None
    if "@" in token:
        email = as_email(token)
        return None if email is None else ("emails", email)
    if token[0].isdigit() and as_ipv4(token):
        return "ipv4", token
    if token.lower().endswith(_BARE_PROCESS_EXTENSIONS):
        return "processes", token
    domain = as_domain(token)
    return None if domain is None else ("domains", domain)


@lru_cache(maxsize=1 << 12)
def canonical_ipv6(candidate: bytes) -> str | None:
    """`str(ipaddress.IPv6Address(...))`, or None for no address. The C round trip through inet_pton and
    inet_ntop gives the same text ~14x faster (0.5 against 7 us; most addresses in reports are distinct,
    so the cache rarely helps); where inet_ntop writes an embedded IPv4 form, ipaddress does not, so
    those, and what inet_pton refuses, go through ipaddress (a property test checks the two agree)."""
    text = candidate.decode("ascii")
    try:
        canonical = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
    except OSError:
        canonical = None
    if canonical is not None and "." not in canonical:
        return canonical
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return None
