"""The fuzz test: arbitrary sends, provider answers and settings drive the engine on a virtual clock.

Hypothesis draws a *plan* — settings (valid ones, with up to two keys given
arbitrary values), a provider script (per call: a delay on the virtual clock,
then results of any kind, a wrong-length list, a non-list, or an exception)
and a sequence of steps (submits of mostly valid sends mixed with arbitrary
JSON-like values in any field, as ``Send`` objects or dicts, cancels by id,
recipient or origin id, and moves of virtual time) — and runs it through the
public ``Engine`` API. Invariants checked on every example:

- a settings value that is refused raises ``ConfigError`` naming the key path
  that was given the arbitrary value (and valid settings are never refused);
- ``engine.submit`` never raises, except ``PendingLimitError`` (R24);
- every rejection's reason starts with a field name and ": " (R23);
- the engine never fails: ``drain`` returns, ``async with`` exits without the
  engine-failed ``RuntimeError``, ``stats()`` answers, nothing stays pending;
- every accepted send has exactly one final outcome in ``engine.outcomes()``
  (opened before the first submit), and ``engine.outcome(id)`` agrees (R21);
- no flow or campaign send with ``quiet_hours`` on reaches the provider inside
  its channel's quiet window in every zone of the recipient (R8, R10, R11);
- per route, the provider never receives more units in a window of W seconds
  than rate × W + burst (R16; a single SMS longer than the burst leaves whole
  on an empty bucket, so the burst term is the larger of the two);
- every outcome is a well-typed Outcome that encodes to JSON and back.

The suite runs a bounded number of examples (``SENDCORE_FUZZ_CI_EXAMPLES``,
default 300). ``SENDCORE_FUZZ_SLOW=1`` runs the same property with many more
(``SENDCORE_FUZZ_EXAMPLES``, default 2000): ``SENDCORE_FUZZ_SLOW=1 pytest
tests/test_fuzz.py``. Each example is
deterministic: the provider only ever waits on the virtual clock. Jurisdiction
packs are not drawn (the quiet-hours check knows only the channel windows).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import tempfile
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple, Union
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sendcore import (
    Accepted, ConfigError, Engine, Outcome, PendingLimitError, PermanentFailure, Provider, RateLimited, Send,
    Settings, TemporaryFailure,
)
from sendcore.locale import local_instant
from sendcore.phones import phone_facts
from sendcore.segments import sms_segments
from sendcore.send import Batch, Origin
from sendcore.testing import VirtualClock

START = 1_800_000_000.0  # 2027-01-15 08:00 UTC
DAY = 86400.0
CI_EXAMPLES = int(os.environ.get("SENDCORE_FUZZ_CI_EXAMPLES", "300"))
SLOW_EXAMPLES = int(os.environ.get("SENDCORE_FUZZ_EXAMPLES", "2000"))
#: After this many provider calls the provider accepts everything at once, so a run ends even with
#: settings that allow endless retries (max_attempts = 10**30 with a provider that always fails).
CALL_BUDGET = 400
#: Wall-clock bound of one example: a run still going after this is a hang (the engine spinning).
WALL_LIMIT = 60.0
FIELDS = tuple(Send.__struct_fields__)
FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)

# --------------------------------------------------------------------------- arbitrary values

ODD_CHARS = st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "\x7f", "\x85", "\u200d", "\r", "\n", " ", "é", "☕"])
TEXT = st.text(st.one_of(st.characters(), ODD_CHARS), max_size=12)
NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 10**400, -(10**400)]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e308, -1e308, 1e-9]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
#: Any JSON-like value: None, bools, ints (huge too), floats (nan/inf), strings (lone surrogates,
#: control characters), lists and dicts of those.
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)

# --------------------------------------------------------------------------- sends

NUMBERS_BY_PLACE = ["+33612345678", "+12125550123", "+12065550123", "+447911123456", "+61412345678",
                    "+4915112345678", "+819012345678", "+5511912345678"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Pacific/Chatham"]
BODIES = ["Your code is 1234", "", "hi", "x" * 200, "café ☕ " * 12, "é" * 400, "y" * 1601]


@st.composite
def valid_sends(draw: Any) -> dict[str, Any]:
    """The fields of a valid-looking send (most are accepted)."""
    rec = draw(st.integers(0, 19))
    channel = draw(st.sampled_from(["sms", "sms", "sms", "email", "push"]))
    to = (draw(st.sampled_from(NUMBERS_BY_PLACE[:1] * 6 + NUMBERS_BY_PLACE)) if channel == "sms"
          else f"r{rec}@example.com" if channel == "email" else f"tok-{rec}")
    fields: dict[str, Any] = dict(id=f"s{draw(st.integers(0, 60))}", recipient=f"r{rec}", channel=channel, to=to,
                                  origin=draw(st.sampled_from(["transactional", "flow", "campaign"])))
    # Clustered instants (so batches form and routes fill) and any instant over three days.
    when = draw(st.one_of(st.none(), st.sampled_from([0.0, 60.0, 3600.0, DAY / 2, DAY]), st.floats(-3600, 3 * DAY)))
    if when is not None:
        t = START + when
        fields["send_at"] = draw(st.sampled_from([t, datetime.fromtimestamp(t, timezone.utc)]))
        if draw(st.booleans()):
            fields["expires_at"] = t + draw(st.sampled_from([1.0, 60.0, 3600.0, DAY, 3 * DAY]))
    elif draw(st.integers(0, 4)) == 0:
        d = datetime.fromtimestamp(START, timezone.utc) + timedelta(minutes=draw(st.integers(-600, 3 * 1440)))
        fields["local_send_at"] = d.strftime("%Y-%m-%dT%H:%M")
    fields["body"] = draw(st.sampled_from(BODIES))
    for key, strategy in (("priority", st.integers(0, 9)), ("timezone", st.sampled_from(ZONES)),
                          ("sender", st.sampled_from(["A", "B"])), ("carrier", st.sampled_from(["SFR", "x"])),
                          ("origin_id", st.sampled_from(["cart", "promo"])), ("tags", st.just(("t",))),
                          ("smart_sending", st.booleans()), ("quiet_hours", st.sampled_from([True, True, False])),
                          ("metadata", st.just({"subject": "Hi"}))):
        if draw(st.integers(0, 5)) == 0:
            fields[key] = draw(strategy)
    return fields


@st.composite
def items(draw: Any) -> Any:
    """One submitted item: a ``Send`` or a dict, valid-looking or with arbitrary values; or any JSON value."""
    kind = draw(st.integers(0, 23))
    if kind == 0:
        return draw(JSON)  # not a send at all
    fields = draw(valid_sends())
    for key in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True)) if kind < 6 else ():
        fields[key] = draw(JSON)
    if kind % 2 == 0:
        for key in ("id", "recipient", "channel", "to", "origin"):
            fields.setdefault(key, "")
        return Send(**fields)
    item = dict(fields)
    if kind in (1, 3):
        item[draw(TEXT)] = draw(JSON)  # an unknown key (or an existing one overwritten)
    if kind == 5:
        item.pop(draw(st.sampled_from(["id", "recipient", "channel", "to", "origin"])), None)
    return item


@st.composite
def bursts(draw: Any) -> list[Send]:
    """Many valid sends on one route due at one instant: batches fill up and the route's rate is pressed."""
    n = draw(st.integers(5, 40))
    when = START + draw(st.sampled_from([0.0, 60.0, 3600.0, DAY / 2]))
    body = draw(st.sampled_from(BODIES[:5]))
    channel = draw(st.sampled_from(["sms", "sms", "email"]))
    first = draw(st.integers(0, 60))
    return [Send(id=f"b{first + i}", recipient=f"q{i}", channel=channel,
                 to="+33612345678" if channel == "sms" else f"q{i}@example.com",
                 origin=draw(st.sampled_from(["transactional", "flow", "campaign"])), send_at=when, body=body)
            for i in range(n)]


