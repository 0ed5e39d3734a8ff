"""The ``sendcore`` command and the demo workload behind ``sendcore demo``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import phonenumbers
import pytest
from click.testing import CliRunner
from phonenumbers import carrier as pn_carrier
from phonenumbers import timezone as pn_timezone

from sendcore.cli import main
from sendcore.demo import RANGES, QuietCheck, build_population

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------- version, check-config


def test_version():
    result = invoke("version")
    assert result.exit_code == 0
    assert result.output.startswith("sendcore ")
    assert result.output.split()[1][0].isdigit()


VALID = """
default_timezone = "Europe/Paris"
jurisdictions = ["FR", "US"]

[channels.sms]
smart_sending_window = "24h"
quiet_hours = { start = "20:00", end = "11:00" }

[[frequency_caps]]
channel = "sms"
origins = ["campaign", "flow"]
max = 4
window = "30d"

[[routes]]
provider = "sandbox"
carrier = "*"
rate = 100
burst = 10

[providers.sandbox.options]
seed = 3
"""


def test_check_config_valid_file_prints_ok_and_a_summary(tmp_path, installed_plugins):
    path = tmp_path / "sendcore.toml"
    path.write_text(VALID)
    result = invoke("check-config", str(path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "ok"
    text = result.output
    assert "Europe/Paris" in text and "FR, US" in text
    assert "20:00-11:00" in text and "at most 4 per 30d" in text
    assert "100/s burst 10" in text and "options: seed" in text


def test_check_config_empty_file_is_valid(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    result = invoke("check-config", str(path))
    assert result.exit_code == 0 and result.output.startswith("ok")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[channels.sms\nsmart_sending_window = "24h"\n', ["bad.toml"]),  # TOML syntax error
        ('[channels.sms]\nquiet_hours = { start = "25:00", end = "11:00" }\n', ["quiet_hours.start", "25:00"]),
        ('jurisdiction = ["FR"]\n', ["jurisdiction"]),  # a typo of a known key
        ('[retry]\nmax_attempts = 0\n', ["retry.max_attempts"]),
    ],
)
def test_check_config_malformed_file_names_the_key_and_exits_2(tmp_path, text, names):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2
    assert "ok" not in result.output.splitlines()
    assert result.output.startswith("error: ")
    for name in names:
        assert name in result.output


@pytest.fixture
def installed_plugins(monkeypatch):
    """check-config loads the installed plugins, as the engine does: here sendcore's own bundled ones."""
    monkeypatch.setenv("SENDCORE_LOAD_ENTRYPOINTS", "1")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)


def check_config(tmp_path, text):
    path = tmp_path / "sendcore.toml"
    path.write_text(text)
    return CliRunner().invoke(main, ["check-config", str(path)])


TWILIO = '[providers.twilio.options]\naccount_sid = "AC0123"\nfrom = "+15005550006"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Issue 8 row 11 / issue 9: what the engine refuses, check-config refuses.
        ('jurisdictions = ["XX"]\n', "jurisdictions: unknown rule pack 'XX'; known packs: FR, US"),
        ('[channels.sms]\nprovider = "nosuch"\n',
         "channel 'sms': [channels.sms] provider 'nosuch' is not registered (registered: sandbox)"),
        ('[channels.sms]\nprovider = "twilio"\n' + TWILIO.replace("sms", "sms") + '[channels.email]\nprovider = "twilio"\n',
         "[channels.email] provider 'twilio' does not serve channel 'email'"),
        ('[providers.twillio]\nrate = 5\n', "providers.twillio: no registered provider is named 'twillio' (did you mean 'twilio'?)"),
        ('[channels.sms]\nsmart_sending_windw = "1h"\n',
         "channels.sms.smart_sending_windw: unknown key (did you mean 'smart_sending_window'?)"),
        ('[providers.twilio.options]\naccount_sid = "AC0123"\n',
         "providers.twilio.options.from: give exactly one of `from` and `messaging_service_sid`"),
        ('[providers.sandbox]\nmax_batch = 0\n', "providers.sandbox.max_batch: must be a positive integer"),
        ('[providers.sandbox.options]\nsed = 3\n', "providers.sandbox.options"),
    ],
)
def test_check_config_builds_what_the_engine_builds(tmp_path, installed_plugins, text, expected):
    result = check_config(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "ok" not in result.output.splitlines()


def test_check_config_reports_which_provider_serves_each_channel_and_warns_of_missing_secrets(
        tmp_path, installed_plugins):
    result = check_config(tmp_path, TWILIO)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "ok"
    assert "warning: provider 'twilio': the environment variable TWILIO_AUTH_TOKEN" in result.output
    # The sandbox serves what no real provider does, and says it is only a development provider.
    assert "warning: channel 'email': only the development provider 'sandbox' serves it" in result.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.output.splitlines() if line.count("│") == 5}
    assert rows["sms"] == "twilio" and rows["email"] == "sandbox"


