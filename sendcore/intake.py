"""Intake: every submitted item is validated and normalised here before the core takes it (R23).

One item at a time, without touching any state of the core: a send that is
valid comes out as a normalised ``Send`` (its origin an ``Origin``, its times
epoch seconds) with its due instant; anything else raises ``InputError``
naming the field at fault, so the good items beside it are never lost. The
provider a send goes to is chosen here too (DESIGN §4).
"""

from __future__ import annotations

import difflib
import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, Union

import msgspec

from .errors import InputError
from .locale import LocaleResolver, local_to_epoch
from .phones import check_number
from .provider import ProviderSpec
from .segments import sms_segments
from .send import Origin, Send
from .settings import Settings

__all__ = ["Intake", "PHONE_CHANNELS", "check_text", "zone_ok"]

#: Channels whose ``to`` is a phone number (validated, carrier looked up, SMS segments counted).
PHONE_CHANNELS = frozenset({"sms", "mms", "whatsapp", "rcs", "voice"})

_KNOWN_ZONES: dict[str, bool] = {}


def zone_ok(name: str) -> bool:
    ok = _KNOWN_ZONES.get(name)
    if ok is None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
            ok = True
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            ok = False
        _KNOWN_ZONES[name] = ok
    return ok


def _epoch(value: Any, field: str) -> float:
    """Epoch seconds from a number or an aware datetime; raise InputError naming ``field``."""
    if type(value) is float or type(value) is int:
        try:
            t = float(value)
        except OverflowError:  # an int beyond float range (10**400): no instant, and not an engine failure
            raise InputError(field, "not a finite time") from None
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InputError(field, "naive datetime; give a timezone-aware datetime or epoch seconds")
        t = value.timestamp()
    else:
        raise InputError(field, f"expected epoch seconds or an aware datetime, got {type(value).__name__}")
    if t != t or t in (math.inf, -math.inf):
        raise InputError(field, "not a finite time")
    return t


_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f.][^@\s\x00-\x1f\x7f]*\.[^@\s\x00-\x1f\x7f.]+")
_MISSING_FIELD = re.compile(r"missing required field `([^`]*)`")
_json_encode = msgspec.json.Encoder().encode


def _valid_text(value: Any) -> bool:
    """False for a str holding a lone surrogate (it cannot be encoded as UTF-8)."""
    if type(value) is not str or value.isascii():
        return True
    try:
        value.encode()
        return True
    except UnicodeEncodeError:
        return False


def check_text(value: str, field: str) -> None:
    """Refuse text a protocol could choke on: a lone surrogate or a control character, naming ``field``.

    Called only for text that is not printable (``str.isprintable`` is the
    fast check); other non-printable characters (a zero-width joiner) pass.
    """
    for i, c in enumerate(value):
        o = ord(c)
        if 0xD800 <= o <= 0xDFFF:
            raise InputError(field, f"contains a lone surrogate (U+{o:04X}) at position {i}: not valid Unicode text")
        if o < 0x20 or 0x7F <= o <= 0x9F:
            raise InputError(field, f"contains a control character (U+{o:04X}) at position {i}")


def _iso(t: float) -> str:
    try:
        return datetime.fromtimestamp(t, timezone.utc).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{t:g} (epoch seconds)"

