"""Configuration is validated before any request: every bad HUNTRESS_* variable is named with what is
expected, all at once, and no credential value is ever quoted."""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import date

import pytest

from huntress_dagster.errors import HuntressConfigError
from huntress_dagster.settings import Settings, default_rate_limit_state

TODAY = date(2025, 6, 15)
SECRET = "s3cr3t-Value-9f8e7d"
KEY = "live-key-4c3b2a"


@pytest.fixture
def base(tmp_path) -> dict[str, str]:
    """A valid live configuration; tests change one variable at a time."""
    return {"HUNTRESS_API_KEY": KEY, "HUNTRESS_API_SECRET": SECRET, "HUNTRESS_LAKE_DIR": str(tmp_path / "lake"),
            "HUNTRESS_RATE_LIMIT_STATE": str(tmp_path / "state" / "rl.sqlite"), "DAGSTER_HOME": str(tmp_path)}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(HuntressConfigError) as caught:
        Settings.from_env(env, today=TODAY)
    message = str(caught.value)
    assert SECRET not in message and KEY not in message
    for problem in caught.value.problems:
        assert f"  - {problem}" in message
    return caught.value.problems


def test_a_valid_environment_is_parsed(base, tmp_path):
    settings = Settings.from_env({
        **base, "HUNTRESS_HOST_URL": "https://api.huntress.io/v1/", "HUNTRESS_ORGANIZATION_ID": " 501; 502,501 ",
        "HUNTRESS_TENANT": "acme-eu.1", "HUNTRESS_RATE_LIMIT": "50", "HUNTRESS_RATE_WINDOW_SECONDS": "60.5",
        "HUNTRESS_START_DATE": "2025-06-15", "HUNTRESS_INCIDENTS_CRON": "*/10 * * * *",
        "HUNTRESS_AGENTS_CRON": "@daily", "HUNTRESS_SENSOR_INTERVAL_SECONDS": "5",
        "HUNTRESS_DEMO_TICK_SECONDS": "0", "HUNTRESS_UMASK": "027"}, today=TODAY)
    assert settings.demo is False
    assert settings.host_url == "https://api.huntress.io/v1"
    assert settings.organization_ids == [501, 502]
    assert (settings.tenant, settings.rate_limit, settings.rate_window_seconds) == ("acme-eu.1", 50, 60.5)
    assert settings.start_date == "2025-06-15" and settings.agents_cron == "@daily"
    assert (settings.sensor_interval_seconds, settings.demo_tick_seconds) == (5, 0.0)
    assert settings.lake_umask == 0o027
    assert settings.lake_dir == str(tmp_path / "lake")


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"DAGSTER_HOME": str(tmp_path / "home")}, today=TODAY)
    assert settings.demo is True
    assert settings.lake_umask == 0o077
    assert settings.start_date == "2025-05-01"
    assert settings.lake_dir == str(tmp_path / "lake")
    assert (settings.rate_limit, settings.rate_window_seconds, settings.sensor_interval_seconds) == (60, 60.0, 30)
    # The limiter state: the instance's private directory, not the shared temp dir
    assert settings.rate_limit_state == str(tmp_path / "home" / ".huntress_dagster" / "ratelimit.sqlite")
    assert Settings.from_env({"XDG_CACHE_HOME": str(tmp_path / "c")}, today=TODAY).rate_limit_state == str(
        tmp_path / "c" / "huntress_dagster" / "ratelimit.sqlite")
    assert default_rate_limit_state({"HOME": "/home/u"}) == "/home/u/.cache/huntress_dagster/ratelimit.sqlite"


