"""The demo workload: a mid-size brand's Black-Friday week on a virtual clock, and its report.

``run_demo(DemoConfig(...))`` builds a population of phone numbers in France,
the US (Florida area codes 305/407/813 among others), Germany and Australia,
half with SMS consent, and drives the real ``Engine`` on a ``VirtualClock``
with the bundled sandbox provider through several virtual days of traffic
shaped after SCENARIOS.md:

- a Black-Friday campaign to everyone: email at 08:00 and SMS at 10:00 in
  each recipient's local time (``local_send_at``), and a "cyber weekend" SMS
  two days later, which the error segment and the French Sunday rule trim;
- abandoned-cart flows (SMS +1 h, +24 h, +48 h) of which ~30 % convert, which
  cancels the rest of the flow and sends a transactional order confirmation;
- welcome flows for new sign-ups (first message at once, with smart sending
  and quiet hours off for that message only, then +1 d and +3 d);
- one-time passwords all day long, transactional, which must never wait
  behind the campaigns on the same short code.

It then checks what left and when, from the outcomes alone: every send has
exactly one final outcome, and no non-transactional SMS was sent in quiet
hours (the configured window plus the FR and US jurisdiction rules,
re-implemented here independently of the engine's policies).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from hashlib import blake2b
from typing import Any, Callable, Iterator, Union
from zoneinfo import ZoneInfo

import holidays
import msgspec
import phonenumbers
from phonenumbers import timezone as pn_timezone

from .hookspecs import hookimpl
from .send import Outcome, Send, Status
from .settings import Settings

__all__ = [
    "CarrierRow",
    "DemoConfig",
    "DemoResult",
    "HourRow",
    "OutcomeCount",
    "Population",
    "build_population",
    "demo_settings",
    "print_report",
    "run_demo",
]

DAY = 86_400.0
HOUR = 3_600.0

#: Thursday before Black Friday 2026 (27 November), midnight UTC.
DEFAULT_START = datetime(2026, 11, 26, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- the population


@dataclass(frozen=True)
class NumberRange:
    """Mobile numbers ``prefix`` + ``digits`` digits, all valid in phonenumbers' metadata.

    ``region`` is the ISO 3166-2 subdivision where the jurisdiction rules
    need it (US states come from the area code); ``profile_zone`` is the zone
    the platform stores on the profile (used for email and the local-hour
    table), ``weight`` the share of the country's recipients.
    """

    country: str
    prefix: str
    digits: int
    profile_zone: str
    region: Union[str, None] = None
    weight: float = 1.0
    #: The smallest value of the digits (US exchanges cannot start with 0 or 1).
    low: int = 0

    @property
    def size(self) -> int:
        """How many distinct numbers the range holds."""
        return 10**self.digits - self.low

    def number(self, j: int) -> str:
        """The ``j``-th number of the range, scattered but unique for ``j < size``."""
        # An affine map modulo the range size with a multiplier coprime to it is a
        # bijection, so numbers never repeat and do not look sequential.
        return self.prefix + str(self.low + (j * 7_654_321 + 1_234_567) % self.size).zfill(self.digits)


#: Where the demo's recipients live, by country: share of recipients and number ranges.
#: Every range was checked against phonenumbers (valid mobile numbers, carrier data
#: where the country has it); ``tests/test_cli.py`` checks it again.
COUNTRIES: dict[str, tuple[float, tuple[NumberRange, ...]]] = {
    "FR": (0.35, (
        NumberRange("FR", "+3361", 7, "Europe/Paris"),
        NumberRange("FR", "+3362", 7, "Europe/Paris"),
        NumberRange("FR", "+3366", 7, "Europe/Paris"),
        NumberRange("FR", "+3367", 7, "Europe/Paris"),
        NumberRange("FR", "+3368", 7, "Europe/Paris"),
        NumberRange("FR", "+3376", 7, "Europe/Paris"),
    )),
    "US": (0.30, (
        NumberRange("US", "+1305", 7, "America/New_York", "US-FL", 3.0, low=2_000_000),
        NumberRange("US", "+1407", 7, "America/New_York", "US-FL", 3.0, low=2_000_000),
        NumberRange("US", "+1813", 7, "America/New_York", "US-FL", 3.0, low=2_000_000),
        NumberRange("US", "+1212", 7, "America/New_York", "US-NY", 2.0, low=2_000_000),
        NumberRange("US", "+1312", 7, "America/Chicago", "US-IL", 1.0, low=2_000_000),
        NumberRange("US", "+1512", 7, "America/Chicago", "US-TX", 1.0, low=2_000_000),
        NumberRange("US", "+1415", 7, "America/Los_Angeles", "US-CA", 2.0, low=2_000_000),
    )),
    "DE": (0.20, (
        NumberRange("DE", "+49151", 8, "Europe/Berlin"),
        NumberRange("DE", "+49160", 7, "Europe/Berlin"),
        NumberRange("DE", "+49162", 7, "Europe/Berlin"),
        NumberRange("DE", "+49172", 7, "Europe/Berlin"),
        NumberRange("DE", "+49176", 7, "Europe/Berlin"),
        NumberRange("DE", "+49179", 7, "Europe/Berlin"),
    )),
    "AU": (0.15, (
        NumberRange("AU", "+6140", 7, "Australia/Sydney"),
        NumberRange("AU", "+6141", 7, "Australia/Sydney"),
        NumberRange("AU", "+6142", 7, "Australia/Sydney"),
        NumberRange("AU", "+6143", 7, "Australia/Sydney"),
        NumberRange("AU", "+6146", 7, "Australia/Sydney"),
    )),
}

#: phonenumbers knows no carrier for US numbers (they are portable), so the demo
#: platform answers from its own lookup table, through the ``sendcore_lookup_carrier`` hook.
US_CARRIERS = (("AT&T", 0.40), ("Verizon", 0.35), ("T-Mobile US", 0.25))

RANGES: tuple[NumberRange, ...] = tuple(r for _, rs in COUNTRIES.values() for r in rs)


class Population:
    """The demo's recipients, as parallel lists indexed by recipient number (``"r<i>"``).

    Recipients ``0 .. base-1`` exist when the demo starts; the others sign up
    during it (``signup_at``). Lists rather than objects: 200,000 profiles
    cost a few megabytes and build in a fraction of a second.
    """

    def __init__(self, phone: list[str], range_index: list[int], sms_consent: bytearray, base: int,
                 signup_at: dict[int, float]) -> None:
        self.phone = phone
        self.range_index = range_index
        self.sms_consent = sms_consent
        self.base = base
        self.signup_at = signup_at

    def __len__(self) -> int:
        return len(self.phone)

    def range_of(self, i: int) -> NumberRange:
        """The number range recipient ``i``'s phone number was drawn from."""
        return RANGES[self.range_index[i]]

    def email(self, i: int) -> str:
        """Recipient ``i``'s email address."""
        return f"r{i}@shop.example"


