"""Jurisdiction rule packs (R9): loading, scope, sources, and the caps they hand to the core."""

from __future__ import annotations

import msgspec
import pytest

from sendcore.errors import ConfigError
from sendcore.policies.jurisdictions import (
    AllowedWindow,
    ForbiddenWeekdays,
    FrequencyCapRule,
    JurisdictionPack,
    NoPublicHolidays,
    available_packs,
    load_packs,
)
from sendcore.settings import FrequencyCap


def test_load_known_packs():
    fr, us = load_packs(["FR", "US"])
    assert (fr.code, us.code) == ("FR", "US")
    assert fr.version and us.version
    assert load_packs([]) == []
    assert load_packs([f"FR@{fr.version}"]) == [fr]


def test_unknown_pack_is_a_clear_config_error():
    with pytest.raises(ConfigError, match=r"jurisdictions: unknown rule pack 'XX'; known packs: FR, US"):
        load_packs(["FR", "XX"])
    with pytest.raises(ConfigError, match=r"rule pack 'FR' has no version '1999.1'; known versions: "):
        load_packs(["FR@1999.1"])
    with pytest.raises(ConfigError):
        load_packs(["fr"])  # codes are exact


def test_available_packs_lists_versions():
    assert set(available_packs()) == {"FR", "US"}


def test_every_rule_cites_a_source():
    for pack in load_packs(list(available_packs())):
        for rule in pack.rules:
            assert len(rule.source) > 40, rule.id
    fr, us = load_packs(["FR", "US"])
    sources = " ".join(r.source for r in us.rules)
    for citation in ("47 CFR 64.1200(c)(1)", "501.616(6)(a)", "501.616(6)(b)", "775C", "14-4501"):
        assert citation in sources
    assert "L.34-5" in " ".join(r.source for r in fr.rules)


def test_france_rules():
    (fr,) = load_packs(["FR"])
    rules = fr.time_rules("sms", "FR", None)
    windows = [r for r in rules if isinstance(r, AllowedWindow)]
    assert [w.minutes for w in windows] == [(480, 1200)]
    assert [r.weekday_numbers for r in rules if isinstance(r, ForbiddenWeekdays)] == [frozenset({6})]
    (hol,) = [r for r in rules if isinstance(r, NoPublicHolidays)]
    from datetime import date

    assert hol.is_holiday(date(2027, 7, 14)) and hol.is_holiday(date(2027, 5, 1))
    assert not hol.is_holiday(date(2027, 7, 13))


def test_scope_by_country_region_channel_origin():
    (us,) = load_packs(["US"])
    ids = lambda rules: sorted(r.id for r in rules)  # noqa: E731
    assert ids(us.time_rules("sms", "US", "US-NY")) == ["us-tcpa-hours"]
    assert ids(us.time_rules("sms", "US", "US-FL")) == ["us-fl-hours", "us-tcpa-hours"]
    assert ids(us.time_rules("sms", "US", "US-OK")) == ["us-ok-hours", "us-tcpa-hours"]
    assert ids(us.time_rules("sms", "US", "US-MD")) == ["us-md-hours", "us-tcpa-hours"]
    assert us.time_rules("sms", "US", None) and not us.time_rules("sms", "CA", "CA-ON")
    assert us.time_rules("email", "US", "US-FL") == []
    assert us.time_rules("sms", "US", "US-FL", origin="transactional") == []
    assert ids(us.time_rules("sms", "US", "US-FL", origin="campaign")) == ["us-fl-hours", "us-tcpa-hours"]


def test_frequency_caps_for_the_core():
    (us,) = load_packs(["US"])
    caps = us.frequency_caps()
    assert all(isinstance(c, FrequencyCap) for c in caps)
    assert sorted(c.regions[0] for c in caps) == ["US-FL", "US-MD", "US-OK"]
    for cap in caps:
        assert cap.max == 3 and cap.window == 86400.0 and cap.calendar is None
        assert cap.channel == "sms" and cap.countries == ["US"]
        assert "transactional" not in cap.origins
        assert cap.name.startswith("US/")
    (fr,) = load_packs(["FR"])
    assert fr.frequency_caps() == []


def test_rules_validate_themselves():
    decode = lambda data: msgspec.convert(data, type=JurisdictionPack)  # noqa: E731
    base = {"code": "XX", "version": "1", "name": "x"}
    good = {"kind": "window", "id": "w", "source": "a law", "countries": ["FR"], "start": "08:00", "end": "20:00"}
    assert isinstance(decode({**base, "rules": [good]}).rules[0], AllowedWindow)
    bad_rules = [
        {**good, "source": " "},
        {**good, "countries": []},
        {**good, "start": "20:00", "end": "08:00"},
        {**good, "start": "8h"},
        {"kind": "weekdays", "id": "d", "source": "a law", "countries": ["FR"], "forbidden": ["dimanche"]},
        {"kind": "holidays", "id": "h", "source": "a law", "countries": ["FR"], "calendar": "ZZ"},
        {"kind": "frequency_cap", "id": "c", "source": "a law", "countries": ["US"], "max": 0, "window": "24h"},
        {"kind": "frequency_cap", "id": "c", "source": "a law", "countries": ["US"], "max": 3, "window": "soon"},
        {"kind": "curfew", "id": "x", "source": "a law", "countries": ["FR"]},
        {**good, "colour": "red"},
    ]
    for rule in bad_rules:
        with pytest.raises(msgspec.ValidationError):
            decode({**base, "rules": [rule]})


def test_caps_keep_their_action():
    (us,) = load_packs(["US"])
    assert {r.action for r in us.rules if isinstance(r, FrequencyCapRule)} == {"defer"}