def test_empty_values_mean_the_default(base):
    settings = Settings.from_env({**base, "HUNTRESS_RATE_LIMIT": "", "HUNTRESS_START_DATE": " ",
                                  "HUNTRESS_UMASK": ""}, today=TODAY)
    assert (settings.rate_limit, settings.start_date, settings.lake_umask) == (60, "2025-05-01", 0o077)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("HUNTRESS_START_DATE", "garbage", "is not a date: expected YYYY-MM-DD"),
    ("HUNTRESS_START_DATE", "2025-02-30", "is not a date: expected YYYY-MM-DD"),
    ("HUNTRESS_START_DATE", "20250101", "is not a date: expected YYYY-MM-DD"),
    ("HUNTRESS_START_DATE", "2025-06-16", "is in the future: expected a date on or before today (2025-06-15"),
    ("HUNTRESS_RATE_LIMIT", "abc", "expected a whole number of requests >= 1"),
    ("HUNTRESS_RATE_LIMIT", "0", "expected a whole number of requests >= 1"),
    ("HUNTRESS_RATE_LIMIT", "1.5", "expected a whole number of requests >= 1"),
    ("HUNTRESS_RATE_WINDOW_SECONDS", "soon", "expected a number of seconds > 0"),
    ("HUNTRESS_RATE_WINDOW_SECONDS", "0", "expected a number of seconds > 0"),
    ("HUNTRESS_RATE_WINDOW_SECONDS", "nan", "expected a number of seconds > 0"),
    ("HUNTRESS_SENSOR_INTERVAL_SECONDS", "1", "expected a whole number of seconds >= 5"),
    ("HUNTRESS_SENSOR_INTERVAL_SECONDS", "30s", "expected a whole number of seconds >= 5"),
    ("HUNTRESS_DEMO_TICK_SECONDS", "-1", "expected a number of seconds >= 0"),
    ("HUNTRESS_DEMO_TICK_SECONDS", "inf", "expected a number of seconds >= 0"),
    ("HUNTRESS_INCIDENTS_CRON", "every 5 minutes", "is not a cron schedule: expected 5 fields"),
    ("HUNTRESS_AGENTS_CRON", "61 0 * * *", "is not a cron schedule: expected 5 fields"),
    ("HUNTRESS_AGENTS_CRON", "0 0 * * * *", "is not a cron schedule: expected 5 fields"),
    ("HUNTRESS_HOST_URL", "api.huntress.io", "expected https://api.huntress.io/v1"),
    ("HUNTRESS_HOST_URL", "http://api.huntress.io/v1", "Refusing plain http://"),
    ("HUNTRESS_ORGANIZATION_ID", "501,acme", "expected organization ids (whole numbers >= 1) separated by commas"),
    ("HUNTRESS_ORGANIZATION_ID", "0", "expected organization ids (whole numbers >= 1) separated by commas"),
    ("HUNTRESS_TENANT", "acme corp", "is not a tenant id: expected 1-128 letters, digits"),
    ("HUNTRESS_TENANT", "a/../b", "is not a tenant id"),
    ("HUNTRESS_TENANT", "x" * 129, "is not a tenant id"),
    ("HUNTRESS_UMASK", "rwx", "is not an octal umask: expected an octal umask of 3 digits, e.g. 077"),
    ("HUNTRESS_UMASK", "088", "is not an octal umask"),
    ("HUNTRESS_UMASK", "0700", "masks the owner's own permissions"),
])
def test_every_bad_variable_is_named_with_what_is_expected(base, variable, value, expected):
    [problem] = problems_of({**base, variable: value})
    shown = repr(value if len(value) <= 80 else value[:80] + "...")
    assert problem.startswith(f"{variable}={shown} "), problem
    assert expected in problem