def test_the_sample_configuration_passes_check_config(installed_plugins, monkeypatch):
    """examples/sendcore.toml, the commented sample the README points at, is valid as shipped.

    Without the secrets in the environment it is still valid, with a warning naming each variable.
    """
    sample = str(ROOT / "examples" / "sendcore.toml")
    for name in ("TWILIO_AUTH_TOKEN", "SMTP_PASSWORD", "PUSH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["check-config", sample])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "ok"
    for name in ("TWILIO_AUTH_TOKEN", "SMTP_PASSWORD", "PUSH_API_KEY"):
        assert f"the environment variable {name}" in result.stderr
    for name in ("TWILIO_AUTH_TOKEN", "SMTP_PASSWORD", "PUSH_API_KEY"):
        monkeypatch.setenv(name, "secret")
    result = CliRunner().invoke(main, ["check-config", sample])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.stdout.splitlines() if line.count("│") == 5}
    assert rows == {"email": "smtp", "push": "http", "sms": "twilio"}


def test_check_config_missing_file_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["check-config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


# --------------------------------------------------------------------------- the demo's population


def test_demo_numbers_are_valid_unique_and_their_zones_are_those_of_their_range():
    """Every generated number is a valid mobile number; zones and carriers are what the report assumes."""
    start = datetime(2026, 11, 26, tzinfo=timezone.utc).timestamp()
    pop = build_population(20_000, seed=3, signup_share=0.02, start=start, days=4)
    assert len(set(pop.phone)) == len(pop.phone) == 20_000
    check = QuietCheck((21 * 60, 9 * 60))
    countries = set()
    for i, number in enumerate(pop.phone):
        parsed = phonenumbers.parse(number)
        assert phonenumbers.is_valid_number(parsed), number
        r = pop.range_of(i)
        assert phonenumbers.region_code_for_number(parsed) == r.country
        assert tuple(z.key for z in check.zones(pop.range_index[i])) == pn_timezone.time_zones_for_number(parsed)
        if r.country != "US":
            # phonenumbers names the carrier everywhere but the US (portable numbers: the demo's lookup hook).
            assert pn_carrier.name_for_number(parsed, "en"), number
        countries.add(r.country)
    assert countries == {"FR", "US", "DE", "AU"}
    florida = sum(1 for i in range(len(pop)) if pop.range_of(i).region == "US-FL")
    assert florida > 0.1 * len(pop)
    assert 0.45 < sum(pop.sms_consent) / len(pop) < 0.55
    assert len(pop.signup_at) == 400 and pop.base == 19_600


def test_quiet_check_applies_window_and_jurisdictions_in_every_zone():
    """The demo's independent check: configured 21:00-09:00 plus FR and US rules (R8-R10)."""
    check = QuietCheck((21 * 60, 9 * 60))
    k = {r.prefix: n for n, r in enumerate(RANGES)}

    def utc(*parts):
        return datetime(*parts, tzinfo=timezone.utc).timestamp()

    fr, fl, ny, la, au = k["+3361"], k["+1305"], k["+1212"], k["+1415"], k["+6140"]
    assert check.allowed(fr, utc(2026, 11, 27, 9))[0]  # Friday 10:00 Paris
    assert not check.allowed(fr, utc(2026, 11, 27, 7, 30))[0]  # 08:30: the configured window
    assert not check.allowed(fr, utc(2026, 11, 27, 19, 30))[0]  # 20:30: FR ends at 20:00
    assert not check.allowed(fr, utc(2026, 11, 29, 11))[0]  # Sunday noon: FR rule
    assert not check.allowed(fr, utc(2026, 12, 25, 11))[0]  # Christmas: French public holiday
    assert not check.allowed(fl, utc(2026, 11, 28, 1, 30))[0]  # 20:30 in Miami: FL ends at 20:00
    assert check.allowed(ny, utc(2026, 11, 28, 1, 30))[0]  # 20:30 in New York: allowed to 21:00
    assert not check.allowed(la, utc(2026, 11, 27, 15))[0]  # 07:00 in Los Angeles
    # Australian mobiles may be anywhere from Cocos (UTC+6:30) to Lord Howe (UTC+11).
    assert not check.allowed(au, utc(2026, 11, 26, 23))[0]  # 10:00 Sydney is 06:30 in Cocos
    assert check.allowed(au, utc(2026, 11, 27, 5))[0]  # 16:00 Sydney, 11:30 Cocos
    assert check.allowed(fr, utc(2026, 11, 27, 9))[1] == 10  # local hour in the profile zone


# --------------------------------------------------------------------------- sendcore demo


@pytest.fixture(scope="module")
def demo_json():
    result = CliRunner().invoke(main, ["demo", "--recipients", "5000", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_demo_sends_nothing_in_quiet_hours_and_finishes_every_send_once(demo_json):
    """R8/R9/R12 and R21 on the whole demo: computed from the outcomes, not assumed."""
    r = demo_json
    assert r["sends_in_quiet_hours"] == 0, r["quiet_hours_examples"]
    assert r["quiet_hours_checked"] > 1000
    assert r["sends_without_final"] == 0 and r["sends_with_several_finals"] == 0
    assert r["final_outcomes"] == r["accepted"] > 5000
    assert r["sent"] > 0.5 * r["accepted"]


@pytest.mark.slow
def test_demo_exercises_the_rules(demo_json):
    """The workload is shaped so each rule shows up in the report."""
    r = demo_json
    reasons = {(o["channel"], o["status"], o["reason"]) for o in r["outcomes"]}
    assert ("sms", "skipped", "smart_sending") in reasons
    assert ("sms", "deferred", "quiet_hours") in reasons
    assert ("sms", "skipped", "error_segment") in reasons
    assert ("sms", "retrying", "temporary_failure") in reasons
    assert ("sms", "failed", "permanent_failure") in reasons
    assert ("sms", "cancelled", "cancelled") in reasons
    assert ("sms", "delivered", "delivery_report") in reasons
    assert ("email", "sent", "accepted") in reasons
    assert r["conversions"] > 0 and r["cancelled_on_conversion"] > 0
    assert r["opt_outs"] > 0 and r["delivery_reports"] > 0
    # OTP never waits behind the campaigns: seconds, not minutes.
    assert r["otp_sent"] > 100 and r["otp_max_wait"] < 10.0
    carriers = {c["carrier"] for c in r["carriers"]}
    assert {"Orange France", "SFR", "T-Mobile", "AT&T", "Verizon", "Telstra"} <= carriers
    telstra = next(c for c in r["carriers"] if c["carrier"] == "Telstra")
    assert telstra["peak_per_second"] <= 60
    # Sends per local hour: no marketing SMS before 09:00 or from 21:00 in the profile zone.
    for row in r["local_hours"]:
        if row["hour"] < 9 or row["hour"] >= 21:
            assert row["sms_campaign"] == 0 and row["sms_flow"] == 0, row


@pytest.mark.slow
def test_demo_report_through_the_console_script():
    """`sendcore demo` as a user runs it: the report's check lines are there and say 0."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "sendcore.cli", "demo", "--recipients", "5000", "--days", "2", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sends in quiet hours: 0 " in out
    assert "missing 0, several 0" in out
    assert "Outcomes by channel, status and reason" in out
    assert "SMS carriers" in out and "Sends per recipient-local hour" in out
    assert "sends/s" in out


@pytest.mark.slow
def test_demo_is_deterministic_for_a_seed():
    """Same seed, same workload, same outcomes: the virtual clock and the sandbox draw nothing from call order."""
    from sendcore.demo import DemoConfig, run_demo

    config = DemoConfig(recipients=1500, days=2, seed=5, progress=False)
    a, b = run_demo(config), run_demo(config)
    assert a.outcomes == b.outcomes and a.carriers == b.carriers and a.local_hours == b.local_hours
    c = run_demo(DemoConfig(recipients=1500, days=2, seed=6, progress=False))
    assert c.outcomes != a.outcomes


@pytest.mark.slow
def test_demo_journals_by_default_and_reports_the_cost(demo_json):
    """R22 on the demo: the journal is on (in a temporary directory, removed afterwards) and its cost is reported."""
    j = demo_json["journal"]
    assert j is not None and j["frames"] > 1000 and j["bytes"] > 100 * demo_json["accepted"] / 10
    assert j["fsyncs"] > 0 and j["fsync"] == "batch"
    assert not os.path.exists(j["path"]), "the temporary journal is removed"


@pytest.mark.slow
def test_demo_journal_kept_with_journal_path_replays_to_the_same_outcomes(tmp_path):
    """`--journal PATH` keeps the journal; replaying it alone gives every accepted send its final outcome (R22)."""
    from sendcore.core import Core
    from sendcore.journal import recover

    from sendcore.demo import DemoPlatform, us_carrier

    path = tmp_path / "j"
    result = CliRunner().invoke(main, ["demo", "--recipients", "1000", "--days", "1", "--json", "--journal", str(path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    # Replay needs the plugins' hooks the engine ran with (the demo's US carrier lookup), as a restart would.
    lookup = DemoPlatform(None, us_carrier).sendcore_lookup_carrier
    core, info = recover(path, lambda s, specs: Core(s, providers=specs, lookup_carrier=lookup), None, [],
                         readonly=True)
    assert info.torn == [] and info.frames == r["journal"]["frames"]
    stats = core.stats()
    assert stats.pending == 0 and sum(stats.final.values()) == r["accepted"] == r["final_outcomes"]
    again = CliRunner().invoke(main, ["demo", "--recipients", "1000", "--journal", str(path)])
    assert again.exit_code == 2 and "not empty" in again.output


@pytest.mark.slow
def test_demo_stops_cleanly_on_sigterm_with_the_journal_flushed(tmp_path):
    """SIGTERM during `sendcore demo`: the engine closes, the journal is fsynced and whole (no torn frame)."""
    import signal
    import time

    from sendcore.core import Core
    from sendcore.journal import recover

    path = tmp_path / "j"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "sendcore.cli", "demo", "--recipients", "20000", "--no-progress",
                             "--journal", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(p.stat().st_size for p in path.glob("*.seg")) < 2_000_000:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "flushed" in err
    from sendcore.demo import DemoPlatform, us_carrier

    lookup = DemoPlatform(None, us_carrier).sendcore_lookup_carrier
    core, info = recover(path, lambda s, specs: Core(s, providers=specs, lookup_carrier=lookup), None, [],
                         readonly=True)
    assert info.torn == [] and info.frames > 0
    assert core.stats().submitted > 0
