"""Phone facts (R10, R17): plausibility checks and prefix caches that must agree with phonenumbers."""

from __future__ import annotations

import json
import random
from importlib import resources

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType
from phonenumbers import carrier as pn_carrier
from phonenumbers import timezone as pn_timezone

from sendcore import phones
from sendcore.data import make_area_codes


def reference(to: str) -> phones.PhoneFacts:
    """What phonenumbers itself says about the full number, no cache involved."""
    number = phonenumbers.parse(to)
    country = phonenumbers.region_code_for_number(number)
    if country == "001":
        country = None
    zones = tuple(z for z in pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    return phones.PhoneFacts(country=country, zones=zones, carrier=pn_carrier.name_for_number(number, "en") or "")


@pytest.fixture(autouse=True)
def cold_caches():
    phones.clear_caches()
    yield
    phones.clear_caches()


# check_number


@pytest.mark.parametrize(
    "to",
    ["+33612345678", "+12125550123", "+4915112345678", "+61412345678", "+447911123456", "+819012345678",
     "+5511961234567", "+6834002", "+80012345678"],
)
def test_plausible_numbers_pass(to):
    assert phones.check_number(to) is None


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("33612345678", "not an E.164 phone number: it must start with '+' and the country calling code"),
        ("0612345678", "not an E.164 phone number: it must start with '+' and the country calling code"),
        ("", "not an E.164 phone number: it must start with '+' and the country calling code"),
        ("+", "not an E.164 phone number: expected '+' then up to 15 digits"),
        ("+33 6 12 34 56 78", "not an E.164 phone number: expected '+' then up to 15 digits"),
        ("+3361234567a", "not an E.164 phone number: expected '+' then up to 15 digits"),
        ("+٣٣٦١٢٣٤٥٦٧٨", "not an E.164 phone number: expected '+' then up to 15 digits"),
        ("+1234567890123456", "not an E.164 phone number: expected '+' then up to 15 digits"),
        ("+999123456789", "unknown country calling code +999"),
        ("+0123456789", "unknown country calling code +012"),
        ("+3361234567", "wrong length for FR"),
        ("+336123456789", "wrong length for FR"),
        ("+1212555012", "wrong length for US"),
        ("+8001234567", "wrong length for +800"),
    ],
)
def test_implausible_numbers_say_why(to, message):
    assert phones.check_number(to) == message


def test_check_number_agrees_with_is_possible_number():
    """Same verdict as phonenumbers.is_possible_number wherever parse reads the digits as given."""
    rng = random.Random(7)
    codes = [1, 7, 33, 39, 44, 49, 55, 61, 81, 86, 91, 354, 683, 800, 882]
    checked = 0
    for _ in range(6000):
        code = str(rng.choice(codes))
        nsn = str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 13)))
        to = "+" + code + nsn
        if len(to) > 16:
            continue
        number = phonenumbers.parse(to)
        if phonenumbers.national_significant_number(number) != nsn:
            continue  # parse stripped a national prefix: not the number as written
        possible = phonenumbers.is_possible_number_with_reason(number) == phonenumbers.ValidationResult.IS_POSSIBLE
        assert (phones.check_number(to) is None) == possible, to
        checked += 1
    assert checked > 4000


# Facts agree with phonenumbers


def test_facts_of_known_numbers():
    assert phones.phone_facts("+33612345678") == phones.PhoneFacts(country="FR", zones=("Europe/Paris",), carrier="SFR")
    assert phones.country_of("+12125550123") == "US"
    assert phones.country_of("+16135550123") == "CA"
    assert phones.country_of("+12425570123") == "BS"  # +1 shared: the Bahamas by prefix
    assert phones.zones_of("+12125550123") == ("America/New_York",)
    assert phones.carrier_of("+12125550123") == ""
    assert phones.country_of("+80012345678") is None  # non-geographic


def test_unknown_zone_becomes_empty():
    # phonenumbers answers Etc/Unknown for this non-geographic number; we answer ().
    number = phonenumbers.parse("+80012345678")
    assert pn_timezone.time_zones_for_number(number) == ("Etc/Unknown",)
    assert phones.zones_of("+80012345678") == ()


def test_several_zones_for_an_australian_mobile():
    zones = phones.zones_of("+61412345678")
    assert len(zones) > 3
    assert {"Australia/Perth", "Australia/Sydney"} <= set(zones)


def test_rejected_numbers_have_no_facts():
    for to in ("0612345678", "+999123456789", "+3361234567", "+33abc", "+"):
        assert phones.phone_facts(to) == phones.PhoneFacts(country=None, zones=(), carrier="")


