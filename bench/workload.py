"""Realistic send workloads shared by the benchmarks: distinct recipients across zones and channels."""

from __future__ import annotations

import random

from sendcore.send import Origin, Send
from sendcore.settings import Settings

__all__ = ["ALL_POLICIES_TOML", "all_policies_settings", "make_sends"]

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
    rnd = random.Random(seed)
    body = body or "Your order has shipped: track it at https://ex.co/t/abc"
    origins = [Origin.TRANSACTIONAL] * 12 + [Origin.FLOW] * 5 + [Origin.CAMPAIGN] * 3
    out = []
    for i in range(n):
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
    return out
