"""Realistic send workloads shared by the benchmarks: distinct recipients across zones and channels."""

from __future__ import annotations

import random
from typing import Any, Iterator

from sendcore.send import Origin, Send
from sendcore.settings import Settings

__all__ = [
    "ALL_POLICIES_TOML",
    "CAMPAIGN_LOCAL",
    "SCENARIO_START",
    "SHARED_BODY",
    "SMS_BURST",
    "SMS_RATE",
    "ZONES",
    "Scenario",
    "all_policies_settings",
    "make_scenario",
    "make_sends",
    "scenario_answer",
    "scenario_answer_one",
    "scenario_providers",
]

#: Every policy on: smart sending, caps (rolling and calendar), spacing, quiet
#: hours with the FR and US packs, error segment, expiry on some sends.
ALL_POLICIES_TOML = """
default_timezone = "Europe/Paris"
jurisdictions = ["FR", "US"]
max_pending = 20_000_000

[channels.sms]
smart_sending_window = "24h"
quiet_hours = { start = "21:00", end = "08:00" }

[channels.email]
smart_sending_window = "16h"

[[frequency_caps]]
channel = "sms"
origins = ["campaign", "flow"]
max = 4
window = "30d"

[[frequency_caps]]
channel = "email"
origins = ["campaign"]
max = 2
window = "week"

[[spacing]]
after = "email"
before = "sms"
gap = "1h"

[journal]
path = ""
"""

# Area codes spread over US zones (NY, FL, TX, CA, IL, CO) and FR/DE/AU mobiles.
_US = ("212", "305", "512", "415", "312", "303", "407", "813")


def all_policies_settings() -> Settings:
    """The settings used by the end-to-end benchmarks."""
    return Settings.from_toml_bytes(ALL_POLICIES_TOML)


def phone(i: int, rnd: random.Random) -> str:
    """A valid, distinct phone number for recipient ``i``."""
    k = i % 10
    if k < 4:
        return f"+336{i % 100_000_000:08d}"
    if k < 8:
        return f"+1{_US[i % len(_US)]}{rnd.randint(2, 9)}{i % 1_000_000:06d}"
    if k < 9:
        return f"+49151{i % 10_000_000:07d}"
    return f"+614{i % 100_000_000:08d}"


def make_sends(n: int, start: float, spread: float = 86400.0, seed: int = 7, body: str | None = None) -> list[Send]:
    """``n`` sends to ``n`` distinct recipients, half SMS half email, over ``spread`` seconds.

    Origins: 60% transactional, 25% flow, 15% campaign, as SCENARIOS.md
    describes SMS traffic. Every send shares one body (as campaigns do).
    """
    return [s for chunk in iter_sends(n, start, spread, seed, body, chunk=n or 1) for s in chunk]


def iter_sends(n: int, start: float, spread: float = 86400.0, seed: int = 7, body: str | None = None,
               chunk: int = 10_000) -> Iterator[list[Send]]:
    """``make_sends`` in lists of ``chunk``: the same sends, without ever holding them all."""
    rnd = random.Random(seed)
    body = body or "Your order has shipped: track it at https://ex.co/t/abc"
    origins = [Origin.TRANSACTIONAL] * 12 + [Origin.FLOW] * 5 + [Origin.CAMPAIGN] * 3
    out: list[Send] = []
    for i in range(n):
        if len(out) == chunk:
            yield out
            out = []
        origin = origins[i % 20]
        sms = i % 2 == 0
        t = start + rnd.random() * spread
        out.append(
            Send(
                id=f"s-{i:09d}",
                recipient=f"p-{i:09d}",
                channel="sms" if sms else "email",
                to=phone(i, rnd) if sms else f"p{i}@example.com",
                origin=origin,
                origin_id="cart" if origin is Origin.FLOW else ("bf-2026" if origin is Origin.CAMPAIGN else ""),
                send_at=t,
                body=body,
                expires_at=t + 86400.0 if i % 10 == 3 else None,
            )
        )
    if out:
        yield out