def test_lake_dir_that_is_a_file_is_named(base, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    [problem] = problems_of({**base, "HUNTRESS_LAKE_DIR": str(afile)})
    assert problem.startswith(f"HUNTRESS_LAKE_DIR={str(afile)!r} is not a directory: expected a directory")
    [problem] = problems_of({**base, "HUNTRESS_LAKE_DIR": str(afile / "lake")})
    assert "cannot be created" in problem and str(afile) in problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_lake_dir_is_named(base, tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        [problem] = problems_of({**base, "HUNTRESS_LAKE_DIR": str(readonly / "lake")})
    finally:
        readonly.chmod(0o700)
    assert "is not writable by this user" in problem


def test_rate_limit_state_that_is_a_directory_is_named(base, tmp_path):
    [problem] = problems_of({**base, "HUNTRESS_RATE_LIMIT_STATE": str(tmp_path)})
    assert problem.startswith("HUNTRESS_RATE_LIMIT_STATE=") and "is a directory: expected a file path" in problem


def test_all_problems_are_reported_together(base):
    problems = problems_of({**base, "HUNTRESS_START_DATE": "garbage", "HUNTRESS_RATE_LIMIT": "abc",
                            "HUNTRESS_UMASK": "9", "HUNTRESS_INCIDENTS_CRON": "x"})
    assert [p.split("=")[0] for p in problems] == [
        "HUNTRESS_RATE_LIMIT", "HUNTRESS_START_DATE", "HUNTRESS_INCIDENTS_CRON", "HUNTRESS_UMASK"]
    with pytest.raises(HuntressConfigError, match=r"\(4 problems\); nothing was requested from the API"):
        Settings.from_env({**base, "HUNTRESS_START_DATE": "garbage", "HUNTRESS_RATE_LIMIT": "abc",
                           "HUNTRESS_UMASK": "9", "HUNTRESS_INCIDENTS_CRON": "x"}, today=TODAY)


def test_a_missing_or_padded_secret_is_named_without_any_value(base):
    env = {k: v for k, v in base.items() if k != "HUNTRESS_API_SECRET"}
    [problem] = problems_of(env)
    assert problem.startswith("HUNTRESS_API_SECRET is not set: expected the secret paired with HUNTRESS_API_KEY")
    [problem] = problems_of({**base, "HUNTRESS_API_SECRET": SECRET + "\n"})
    assert problem.startswith("HUNTRESS_API_SECRET has leading or trailing whitespace")
    [problem] = problems_of({**base, "HUNTRESS_API_KEY": " " + KEY})
    assert problem.startswith("HUNTRESS_API_KEY has leading or trailing whitespace")


def test_a_secret_pasted_into_another_variable_is_never_shown(base):
    problems = problems_of({**base, "HUNTRESS_RATE_LIMIT": SECRET, "HUNTRESS_TENANT": f"x {SECRET}",
                            "HUNTRESS_START_DATE": KEY, "HUNTRESS_HOST_URL": f"https://user:{SECRET}@api.huntress.io"})
    assert len(problems) == 4
    assert all(SECRET not in p and KEY not in p for p in problems)  # problems_of checks the message too
    assert any(p.startswith("HUNTRESS_RATE_LIMIT='***'") for p in problems)


def test_credentials_in_the_host_url_are_masked(base):
    [problem] = problems_of({**base, "HUNTRESS_HOST_URL": "ftp://me:hunter2@example.com/v1"})
    assert "hunter2" not in problem and "ftp://***@example.com/v1" in problem


def test_demo_mode_needs_no_credentials(base):
    env = {k: v for k, v in base.items() if not k.startswith("HUNTRESS_API")}
    assert Settings.from_env(env, today=TODAY).demo is True


def test_unknown_huntress_variables_are_warned_about(base, caplog):
    caplog.set_level(logging.WARNING, logger="huntress_dagster.settings")
    Settings.from_env({**base, "HUNTRESS_RATELIMIT": "10"}, today=TODAY)
    assert any("HUNTRESS_RATELIMIT" in r.getMessage() and "typo" in r.getMessage() for r in caplog.records)


def test_validate_checks_values_set_in_code(base):
    settings = Settings.from_env(base, today=TODAY)
    assert settings.validate() is settings
    bad = dataclasses.replace(settings, rate_limit=0, tenant="", agents_cron="nope")
    with pytest.raises(HuntressConfigError) as caught:
        bad.validate()
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("tenant (HUNTRESS_TENANT)=''")
    assert problems[1].startswith("rate_limit (HUNTRESS_RATE_LIMIT)='0' is too small")
    assert problems[2].startswith("agents_cron (HUNTRESS_AGENTS_CRON)='nope'")


def test_excluded_indicator_domains_are_a_list_of_domains():
    settings = Settings.from_env({"HUNTRESS_EXCLUDED_INDICATOR_DOMAINS": " Huntress.io, example.org. "})
    assert settings.excluded_indicator_domains == ("huntress.io", "example.org")
    with pytest.raises(HuntressConfigError, match="HUNTRESS_EXCLUDED_INDICATOR_DOMAINS='not a domain'"):
        Settings.from_env({"HUNTRESS_EXCLUDED_INDICATOR_DOMAINS": "not a domain"})


def test_a_long_secret_pasted_into_another_variable_is_masked_even_when_cut():
    secret = "S3cr3t" * 30  # longer than a message quotes
    with pytest.raises(HuntressConfigError) as caught:
        Settings.from_env({"HUNTRESS_API_KEY": "key-1234", "HUNTRESS_API_SECRET": secret,
                           "HUNTRESS_ORGANIZATION_ID": secret})
    assert "HUNTRESS_ORGANIZATION_ID" in str(caught.value) and "S3cr3tS3" not in str(caught.value)
