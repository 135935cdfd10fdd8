"""Incident report bodies: size thresholds, then full entity parsing or a partial header-only parse.

With S the body's UTF-8 length and the defaults KEEP_MAX = 500 KiB, FULL_MAX = 5 MiB:
- S < KEEP_MAX: body kept, fully parsed (`parse_level = 'full'`);
- KEEP_MAX <= S < FULL_MAX: fully parsed, body dropped (`'full_body_dropped'`);
- S >= FULL_MAX: only the header facts (incident report URL, host URL, organization, security product)
  are read from the first `HEADER_SCAN_CHARS` characters, body dropped (`'partial'`); entity columns are
  null (not parsed) rather than empty (parsed, nothing found).
Memory: measuring S of a non-ASCII body encodes it in 1 MiB slices; a partial parse reads only a prefix;
a full parse (S < FULL_MAX by construction) makes a few copies of at most FULL_MAX bytes.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from .entities import ENTITY_COLUMNS, extract_entities
from .fields import as_str

KEEP_MAX_BYTES = 512_000
FULL_MAX_BYTES = 5_242_880
HEADER_SCAN_CHARS = 8_192
_SIZE_SLICE_CHARS = 1 << 20

FULL, FULL_BODY_DROPPED, PARTIAL = "full", "full_body_dropped", "partial"
HEADER_FIELDS = ("incident_report_url", "host_url", "organization", "security_product")

# "Label: value", "Label=value" or "<th>Label</th><td>value</td>"; a link's href wins over its text.
_HEADER_VALUE = (
    r"\s*(?::|=|</(?:th|td|b|strong|dt|span|label)>)(?:\s*<(?!a\b)[^>]*>)*\s*[:=]?\s*"
    r"(?:<a\b[^>]*?\bhref=[\"']([^\"']*)[\"'][^>]*>\s*)?([^<\r\n]*)"
)
_HEADER_LABELS = {
    "incident_report_url": re.compile(r"Incident Report(?: URL| Link)?" + _HEADER_VALUE),
    "host_url": re.compile(r"Host(?: URL| Link)?" + _HEADER_VALUE),
    "organization": re.compile(r"Organization(?: Name)?" + _HEADER_VALUE),
    "security_product": re.compile(r"Security Product" + _HEADER_VALUE),
}
_URL_FIELDS = frozenset({"incident_report_url", "host_url"})


@dataclass(frozen=True, slots=True)
class BodyParse:
    parse_level: str
    body_size: int
    body: str | None
    entities: dict[str, list[str]] | None
    header: dict[str, str | None]


def utf8_size(text: str) -> int:
    """UTF-8 length without a full-size copy (lone surrogates count as their 3-byte encoding)."""
    if text.isascii():
        return len(text)
    if len(text) <= _SIZE_SLICE_CHARS:
        return len(text.encode("utf-8", "surrogatepass"))
    return sum(
        len(text[start : start + _SIZE_SLICE_CHARS].encode("utf-8", "surrogatepass"))
        for start in range(0, len(text), _SIZE_SLICE_CHARS)
    )


def extract_header(text: str) -> dict[str, str | None]:
    """Header facts from the top of a body (only the first `HEADER_SCAN_CHARS` characters are read)."""
    prefix = text[:HEADER_SCAN_CHARS]
    header: dict[str, str | None] = dict.fromkeys(HEADER_FIELDS)
    for field, pattern in _HEADER_LABELS.items():
        match = pattern.search(prefix)
        if match:
            href, label_text = match.groups()
            value = href if (field in _URL_FIELDS and href) else label_text
            header[field] = html.unescape(value).strip() or None
    return header


def parse_body(
    body: object, keep_max_bytes: int = KEEP_MAX_BYTES, full_max_bytes: int = FULL_MAX_BYTES
) -> BodyParse:
    """Apply the size thresholds to an incident `body` (any JSON value; non-strings are read as their
    JSON text, null as an empty body kept as null) and parse it accordingly. Never raises."""
    text = as_str(body)
    if text is None:
        return BodyParse(
            FULL, 0, None, {column: [] for column in ENTITY_COLUMNS}, dict.fromkeys(HEADER_FIELDS)
        )
    # Up to one slice, the encoded body is measured and then handed to extraction, which scans bytes.
    encoded = text.encode("utf-8", "surrogatepass") if len(text) <= _SIZE_SLICE_CHARS else None
    size = utf8_size(text) if encoded is None else len(encoded)
    header = extract_header(text)
    if size >= full_max_bytes:
        return BodyParse(PARTIAL, size, None, None, header)
    level, kept = (FULL, text) if size < keep_max_bytes else (FULL_BODY_DROPPED, None)
    return BodyParse(level, size, kept, extract_entities(text, encoded), header)
