"""Entity and indicator extraction from incident report bodies (HTML or plain narrative).

`extract_entities(text)` returns the entity columns of a parsed_syslog row (see `ENTITY_COLUMNS`), each a
sorted, de-duplicated list of strings. Defanged forms (hxxp, [.], [dot], [:]//, [://], [:], [@]) are
refanged and HTML entities decoded, so `evil[.]com` and `evil&#46;com` both give `evil.com`. It reports
everything a text names, the vendor's own hosts included; the rows' columns then leave out Huntress's
portal, API, support site and mailboxes and the configured host URL (see `exclusions`).

Why these tools (measured on 2-20 KB bodies from the simulator's generator, one core, CPU time per body;
see benchmarks/README.md): this module takes ~0.3-0.45 ms.
- No HTML parser. Tags are simply delimiters for the patterns below (no value contains `<`), so href
  URLs and <script> text stay visible to extraction. selectolax (lexbor) would cost ~0.055 ms to parse and
  render the text, drop attribute values, and save no pattern work.
- No third-party IOC extractor: iocextract took ~112 ms, iocsearcher ~41 ms and ioc-finder ~17 ms per body
  (40x-250x slower), and none reads registry keys, scheduled tasks, services or DOMAIN\\user the way
  Huntress reports write them.
- CPython's `re` scans fast only for a pattern that starts with a literal (a memchr search); one that
  starts with a character class or `\\b` costs ~10 ns per character, and a single combined alternation
  of all entity patterns took ~2 ms per 11 KB. So every pattern here starts with a literal anchor: `.`
  for domains/IPv4/e-mails, `\\` for DOMAIN\\user, `:\\` for Windows paths, `://` for URLs, `HK` for
  registry keys, `::` and `:` for IPv6, words inside the labels of command lines, tasks and services.
  What comes before an anchor is read from the reversed text or by fixed-width look-behinds; hashes are
  runs of 32/40/64 markers in a translated copy where every hex digit is one byte value.
- No other regex engine: what bounds this module is one Python object per match as much as scanning, and
  CPython's findall makes those cheapest. Hyperscan (one pass, one Python callback per match, ~0.3 us
  each) took as long as `re` for the sparse families (URLs, paths, keys, labels: ~120 us either way) and
  longer for the dense ones (dotted tokens 110 us with start-of-match, hex runs 14 us per length); pcre2
  (JIT) and google-re2 findall cost ~2-4 us per match.
- Patterns run over the UTF-8 bytes, not the str: memchr only applies to 1-byte strings and `\\w` on
  bytes is a table lookup, so a body with one non-ASCII character scans ~2x faster. Bytes >= 0x80 count
  as word characters (non-ASCII letters), and Unicode quotes around a value are trimmed after decoding.
- What a dotted token is (domain, IPv4, e-mail, program) and the IPv6 text are judged in
  `indicator_values`, which the detail fields of signals share.

False positives kept out: version numbers (10.0.19041.1 has an octet > 255; `v1.2.3.4` is not all
digits), file names whose extension is a TLD too (payload.zip, run.sh) when they have only two labels,
CamelCase dotted names (WScript.Network), timestamps and MAC addresses as IPv6, Windows path pieces and
registry hives as DOMAIN\\user.
"""

from __future__ import annotations

import html
import re

from .indicator_values import (
    CLOSERS,
    HASH_COLUMN_BY_LENGTH,
    canonical_ipv6,
    classify_dot_token,
    decode_utf8,
    host_domain,
    url_host,
)

ENTITY_COLUMNS = (
    "processes",
    "command_lines",
    "files",
    "md5",
    "sha1",
    "sha256",
    "users",
    "emails",
    "ipv4",
    "ipv6",
    "domains",
    "urls",
    "registry_keys",
    "scheduled_tasks",
    "services",
)

# Bracketed defangs ([.], [:]//, [dot], [@], ...); hxxp is handled by `_URL` itself. Undone on the bytes:
# all ASCII, so the same as on the str.
_BRACKETED = re.compile(rb"\[(\.|dot|:|://|@)\]")
_UNBRACKETED = {b".": b".", b"dot": b".", b":": b":", b"://": b"://", b"@": b"@"}

# Character classes over UTF-8 bytes: `W` is a word byte (ASCII word character or any non-ASCII byte).
_W = rb"\w\x80-\xff"

# Tokens: labels of word bytes, @, + and - joined by dots (domains, IPv4, e-mails, file names, versions).
_DOT_TOKEN_TAIL = re.compile(
    rb"\.(?<=[" + _W + rb"@+\-]\.)([" + _W + rb"@+\-]++(?:\.[" + _W + rb"@+\-]++)*+)"
)