def _siblings(to: str, rng: random.Random, count: int = 6) -> list[str]:
    """Numbers equal to ``to`` except for up to its last five digits."""
    out = []
    for _ in range(count):
        keep = len(to) - rng.randint(1, min(5, len(to) - 3))
        out.append(to[:keep] + "".join(rng.choice("0123456789") for _ in range(len(to) - keep)))
    return out


def test_every_calling_code_matches_phonenumbers():
    """For every region's example numbers and their siblings, cached facts equal phonenumbers' own.

    Siblings share long prefixes, so most are answered from a cache entry that
    another number filled: a key too short for some code would show up here.
    """
    rng = random.Random(2027)
    compared = 0
    types = [PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE, PhoneNumberType.VOIP,
             PhoneNumberType.PREMIUM_RATE, PhoneNumberType.PAGER, PhoneNumberType.UAN]
    examples = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in types:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                examples.append(e164)
                # The national prefix written after the country code ("+49 0151..."):
                # parse strips it, so these must not share a cache key with real numbers.
                prefix = phonenumbers.PhoneMetadata.metadata_for_region(region).national_prefix
                if prefix:
                    cc = str(example.country_code)
                    examples.append(f"+{cc}{prefix}{e164[1 + len(cc):]}")
                    examples.append(f"+{cc}{prefix}{e164[1 + len(cc):-1]}")
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            examples.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    for example in examples:
        for to in [example, *_siblings(example, rng)]:
            if phones.check_number(to) is not None:
                continue
            assert phones.phone_facts(to) == reference(to), to
            compared += 1
    assert compared > 5000


REGIONS = ["FR", "US", "DE", "AU", "GB", "JP", "BR"]


@st.composite
def valid_number_family(draw):
    """A random valid number of one of REGIONS, then siblings sharing its leading digits."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(st.sampled_from([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE]))
    example = phonenumbers.example_number_for_type(region, kind)
    nsn = phonenumbers.national_significant_number(example)
    keep = draw(st.integers(min_value=1, max_value=len(nsn) - 1))
    tail = draw(st.text(alphabet="0123456789", min_size=len(nsn) - keep, max_size=len(nsn) - keep))
    to = f"+{example.country_code}{nsn[:keep]}{tail}"
    number = phonenumbers.parse(to)
    assume(phonenumbers.is_valid_number(number) and phonenumbers.national_significant_number(number) == nsn[:keep] + tail)
    seed = draw(st.integers(min_value=0, max_value=2**32))
    return [to, *_siblings(to, random.Random(seed))]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(valid_number_family())
def test_cached_facts_equal_phonenumbers_for_random_valid_numbers(family):
    for to in family:
        if phones.check_number(to) is None:
            assert phones.phone_facts(to) == reference(to), to


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(phones, "MAX_CACHE_KEYS", 50)
    for i in range(200):
        # A national prefix "1" after +1: keyed by the full number, so 200 keys.
        to = f"+11{i:09d}"
        assert phones.phone_facts(to) == reference(to)
        assert len(phones._FACTS) <= 50
        assert len(phones._BY_NUMBER) <= 50
    assert len(phones._FACTS) > 0
    assert phones.country_of("+12125550123") == "US"


# Regions from area codes (R9)

FLORIDA = ["239", "305", "321", "324", "352", "386", "407", "448", "561", "645", "656", "689", "727", "728",
           "754", "772", "786", "813", "850", "863", "904", "941", "954"]
OKLAHOMA = ["405", "539", "572", "580", "918"]
MARYLAND = ["227", "240", "301", "410", "443", "667"]


@pytest.mark.parametrize(
    ("codes", "region"), [(FLORIDA, "US-FL"), (OKLAHOMA, "US-OK"), (MARYLAND, "US-MD")]
)
def test_state_area_codes(codes, region):
    """Every area code of the states with stricter rules (NANPA's lists) maps to the state."""
    for code in codes:
        assert phones.region_of(f"+1{code}5550123") == region, code


def test_other_regions():
    assert phones.region_of("+12125550123") == "US-NY"
    assert phones.region_of("+14165550123") == "CA-ON"
    assert phones.region_of("+19025550123") is None  # Nova Scotia and Prince Edward Island share it
    assert phones.region_of("+33612345678") is None
    assert phones.region_of("+12425570123") is None  # the Bahamas use +1 too
    assert phones.region_of("+18005550123") is None  # toll-free: no place


def test_area_code_table_is_current_and_complete():
    """The committed table is what the generator makes from the installed phonenumbers."""
    committed = json.loads(resources.files("sendcore.data").joinpath("area_codes.json").read_text(encoding="utf-8"))
    built = make_area_codes.build()
    assert committed["area_codes"] == built["area_codes"]
    assert committed["shared"] == built["shared"]
    states = {v for v in committed["area_codes"].values() if v.startswith("US-")}
    assert len(states) == 51  # 50 states and DC