class Step(NamedTuple):
    kind: str  # submit, advance, cancel_ids, cancel_recipient, cancel_origin
    arg: Any


STEPS = st.one_of(
    st.builds(Step, st.just("submit"), st.lists(items(), min_size=1, max_size=30)),
    st.builds(Step, st.just("submit"), st.lists(items(), min_size=5, max_size=30)),
    st.builds(Step, st.just("submit"), bursts()),
    st.builds(Step, st.just("advance"), st.sampled_from([0.0, 0.5, 5.0, 60.0, 3600.0, 6 * 3600.0, DAY])),
    st.builds(Step, st.just("cancel_ids"), st.lists(st.one_of(st.sampled_from([f"s{i}" for i in range(61)]), TEXT),
                                                     max_size=4)),
    st.builds(Step, st.just("cancel_recipient"), st.sampled_from([f"r{i}" for i in range(20)])),
    st.builds(Step, st.just("cancel_origin"), st.sampled_from(["cart", "promo"])),
)

# --------------------------------------------------------------------------- provider answers


class BadStr(Exception):
    """An exception whose ``str`` itself raises: a provider bug the engine must isolate too."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ of a provider's exception raised")


EXCEPTIONS = st.sampled_from([ValueError, RuntimeError, TimeoutError, OSError, KeyError, TypeError, ZeroDivisionError,
                              asyncio.CancelledError, Exception, BadStr, asyncio.InvalidStateError])
RETRY_AFTER = st.one_of(st.sampled_from([0, 0.0, -5, -1e9, math.nan, math.inf, -math.inf, 1e308, 10**400, 2**70,
                                         1, 0.001, 3600.0, 7 * DAY]),
                        st.floats(), st.integers(), TEXT, st.none(), st.lists(st.integers(), max_size=2))
SUPPRESS = st.one_of(st.sampled_from([None, "marketing", "all", "", "ALL", 1, True]), JSON)
RESULTS = st.one_of(
    st.builds(Accepted, st.one_of(st.just(""), TEXT, JSON)),
    st.builds(Accepted, st.just("")),
    st.builds(TemporaryFailure, st.one_of(st.just("t"), JSON), st.one_of(st.just("busy"), JSON),
              st.one_of(st.booleans(), JSON)),
    st.builds(PermanentFailure, st.one_of(st.just("p"), JSON), st.one_of(st.just("bad"), JSON), SUPPRESS),
    st.builds(RateLimited, RETRY_AFTER),
    st.builds(object),
    JSON,
)
DELAYS = st.one_of(st.just(0.0), st.just(0.0), st.sampled_from([0.001, 1.0, 4.999, 5.0, 5.001, 30.0, 3600.0, 1e7]),
                   st.floats(-10, 100))


class Call(NamedTuple):
    """What the provider does on one call: wait ``delay`` on the virtual clock, then answer per ``kind``."""

    delay: float
    kind: str  # results, short, long, other, raise
    payload: Any


CALLS = st.one_of(
    st.builds(Call, DELAYS, st.just("results"), st.lists(RESULTS, min_size=1, max_size=5)),
    st.builds(Call, DELAYS, st.just("results"), st.lists(st.builds(Accepted, st.just("")), min_size=1, max_size=1)),
    st.builds(Call, DELAYS, st.sampled_from(["short", "long"]), st.lists(RESULTS, min_size=1, max_size=3)),
    st.builds(Call, DELAYS, st.just("other"), st.one_of(JSON, st.builds(object), st.just(iter([])))),
    st.builds(Call, DELAYS, st.just("raise"), EXCEPTIONS),
)


class ScriptedProvider(Provider):
    """Answers call ``i`` as ``script[i % len(script)]`` says; remembers (virtual time, batch) of every call."""

    name = "p"
    channels = ("sms", "email", "push")
    max_batch = 10
    timeout = 5.0

    def __init__(self, script: list[Call]) -> None:
        self.script = script
        self.calls: list[tuple[float, Batch]] = []
        self.clock: Any = None

    async def start(self, context: Any) -> None:
        self.clock = context.clock

    async def send(self, batch: Batch) -> Any:
        self.calls.append((self.clock.now(), batch))
        n = len(batch.sends)
        if len(self.calls) > CALL_BUDGET:
            return [Accepted() for _ in range(n)]
        call = self.script[(len(self.calls) - 1) % len(self.script)]
        if call.delay:
            await self.clock.sleep(call.delay)
        if call.kind == "raise":
            raise call.payload("provider says no")
        if call.kind == "other":
            return call.payload
        answers = [call.payload[i % len(call.payload)] for i in range(n)]
        if call.kind == "short":
            return answers[:-1]
        if call.kind == "long":
            return answers + answers[:1]
        return answers


class Reg:
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def sendcore_register_providers(self, register: Any) -> None:
        register(self.provider)


# --------------------------------------------------------------------------- settings

DURATIONS = st.sampled_from(["0s", "1ms", "100ms", "1s", "30s", "10m", "1h", 2.5, 0, 60])


@st.composite
def quiet_windows(draw: Any) -> Any:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(0, 1439).filter(lambda m: m != start))
    return {"start": f"{start // 60:02d}:{start % 60:02d}", "end": f"{end // 60:02d}:{end % 60:02d}"}


@st.composite
def valid_settings(draw: Any) -> dict[str, Any]:
    """A settings dict that is valid and keeps a run short."""
    conf: dict[str, Any] = {
        "journal": {"path": ""},  # in memory; Plan.journal turns the file journal on for some examples
        "default_timezone": draw(st.sampled_from(["UTC", "Europe/Paris", "America/New_York"])),
        "max_pending": draw(st.sampled_from([10_000, 10_000, 5, 30])),
        "retention": draw(st.sampled_from(["7d", "7d", "1h", "0s"])),
        "retry": {
            "max_attempts": draw(st.integers(1, 5)),
            "base_delay": draw(DURATIONS),
            "max_delay": draw(st.sampled_from(["1s", "1m", "1h"])),
            "jitter": draw(st.sampled_from([0, 0.5, 1])),
            "min_retry_after": draw(st.sampled_from(["1ms", "100ms", "1s"])),
            "max_retry_after": draw(st.sampled_from(["1s", "10s", "1h"])),
            "max_rate_limited": draw(st.integers(1, 20)),
        },
        "routes": [{"provider": draw(st.sampled_from(["p", "*"])), "sender": draw(st.sampled_from(["*", "A"])),
                    "carrier": draw(st.sampled_from(["*", "SFR", "x"])),
                    "rate": draw(st.one_of(st.floats(0.05, 200), st.sampled_from([0, 1, 2.5, 10]))),
                    "burst": draw(st.integers(0, 20))}
                   for _ in range(draw(st.integers(0, 2)))],
        "providers": {"p": {k: draw(v) for k, v in (
            ("max_batch", st.integers(1, 20)), ("timeout", st.sampled_from(["1s", 2.5, "10s"])),
            ("max_concurrency", st.integers(1, 8)), ("rate", st.sampled_from([1, 5, 50])),
            ("burst", st.integers(0, 10)), ("total_rate", st.sampled_from([2, 20])),
        ) if draw(st.booleans())}},
        "channels": {ch: {k: draw(v) for k, v in (
            ("quiet_hours", st.one_of(quiet_windows(), st.just(False))), ("ramp", DURATIONS),
            ("smart_sending_window", st.sampled_from(["0s", "1h", "24h"])),
        ) if draw(st.booleans())} for ch in ("sms", "email", "push")},
        "limits": {"priority_max": draw(st.integers(0, 9)), "retention_max": draw(st.sampled_from([2, 1_000_000]))},
    }
    if draw(st.booleans()):
        conf["frequency_caps"] = [{"max": draw(st.integers(1, 3)), "window": draw(st.sampled_from(["1h", "day", "30d"])),
                                   "channel": "sms", "action": draw(st.sampled_from(["skip", "defer"]))}]
    return conf


#: Keys that may get an arbitrary value, as (path in the dict, the path a ConfigError names).
KEYS: list[tuple[tuple[Any, ...], str]] = [
    (("routes", 0, k), f"routes[0].{k}") for k in ("rate", "burst", "daily_cap", "provider", "daily_cap_timezone")
] + [
    (("providers", "p", k), f"providers.p.{k}")
    for k in ("max_batch", "rate", "burst", "timeout", "max_concurrency", "total_rate", "total_burst")
] + [
    (("channels", "sms", "quiet_hours"), "channels.sms.quiet_hours"),
    (("channels", "sms", "quiet_hours", "start"), "channels.sms.quiet_hours.start"),
    (("channels", "sms", "quiet_hours", "end"), "channels.sms.quiet_hours.end"),
    (("channels", "sms", "ramp"), "channels.sms.ramp"),
    (("channels", "sms", "smart_sending_window"), "channels.sms.smart_sending_window"),
    (("channels", "sms", "max_segments"), "channels.sms.max_segments"),
    (("channels", "email", "max_body_bytes"), "channels.email.max_body_bytes"),
    (("channels", "push", "quiet_hours"), "channels.push.quiet_hours"),
] + [
    (("retry", k), f"retry.{k}") for k in ("max_attempts", "base_delay", "max_delay", "jitter", "min_retry_after",
                                           "max_retry_after", "max_rate_limited")
] + [
    (("frequency_caps", 0, k), f"frequency_caps[0].{k}") for k in ("max", "window", "action")
] + [
    (("limits", k), f"limits.{k}") for k in ("priority_max", "schedule_horizon", "retention_max")
] + [
    (("max_pending",), "max_pending"), (("retention",), "retention"), (("default_timezone",), "default_timezone"),
    (("error_segment", "window"), "error_segment.window"),
]
SETTING_VALUES = st.one_of(
    JSON,
    st.sampled_from([-1, 0, 0.0, 1, 10**400, 2**63, 10**30, 5e-324, 1e308, math.nan, math.inf, -math.inf, True,
                     "-1s", "nan", "inf", "1e3s", "", "24:00", "7:00", "Mars/Olympus", "  5s ", "1.5h", "99999999999w"]),
)


def _put(conf: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = conf
    for i, key in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            while len(node) <= key:
                node.append({"max": 1, "window": "1h"} if path[0] == "frequency_caps" else {})
            node = node[key]
            continue
        child = node.get(key)
        if not isinstance(child, list if isinstance(nxt, int) else dict):  # (an earlier key's junk replaced)
            child = node[key] = [] if isinstance(nxt, int) else ({"start": "20:00", "end": "11:00"}
                                                                  if key == "quiet_hours" else {})
        node = child
    node[path[-1]] = value


@st.composite
def settings_dicts(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """Valid settings with 0-2 keys given arbitrary values; returns (dict, the fuzzed keys' paths)."""
    conf = draw(valid_settings())
    fuzzed = draw(st.lists(st.sampled_from(KEYS), max_size=2, unique_by=lambda k: k[1])) if draw(
        st.integers(0, 2)) == 0 else []
    for path, _ in fuzzed:
        _put(conf, path, draw(SETTING_VALUES))
    return conf, [name for _, name in fuzzed]


class Plan(NamedTuple):
    settings: dict[str, Any]
    fuzzed: list[str]
    script: list[Call]
    steps: list[Step]
    journal: bool


@st.composite
def plans(draw: Any) -> Plan:
    conf, fuzzed = draw(settings_dicts())
    return Plan(conf, fuzzed, draw(st.lists(CALLS, min_size=1, max_size=6)),
                draw(st.lists(STEPS, min_size=1, max_size=8)), draw(st.integers(0, 9)) == 0)


# --------------------------------------------------------------------------- the invariants

_FIELD_HEAD = re.compile(r"^([A-Za-z_]+)(?:[.\[].*)?$", re.S)


def assert_names_a_field(item: Any, reason: str) -> None:
    """R23: the reason starts with "<field>: " — a Send field, an unknown key of a dict, or "send" for a non-send."""
    head, sep, _ = reason.partition(": ")
    assert sep, f"rejection reason names no field: {reason!r}"
    if isinstance(item, dict) and any(reason.startswith(f"{k}: ") or reason.startswith(f"{k!r}: ")
                                      for k in item if k not in FIELDS):
        return  # an unknown key, named (a key that is no string by its repr)
    m = _FIELD_HEAD.match(head)
    if m and m.group(1) in FIELDS:
        return
    assert head == "send" and not isinstance(item, (dict, Send)), f"rejection of {item!r} names no field: {reason!r}"


def names_key(message: str, path: str) -> bool:
    """True when a ConfigError ``message`` names the key at ``path``.

    Either the full path, or, for a check that compares two keys of one table
    ("retry.min_retry_after: ... at most max_retry_after"), the key's own name
    in a message about that table.
    """
    if path in message:
        return True
    parent, _, leaf = path.rpartition(".")
    return bool(parent) and message.startswith(parent + ".") and re.search(rf"\b{re.escape(leaf)}\b", message) is not None


def quiet_allowed(t: float, zone: str, window: tuple[int, int]) -> bool:
    """True when instant ``t`` is outside the quiet ``window`` (start, end minutes) in ``zone``, by R11.

    The allowed part of each local day is the complement of the window; its
    boundaries are wall-clock minutes resolved to instants by R11
    (``local_instant``), so a repeated or skipped hour counts as the engine
    documents. Independent of the policy's search and caches.
    """
    start, end = window
    allowed = [(end, start)] if start > end else [(0, start), (end, 1440)]
    d = datetime.fromtimestamp(t, ZoneInfo(zone)).date()
    for day in (d - timedelta(days=1), d, d + timedelta(days=1)):
        for a, b in allowed:
            if a < b and local_instant(day, a, zone) <= t < local_instant(day, b, zone):
                return True
    return False


def zones_of(s: Send, default: str) -> tuple[str, ...]:
    """R10 without a plugin hook: the send's timezone, else its number's zones, else the default zone."""
    if s.timezone is not None:
        return (s.timezone,)
    if s.to.startswith("+"):
        return phone_facts(s.to).zones or (default,)
    return (default,)


def route_limit(conf: Settings, spec: Any, key: tuple[str, str, str, str]) -> tuple[float, float]:
    """(rate, burst) of a route by R16: the most specific [[routes]] entry, else the provider's limits."""
    provider, _, sender, carrier = key
    best = None
    for r in conf.routes:
        if r.provider in ("*", provider) and r.sender in ("*", sender or "*") and r.carrier in ("*", carrier or "*"):
            spec_r = (r.provider != "*") * 4 + (r.carrier != "*") * 2 + (r.sender != "*")
            if best is None or spec_r > best[0]:
                best = (spec_r, r)
    if best is not None:
        rate, burst = best[1].rate, best[1].burst
    else:
        rate, burst = spec.rate or 0.0, spec.burst or 0
    if not rate or rate <= 0:
        return 0.0, math.inf
    if not burst:
        burst = max(1, int(rate // 10))
    return float(rate), float(max(1, burst))


def assert_rate(conf: Settings, spec: Any, calls: list[tuple[float, Batch]]) -> None:
    """R16: per route, units in any window [a, b] <= rate * (b - a) + max(burst, largest single send)."""
    by_route: dict[tuple[str, str, str, str], list[tuple[float, int]]] = {}
    for t, b in calls:
        units = by_route.setdefault((b.provider, b.channel, b.sender, b.carrier), [])
        for s in b.sends:
            units.append((t, sms_segments(s.body) if b.channel == "sms" else 1))
    for key, sent in by_route.items():
        rate, burst = route_limit(conf, spec, key)
        if rate == 0.0:
            continue
        sent.sort(key=lambda x: x[0])
        bound = max(burst, max(c for _, c in sent))
        # For each window start i: max over k >= i of cum[k+1] - rate*t[k] (a suffix maximum), O(n).
        n = len(sent)
        cum = [0]
        for _, c in sent:
            cum.append(cum[-1] + c)
        best = -math.inf
        for i in range(n - 1, -1, -1):
            t_i = sent[i][0]
            best = max(best, cum[i + 1] - rate * (t_i - START))
            # 1 µs of slack: float granularity of epoch seconds (~2.4e-7 s), as test_properties allows.
            limit = cum[i] + bound + rate * (1e-6 - (t_i - START))
            assert best <= limit + 1e-9, (
                f"route {key}: more than rate {rate}/s x window + burst {bound} units in a window starting at "
                f"{t_i} ({[x for x in sent if t_i <= x[0] <= t_i + 2 * bound / rate + 1]})")


def assert_quiet_hours(conf: Settings, calls: list[tuple[float, Batch]]) -> None:
    """R8: no flow/campaign send with quiet_hours on reaches the provider in its channel's quiet window."""
    for t, b in calls:
        quiet = conf.channel(b.channel).quiet_hours
        if quiet is None:
            continue
        for s in b.sends:
            if s.origin == Origin.TRANSACTIONAL or not s.quiet_hours:
                continue
            for zone in zones_of(s, conf.default_timezone):
                assert quiet_allowed(t, zone, quiet.minutes), (
                    f"{s.id} ({s.origin}, {b.channel}) left at "
                    f"{datetime.fromtimestamp(t, ZoneInfo(zone)).isoformat()} in {zone}, quiet {quiet.start}-{quiet.end}")


# --------------------------------------------------------------------------- the driver


async def drive(plan: Plan) -> None:
    """Run ``plan`` through an Engine on a VirtualClock and check every invariant."""
    try:
        conf = Settings.from_dict(plan.settings)
    except ConfigError as exc:
        assert plan.fuzzed, f"valid settings refused: {exc}"
        assert any(names_key(str(exc), k) for k in plan.fuzzed), f"ConfigError names none of {plan.fuzzed}: {exc}"
        return
    journal = tempfile.mkdtemp(prefix="sendcore-fuzz-") if plan.journal else ""
    if journal:
        conf = Settings.from_dict({**plan.settings, "journal": {"path": journal}})
    provider = ScriptedProvider(plan.script)
    clock = VirtualClock(START)
    engine = Engine(conf, clock=clock, plugins=[Reg(provider)], load_entrypoints=False)
    accepted: dict[str, int] = {}
    started = False
    try:
        # ``async with`` raises "sendcore engine failed" on exit if the engine failed at any point.
        async with engine:
            started = True
            stream = engine.outcomes()
            async with asyncio.timeout(WALL_LIMIT):
                for step in plan.steps:
                    if step.kind == "submit":
                        try:
                            report = await engine.submit(step.arg)
                        except PendingLimitError:
                            continue
                        for rej in report.rejected:
                            item = step.arg[rej.index] if rej.index >= 0 else None
                            assert_names_a_field(item, rej.reason)
                        assert report.accepted == len(report.accepted_ids)
                        for sid in report.accepted_ids:
                            accepted[sid] = accepted.get(sid, 0) + 1
                    elif step.kind == "advance":
                        await engine.run_until(clock.now() + step.arg)
                    elif step.kind == "cancel_ids":
                        await engine.cancel(ids=step.arg)
                    elif step.kind == "cancel_recipient":
                        await engine.cancel(recipient=step.arg)
                    else:
                        await engine.cancel(origin_id=step.arg)
                # R21 needs every send to end: give virtual time a bound first, so a send that can never
                # leave is reported by what holds it instead of drain() running virtual time forever.
                # A frequency cap with action "defer" holds a recipient's sends one window apart, so they may
                # legitimately wait a window per accepted send; beyond that, a send is stranded.
                windows = {"1h": 3600.0, "day": DAY, "30d": 30 * DAY}
                held = max([windows.get(str(c.window), 30 * DAY) if not isinstance(c.window, float) else c.window
                            for c in conf.frequency_caps if c.action == "defer"] or [0.0])
                # A call stays in flight up to the provider's timeout (which may be set to weeks) or its
                # scripted delay, whichever ends first, and the calls of one route may run one after another.
                given = conf.providers.get("p")
                timeout = given.timeout if given is not None and given.timeout is not None else provider.timeout
                longest = max([c.delay for c in plan.script if c.delay > 0] or [0.0])
                bound = 30 * DAY + held * (len(accepted) + 1) + CALL_BUDGET * min(float(timeout), longest)
                await engine.run_until(clock.now() + bound)
                assert engine.pending == 0, f"sends still pending {bound / DAY:g} virtual days on: " + "; ".join(
                    str(x) for x in map(engine.explain, accepted) if x is not None and x.state != "final")
                await engine.drain()
            stats = engine.stats()
            assert stats.pending == 0 and engine.pending == 0, stats
            retained = {sid: engine.outcome(sid) for sid in accepted}
        assert engine.closed
        outcomes: list[Outcome] = [o async for o in stream]
    except ConfigError as exc:
        if started:
            raise
        assert any(names_key(str(exc), k) for k in plan.fuzzed), f"ConfigError at start names none of {plan.fuzzed}: {exc}"
        return
    finally:
        if journal:
            shutil.rmtree(journal, ignore_errors=True)
    finals: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.status.is_final:
            finals.setdefault(o.send_id, []).append(o)
    for o in outcomes:
        # Outcomes cross a boundary (the platform, a JSON feed): each is a well-typed, encodable Outcome.
        assert msgspec.json.decode(msgspec.json.encode(o), type=Outcome) == o, o
    got = {sid: len(v) for sid, v in finals.items()}
    assert got == accepted, "every accepted send ends exactly once (R21): " + "; ".join(
        f"{sid} accepted {accepted.get(sid, 0)}x, finals {[(o.status.value, o.reason.value, o.at) for o in finals.get(sid, [])]}"
        for sid in sorted(set(got) | set(accepted)) if got.get(sid) != accepted.get(sid))
    short_retention = float(conf.retention) < clock.now() - START + 1 or conf.limits.retention_max < len(finals)
    for sid, got in retained.items():
        if got is None:
            assert short_retention, f"{sid}: engine.outcome is None within retention"
        else:
            assert got == finals[sid][-1], (sid, got, finals[sid])
    assert_quiet_hours(conf, provider.calls)
    assert_rate(conf, engine.core.providers["p"], provider.calls)


# --------------------------------------------------------------------------- the tests


@settings(max_examples=SLOW_EXAMPLES if os.environ.get("SENDCORE_FUZZ_SLOW") else CI_EXAMPLES, **FUZZ_SETTINGS)
@given(plan=plans())
def test_fuzz_the_engine_never_fails_and_keeps_every_rule(run: Any, plan: Plan) -> None:
    """Fuzz (R8, R16, R21, R23, R24): arbitrary sends, answers and settings; every invariant holds."""
    run(drive(plan))


# --------------------------------------------------------------------------- regressions: what the fuzzer found


def _submit_items(run: Any, items_: list[Any], **conf: Any) -> Any:
    async def main() -> Any:
        provider = ScriptedProvider([Call(0.0, "results", [Accepted()])])
        engine = Engine(Settings.from_dict({"journal": {"path": ""}, **conf}), clock=VirtualClock(START),
                        plugins=[Reg(provider)], load_entrypoints=False)
        async with engine:
            report = await engine.submit(items_)
            await engine.drain()
            return report, {sid: engine.outcome(sid) for sid in report.accepted_ids}, provider.calls

    return run(main())


GOOD = dict(id="g1", recipient="r", channel="sms", to="+33612345678", origin="transactional")


def test_found_an_unhashable_channel_is_a_rejection_naming_channel(run: Any) -> None:
    """R23: Send(channel=[...]) raised TypeError (unhashable) out of submit instead of a rejection."""
    report, outcomes, _ = _submit_items(run, [Send(**dict(GOOD, id="x", channel=[])),
                                              Send(**dict(GOOD, id="y", channel={"a": 1})), Send(**GOOD)])
    assert [r.reason.split(": ")[0] for r in report.rejected] == ["channel", "channel"]
    assert report.accepted_ids == ["g1"] and outcomes["g1"].status.value == "sent"


def test_found_a_dict_missing_a_required_key_is_rejected_naming_that_key(run: Any) -> None:
    """R23: {} and a dict without "origin" were rejected as "send: Object missing required field ..."."""
    no_origin = {k: v for k, v in GOOD.items() if k != "origin"}
    report, _, _ = _submit_items(run, [{}, dict(no_origin, id="x"), {1: "x", **dict(GOOD, id="y")}, GOOD])
    reasons = [r.reason for r in report.rejected]
    assert reasons[0].startswith("id: required") and reasons[1].startswith("origin: required"), reasons
    assert reasons[2].startswith("1: unknown key"), reasons
    assert report.accepted_ids == ["g1"]


@pytest.mark.parametrize("field", ["send_at", "expires_at"])
def test_found_a_time_beyond_float_range_is_a_rejection_naming_the_field(run: Any, field: str) -> None:
    """R23: send_at / expires_at = 10**400 raised OverflowError out of submit."""
    report, _, _ = _submit_items(run, [Send(**dict(GOOD, id="x", **{field: 10**400})), Send(**GOOD)])
    [rejection] = report.rejected
    assert rejection.reason.startswith(f"{field}: "), rejection
    assert report.accepted_ids == ["g1"]


def test_found_a_long_sms_above_the_provider_wide_burst_leaves_whole_instead_of_spinning_the_core() -> None:
    """R16: a 2-segment SMS on an unlimited route of a provider with total_rate = 2 (total_burst 1).

    The route allowed it (its own burst is unlimited), the provider-wide bucket
    never held 2 units, ``_next_ready`` answered "now", and ``advance`` looped
    on the route forever. Run in a thread so a regression fails instead of hanging.
    """
    import threading

    from sendcore.core import Core
    from sendcore.provider import ProviderSpec

    spec = ProviderSpec(name="p", channels=("sms",), max_batch=10, max_concurrency=8, total_rate=2.0)
    core = Core(Settings.from_dict({"journal": {"path": ""}}), [spec])
    body = "café ☕ " * 12  # UCS-2, 84 characters: 2 segments
    assert sms_segments(body) == 2
    core.submit([Send(**dict(GOOD, id=f"s{i}", recipient=f"r{i}", body=body)) for i in range(3)], START)
    left: list[tuple[float, list[str]]] = []

    def drive_core() -> None:
        now = START
        for _ in range(50):
            for b in core.advance(now):
                left.append((now, [s.id for s in b.sends]))
                core.record(b, [Accepted() for _ in b.sends], now)
            nxt = core.next_wakeup()
            if nxt is None:
                return
            now = max(now, nxt)

    worker = threading.Thread(target=drive_core, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "Core.advance spins on a long SMS that never fits the provider-wide bucket"
    assert [ids for _, ids in left] == [["s0"], ["s1"], ["s2"]] and core.pending == 0
    # Each leaves whole on a full provider bucket (1 unit), then waits for 2 units' worth of it: 1 s apart.
    assert [t - START for t, _ in left] == pytest.approx([0.0, 1.0, 2.0], abs=1e-3)


@pytest.mark.parametrize("send_at", [-1.7976931348623157e308, -1e306, -(2.0**1000)])
def test_found_a_send_at_long_past_is_due_now_instead_of_overflowing_the_wheel(run: Any, send_at: float) -> None:
    """R23: send_at = -1.8e308 (finite, long past) raised OverflowError out of submit (the wheel's tick)."""
    report, outcomes, calls = _submit_items(run, [Send(**dict(GOOD, send_at=send_at))])
    assert report.accepted_ids == ["g1"] and outcomes["g1"].status.value == "sent"
    assert calls[0][0] == START  # due at once


@pytest.mark.parametrize("journal", [False, True])
@pytest.mark.parametrize("provider_id", [[1, {}], 42, None, "id\ud800"])
def test_found_an_accepted_with_an_invalid_provider_id_is_retried_with_the_journal_on_or_off(
        run: Any, journal: bool, provider_id: Any) -> None:
    """R18: with the journal off, Accepted(provider_id=[1, {}]) ended 'sent' carrying the list as
    ``Outcome.provider_id`` (the journal on retried the same answer); now both retry it as a bad answer."""

    async def main() -> Any:
        path = tempfile.mkdtemp(prefix="sendcore-fuzz-") if journal else ""
        provider = ScriptedProvider([Call(0.0, "results", [Accepted(provider_id)]),
                                     Call(0.0, "results", [Accepted("ok")])])
        conf = {"journal": {"path": path}, "retry": {"base_delay": "1s", "jitter": 0}}
        try:
            async with Engine(Settings.from_dict(conf), clock=VirtualClock(START), plugins=[Reg(provider)],
                              load_entrypoints=False) as engine:
                stream = engine.outcomes()
                await engine.submit([Send(**GOOD)])
                await engine.drain()
            return [o async for o in stream]
        finally:
            if path:
                shutil.rmtree(path, ignore_errors=True)

    outcomes = run(main())
    assert [(o.status.value, o.attempt) for o in outcomes] == [("retrying", 1), ("sent", 2)], outcomes
    assert "invalid Accepted" in outcomes[0].detail and outcomes[1].provider_id == "ok"