# DOMAIN\user. The domain comes before the anchor, so it is found in the reversed text: an upper-case
# NetBIOS name (<= 15 bytes) right after a backslash, not preceded by a path character; the user is then
# read forward from that backslash and must not go on as a path.
_REVERSED_NETBIOS_DOMAIN = re.compile(rb"\\([" + _W + rb"\-]{1,15}+)(?![" + _W + rb".$:\\\-])")
_NETBIOS_USER_NAME = re.compile(rb"[" + _W + rb".$\-]++(?![\\:])")
_NT_AUTHORITY = re.compile(rb"NT AUTHORITY\\([A-Z][A-Z ]*[A-Z])")

# Hashes: in a translated copy, hex digits become 0x00 and other word bytes 0x01, so a hash is a run of
# exactly 32, 40 or 64 zero bytes (a literal the scanner finds fast).
_HEX_TO_MARKER = bytes.maketrans(
    b"0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ_\x00",
    b"\x00" * 22 + b"\x01" * 41 + b"\x02",
)
_HASH_RUN = re.compile(
    b"\x00" * 32
    + rb"(?<![\x00\x01\x80-\xff]"
    + b"\x00" * 32
    + rb")(?:\x00{32}|\x00{8})?(?![\x00\x01\x80-\xff])"
)

# URLs, anchored on "://"; the scheme before it is taken by fixed-width look-behinds, defanged ones too.
_SCHEMES = (b"https", b"hxxps", b"http", b"hxxp", b"sftp", b"ftps", b"ftp")
_URL = re.compile(
    b"://(?:"
    + b"|".join(rb"(?<=(?<![" + _W + rb"])(" + scheme + rb")://)" for scheme in _SCHEMES)
    + rb")([^\s<>\"'`{}|\\^]+)",
    re.IGNORECASE,
)

# IPv6. Compressed forms are anchored on "::": the groups after it are read forward, the groups before it
# from the reversed text (same class both ways, so both passes meet the same "::" in the same order).
# Full eight-group forms are anchored on a `:` that has six more groups after it (a cheap look-ahead that
# timestamps and MAC addresses fail at once), the first group taken by fixed-width look-behinds.
_AROUND_DOUBLE_COLON = re.compile(rb"::([0-9A-Fa-f:.]*)")
_HEX_GROUP = rb"[0-9A-Fa-f]{1,4}"
_FIRST_HEX_GROUP = b"|".join(
    rb"(?<=(?<![%s:.])([0-9A-Fa-f]{%d}):)" % (_W, width) for width in range(4, 0, -1)
)
_FULL_IPV6 = re.compile(
    rb":(?=(?:%s:){6}%s(?![%s:]))(?:%s)((?:%s:){6}%s)"
    % (_HEX_GROUP, _HEX_GROUP, _W, _FIRST_HEX_GROUP, _HEX_GROUP, _HEX_GROUP)
)

# Paths. A directory name may hold spaces when every further word starts upper-case, a digit or "("
# ("Program Files (x86)", "Windows NT", "John Smith") so prose after a path is not swallowed; the last
# component has no spaces; a path in double quotes runs to the closing quote, spaces and all. Separators
# may be doubled, as in JSON- or script-escaped text ("C:\\\\x").
_NAME = rb"[^\\/:*?\"<>|\s,;]++"
_DIR = rb"(?>" + _NAME + rb"(?: [A-Z0-9(][^\\/:*?\"<>|\s,;]*+)*+\\\\?)"
_PATH_REST = rb"(?:" + _DIR + rb")*+(?:" + _NAME + rb")?"
_WINDOWS_PATH = re.compile(
    rb":\\(?<=(?<![" + _W + rb"])([A-Za-z]):\\)\\?"
    rb"(?:(?<=\"[A-Za-z]:\\)([^\"<>|*?:\r\n]*)(?=\")|(" + _PATH_REST + rb"))"
)
_UNC_PATH = re.compile(rb"\\\\(?<![\\:" + _W + rb"]\\\\)([" + _W + rb".$\-]+\\" + _PATH_REST + rb")")
_POSIX_PATH = re.compile(
    rb"/(?<=(?<![" + _W + rb"/.:~\-<])/)((?:[" + _W + rb".@+~\-]+/)+[" + _W + rb".@+~\-]*)"
)
_REGISTRY_KEY = re.compile(
    rb"HK(?<![" + _W + rb"]HK)((?:EY_[A-Z_]+|LM|CU|CR|CC|U)(?![" + _W + rb"]):?\\" + _PATH_REST + rb")"
)