def build_population(recipients: int, seed: int, signup_share: float, start: float, days: int,
                     sms_consent: float = 0.5) -> Population:
    """Draw ``recipients`` profiles deterministically from ``seed``.

    A ``signup_share`` of them sign up during the ``days`` after ``start``
    (they get the welcome flow, not the campaigns). Runtime: O(recipients).
    """
    rng = random.Random(seed)
    countries = list(COUNTRIES)
    country_weights = [COUNTRIES[c][0] for c in countries]
    choices: list[list[int]] = []
    weights: list[list[float]] = []
    for c in countries:
        idx = [RANGES.index(r) for r in COUNTRIES[c][1]]
        choices.append(idx)
        weights.append([RANGES[k].weight for k in idx])
    used = [0] * len(RANGES)
    phone: list[str] = []
    range_index: list[int] = []
    consent = bytearray(recipients)
    rand = rng.random
    pick = rng.choices
    for i in range(recipients):
        ci = pick(range(len(countries)), country_weights)[0]
        k = pick(choices[ci], weights[ci])[0]
        phone.append(RANGES[k].number(used[k]))
        used[k] += 1
        range_index.append(k)
        consent[i] = rand() < sms_consent
    new = int(recipients * signup_share) if days > 0 else 0
    base = recipients - new
    horizon = days * DAY
    signup_at = {i: start + rand() * horizon for i in range(base, recipients)}
    return Population(phone, range_index, consent, base, signup_at)


# --------------------------------------------------------------------------- configuration


class DemoConfig(msgspec.Struct, kw_only=True, frozen=True):
    """The knobs of the demo workload. Rates are per recipient per day unless said otherwise."""

    recipients: int = 200_000
    days: int = 4
    seed: int = 7
    start: float = DEFAULT_START.timestamp()
    #: Virtual seconds between the points where the driver submits new flow sends.
    step: float = 300.0
    #: Sends per ``submit`` call.
    chunk: int = 10_000
    sms_consent: float = 0.5
    signup_share: float = 0.02
    abandon_rate: float = 0.03
    conversion_rate: float = 0.30
    #: OTP requests per day; 0 means one per 100 recipients (at least 200).
    otp_per_day: int = 0
    progress: bool = True
    #: Journal directory: None for a temporary one (removed afterwards), "" for no journal.
    journal: Union[str, None] = None


def demo_settings(config: DemoConfig) -> Settings:
    """The engine settings of the demo: what a mid-size brand would write in ``sendcore.toml``."""
    return Settings.from_dict({
        "default_timezone": "UTC",
        "jurisdictions": ["FR", "US"],
        "journal": {"path": config.journal or ""},
        "channels": {
            # Quiet hours end at 09:00, so the campaign "at 10:00 local" leaves at 10:00.
            # The sandbox is named: a development provider never serves a channel unasked
            # once a real provider is installed for it.
            "sms": {"smart_sending_window": "24h", "quiet_hours": {"start": "21:00", "end": "09:00"},
                    "provider": "sandbox"},
            "email": {"smart_sending_window": "16h", "provider": "sandbox"},
        },
        "error_segment": {"window": "30d", "origins": ["campaign"]},
        "frequency_caps": [
            {"name": "sms-month", "channel": "sms", "origins": ["campaign", "flow"], "max": 6, "window": "30d"},
            {"name": "sms-day", "channel": "sms", "origins": ["campaign", "flow"], "max": 2, "window": "day"},
        ],
        "spacing": [{"after": "email", "before": "sms", "gap": "1h"}],
        "routes": [
            # A short code: 100 SMS segments per second per carrier (SCENARIOS.md).
            {"provider": "sandbox", "carrier": "*", "rate": 100, "burst": 100},
            # The ESP takes email much faster, from the newsletter sender.
            {"provider": "sandbox", "sender": "news@shop.example", "rate": 2000, "burst": 2000},
            {"provider": "sandbox", "sender": "orders@shop.example", "rate": 200, "burst": 200},
        ],
        "retry": {"max_attempts": 4, "base_delay": "30s", "max_delay": "30m"},
        "providers": {"sandbox": {"options": sandbox_options(config.seed)}},
    })