class Intake:
    """Validates and normalises submitted items for one set of settings and providers.

    ``providers`` maps each provider's name to its spec (with the settings'
    overrides applied); ``locale`` resolves a send's zones, for
    ``local_send_at``. Holds only caches derived from those: checking an item
    never changes what another check answers.
    """

    def __init__(self, settings: Settings, providers: Mapping[str, ProviderSpec], locale: LocaleResolver) -> None:
        self.settings = settings
        self._specs = dict(providers)
        #: Every channel sends may use: the settings' and the providers'.
        self.channels = frozenset(settings.channel_names) | {c for p in providers.values() for c in p.channels}
        self._channel_provider: dict[str, Union[str, InputError]] = {}
        self._locale = locale
        self._priority_max = settings.limits.priority_max
        self._horizon = float(settings.limits.schedule_horizon)
        # Body bounds per channel: (SMS segments or None, bytes).
        self._body_limits = {ch: (r.max_segments, r.max_body_bytes)
                             for ch in self.channels for r in (settings.channel(ch),)}
        self._segments_seen: dict[str, int] = {}

    def channel_provider(self, channel: str) -> Union[str, InputError]:
        """The provider that sends of ``channel`` naming none go to, or the error saying why there is none.

        ``[channels.X] provider`` decides when set; otherwise the one provider
        serving the channel, where fallback providers (the sandbox) count only
        when no other provider serves it.
        """
        configured = self.settings.channel(channel).provider
        if configured is not None:
            spec = self._specs.get(configured)
            if spec is None:
                return InputError("provider", f"[channels.{channel}] provider {configured!r} is not registered "
                                  f"(registered: {', '.join(sorted(self._specs)) or 'none'})")
            if channel not in spec.channels:
                return InputError("provider", f"[channels.{channel}] provider {configured!r} does not serve "
                                  f"channel {channel!r} (it serves {', '.join(spec.channels)})")
            return configured
        serving = sorted(n for n, p in self._specs.items() if channel in p.channels)
        real = [n for n in serving if not self._specs[n].fallback]
        if real:
            serving = real
        if len(serving) == 1:
            return serving[0]
        if not serving:
            return InputError("channel", f"no registered provider serves channel {channel!r}")
        return InputError("provider", f"several providers serve {channel!r} ({', '.join(serving)}); "
                          f"set send.provider or [channels.{channel}] provider")

    def channel_problems(self) -> list[str]:
        """What makes sends of some channel fail to find a provider: ambiguity or a bad ``provider`` setting."""
        out = []
        for ch in sorted(self.channels):
            got = self.channel_provider(ch)
            if isinstance(got, InputError) and got.field == "provider":
                out.append(f"channel {ch!r}: {got.message}; sends of {ch!r} naming no provider will be rejected")
        return out

    def provider_for(self, send: Send) -> str:
        """The provider a send goes to (DESIGN §4); raise InputError naming the field."""
        name = send.provider
        if name is not None:
            if type(name) is not str:
                raise InputError("provider", f"expected a provider name, got {type(name).__name__}")
            spec = self._specs.get(name)
            if spec is None:
                raise InputError("provider", f"unknown provider {name!r}")
            if send.channel not in spec.channels:
                raise InputError("provider", f"provider {name!r} does not serve channel {send.channel!r}")
            return name
        got = self._channel_provider.get(send.channel)
        if got is None:
            got = self._channel_provider[send.channel] = self.channel_provider(send.channel)
        if isinstance(got, InputError):
            raise got
        return got

    def normalise(self, item: Any, now: float) -> tuple[Send, float, Optional[str]]:
        """Validate one item; return (send, due, late_local flag) or raise InputError naming the field.

        Hot path: a well-typed ``Send`` with the optional fields unset costs a
        dozen type checks and no allocation.
        """
        if type(item) is not Send:
            item = self._coerce(item)
        s = item
        changes: dict[str, Any] = {}
        v = s.id
        if type(v) is not str or not v:
            raise InputError("id", "required, a non-empty string" if not v else f"expected a string, got {type(v).__name__}")
        if not v.isprintable():
            check_text(v, "id")
        v = s.recipient
        if type(v) is not str or not v:
            raise InputError("recipient", "required, a non-empty string" if not v else f"expected a string, got {type(v).__name__}")
        if not v.isprintable():
            check_text(v, "recipient")
        to = s.to
        if type(to) is not str or not to:
            raise InputError("to", "required, a non-empty string" if not to else f"expected a string, got {type(to).__name__}")
        if not to.isprintable():
            check_text(to, "to")
        ch = s.channel
        # The type first: an unhashable value (a list, a dict) cannot be looked up in the set.
        if type(ch) is not str or ch not in self.channels:
            raise InputError("channel", f"unknown channel {ch!r}; known: {', '.join(sorted(self.channels))}")
        if ch == "email":
            if not _EMAIL.fullmatch(to):
                raise InputError("to", f"{to!r} is not an email address (name@domain.tld, no spaces)")
        elif " " in to and ch not in PHONE_CHANNELS:
            raise InputError("to", f"{to!r}: an address cannot contain spaces")
        if type(s.origin) is not Origin:
            try:
                changes["origin"] = Origin(s.origin)
            except ValueError:
                raise InputError("origin", f"expected transactional, flow or campaign, got {s.origin!r}") from None
        if ch in PHONE_CHANNELS:
            err = check_number(to)
            if err is not None:
                raise InputError("to", f"{to!r}: {err}")
        body = s.body
        if type(body) is not str:
            raise InputError("body", f"expected a string, got {type(body).__name__}")
        max_segments, max_bytes = self._body_limits[ch]
        if len(body) > 70 or not body.isascii():
            self._check_body(body, ch, max_segments, max_bytes)
        if type(s.smart_sending) is not bool or type(s.quiet_hours) is not bool:
            field = "smart_sending" if type(s.smart_sending) is not bool else "quiet_hours"
            raise InputError(field, f"expected true or false, got {getattr(s, field)!r}")
        if s.tags:
            self._check_optional_tags(s, changes)
        elif type(s.tags) is not tuple:
            changes["tags"] = ()
        oid = s.origin_id
        if (s.priority is not None or s.timezone is not None or s.carrier is not None or s.sender is not None
                or s.metadata is not None or type(oid) is not str or (oid and not oid.isprintable())):
            self._check_optional(s)
        if s.provider is not None or ch not in self._channel_provider:
            self.provider_for(s)
        elif isinstance(self._channel_provider[ch], InputError):
            raise self._channel_provider[ch]
        exp = s.expires_at
        if exp is not None and (type(exp) is not float or exp != exp or exp in (math.inf, -math.inf)):
            changes["expires_at"] = _epoch(exp, "expires_at")
        late = None
        t = s.send_at
        if s.local_send_at is not None:
            if t is not None:
                raise InputError("local_send_at", "give send_at or local_send_at, not both")
            if type(s.local_send_at) is not str:
                raise InputError("local_send_at", f"expected a string, got {type(s.local_send_at).__name__}")
            if changes:
                s = msgspec.structs.replace(s, **changes)
                changes = {}
            loc = self._locale.resolve(s)
            try:
                due = local_to_epoch(s.local_send_at, loc.zones)
            except ValueError as exc:
                raise InputError("local_send_at", str(exc).removeprefix("local_send_at: ")) from None
            changes["send_at"] = due
            if due < now:
                late = self.settings.late_local
                due = now
        elif t is None:
            due = now
        elif type(t) is float and t == t and t not in (math.inf, -math.inf):
            due = t
        else:
            due = _epoch(t, "send_at")
            changes["send_at"] = due
        if due > now + self._horizon:
            field = "local_send_at" if s.local_send_at is not None else "send_at"
            raise InputError(field, f"{_iso(due)} is more than {self._horizon / 86400:g} days ahead "
                             "(limits.schedule_horizon)")
        if due < 0.0:
            # Long past (before 1970, down to -1.8e308): due now all the same. Held as is, a due that far
            # back overflowed the wheel's tick arithmetic and raised out of submit (found by the fuzz
            # test, tests/fuzz_engine.py).
            due = 0.0
        if changes:
            s = msgspec.structs.replace(s, **changes)
        return s, due, late

    def _check_body(self, body: str, channel: str, max_segments: Union[int, None], max_bytes: int) -> None:
        """Refuse a body that is not valid text or is over the channel's size bounds, naming ``body``."""
        if not body.isascii():
            try:
                size = len(body.encode())
            except UnicodeEncodeError as exc:
                raise InputError("body", f"contains a lone surrogate at position {exc.start}: "
                                 "not valid Unicode text") from None
        else:
            size = len(body)
        if size > max_bytes:
            raise InputError("body", f"{size:,} bytes, more than channels.{channel}.max_body_bytes = {max_bytes:,}")
        if max_segments is not None:
            seen = self._segments_seen
            n = seen.get(body)
            if n is None:
                n = sms_segments(body)
                if len(seen) > 4096:
                    seen.clear()
                seen[body] = n
            if n > max_segments:
                raise InputError("body", f"{n} SMS segments, more than channels.{channel}.max_segments = "
                                 f"{max_segments}")

    def _coerce(self, item: Any) -> Send:
        if isinstance(item, dict):
            try:
                return msgspec.convert(item, Send)
            except UnicodeError:
                bad = next((k for k, v in item.items() if not _valid_text(k) or (type(v) is str and not _valid_text(v))),
                           "send")
                raise InputError(bad if type(bad) is str and _valid_text(bad) else repr(bad),
                                 "contains a lone surrogate: not valid Unicode text") from None
            except msgspec.ValidationError as exc:
                msg = str(exc)
                # The keys themselves, not msgspec's message: a key may hold a backtick or be no string.
                key = next((k for k in item if type(k) is str and k not in Send.__struct_fields__), None)
                if key is not None:
                    close = difflib.get_close_matches(key, Send.__struct_fields__, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise InputError(key, f"unknown key{hint}; a send's keys are "
                                     f"{', '.join(Send.__struct_fields__)}") from None
                # Name the field in these too (R23), not "send": a missing required key, a key that is no string.
                m = _MISSING_FIELD.search(msg)
                if m:
                    raise InputError(m.group(1), "required, missing") from None
                odd = next((k for k in item if type(k) is not str), None)
                if odd is not None:
                    raise InputError(repr(odd), f"unknown key (a send's keys are strings: "
                                     f"{', '.join(Send.__struct_fields__)})") from None
                field = msg.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in msg else "send"
                # msgspec's "Expected `str`, got `int` - at `$.to`" as "expected str, got int".
                plain = msg.split(" - at `$", 1)[0].replace("`", "")
                raise InputError(field, plain[:1].lower() + plain[1:]) from None
        if isinstance(item, Send):
            return item
        raise InputError("send", f"expected a sendcore.Send or a dict, got {type(item).__name__}")

    @staticmethod
    def _check_optional_tags(s: Send, changes: dict[str, Any]) -> None:
        tags = s.tags
        if type(tags) is not tuple:
            if not isinstance(tags, list):
                raise InputError("tags", f"expected a list of strings, got {type(tags).__name__}")
            tags = changes["tags"] = tuple(tags)
        for t in tags:
            if type(t) is not str:
                raise InputError("tags", f"expected strings, got {type(t).__name__}")
            if not t.isprintable():
                check_text(t, "tags")

    def _check_optional(self, s: Send) -> None:
        p = s.priority
        if p is not None:
            if type(p) is not int:
                raise InputError("priority", f"expected an integer, got {type(p).__name__}")
            if not 0 <= p <= self._priority_max:
                raise InputError("priority", f"must be from 0 (leaves first) to {self._priority_max} "
                                 f"(limits.priority_max), got {p if abs(p) < 10**12 else 'a huge number'}")
        for field in ("timezone", "carrier", "sender", "origin_id"):
            v = getattr(s, field)
            if v is not None and type(v) is not str:
                raise InputError(field, f"expected a string, got {type(v).__name__}")
            if v and not v.isprintable():
                check_text(v, field)
        if s.timezone is not None and not zone_ok(s.timezone):
            raise InputError("timezone", f"unknown timezone {s.timezone!r}")
        if s.metadata is not None:
            if not isinstance(s.metadata, dict):
                raise InputError("metadata", f"expected a mapping, got {type(s.metadata).__name__}")
            try:
                _json_encode(s.metadata)
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
                raise InputError("metadata", f"must be JSON-like values (str keys; str, number, bool, null, "
                                 f"list, mapping): {exc}") from None