# ---------------------------------------------------------------------------
# The SCENARIOS.md workload shape ("Workload shape for demos and benchmarks")
# ---------------------------------------------------------------------------

#: Thursday 2026-11-26 12:00 UTC: every zone below still has Black Friday
#: 10:00 local ahead of it (Auckland, UTC+13, reaches it first at 21:00 UTC).
SCENARIO_START = 1_795_694_400.0
#: The campaign's wall-clock time, resolved in each recipient's zone (R8b).
CAMPAIGN_LOCAL = "2026-11-27T10:00"
#: One body shared by every send (campaigns share it; GSM-7, one SMS segment).
SHARED_BODY = "Black Friday: -30% on everything today only at ex.co/bf. STOP to opt out"

#: ~20 zones with a plausible mobile number prefix for each (country code and
#: the first national digits) and the national digits still to draw, so every
#: number passes sendcore's E.164 length check. US zones use real area codes
#: so the US jurisdiction pack (and its FL state rule) applies.
ZONES: tuple[tuple[str, str, int], ...] = (
    ("Europe/Paris", "+336", 8),
    ("Europe/London", "+447400", 6),
    ("Europe/Berlin", "+49151", 7),
    ("Europe/Madrid", "+346", 8),
    ("Europe/Lisbon", "+3519", 8),
    ("Europe/Athens", "+3069", 8),
    ("Europe/Istanbul", "+905", 9),
    ("Africa/Johannesburg", "+278", 8),
    ("Asia/Dubai", "+9715", 8),
    ("Asia/Kolkata", "+919", 9),
    ("Asia/Singapore", "+658", 7),
    ("Asia/Tokyo", "+8190", 8),
    ("Australia/Sydney", "+614", 8),
    ("Pacific/Auckland", "+6421", 7),
    ("America/Sao_Paulo", "+55119", 8),
    ("America/New_York", "+1212", 7),
    ("America/Chicago", "+1312", 7),
    ("America/Denver", "+1303", 7),
    ("America/Los_Angeles", "+1415", 7),
    ("America/New_York", "+1305", 7),  # Miami: FL state rules (3 marketing texts per 24 h)
)

#: Providers of the scenario: SMS through a gateway paced per carrier route
#: (an aggregator's short-code pool: 1,000 segments/s, burst 100, per carrier),
#: email through an ESP that takes large batches unpaced.
SMS_RATE = 1000.0
SMS_BURST = 100


def scenario_providers() -> list[Any]:
    """The two ``ProviderSpec``s of the scenario (SMS gateway paced per carrier, ESP unpaced)."""
    from sendcore.provider import ProviderSpec

    return [
        ProviderSpec(name="smsgw", channels=("sms",), max_batch=500, rate=SMS_RATE, burst=SMS_BURST,
                     max_concurrency=1_000_000),
        ProviderSpec(name="esp", channels=("email",), max_batch=500, max_concurrency=1_000_000),
    ]


class Scenario:
    """A SCENARIOS.md-shaped workload: the sends, and the facts the peers and provider need.

    ``sends`` are in submission order. ``suppressed`` are (channel, address)
    pairs that opted out of marketing before the run; ``bad`` are addresses
    whose first attempt gets a temporary failure (they end in the error
    segment, R13). ``until`` is the virtual instant by which everything is final.
    """

    __slots__ = ("sends", "suppressed", "bad", "start", "until", "profiles")

    def __init__(self, sends: list[Send], suppressed: list[tuple[str, str]], bad: frozenset[str],
                 start: float, profiles: int) -> None:
        self.sends = sends
        self.suppressed = suppressed
        self.bad = bad
        self.start = start
        self.until = start + 4 * 86400.0
        self.profiles = profiles