# Labelled values: "Command Line: ...", "<th>Scheduled Task</th><td>...", "TaskName=...", "service_name=..."
# Each pattern starts with a literal inside the label word; the look-behind checks its first letter.
_LABEL_END = rb"(?:\s*(?::|=|</(?:th|td|b|strong|dt|span|label)>))(?:\s*<[^>]*>)*\s*(?:[:=]\s*)?"
# A quoted value counts as the whole value only when the quote ends it (key="v" next=...).
_LABEL_VALUE = rb"(?:\"([^\"\r\n<]*)\"(?=\s*(?:[<\r\n;,]|$|\w+=))|([^<\r\n]+))"
_COMMAND_LINE = re.compile(rb"ommand(?<=[Cc]ommand)[ _\-]?[Ll]ine" + _LABEL_END + _LABEL_VALUE)
_SCHEDULED_TASK = re.compile(rb"ask(?<=[Tt]ask)(?:[ _\-]?[Nn]ame)?" + _LABEL_END + _LABEL_VALUE)
_SERVICE = re.compile(rb"ervice(?<=[Ss]ervice)(?:[ _\-]?[Nn]ame)?" + _LABEL_END + _LABEL_VALUE)

_URL_TRAILING = ".,;:!?)]}'\"" + CLOSERS
_PATH_TRAILING = " .,;:)]}'\"" + CLOSERS
_REGISTRY_HIVES = frozenset(
    {
        "HKLM",
        "HKCU",
        "HKCR",
        "HKU",
        "HKCC",
        "HKEY_LOCAL_MACHINE",
        "HKEY_CURRENT_USER",
        "HKEY_CLASSES_ROOT",
        "HKEY_USERS",
        "HKEY_CURRENT_CONFIG",
    }
)
# What `_REVERSED_NETBIOS_DOMAIN` finds that is never a domain (as its reversed bytes).
_REVERSED_NOT_DOMAINS = frozenset(name[::-1].encode() for name in _REGISTRY_HIVES | {"AUTHORITY"})
_PROCESS_EXTENSIONS = (".exe", ".scr", ".com", ".pif", ".cpl")
# A POSIX path is a process image when it lives in a binaries directory or an app bundle.
_POSIX_PROCESS_MARKERS = ("/bin/", "/sbin/", "/libexec/", ".app/Contents/MacOS/")


def _dot_tokens(data: bytes, reversed_data: bytes) -> set[bytes]:
    """Every maximal dotted token `L0.L1...Ln` of `data` (labels of word bytes, @, + and -).

    `_DOT_TOKEN_TAIL` matches at a token's first dot and captures the rest of the token; on the reversed
    bytes it captures, reversed, all but the last label. Both passes meet the tokens in the same order
    (reversed for the second), so zipping them rebuilds each token from its head and its last label.
    Same result as findall of `(?<![W@+-])[W@+-]+(?:[.][W@+-]+)+` (a property test checks it), without
    the per-byte cost of a pattern that starts with a character class.
    """
    tails = _DOT_TOKEN_TAIL.findall(data)
    heads = _DOT_TOKEN_TAIL.findall(reversed_data)
    heads.reverse()
    return {head[::-1] + b"." + tail.rpartition(b".")[2] for tail, head in set(zip(tails, heads))}


def _urls(data: bytes) -> set[str]:
    urls = set()
    for *schemes, rest in set(_URL.findall(data)):
        rest = decode_utf8(rest).rstrip(_URL_TRAILING)
        if rest:
            scheme = decode_utf8(b"".join(schemes)).lower().replace("xx", "tt")
            urls.add(f"{scheme}://{rest}")
    return urls


def _strip_path(path: str) -> str:
    return path.rstrip(_PATH_TRAILING)


def _netbios_users(data: bytes, reversed_data: bytes, path_text: str) -> set[str]:
    """DOMAIN\\user names that are not a registry hive or a piece of a path or key found elsewhere. Each
    distinct (domain, user) pair is judged once: a report repeats its users (a third of the matches are
    hives, skipped before any decoding)."""
    pairs = set()
    end = len(data)
    for match in _REVERSED_NETBIOS_DOMAIN.finditer(reversed_data):  # few: most backslashes fail at once
        if match[1] in _REVERSED_NOT_DOMAINS:
            continue
        user = _NETBIOS_USER_NAME.match(data, end - match.start())
        if user is not None:
            pairs.add((match[1], user[0]))
    users = set()
    for reversed_domain, user in pairs:
        domain = decode_utf8(reversed_domain[::-1])
        if domain.isupper() and domain[0] != "-":
            name = f"{domain}\\{decode_utf8(user).rstrip('.' + CLOSERS)}"
            if name not in path_text:
                users.add(name)
    if b"NT AUTHORITY" in data:
        users.update(f"NT AUTHORITY\\{decode_utf8(name)}" for name in _NT_AUTHORITY.findall(data))
    return users


