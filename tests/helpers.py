"""Small builders shared by the core tests."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from sendcore.core import Core
from sendcore.provider import ProviderSpec
from sendcore.send import Origin, Send
from sendcore.settings import Settings

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")

FR_MOBILE = "+33612345678"
US_NY = "+12125550123"
US_FL = "+13055550123"

SPEC = ProviderSpec(name="sandbox", channels=("sms", "email", "push"), max_batch=100, max_concurrency=1000)


def at(tz, *parts) -> float:
    """Epoch seconds of a wall-clock time in ``tz``."""
    return datetime(*parts, tzinfo=tz).timestamp()


def core(toml: str = "", specs=(SPEC,), **kw) -> Core:
    """A core with settings from TOML text (journal off)."""
    return Core(Settings.from_toml_bytes(toml), list(specs), **kw)


def send(id: str, *, channel: str = "sms", to: str = FR_MOBILE, recipient: str | None = None,
         origin: str = "flow", **kw) -> Send:
    """A send with sensible defaults for tests."""
    if channel == "email" and to == FR_MOBILE:
        to = f"{recipient or id}@example.com"
    return Send(id=id, recipient=recipient or f"r-{id}", channel=channel, to=to, origin=Origin(origin), **kw)


def finals(outcomes) -> dict[str, object]:
    """Final outcome per send id."""
    return {o.send_id: o for o in outcomes if o.status.is_final}