def sandbox_options(seed: int) -> dict[str, Any]:
    """The simulated network of the demo: latencies per carrier, errors, STOP replies, one slow carrier."""
    return {
        "seed": seed,
        "latency_ms": {"default": 120, "Telstra": 250, "Optus": 200, "Free Mobile": 90, "AT&T": 150},
        "temporary_error_rate": 0.02,
        "permanent_error_rate": 0.002,
        "stop_rate": 0.01,
        "stop_delay": "20m",
        "delivery_rate": 0.97,
        "delivery_delay": "6s",
        # Reports due within 5 s share one timer: fewer wake-ups of the virtual clock.
        "report_tick": "5s",
        # Telstra takes fewer messages per second than the route allows: it answers rate_limited.
        "capacity": {"Telstra": 60},
    }


# --------------------------------------------------------------------------- the report's types


class OutcomeCount(msgspec.Struct, kw_only=True, frozen=True):
    """How many outcomes of one (channel, status, reason); finals and events alike."""

    channel: str
    status: str
    reason: str
    count: int
    final: bool


class CarrierRow(msgspec.Struct, kw_only=True, frozen=True):
    """What one SMS carrier took, and how the Black-Friday campaign drained on it.

    ``drain_seconds`` runs from its first to its last campaign SMS (across the
    carrier's zones); ``campaign_per_second`` is the rate while it was sending
    (campaign SMS over the seconds in which any left).
    """

    carrier: str
    accepted: int
    rate_limited: int
    temporary_failures: int
    permanent_failures: int
    peak_per_second: int
    campaign_sent: int
    campaign_first_at: Union[float, None]
    campaign_last_at: Union[float, None]
    drain_seconds: float
    campaign_active_seconds: int
    campaign_per_second: float


class HourRow(msgspec.Struct, kw_only=True, frozen=True):
    """Sends that left in one recipient-local hour (the profile's zone), by kind."""

    hour: int
    sms_campaign: int
    sms_flow: int
    sms_quiet_exempt: int
    sms_transactional: int
    email: int


class DemoResult(msgspec.Struct, kw_only=True, frozen=True):
    """Everything the demo measured; ``print_report`` renders it, tests assert on it."""

    config: DemoConfig
    profiles: int
    sms_consented: int
    submitted: int
    accepted: int
    rejected: int
    rejection_examples: list[str]
    conversions: int
    cancelled_on_conversion: int
    outcomes: list[OutcomeCount]
    final_outcomes: int
    sends_without_final: int
    sends_with_several_finals: int
    sent: int
    carriers: list[CarrierRow]
    local_hours: list[HourRow]
    quiet_hours_checked: int
    sends_in_quiet_hours: int
    quiet_hours_examples: list[str]
    otp_sent: int
    otp_retried: int
    otp_max_wait: float
    otp_p99_wait: float
    delivery_reports: int
    opt_outs: int
    virtual_start: float
    virtual_end: float
    generate_seconds: float
    wall_seconds: float
    sends_per_second: float
    engine_stats: dict[str, Any]
    #: What the journal wrote and cost (``JournalStats`` as a dict), None without a journal.
    journal: Union[dict[str, Any], None] = None

    @property
    def all_final_once(self) -> bool:
        """True when every accepted send has exactly one final outcome (R21)."""
        return self.sends_without_final == 0 and self.sends_with_several_finals == 0


# --------------------------------------------------------------------------- plugins of the demo platform


class DemoPlatform:
    """The demo platform's plugin: US carrier lookup, its own sandbox instance, an outcome tap.

    Passed to ``Engine(plugins=[...])``. ``outcomes`` collects every outcome in
    emission order (the hook runs on the engine's loop, so it only appends).
    """

    def __init__(self, provider: Any, us_carrier: Callable[[str], str]) -> None:
        self.provider = provider
        self.outcomes: list[Outcome] = []
        self._us_carrier = us_carrier

    @hookimpl
    def sendcore_register_providers(self, register: Callable[[Any], None]) -> None:
        """Register the demo's sandbox network (installed plugins are not loaded by the demo)."""
        register(self.provider)

    @hookimpl
    def sendcore_lookup_carrier(self, send: Send) -> Union[str, None]:
        """The platform's lookup table for US numbers; other countries use phonenumbers."""
        to = send.to
        if to.startswith("+1"):
            return self._us_carrier(to)
        return None

    @hookimpl
    def sendcore_outcome(self, outcome: Outcome) -> None:
        """Keep the outcome for the report."""
        self.outcomes.append(outcome)