def _labelled(pattern: re.Pattern[bytes], data: bytes) -> set[str]:
    values = set()
    for quoted, bare in set(pattern.findall(data)):
        value = decode_utf8(quoted or bare).strip().rstrip(".;,")
        if value:
            values.add(value)
    return values


def _ipv6(data: bytes, reversed_data: bytes) -> set[str]:
    candidates = {b"".join(heads) + b":" + rest for *heads, rest in _FULL_IPV6.findall(data)}
    if b"::" in data:
        befores = _AROUND_DOUBLE_COLON.findall(reversed_data)
        befores.reverse()
        candidates.update(
            before[::-1] + b"::" + after for after, before in zip(_AROUND_DOUBLE_COLON.findall(data), befores)
        )
    return {address for address in map(canonical_ipv6, candidates) if address}


def _hashes(data: bytes, found: dict[str, set[str]]) -> None:
    if len(data) < 32:
        return
    for match in _HASH_RUN.finditer(data.translate(_HEX_TO_MARKER)):
        start, end = match.span()
        found[HASH_COLUMN_BY_LENGTH[end - start]].add(data[start:end].decode("ascii").lower())


def _paths(data: bytes) -> set[str]:
    paths = {
        f"{decode_utf8(drive)}:\\{decode_utf8(quoted or plain)}".replace("\\\\", "\\")
        for drive, quoted, plain in set(_WINDOWS_PATH.findall(data))
    }
    # (No `b"\\\\" in data` guard: a bytes search for a pair of a frequent byte costs twice the scan.)
    paths.update("\\\\" + decode_utf8(rest) for rest in set(_UNC_PATH.findall(data)))
    paths.update("/" + decode_utf8(rest) for rest in set(_POSIX_PATH.findall(data)))
    return {path for path in map(_strip_path, paths) if len(path) > 3}


def _scanned_bytes(text: str, encoded: bytes | None) -> bytes:
    """The UTF-8 bytes the patterns scan: refanged, HTML entities decoded, no-break spaces (&nbsp;) as
    spaces. Done on the bytes where that is the same as on the str, so a caller that already encoded the
    body (to measure it) spares a copy."""
    data = text.encode("utf-8", "surrogatepass") if encoded is None else encoded
    if b"[" in data:
        data = _BRACKETED.sub(lambda m: _UNBRACKETED[m[1]], data)
    if b"&" in data:
        text = html.unescape(decode_utf8(data))
        if "\xa0" in text:
            text = text.replace("\xa0", " ")
        return text.encode("utf-8", "surrogatepass")
    if "\xa0" in text:  # a str search: memchr, where a 2-byte search in the bytes is not
        data = data.replace(b"\xc2\xa0", b" ")  # the pair is always U+00A0 in UTF-8
    return data


def extract_entities(text: str, encoded: bytes | None = None) -> dict[str, list[str]]:
    """Entity columns found anywhere in `text`: sorted, de-duplicated lists (empty when none). `encoded`
    is `text.encode("utf-8", "surrogatepass")`, when the caller already has it."""
    data = _scanned_bytes(text, encoded)
    reversed_data = data[::-1]
    found: dict[str, set[str]] = {column: set() for column in ENTITY_COLUMNS}

    urls = found["urls"] = _urls(data)
    found["domains"].update(domain for domain in map(host_domain, map(url_host, urls)) if domain)
    executables = set()
    for classified in map(classify_dot_token, _dot_tokens(data, reversed_data)):
        if classified:
            column, value = classified
            (executables if column == "processes" else found[column]).add(value)
    found["ipv6"] = _ipv6(data, reversed_data)
    _hashes(data, found)

    files = found["files"] = _paths(data)
    processes = {
        p
        for p in files
        if p.lower().endswith(_PROCESS_EXTENSIONS)
        or (p[0] == "/" and any(marker in p for marker in _POSIX_PROCESS_MARKERS))
    }
    image_names = {p.replace("/", "\\").rpartition("\\")[2].lower() for p in processes}
    processes.update(name for name in executables if name.lower() not in image_names)
    found["processes"] = processes

    found["registry_keys"] = {
        _strip_path("HK" + decode_utf8(key).replace("\\\\", "\\")) for key in set(_REGISTRY_KEY.findall(data))
    }
    users = _netbios_users(data, reversed_data, "\n".join(files | found["registry_keys"]))
    found["users"] = users | found["emails"]
    found["command_lines"] = _labelled(_COMMAND_LINE, data)
    found["scheduled_tasks"] = _labelled(_SCHEDULED_TASK, data)
    found["services"] = _labelled(_SERVICE, data)
    return {column: sorted(values) for column, values in found.items()}
