"""A signal's `details` -> the entity columns incident bodies fill (`ENTITY_COLUMNS`).

`details` differ by signal type (process insights, ITDR sign-ins, SIEM rules, Defender detections, ...) and
Huntress adds keys without notice, so two passes, merged:
1. by key name, anywhere in the object (nested objects and lists are walked): `process_name` -> processes,
   `command_line` -> command_lines, `file_path` / `canary_file_path` / `file_rename_target` -> files,
   `sha256` / `sha1` / `md5` (when the value is a hash of that length) -> that column, `username` /
   `user_principal_name` / `user` (and the `name` of a nested `user` object) -> users, `email` (a valid
   address, also in "Name <address>") -> emails and users, `ip_address` / `src_ip` / ... -> ipv4 or ipv6
   (when the value is an address), `url` -> urls (refanged like a body's, else verbatim) and its host ->
   domains, `registry_key` -> registry_keys, `task_name` -> scheduled_tasks, `service_name` -> services;
   see `KEY_COLUMNS`. Values are taken verbatim (trimmed; empty strings skipped); values of a wrong type
   (a number where a name belongs) are skipped.
2. `extract_entities` over every string value joined by newlines, so indicators in keys not listed
   (a hash inside a `description`, a domain in a `sample_event`) are caught the way a body's are.
Each column is a sorted, de-duplicated list, as for bodies (hashes and e-mails lower-cased). A signal row
keeps them without the vendor's own hosts and mailboxes (see `exclusions`), as an incident row does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .entities import ENTITY_COLUMNS, extract_entities
from .indicator_values import HASH_COLUMN_BY_LENGTH, HASH_COLUMNS, as_email, host_domain, url_host

_HEX_DIGITS = frozenset("0123456789abcdef")

# key (lower-cased) -> column; the pseudo-columns "ip", "url", "email" and "hash" are resolved by value.
KEY_COLUMNS = {
    **dict.fromkeys(("process_name", "process_path", "parent_process_name", "image_path"), "processes"),
    **dict.fromkeys(("command_line", "commandline", "cmdline", "parent_command_line"), "command_lines"),
    **dict.fromkeys(
        ("file_path", "canary_file_path", "file_rename_target", "filepath", "target_path"), "files"
    ),
    **{name: name for name in HASH_COLUMNS},
    **{f"file_{name}": name for name in HASH_COLUMNS},
    **dict.fromkeys(("hash", "file_hash"), "hash"),
    **dict.fromkeys(
        ("username", "user_name", "user_principal_name", "upn", "user", "account_name", "target_user"),
        "users",
    ),
    **dict.fromkeys(("email", "email_address", "sender", "sender_email", "recipient_email"), "email"),
    **dict.fromkeys(
        (
            "ip_address",
            "ip",
            "src_ip",
            "source_ip",
            "dst_ip",
            "dest_ip",
            "destination_ip",
            "remote_ip",
            "client_ip",
            "public_ip",
        ),
        "ip",
    ),
    **dict.fromkeys(("url", "phishing_url", "redirect_url"), "url"),
    **dict.fromkeys(("registry_key", "registry_path"), "registry_keys"),
    **dict.fromkeys(("task_name", "scheduled_task"), "scheduled_tasks"),
    **dict.fromkeys(("service_name",), "services"),
}
# Inside an object under one of these keys (e.g. "user": {"name": ...}), these keys name the user.
_USER_PARENTS = frozenset({"user", "users", "account", "actor", "target_user", "identity"})
_USER_NAME_KEYS = frozenset({"name", "display_name", "principal_name", "login", "upn"})


def _hash(value: str, column: str) -> tuple[str, str] | None:
    text = value.lower()
    length = len(text)
    if not _HEX_DIGITS.issuperset(text):
        return None
    if column == "hash":
        resolved = HASH_COLUMN_BY_LENGTH.get(length)
        return None if resolved is None else (resolved, text)
    return (column, text) if HASH_COLUMNS[column] == length else None


def _address(value: str) -> tuple[str, str] | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return ("ipv4" if address.version == 4 else "ipv6", str(address))


def _by_key(column: str, value: str, found: dict[str, set[str]]) -> None:
    """Adds one key-mapped string value to its column (`column` may be a pseudo-column)."""
    if column == "ip":
        resolved = _address(value)
    elif column in HASH_COLUMNS or column == "hash":
        resolved = _hash(value, column)
    elif column == "email":
        email = as_email(value.rpartition("<")[2].rstrip(">").strip())  # "Name <addr>" or a bare address
        if email is None:
            return
        found["users"].add(email)
        resolved = ("emails", email)
    elif column == "url":
        _url(value, found)
        return
    else:
        resolved = (column, value)
    if resolved is not None:
        found[resolved[0]].add(resolved[1])


def _url(value: str, found: dict[str, set[str]]) -> None:
    """A URL value as extraction reads it (refanged, trailing punctuation trimmed), else verbatim (a URL
    without a scheme, or of a scheme extraction does not know); its host to domains."""
    urls = extract_entities(value)["urls"] if "://" in value else []
    if urls:  # their hosts are domains already by the pass over all values
        found["urls"].update(urls)
        return
    found["urls"].add(value)
    host = url_host(value if "://" in value else f"http://{value}")
    domain = host_domain(host)
    if domain:
        found["domains"].add(domain)


def detail_entities(details: Any) -> dict[str, list[str]]:
    """The entity columns of a signal's `details` (any JSON value; never raises). An iterative walk, so
    no nesting depth is too deep."""
    found: dict[str, set[str]] = {column: set() for column in ENTITY_COLUMNS}
    texts: list[str] = []
    stack: list[tuple[str | None, str | None, Any]] = [(None, None, details)]  # (key, parent key, value)
    while stack:
        key, parent, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((str(child).lower(), key, item) for child, item in value.items() if item is not None)
        elif isinstance(value, list):
            stack.extend((key, parent, item) for item in value if item is not None)
        elif isinstance(value, str):
            texts.append(value)
            text = value.strip()
            if not text or key is None:
                continue
            column = KEY_COLUMNS.get(key)
            if column is None and parent in _USER_PARENTS and key in _USER_NAME_KEYS:
                column = "users"
            if column is not None:
                _by_key(column, text, found)
    if texts:
        for column, values in extract_entities("\n".join(texts)).items():
            found[column].update(values)
    return {column: sorted(values) for column, values in found.items()}