def us_carrier(number: str) -> str:
    """A stable carrier for a US number, as a lookup service would answer (hash-assigned)."""
    u = int.from_bytes(blake2b(number.encode(), digest_size=4).digest(), "little") / 2**32
    acc = 0.0
    for name, share in US_CARRIERS:
        acc += share
        if u < acc:
            return name
    return US_CARRIERS[-1][0]


# --------------------------------------------------------------------------- the workload


@dataclass(order=True)
class _Event:
    """Something the platform does at ``at``: submit sends, or a purchase that ends a cart flow."""

    at: float
    seq: int
    sends: list[Send] = field(compare=False, default_factory=list)
    convert: Union[int, None] = field(compare=False, default=None)


SMS_SENDER = "SHOP"
MARKETING = ("marketing",)


def _iso_local(day_start: float, hhmm: str) -> str:
    return datetime.fromtimestamp(day_start, timezone.utc).strftime("%Y-%m-%d") + "T" + hhmm


def campaign_sends(pop: Population, config: DemoConfig) -> Iterator[Send]:
    """The Black-Friday email and SMS, and the cyber-weekend SMS, to the base population."""
    start = config.start
    bf_day = start + (1 if config.days >= 2 else 0) * DAY
    bf_email = _iso_local(bf_day, "08:00")
    bf_sms = _iso_local(bf_day, "10:00")
    cw = _iso_local(bf_day + 2 * DAY, "10:00") if config.days >= 4 else None
    consent = pop.sms_consent
    phone = pop.phone
    for i in range(pop.base):
        rec = f"r{i}"
        yield Send(id=f"bfe-{i}", recipient=rec, channel="email", to=pop.email(i), origin="campaign",
                   origin_id="black-friday", local_send_at=bf_email, timezone=pop.range_of(i).profile_zone,
                   sender="news@shop.example", tags=MARKETING, body="Black Friday: -30% on everything")
        if consent[i]:
            yield Send(id=f"bfs-{i}", recipient=rec, channel="sms", to=phone[i], origin="campaign",
                       origin_id="black-friday", local_send_at=bf_sms, sender=SMS_SENDER, tags=MARKETING,
                       body="SHOP: Black Friday starts now, -30% on everything: shop.example/bf STOP au 36111")
            if cw is not None:
                yield Send(id=f"cws-{i}", recipient=rec, channel="sms", to=phone[i], origin="campaign",
                           origin_id="cyber-weekend", local_send_at=cw, sender=SMS_SENDER, tags=MARKETING,
                           body="SHOP: last day of the Black Friday weekend: shop.example/bf STOP au 36111")


