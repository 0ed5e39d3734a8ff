"""Settings: the DESIGN §4 shape, defaults for every key, and errors that name the key."""

from __future__ import annotations

import pytest

from sendcore.errors import ConfigError
from sendcore.settings import Settings

DESIGN_EXAMPLE = b'''
default_timezone = "UTC"
jurisdictions = ["FR", "US"]
max_pending = 10_000_000
retention = "7d"

[channels.sms]
smart_sending_window = "24h"
quiet_hours = { start = "20:00", end = "11:00" }
[channels.email]
smart_sending_window = "16h"

[error_segment]
window = "30d"
origins = ["campaign"]

[[frequency_caps]]
channel = "sms"
origins = ["campaign", "flow"]
max = 4
window = "30d"

[[spacing]]
after = "email"
before = "sms"
gap = "1h"

[[routes]]
provider = "sandbox"
carrier = "*"
rate = 100
burst = 10
daily_cap = 0

[retry]
max_attempts = 5
base_delay = "30s"
max_delay = "1h"

[journal]
path = ".sendcore"
'''


def test_empty_file_is_valid_with_documented_defaults():
    s = Settings.from_toml_bytes(b"")
    sms, email, push = s.channel("sms"), s.channel("email"), s.channel("push")
    assert (sms.smart_sending_window, email.smart_sending_window, push.smart_sending_window) == (86400, 57600, 86400)
    assert (sms.quiet_hours.start, sms.quiet_hours.end) == ("20:00", "11:00")
    assert email.quiet_hours is None and push.quiet_hours is None
    assert s.retention == 7 * 86400 and s.max_pending == 10_000_000
    assert s.error_segment.window == 30 * 86400 and s.error_segment.origins == ["campaign"]
    assert (s.retry.max_attempts, s.retry.base_delay, s.retry.max_delay) == (5, 30, 3600)
    assert s.journal.path == ".sendcore"


def test_the_design_example_loads(tmp_path):
    f = tmp_path / "sendcore.toml"
    f.write_bytes(DESIGN_EXAMPLE)
    s = Settings.from_toml(f)
    assert s.jurisdictions == ["FR", "US"]
    assert s.frequency_caps[0].window == 30 * 86400 and s.frequency_caps[0].max == 4
    assert s.spacing[0].gap == 3600
    assert s.routes[0].rate == 100 and s.routes[0].burst == 10


def test_quiet_hours_can_be_turned_off_and_partial_channel_keeps_defaults():
    s = Settings.from_toml_bytes(b'[channels.sms]\nquiet_hours = false\n[channels.email]\nramp = "5m"')
    assert s.channel("sms").quiet_hours is None
    assert s.channel("sms").smart_sending_window == 86400
    assert s.channel("email").ramp == 300


@pytest.mark.parametrize(
    "text,field",
    [
        (b'retention = "-5s"', "retention"),
        (b'retention = "soon"', "retention"),
        (b'[channels.sms]\nsmart_sending_window = "zz"', "smart_sending_window"),
        (b'[channels.sms]\nquiet_hours = { start = "25:00", end = "11:00" }', "quiet_hours.start"),
        (b'default_timezone = "Mars/Olympus"', "default_timezone"),
        (b"[[routes]]\nrate = -1", "routes[0].rate"),
        (b"[[routes]]\nrate = 5\n[[routes]]\nrate = nan", "routes[1].rate: must be a finite number"),
        # Rates whose GCRA interval or budget would overflow a float (the fuzz test found 5e-324).
        (b"[[routes]]\nrate = 5e-324", "routes[0].rate: must be a finite number: 0 (unlimited) or from 1e-06"),
        (b"[[routes]]\nrate = 1e308", "routes[0].rate: must be a finite number: 0 (unlimited) or from 1e-06"),
        (b"[providers.acme]\ntotal_rate = 1e-9", "providers.acme.total_rate: must be unset (unlimited) or a finite"),
        (b"[[frequency_caps]]\nmax = 0\nwindow = '1d'", "frequency_caps[0].max"),
        (b"[[frequency_caps]]\nmax = 2\nwindow = 'fortnight'", "frequency_caps[0].window"),
        (b"[channels.sms]\nsmart_sending_windw = '1h'",
         "channels.sms.smart_sending_windw: unknown key (did you mean 'smart_sending_window'?)"),
        (b"[retry]\nmax_atempts = 3", "retry.max_atempts: unknown key (did you mean 'max_attempts'?)"),
        (b"[providers.acme]\nmax_batch = 0", "providers.acme.max_batch: must be a positive integer"),
        (b"[providers.acme]\nmax_batch = -1", "providers.acme.max_batch: must be a positive integer"),
        (b"[providers.acme]\nmax_concurrency = 0", "providers.acme.max_concurrency: must be a positive integer"),
        (b"[providers.acme]\ntimeout = '0s'", "providers.acme.timeout: must be a positive, finite number"),
        (b"[providers.acme]\nrate = -5", "providers.acme.rate: must be unset (unlimited) or a finite number"),
        (b"[providers.acme]\nrate = nan", "providers.acme.rate: must be unset (unlimited) or a finite number"),
        (b"[providers.acme]\ntotal_rate = nan", "providers.acme.total_rate: must be unset"),
        (b"[providers.acme]\nbatch = 5", "providers.acme.batch: unknown key (did you mean 'max_batch'?)"),
        (b"[retry]\nmax_attempts = 0", "retry.max_attempts"),
        (b"max_pendingg = 3", "max_pendingg"),
        (b"max_pending = 'many'", "max_pending"),
        (b"x = [", "end of document"),
    ],
)
def test_bad_settings_name_the_key(text, field):
    with pytest.raises(ConfigError) as err:
        Settings.from_toml_bytes(text, source="bad.toml")
    assert "bad.toml" in str(err.value) and field in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_toml(tmp_path / "nope.toml")