def make_scenario(n: int, start: float = SCENARIO_START, seed: int = 11) -> Scenario:
    """``n`` sends shaped like SCENARIOS.md's Black-Friday day for a mid-size brand.

    * 55% **campaign** ("bf-2026"), half SMS half email, each at 10:00 local
      (``local_send_at``) in its recipient's zone: most sends share ~20 instants.
    * 25% **flows** (abandoned cart, onboarding), SMS or email, triggered all
      day (``send_at`` uniform over 24 h), a third with a 2-day validity.
    * 20% **OTP**, transactional SMS triggered all day, valid 5 minutes.

    About three sends per profile (``n // 3`` profiles drawn at random), so
    smart sending, caps and email-then-SMS spacing really hold sends back;
    0.5% of SMS numbers opted out (suppression) and 1% of addresses fail
    temporarily once (retry, then error segment). Each profile has a zone
    from ``ZONES`` (given as ``Send.timezone``, as a platform's profile store
    holds it) and a number in that zone's country. All sends share one body.
    """
    rnd = random.Random(seed)
    profiles = max(1, n // 3)
    nz = len(ZONES)
    out: list[Send] = []
    append = out.append
    campaign, flow, otp = Origin.CAMPAIGN, Origin.FLOW, Origin.TRANSACTIONAL
    flows = ("cart", "onboarding", "welcome")
    for i in range(n):
        p = rnd.randrange(profiles)
        zone, prefix, digits = ZONES[p % nz]
        k = i % 20
        if k < 11:
            origin, oid, sms = campaign, "bf-2026", k % 2 == 1
        elif k < 16:
            origin, oid, sms = flow, flows[i % 3], k % 2 == 0
        else:
            origin, oid, sms = otp, "", True
        to = f"{prefix}{p % 10**digits:0{digits}d}" if sms else f"p{p}@example.com"
        if origin is campaign:
            send_at, local, expires = None, CAMPAIGN_LOCAL, None
        else:
            send_at, local = start + rnd.random() * 86400.0, None
            expires = send_at + 300.0 if origin is otp else (send_at + 2 * 86400.0 if i % 3 == 0 else None)
        append(Send(id=f"s-{i:09d}", recipient=f"p-{p:08d}", channel="sms" if sms else "email", to=to,
                    origin=origin, origin_id=oid, send_at=send_at, local_send_at=local, body=SHARED_BODY,
                    timezone=zone, expires_at=expires))
    suppressed = []
    bad = set()
    for p in range(0, profiles):
        zone, prefix, digits = ZONES[p % nz]
        if p % 200 == 17:
            suppressed.append(("sms", f"{prefix}{p % 10**digits:0{digits}d}"))
        if p % 100 == 7:
            bad.add(f"{prefix}{p % 10**digits:0{digits}d}")
            bad.add(f"p{p}@example.com")
    return Scenario(out, suppressed, frozenset(bad), start, profiles)


def scenario_answer(bad: frozenset[str]) -> Any:
    """The in-process provider of the scenario, for ``drive``: accept, except a first attempt to a bad address.

    One shared ``Accepted`` object: the provider's own work should not count
    as the engine's. The same rule answers the peers' per-send calls.
    """
    from sendcore.send import Accepted, TemporaryFailure

    ok = Accepted(provider_id="ok")
    temp = TemporaryFailure(code="30003", message="unreachable handset")

    def answer(batch: Any, now: float) -> list[Any]:
        return [temp if a == 1 and s.to in bad else ok for s, a in zip(batch.sends, batch.attempts)]

    return answer


def scenario_answer_one(bad: frozenset[str]) -> Any:
    """``scenario_answer`` for one send at a time ``(send, attempt) -> result``, for the per-send peers."""
    from sendcore.send import Accepted, TemporaryFailure

    ok = Accepted(provider_id="ok")
    temp = TemporaryFailure(code="30003", message="unreachable handset")

    def answer(s: Send, attempt: int) -> Any:
        return temp if attempt == 1 and s.to in bad else ok

    return answer
