"""Generate ``area_codes.json``: NANP area code -> ISO 3166-2 subdivision ("305" -> "US-FL") for US and CA.

Run once when ``phonenumbers`` is upgraded and commit the result::

    python -m sendcore.data.make_area_codes

The names come from phonenumbers' geocoder data (English), which gives either a
state or province name for the whole area code ("1305" -> "Florida") or, for
some codes, only city entries ("1718200" -> "Brooklyn, NY"); those are decided
by majority. Non-geographic codes (toll-free 8xx, 5xx personal numbers, 900,
600) have no place and are left out. A few Canadian codes serve several
provinces; they are listed under ``shared`` and resolve to no single region.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers.geodata import GEOCODE_DATA

OUT = Path(__file__).with_name("area_codes.json")

# Geocoder spellings (including its own variants and typos) -> ISO 3166-2 code.
NAMES = {
    "Alabama": "US-AL", "Alaska": "US-AK", "Arizona": "US-AZ", "Arkansas": "US-AR",
    "California": "US-CA", "Colorado": "US-CO", "Connecticut": "US-CT", "Delaware": "US-DE",
    "Washington D.C.": "US-DC", "Florida": "US-FL", "Georgia": "US-GA", "Hawaii": "US-HI",
    "Idaho": "US-ID", "Illinois": "US-IL", "Indiana": "US-IN", "Iowa": "US-IA", "Kansas": "US-KS",
    "Kentucky": "US-KY", "Louisiana": "US-LA", "Maine": "US-ME", "Maryland": "US-MD",
    "Massachusetts": "US-MA", "Michigan": "US-MI", "Minnesota": "US-MN", "Mississippi": "US-MS",
    "Missouri": "US-MO", "Montana": "US-MT", "Nebraska": "US-NE", "Nevada": "US-NV",
    "New Hampshire": "US-NH", "New Jersey": "US-NJ", "New Mexico": "US-NM", "New York": "US-NY",
    "North Carolina": "US-NC", "North Dakota": "US-ND", "Ohio": "US-OH", "Oklahoma": "US-OK",
    "Oregon": "US-OR", "Pennsylvania": "US-PA", "Rhode Island": "US-RI", "South Carolina": "US-SC",
    "South Dakota": "US-SD", "Tennessee": "US-TN", "Texas": "US-TX", "Utah": "US-UT",
    "Vermont": "US-VT", "Virginia": "US-VA", "Washington State": "US-WA", "Washington": "US-WA",
    "West Virginia": "US-WV", "Wisconsin": "US-WI", "Wyoming": "US-WY",
    "Alberta": "CA-AB", "British Columbia": "CA-BC", "British Colombia": "CA-BC", "Manitoba": "CA-MB",
    "New Brunswick": "CA-NB", "Newfoundland and Labrador": "CA-NL", "Nova Scotia": "CA-NS",
    "Ontario": "CA-ON", "Prince Edward Island": "CA-PE", "Quebec": "CA-QC", "Saskatchewan": "CA-SK",
    "Northwest Territories": "CA-NT", "Nunavut": "CA-NU", "Yukon": "CA-YT",
}
US_STATES = {code[3:] for code in NAMES.values() if code.startswith("US-")}
CA_PROVINCES = {code[3:] for code in NAMES.values() if code.startswith("CA-")}
GEOGRAPHIC = {PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.MOBILE}
# Exchanges to probe an area code with: validity can depend on the exchange.
EXCHANGES = [f"{e}" for e in range(200, 1000, 37)] + ["555", "212", "987"]


def _country(npa: str) -> str | None:
    """US or CA if some number in the area code is a valid geographic number there."""
    for exchange in EXCHANGES:
        number = phonenumbers.parse(f"+1{npa}{exchange}4567")
        if phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in GEOGRAPHIC:
            region = phonenumbers.region_code_for_number(number)
            if region in ("US", "CA"):
                return region
    return None


def _codes_of_name(name: str, country: str) -> list[str]:
    """ISO codes named by a geocoder string: "Florida", "Brooklyn, NY", "Nova Scotia/Prince Edward Island"."""
    if name in NAMES:
        return [NAMES[name]]
    if "/" in name:
        return [c for part in name.split("/") for c in _codes_of_name(part.strip(), country)]
    tail = name.rsplit(", ", 1)[-1]
    if tail in NAMES:
        return [NAMES[tail]]
    if country == "US" and tail in US_STATES or country == "CA" and tail in CA_PROVINCES:
        return [f"{country}-{tail}"]
    return []


def build() -> dict[str, object]:
    """The table, as written to ``area_codes.json``."""
    area_codes: dict[str, str] = {}
    shared: dict[str, list[str]] = {}
    for n in range(200, 1000):
        npa = str(n)
        country = _country(npa)
        if country is None:
            continue
        whole = GEOCODE_DATA.get("1" + npa, {}).get("en")
        if whole:
            codes = _codes_of_name(whole, country)
        else:
            votes = collections.Counter(
                code
                for key, names in GEOCODE_DATA.items()
                if key.startswith("1" + npa) and "en" in names
                for code in _codes_of_name(names["en"], country)
            )
            codes = [votes.most_common(1)[0][0]] if votes else []
        if not codes or any(not c.startswith(country + "-") for c in codes):
            raise SystemExit(f"area code {npa} ({country}): cannot tell the region from {whole!r}")
        if len(codes) == 1:
            area_codes[npa] = codes[0]
        else:
            shared[npa] = sorted(codes)
    return {
        "about": "NANP area code -> ISO 3166-2 region for US and CA numbers; generated by make_area_codes.py",
        "phonenumbers": phonenumbers.__version__,
        "area_codes": area_codes,
        "shared": shared,
    }


def main() -> None:
    """Write the table next to this script."""
    table = build()
    OUT.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(table['area_codes'])} area codes, {len(table['shared'])} shared")


if __name__ == "__main__":
    main()