def flow_events(pop: Population, config: DemoConfig) -> list[_Event]:
    """Abandoned carts (with conversions), sign-ups and OTP requests over the demo's days, by time."""
    rng = random.Random(config.seed * 1_000_003 + 1)
    start = config.start
    events: list[_Event] = []
    seq = 0
    consented = [i for i in range(pop.base) if pop.sms_consent[i]]
    phone = pop.phone
    otp_per_day = config.otp_per_day or max(200, len(pop) // 100)
    for d in range(config.days):
        day = start + d * DAY
        # Abandoned carts: SMS 1 h, 24 h and 48 h after abandonment (SCENARIOS.md).
        n = round(len(consented) * config.abandon_rate)
        for i in rng.sample(consented, n) if n else ():
            t = day + rng.random() * DAY
            cart = f"{d}-{i}"
            rec = f"r{i}"
            sends = [
                Send(id=f"ac{k}-{cart}", recipient=rec, channel="sms", to=phone[i], origin="flow",
                     origin_id="abandoned-cart", send_at=t + delay, sender=SMS_SENDER, tags=("cart",),
                     body=body)
                for k, delay, body in (
                    (1, HOUR, "SHOP: your cart is waiting for you: shop.example/cart STOP au 36111"),
                    (2, DAY, "SHOP: free shipping on your cart today: shop.example/cart STOP au 36111"),
                    (3, 2 * DAY, "SHOP: last chance, -10% on your cart: shop.example/cart STOP au 36111"),
                )
            ]
            seq += 1
            events.append(_Event(t, seq, sends))
            if rng.random() < config.conversion_rate:
                # The order arrives: the flow stops and an order confirmation leaves at once.
                tc = t + 600 + rng.random() * (2 * DAY)
                seq += 1
                events.append(_Event(tc, seq, [
                    Send(id=f"oce-{cart}", recipient=rec, channel="email", to=pop.email(i),
                         origin="transactional", origin_id="order", send_at=tc, sender="orders@shop.example",
                         timezone=pop.range_of(i).profile_zone, body="Your order is confirmed")
                ], convert=i))
        # OTP requests: transactional, valid five minutes.
        for k in range(otp_per_day):
            t = day + rng.random() * DAY
            i = rng.randrange(pop.base)
            seq += 1
            events.append(_Event(t, seq, [
                Send(id=f"otp-{d}-{k}", recipient=f"r{i}", channel="sms", to=phone[i], origin="transactional",
                     origin_id="otp", send_at=t, expires_at=t + 300.0, sender=SMS_SENDER,
                     body=f"SHOP: your code is {rng.randrange(1_000_000):06d}")
            ]))
    # Sign-ups: the welcome series, first message at once with smart sending and quiet hours off.
    for i, t in pop.signup_at.items():
        rec = f"r{i}"
        sms = bool(pop.sms_consent[i])
        ch = "sms" if sms else "email"
        to = phone[i] if sms else pop.email(i)
        sender = SMS_SENDER if sms else "news@shop.example"
        zone = None if sms else pop.range_of(i).profile_zone
        seq += 1
        events.append(_Event(t, seq, [
            Send(id=f"wl{k}-{i}", recipient=rec, channel=ch, to=to, origin="flow", origin_id="welcome",
                 send_at=t + delay, sender=sender, timezone=zone, tags=("welcome",),
                 smart_sending=k != 1, quiet_hours=k != 1,
                 body=f"SHOP: welcome! {'-10% code WELCOME' if k == 1 else 'our best-sellers'}")
            for k, delay in ((1, 0.0), (2, DAY), (3, 3 * DAY))
        ]))
    events.sort()
    return events


# --------------------------------------------------------------------------- checking what left


#: Send kinds (the id prefix) that quiet hours do not bind: transactional, and the
#: welcome message submitted with ``quiet_hours=False``.
QUIET_EXEMPT = frozenset({"otp", "oce", "wl1"})
KIND_COLUMN = {"bfs": "sms_campaign", "cws": "sms_campaign", "ac1": "sms_flow", "ac2": "sms_flow",
               "ac3": "sms_flow", "wl2": "sms_flow", "wl3": "sms_flow", "wl1": "sms_quiet_exempt",
               "otp": "sms_transactional", "oce": "email", "bfe": "email"}


class QuietCheck:
    """Whether an SMS may leave at an instant for a recipient, by the rules the demo configures.

    An independent re-implementation of R8-R10 for checking, not the engine's
    code: the configured window, and the jurisdiction rules of DESIGN.md R9
    (FR 08:00-20:00, no Sundays or public holidays; US 08:00-21:00, FL
    08:00-20:00), in every zone of the number (R10). Answers are cached per
    (number range, UTC minute): the windows fall on whole minutes.
    """

    def __init__(self, quiet: tuple[int, int]) -> None:
        self.start, self.end = quiet
        self._fr_holidays: Any = holidays.country_holidays("FR")
        self._zones: dict[int, tuple[ZoneInfo, ...]] = {}
        self._cache: dict[tuple[int, int], tuple[bool, int]] = {}

    def zones(self, k: int) -> tuple[ZoneInfo, ...]:
        """Every zone phonenumbers gives numbers of range ``k`` (all of Australia for AU mobiles)."""
        got = self._zones.get(k)
        if got is None:
            r = RANGES[k]
            names = pn_timezone.time_zones_for_number(phonenumbers.parse(r.number(0)))
            got = self._zones[k] = tuple(ZoneInfo(n) for n in names)
        return got

    def _quiet(self, m: int) -> bool:
        if self.start > self.end:
            return m >= self.start or m < self.end
        return self.start <= m < self.end

    def allowed(self, k: int, at: float) -> tuple[bool, int]:
        """(may a marketing SMS leave at ``at`` to range ``k``, local hour in the profile zone)."""
        minute = int(at // 60)
        key = (k, minute)
        got = self._cache.get(key)
        if got is not None:
            return got
        r = RANGES[k]
        instant = datetime.fromtimestamp(minute * 60, timezone.utc)
        ok = True
        for z in self.zones(k):
            local = instant.astimezone(z)
            m = local.hour * 60 + local.minute
            if self._quiet(m):
                ok = False
            elif r.country == "FR" and not (480 <= m < 1200 and local.weekday() != 6
                                            and local.date() not in self._fr_holidays):
                ok = False
            elif r.country == "US" and not (480 <= m < (1200 if r.region in ("US-FL", "US-OK", "US-MD") else 1260)):
                ok = False
        hour = instant.astimezone(ZoneInfo(r.profile_zone)).hour
        got = self._cache[key] = (ok, hour)
        return got


def _recipient_index(recipient: str) -> int:
    return int(recipient[1:])


# --------------------------------------------------------------------------- running


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[clock]}"),
        TextColumn("sent {task.fields[sent]:>9,}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def run_demo(config: DemoConfig = DemoConfig()) -> DemoResult:
    """Run the demo workload on a virtual clock and return what it measured (synchronous wrapper).

    Runs on uvloop when installed (``Engine.run``), as a production service would.
    """
    from .engine import Engine

    return Engine.run(run_demo_async(config))


class DemoInterrupted(Exception):
    """The demo was stopped by SIGTERM or SIGINT; the engine closed and the journal is flushed."""

    def __init__(self, signum: int, journal: Union[str, None]) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.journal = journal


async def run_demo_async(config: DemoConfig) -> DemoResult:
    """Run the demo workload inside the running event loop; see the module doc.

    With ``config.journal`` None the engine journals to a temporary directory,
    removed at the end; the report says what the journal cost.
    """
    t_begin = time.perf_counter()
    temporary = None
    if config.journal is None:
        temporary = tempfile.mkdtemp(prefix="sendcore-demo-")
        config = msgspec.structs.replace(config, journal=os.path.join(temporary, "journal"))
    elif config.journal and os.path.isdir(config.journal) and os.listdir(config.journal):
        raise ValueError(f"--journal {config.journal}: the directory is not empty; the demo starts from an "
                         "empty journal (give a new directory)")
    try:
        return await _run_demo(config, t_begin)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


async def _run_demo(config: DemoConfig, t_begin: float) -> DemoResult:
    from sendcore_sandbox import SandboxProvider

    from .engine import Engine
    from .testing import VirtualClock

    # SIGTERM / SIGINT: cancel the run; leaving `async with Engine` closes it, which flushes the journal.
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    stopped: list[int] = []

    def stop(signum: int) -> None:
        stopped.append(signum)
        if me is not None:
            me.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        return await _run_demo_body(config, t_begin, Engine, SandboxProvider, VirtualClock)
    except asyncio.CancelledError:
        if stopped:
            raise DemoInterrupted(stopped[0], config.journal or None) from None
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass


async def _run_demo_body(config: DemoConfig, t_begin: float, Engine: Any, SandboxProvider: Any,
                         VirtualClock: Any) -> DemoResult:
    settings = demo_settings(config)
    pop = build_population(config.recipients, config.seed, config.signup_share, config.start, config.days,
                           config.sms_consent)
    events = flow_events(pop, config)
    provider = SandboxProvider.from_options(settings.providers["sandbox"].options)
    platform = DemoPlatform(provider, _cached(us_carrier))
    generate_seconds = time.perf_counter() - t_begin

    start, end = config.start, config.start + config.days * DAY
    clock = VirtualClock(start)
    submitted = accepted = 0
    rejections: list[str] = []
    accepted_ids: list[str] = []
    conversions = cancelled_on_conversion = 0
    otp_due: dict[str, float] = {}
    chunk = max(1, config.chunk)

    async def submit(engine: Any, sends: list[Send]) -> None:
        nonlocal submitted, accepted
        for k in range(0, len(sends), chunk):
            part = sends[k:k + chunk]
            report = await engine.submit(part)
            submitted += len(part)
            accepted += report.accepted
            bad = {r.index for r in report.rejected}
            if bad:
                rejections.extend(f"{r.id}: {r.reason}" for r in report.rejected[: max(0, 5 - len(rejections))])
            accepted_ids.extend(s.id for n, s in enumerate(part) if n not in bad)

    t_run = time.perf_counter()
    with _progress(config.progress) as progress:
        task = progress.add_task("scheduling", total=end - start, clock="", sent=0)
        # Installed plugins stay out: the demo registers its own sandbox instance (to read its
        # counters) and nothing else installed on the machine may change the run.
        async with Engine(settings, clock=clock, plugins=[platform], load_entrypoints=False) as engine:
            buf: list[Send] = []
            for s in campaign_sends(pop, config):
                buf.append(s)
                if len(buf) >= chunk:
                    await submit(engine, buf)
                    buf = []
            if buf:
                await submit(engine, buf)
            progress.update(task, description="virtual days")
            ev_times = [e.at for e in events]
            idx = 0
            t = start
            while t < end:
                t_next = min(t + config.step, end)
                stop = bisect.bisect_left(ev_times, t_next, idx)
                step_events = events[idx:stop]
                idx = stop
                # Sends of the step are submitted up front with their exact send_at; purchases
                # cancel at their own instant, so a cart SMS due just before still leaves.
                new = [s for e in step_events for s in e.sends]
                for s in new:
                    if s.origin_id == "otp":
                        otp_due[s.id] = s.send_at  # type: ignore[assignment]
                if new:
                    await submit(engine, new)
                for e in step_events:
                    if e.convert is not None:
                        await engine.run_until(e.at)
                        report = await engine.cancel(recipient=f"r{e.convert}", origin_id="abandoned-cart")
                        conversions += 1
                        cancelled_on_conversion += len(report.cancelled)
                await engine.run_until(t_next)
                t = t_next
                progress.update(task, completed=t - start, clock=_fmt(t), sent=provider.accepted_total())
            progress.update(task, description="draining")
            await engine.drain()
            # Let the last delivery reports and STOP replies arrive before reading the counters.
            await engine.run_until(clock.now() + HOUR)
            progress.update(task, completed=end - start, clock=_fmt(clock.now()), sent=provider.accepted_total())
            stats = engine.stats()
            virtual_end = clock.now()
    wall = time.perf_counter() - t_run
    journal = msgspec.to_builtins(engine.journal) if engine.journal is not None else None
    result = _report(config, settings, pop, platform, provider, stats, submitted, accepted, rejections,
                     accepted_ids, conversions, cancelled_on_conversion, otp_due, start, virtual_end,
                     generate_seconds, wall)
    return msgspec.structs.replace(result, journal=journal)


def _cached(fn: Callable[[str], str]) -> Callable[[str], str]:
    return lru_cache(maxsize=None)(fn)


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%a %d %b %H:%M UTC")


def _report(config: DemoConfig, settings: Settings, pop: Population, platform: DemoPlatform, provider: Any,
            stats: Any, submitted: int, accepted: int, rejections: list[str], accepted_ids: list[str],
            conversions: int, cancelled_on_conversion: int, otp_due: dict[str, float], start: float,
            virtual_end: float, generate_seconds: float, wall: float) -> DemoResult:
    counts: Counter[tuple[str, str, str]] = Counter()
    finals: Counter[str] = Counter()
    hours = [dict.fromkeys(("sms_campaign", "sms_flow", "sms_quiet_exempt", "sms_transactional", "email"), 0)
             for _ in range(24)]
    quiet = settings.channel("sms").quiet_hours
    check = QuietCheck(quiet.minutes if quiet is not None else (0, 0))
    checked = 0
    violations: list[str] = []
    n_violations = 0
    otp_waits: list[float] = []
    otp_retried = 0
    sent = 0
    range_index = pop.range_index
    profile_zones = {k: ZoneInfo(r.profile_zone) for k, r in enumerate(RANGES)}
    for o in platform.outcomes:
        status = o.status
        counts[(o.channel, status.value, o.reason.value)] += 1
        if status.is_final:
            finals[o.send_id] += 1
        if status is not Status.SENT:
            continue
        sent += 1
        kind = o.send_id[:3]
        k = range_index[_recipient_index(o.recipient)]
        if o.channel == "sms":
            ok, hour = check.allowed(k, o.at)
            if kind not in QUIET_EXEMPT:
                checked += 1
                if not ok:
                    n_violations += 1
                    if len(violations) < 10:
                        violations.append(f"{o.send_id} to {pop.phone[_recipient_index(o.recipient)]} "
                                          f"at {_fmt(o.at)}")
            if kind == "otp":
                if o.attempt <= 1:
                    otp_waits.append(o.at - otp_due[o.send_id])
                else:
                    otp_retried += 1
        else:
            hour = datetime.fromtimestamp(o.at, profile_zones[k]).hour
        column = "email" if o.channel != "sms" else KIND_COLUMN.get(kind, "sms_flow")
        hours[hour][column] += 1
    missing = sum(1 for sid in accepted_ids if sid not in finals)
    several = sum(1 for n in finals.values() if n > 1)
    outcome_rows = [
        OutcomeCount(channel=ch, status=st, reason=rs, count=n, final=Status(st).is_final)
        for (ch, st, rs), n in sorted(counts.items(), key=lambda kv: (kv[0][0], not Status(kv[0][1]).is_final,
                                                                       kv[0][1], -kv[1]))
    ]
    traffic = provider.traffic()
    bf = {s.carrier: s for s in traffic.streams if s.channel == "sms" and s.origin_id == "black-friday"}
    carriers = []
    for c in traffic.carriers:
        if c.channel != "sms":
            continue
        s = bf.get(c.carrier)
        drain = (s.last_at - s.first_at) if s is not None else 0.0
        carriers.append(CarrierRow(
            carrier=c.carrier, accepted=c.accepted, rate_limited=c.rate_limited,
            temporary_failures=c.temporary_failures, permanent_failures=c.permanent_failures,
            peak_per_second=c.peak_per_second, campaign_sent=s.accepted if s else 0,
            campaign_first_at=s.first_at if s else None, campaign_last_at=s.last_at if s else None,
            drain_seconds=drain, campaign_active_seconds=s.active_seconds if s else 0,
            campaign_per_second=(s.accepted / s.active_seconds) if s else 0.0,
        ))
    otp_waits.sort()
    p99 = otp_waits[min(len(otp_waits) - 1, int(len(otp_waits) * 0.99))] if otp_waits else 0.0
    return DemoResult(
        config=config,
        profiles=len(pop),
        sms_consented=sum(pop.sms_consent),
        submitted=submitted,
        accepted=accepted,
        rejected=submitted - accepted,
        rejection_examples=rejections[:5],
        conversions=conversions,
        cancelled_on_conversion=cancelled_on_conversion,
        outcomes=outcome_rows,
        final_outcomes=sum(finals.values()),
        sends_without_final=missing,
        sends_with_several_finals=several,
        sent=sent,
        carriers=carriers,
        local_hours=[HourRow(hour=h, **hours[h]) for h in range(24)],
        quiet_hours_checked=checked,
        sends_in_quiet_hours=n_violations,
        quiet_hours_examples=violations,
        otp_sent=len(otp_waits) + otp_retried,
        otp_retried=otp_retried,
        otp_max_wait=otp_waits[-1] if otp_waits else 0.0,
        otp_p99_wait=p99,
        delivery_reports=traffic.delivery_reports,
        opt_outs=traffic.opt_outs,
        virtual_start=start,
        virtual_end=virtual_end,
        generate_seconds=generate_seconds,
        wall_seconds=wall,
        sends_per_second=sent / wall if wall > 0 else 0.0,
        engine_stats=msgspec.to_builtins(stats),
    )


# --------------------------------------------------------------------------- rendering


def print_report(result: DemoResult, console: Any = None) -> None:
    """Render ``result`` as rich tables: outcomes, carriers, local hours, checks and speed."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    cfg = result.config

    console.print(
        f"[bold]sendcore demo[/]: {result.profiles:,} profiles ({result.sms_consented:,} with SMS consent), "
        f"{cfg.days} virtual days from {_fmt(result.virtual_start)} to {_fmt(result.virtual_end)}, seed {cfg.seed}"
    )
    console.print(f"submitted {result.submitted:,} sends, accepted {result.accepted:,}, rejected {result.rejected:,}; "
                  f"{result.conversions:,} carts converted, cancelling {result.cancelled_on_conversion:,} pending SMS")

    table = Table(title="Outcomes by channel, status and reason")
    for col in ("channel", "status", "reason"):
        table.add_column(col)
    table.add_column("count", justify="right")
    for row in result.outcomes:
        style = None if row.final else "dim"
        table.add_row(row.channel, row.status + ("" if row.final else " (event)"), row.reason,
                      f"{row.count:,}", style=style)
    console.print(table)

    table = Table(title="SMS carriers: traffic, and the Black-Friday (BF) campaign's drain (virtual time)")
    for col in ("carrier", "accepted", "rate limited", "temp. errors", "invalid", "peak /s",
                "BF sent", "BF first (UTC)", "BF last (UTC)", "BF drain", "BF /s sending"):
        table.add_column(col, justify="left" if col == "carrier" else "right")
    for c in result.carriers:
        table.add_row(
            c.carrier, f"{c.accepted:,}", f"{c.rate_limited:,}", f"{c.temporary_failures:,}",
            f"{c.permanent_failures:,}", f"{c.peak_per_second:,}", f"{c.campaign_sent:,}",
            _hms(c.campaign_first_at), _hms(c.campaign_last_at), _duration(c.drain_seconds),
            f"{c.campaign_per_second:,.1f}" if c.campaign_sent else "-",
        )
    console.print(table)

    table = Table(title="Sends per recipient-local hour (profile zone)")
    for col in ("local hour", "SMS campaign", "SMS flow", "SMS welcome #1 (quiet hours off)",
                "SMS transactional", "email"):
        table.add_column(col, justify="right")
    for h in result.local_hours:
        table.add_row(f"{h.hour:02d}:00", f"{h.sms_campaign:,}", f"{h.sms_flow:,}", f"{h.sms_quiet_exempt:,}",
                      f"{h.sms_transactional:,}", f"{h.email:,}")
    console.print(table)

    ok = "[green]ok[/]" if result.sends_in_quiet_hours == 0 else "[red]FAILED[/]"
    console.print(f"sends in quiet hours: {result.sends_in_quiet_hours} "
                  f"(of {result.quiet_hours_checked:,} marketing SMS checked in every zone of the number) {ok}")
    for example in result.quiet_hours_examples:
        console.print(f"  [red]in quiet hours[/]: {example}")
    once = "[green]ok[/]" if result.all_final_once else "[red]FAILED[/]"
    console.print(f"sends with exactly one final outcome: {result.accepted - result.sends_without_final:,} "
                  f"of {result.accepted:,} (missing {result.sends_without_final}, "
                  f"several {result.sends_with_several_finals}) {once}")
    console.print(f"OTP: {result.otp_sent:,} sent ({result.otp_retried} after a carrier's temporary failure and a "
                  f"retry); request to provider answer on the first attempt: p99 {result.otp_p99_wait:.2f} s, "
                  f"max {result.otp_max_wait:.2f} s (virtual)")
    console.print(f"delivery reports {result.delivery_reports:,}, STOP replies {result.opt_outs:,}")
    j = result.journal
    if j is None:
        console.print("journal: off (everything in memory: a crash would lose every pending send)")
    else:
        table = Table(title=f"Journal ({j['path']}, fsync = {j['fsync']})")
        for col in ("frames", "bytes written", "bytes per accepted send", "fsyncs", "fsync time",
                    "snapshots", "longest snapshot pause"):
            table.add_column(col, justify="right")
        table.add_row(f"{j['frames']:,}", f"{j['bytes'] / 1e6:,.1f} MB",
                      f"{j['bytes'] / max(1, result.accepted):,.0f} B", f"{j['fsyncs']:,}",
                      f"{j['fsync_seconds']:.2f} s", f"{j['snapshots']}", f"{j['snapshot_pause_max'] * 1000:.1f} ms")
        console.print(table)
    console.print(f"wall time {result.wall_seconds:.1f} s (+{result.generate_seconds:.1f} s to build the workload), "
                  f"{result.sent:,} sent, {result.sends_per_second:,.0f} sends/s")


def _hms(t: Union[float, None]) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%a %H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
