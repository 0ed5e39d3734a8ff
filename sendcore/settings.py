"""Settings: every key has a default, so an empty TOML file is valid.

Durations are written "90s", "15m", "16h", "30d", "1w" (or a number of
seconds). Unknown keys are errors, so a typo never silently does nothing.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from pathlib import Path
from typing import Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .errors import ConfigError

__all__ = [
    "PROVIDER_LIMITS",
    "ChannelSettings",
    "DispatchSettings",
    "ErrorSegmentSettings",
    "FrequencyCap",
    "JournalSettings",
    "LimitSettings",
    "PluginSettings",
    "ProviderSettings",
    "QuietWindow",
    "RetrySettings",
    "RouteLimit",
    "ServiceSettings",
    "Settings",
    "Spacing",
    "limit_problem",
    "parse_duration",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

Duration = Union[float, str]


def parse_duration(value: Any, field: str) -> float:
    """Seconds in ``value`` ("90s", "16h", "30d", or a number); raise naming ``field``."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a duration like '90s' or '16h', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{field}: expected a duration like '90s', '16h' or '30d', got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{field}: expected a duration like '90s' or '16h', got {value!r}")
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{field}: a duration cannot be negative, got {value!r}")
    if seconds == math.inf:
        raise ValueError(f"{field}: a duration must be finite, got {value!r}")
    return seconds


def limit_problem(key: str, value: Any) -> Union[str, None]:
    """What is wrong with a provider limit ``key`` = ``value`` (a declaration or a ``[providers.X]`` key), or None.

    One check for both places, so a setting can never carry a value the
    plugin declaration would have been refused for.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in ("max_batch", "max_concurrency"):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
            return f"must be a positive integer up to {MAX_COUNT:,}, got {value!r:.40}"
    elif key == "timeout":
        if not number or not 0 < value < math.inf:
            return f"must be a positive, finite number of seconds, got {value!r}"
    elif key in ("rate", "total_rate"):
        if value is not None and (not number or not (value == 0 or MIN_RATE <= value <= MAX_RATE)):
            return (f"must be unset (unlimited) or a finite number: 0 (unlimited) or from {MIN_RATE:g} to "
                    f"{MAX_RATE:g} per second, got {value!r}")
    elif key in ("burst", "total_burst", "daily_cap"):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT):
            return f"must be an integer >= 0 and at most {MAX_COUNT:,}, got {value!r:.40}"
    return None


#: The slowest and fastest rates a limit may have: beyond them a GCRA's interval (1 / rate) or its budget
#: overflows a float (a rate of 5e-324 per second made its interval infinite).
MIN_RATE = 1e-6
MAX_RATE = 1e9

#: The largest count a provider limit may hold (sends in a batch, calls in flight, a burst, a daily cap).
MAX_COUNT = 1_000_000_000


def _out_of_range(value: Any, path: str) -> Union[str, None]:
    """The path of the first integer in ``value`` (built-in values) that does not fit in 64 bits, or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return path if not -(2**63) <= value < 2**63 else None
    if isinstance(value, dict):
        for k, v in value.items():
            got = _out_of_range(v, f"{path}.{k}" if path else str(k))
            if got:
                return got
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            got = _out_of_range(v, f"{path}[{i}]")
            if got:
                return got
    return None


def parse_clock(value: str, field: str) -> int:
    """Minutes after midnight of "HH:MM"; raise naming ``field``."""
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError(f"{field}: expected a local time 'HH:MM' (00:00-23:59), got {value!r}")
    return int(value[:2]) * 60 + int(value[3:])


def _check_zone(value: str, field: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{field}: unknown timezone {value!r}") from None


class QuietWindow(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A daily local-time window in which non-transactional sends wait (R8).

    ``start`` > ``end`` wraps past midnight ("20:00" to "11:00").
    """

    start: str
    end: str

    def __post_init__(self) -> None:
        parse_clock(self.start, "quiet_hours.start")
        parse_clock(self.end, "quiet_hours.end")
        if self.start == self.end:
            raise ValueError(f"quiet_hours.end: equals start ({self.start!r}), which could mean no quiet hours "
                             "or all day; give a window of at least a minute, or quiet_hours = false")

    @property
    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes after local midnight."""
        return parse_clock(self.start, "quiet_hours.start"), parse_clock(self.end, "quiet_hours.end")


class ChannelSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-channel rules. Unset keys take the channel's built-in default.

    ``quiet_hours = false`` turns the built-in window off for the channel.
    """

    smart_sending_window: Union[Duration, msgspec.UnsetType] = msgspec.UNSET
    smart_sending_origins: Union[list[Literal["flow", "campaign"]], msgspec.UnsetType] = msgspec.UNSET
    quiet_hours: Union[QuietWindow, bool, msgspec.UnsetType] = msgspec.UNSET
    ramp: Union[Duration, msgspec.UnsetType] = msgspec.UNSET
    provider: Union[str, None] = None
    max_segments: Union[int, msgspec.UnsetType] = msgspec.UNSET
    max_body_bytes: Union[int, msgspec.UnsetType] = msgspec.UNSET

    def __post_init__(self) -> None:
        for key in ("max_segments", "max_body_bytes"):
            v = getattr(self, key)
            if v is not msgspec.UNSET and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{key}: must be a positive integer, got {v!r}")
        if self.smart_sending_window is not msgspec.UNSET:
            self.smart_sending_window = parse_duration(self.smart_sending_window, "smart_sending_window")
        if self.ramp is not msgspec.UNSET:
            self.ramp = parse_duration(self.ramp, "ramp")
        if self.quiet_hours is True:
            raise ValueError("quiet_hours: give a window {start = 'HH:MM', end = 'HH:MM'} or false")


class ErrorSegmentSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """R13: addresses with a temporary error within ``window`` are excluded from ``origins``."""

    window: Duration = "30d"
    origins: list[Literal["flow", "campaign"]] = msgspec.field(default_factory=lambda: ["campaign"])
    channels: Union[list[str], None] = None

    def __post_init__(self) -> None:
        self.window = parse_duration(self.window, "error_segment.window")


CALENDAR_WINDOWS = ("day", "week", "month")


class FrequencyCap(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """R5: at most ``max`` sends per ``window`` per recipient, within the scope given.

    ``window`` is a rolling duration ("30d") or a calendar period ("day",
    "week", "month") in the recipient's timezone. ``action`` is "skip" or
    "defer" (hold until the cap frees). ``countries``/``regions`` limit the
    rule to recipients there (used by jurisdiction packs).
    """

    max: int
    window: Duration
    channel: Union[str, None] = None
    origins: list[Literal["flow", "campaign", "transactional"]] = msgspec.field(
        default_factory=lambda: ["flow", "campaign"]
    )
    tags: list[str] = []
    action: Literal["skip", "defer"] = "skip"
    countries: list[str] = []
    regions: list[str] = []
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.max, int) or self.max < 1:
            raise ValueError(f"frequency_caps.max: expected a positive integer, got {self.max!r}")
        if isinstance(self.window, str) and self.window in CALENDAR_WINDOWS:
            return
        self.window = parse_duration(self.window, "frequency_caps.window")
        if self.window <= 0:
            raise ValueError("frequency_caps.window: must be longer than 0s")

    @property
    def calendar(self) -> Union[str, None]:
        """The calendar period name, or None for a rolling window."""
        return self.window if isinstance(self.window, str) else None


class Spacing(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """R6: no ``before`` send within ``gap`` after an ``after`` send to the same recipient."""

    after: str
    before: str
    gap: Duration
    origins: list[Literal["flow", "campaign"]] = msgspec.field(default_factory=lambda: ["flow", "campaign"])

    def __post_init__(self) -> None:
        self.gap = parse_duration(self.gap, "spacing.gap")


class RouteLimit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """R16: limits of the routes matching (provider, sender, carrier); "*" matches any."""

    provider: str = "*"
    sender: str = "*"
    carrier: str = "*"
    rate: float = 0.0
    burst: int = 0
    daily_cap: int = 0
    daily_cap_timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not (self.rate == 0 or MIN_RATE <= self.rate <= MAX_RATE):
            raise ValueError(f"routes.rate: must be a finite number: 0 (unlimited) or from {MIN_RATE:g} to "
                             f"{MAX_RATE:g} per second, got {self.rate!r}")
        if self.burst < 0:
            raise ValueError(f"routes.burst: must be >= 0, got {self.burst!r}")
        if self.daily_cap < 0:
            raise ValueError(f"routes.daily_cap: must be >= 0 (0 = none), got {self.daily_cap!r}")
        _check_zone(self.daily_cap_timezone, "routes.daily_cap_timezone")

    @property
    def specificity(self) -> int:
        """How specific the match is: the carrier counts more than the sender."""
        return (self.provider != "*") * 4 + (self.carrier != "*") * 2 + (self.sender != "*")


class ProviderSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-provider settings (R16): ``rate``/``burst`` are the default limits of each
    of its routes; ``total_rate``/``total_burst`` cap all its routes together."""

    rate: Union[float, None] = None
    burst: Union[int, None] = None
    total_rate: Union[float, None] = None
    total_burst: Union[int, None] = None
    max_concurrency: Union[int, None] = None
    timeout: Union[Duration, None] = None
    max_batch: Union[int, None] = None
    options: dict[str, Any] = {}

    def __post_init__(self) -> None:
        if self.timeout is not None:
            self.timeout = parse_duration(self.timeout, "timeout")
        for key in PROVIDER_LIMITS:
            value = getattr(self, key)
            problem = limit_problem(key, value) if value is not None else None
            if problem is not None:
                raise ValueError(f"{key}: {problem}")


#: The limits a provider declares that ``[providers.NAME]`` may override: the one list of them.
PROVIDER_LIMITS = tuple(f for f in ProviderSettings.__struct_fields__ if f != "options")


class RetrySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """R18: exponential backoff with jitter for temporary failures."""

    max_attempts: int = 5
    base_delay: Duration = "30s"
    max_delay: Duration = "1h"
    jitter: float = 0.5
    #: A provider's ``RateLimited(retry_after)`` is clamped into [min_retry_after, max_retry_after].
    min_retry_after: Duration = "100ms"
    max_retry_after: Duration = "1h"
    #: A send pushed back this many times (``RateLimited``) fails with ``max_attempts``.
    max_rate_limited: int = 50

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"retry.max_attempts: must be >= 1, got {self.max_attempts!r}")
        self.base_delay = parse_duration(self.base_delay, "retry.base_delay")
        self.max_delay = parse_duration(self.max_delay, "retry.max_delay")
        self.min_retry_after = parse_duration(self.min_retry_after, "retry.min_retry_after")
        self.max_retry_after = parse_duration(self.max_retry_after, "retry.max_retry_after")
        if not 0 < self.min_retry_after <= self.max_retry_after:
            raise ValueError("retry.min_retry_after: must be above 0s and at most max_retry_after, got "
                             f"{self.min_retry_after:g}s and {self.max_retry_after:g}s")
        if not isinstance(self.max_rate_limited, int) or self.max_rate_limited < 1:
            raise ValueError(f"retry.max_rate_limited: must be a positive integer, got {self.max_rate_limited!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"retry.jitter: must be between 0 and 1, got {self.jitter!r}")


class JournalSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """R22: the file journal. ``path = ""`` keeps everything in memory (lost on a crash).

    ``fsync``: ``"batch"`` acknowledges a submit once its frame is fsynced,
    concurrent submits sharing one fsync; ``"always"`` fsyncs each call on its
    own; ``"interval"`` acknowledges once written to the operating system and
    fsyncs every ``fsync_interval`` (an OS crash or power loss can lose that
    much; a process crash loses nothing acknowledged). In every mode, frames
    nobody waits on (time steps, provider answers) are fsynced within
    ``fsync_interval``. A snapshot is taken after ``snapshot_bytes`` of journal
    or ``snapshot_interval``, whichever comes first; segments rotate at
    ``segment_bytes``.
    """

    path: str = ".sendcore"
    fsync: Literal["batch", "always", "interval"] = "batch"
    fsync_interval: Duration = "10ms"
    segment_bytes: int = 64 * 1024 * 1024
    snapshot_bytes: int = 256 * 1024 * 1024
    snapshot_interval: Duration = "10m"

    def __post_init__(self) -> None:
        self.fsync_interval = parse_duration(self.fsync_interval, "journal.fsync_interval")
        self.snapshot_interval = parse_duration(self.snapshot_interval, "journal.snapshot_interval")
        if self.fsync == "interval" and not self.fsync_interval > 0:
            raise ValueError("journal.fsync_interval: must be above 0 with fsync = \"interval\"")
        for key in ("segment_bytes", "snapshot_bytes"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 4096:
                raise ValueError(f"journal.{key}: must be an integer of at least 4096 bytes, got {v!r}")


class LimitSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Bounds on what a send may ask for, so one value cannot stall or break the engine (R23).

    ``priority_max``: a send's ``priority`` is an integer from 0 (first) to
    this. ``schedule_horizon``: ``send_at``/``local_send_at`` at most this far
    ahead. ``retention_max``: at most this many finished outcomes are kept
    (the oldest go first, even within ``retention``; an id dropped so can be
    submitted again).
    """

    priority_max: int = 9
    schedule_horizon: Duration = "400d"
    retention_max: int = 1_000_000

    def __post_init__(self) -> None:
        self.schedule_horizon = parse_duration(self.schedule_horizon, "schedule_horizon")
        if not self.schedule_horizon > 0:
            raise ValueError("schedule_horizon: must be longer than 0s")
        for key, low in (("priority_max", 0), ("retention_max", 1)):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= (99 if key == "priority_max" else 10**12):
                top = 99 if key == "priority_max" else 10**12
                raise ValueError(f"{key}: must be an integer from {low} to {top}, got {v!r}")


class DispatchSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How finely the wheel keeps due instants, per origin: coalesced wake-ups.

    A send due at ``t`` is woken at the first multiple of its origin's
    resolution at or after ``t`` (never before ``t``), so sends due within
    one slot are decided together and leave in one batch instead of one
    wake-up and one batch each. ``0s`` keeps every instant as given (to the
    wheel's 1 ms tick). Retries and deferrals are woken the same way.
    """

    transactional: Duration = "1ms"
    flow: Duration = "50ms"
    campaign: Duration = "50ms"

    def __post_init__(self) -> None:
        for key in ("transactional", "flow", "campaign"):
            v = parse_duration(getattr(self, key), key)
            if not 0 <= v <= 3600:
                raise ValueError(f"{key}: must be from 0s to 1h, got {v:g}s")
            setattr(self, key, v)

    def resolution(self, origin: str) -> float:
        """The resolution of ``origin`` ("transactional", "flow" or "campaign") in seconds."""
        return float(getattr(self, origin))


#: What journals written before ``[dispatch]`` existed were decided with: every instant as given.
LEGACY_DISPATCH = {"transactional": "0s", "flow": "0s", "campaign": "0s"}


class PluginSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which installed plugins load: ``allow`` (empty = all) minus ``block``."""

    allow: list[str] = []
    block: list[str] = []


class ServiceSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``sendcore serve``: the HTTP service around one engine (see docs/service.md).

    ``host``/``port``: where it listens (loopback by default). ``public_url``:
    the base URL callers and webhooks use (``https://sendcore.example.com``),
    needed by providers that sign the full URL (Twilio); empty means the URL
    the request arrived on. ``state_dir`` holds the outcome log, in segments
    of ``outcome_segment_bytes`` kept ``outcome_retention``. Tokens are
    kept, as salted hashes, in ``tokens_file``; ``require_tokens = false``
    opens every endpoint (for development only). ``open_metrics`` and
    ``open_health`` serve ``/metrics`` and ``/healthz``/``/readyz`` without a
    token. ``open_delivery_reports`` names providers whose webhooks are taken
    without a token because their plugin checks a signature (``["twilio"]``).
    ``snapshot_on_stop``: a graceful stop writes a journal snapshot, so the
    next start (of a newer sendcore too) replays nothing.
    """

    host: str = "127.0.0.1"
    port: int = 8787
    public_url: str = ""
    state_dir: str = ".sendcore-service"
    tokens_file: str = "sendcore-tokens.json"
    require_tokens: bool = True
    open_metrics: bool = False
    open_health: bool = True
    open_delivery_reports: list[str] = []
    max_body_bytes: int = 16 * 1024 * 1024
    max_items: int = 10_000
    max_line_size: int = 8190
    max_field_size: int = 8190
    token_rate: float = 50.0
    token_burst: int = 100
    retry_after: Duration = "1s"
    shutdown_grace: Duration = "10s"
    snapshot_on_stop: bool = True
    outcome_segment_bytes: int = 64 * 1024 * 1024
    outcome_retention: Duration = "7d"

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ValueError(f"service.port: must be an integer from 0 to 65535, got {self.port!r}")
        if self.public_url and not re.match(r"^https?://[^/\s]+", self.public_url):
            raise ValueError(f"service.public_url: expected an http(s) base URL, got {self.public_url!r}")
        self.public_url = self.public_url.rstrip("/")
        for key, low in (("max_body_bytes", 1024), ("max_items", 1), ("max_line_size", 256),
                         ("max_field_size", 256), ("token_burst", 1), ("outcome_segment_bytes", 4096)):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"service.{key}: must be an integer of at least {low}, got {v!r}")
        if not isinstance(self.token_rate, (int, float)) or isinstance(self.token_rate, bool) \
                or not 0 <= self.token_rate < math.inf:
            raise ValueError("service.token_rate: must be a finite number >= 0 (0 = unlimited), "
                             f"got {self.token_rate!r}")
        self.retry_after = parse_duration(self.retry_after, "service.retry_after")
        self.shutdown_grace = parse_duration(self.shutdown_grace, "service.shutdown_grace")
        self.outcome_retention = parse_duration(self.outcome_retention, "service.outcome_retention")
        for key in ("state_dir", "tokens_file"):
            if not getattr(self, key):
                raise ValueError(f"service.{key}: must name a path")


_CHANNEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sms": {"smart_sending_window": 24 * 3600.0, "quiet_hours": QuietWindow(start="20:00", end="11:00"),
            "max_segments": 10, "max_body_bytes": 64 * 1024},
    "email": {"smart_sending_window": 16 * 3600.0, "quiet_hours": False, "max_body_bytes": 1024 * 1024},
    "push": {"smart_sending_window": 24 * 3600.0, "quiet_hours": False, "max_body_bytes": 4096},
}
_OTHER_CHANNEL = {"smart_sending_window": 0.0, "quiet_hours": False, "max_body_bytes": 1024 * 1024}


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """All of sendcore's configuration. Load with ``Settings.from_toml(path)``."""

    default_timezone: str = "UTC"
    jurisdictions: list[str] = []
    max_pending: int = 10_000_000
    retention: Duration = "7d"
    late_local: Literal["send", "skip"] = "send"
    channels: dict[str, ChannelSettings] = {}
    error_segment: ErrorSegmentSettings = msgspec.field(default_factory=ErrorSegmentSettings)
    frequency_caps: list[FrequencyCap] = []
    spacing: list[Spacing] = []
    routes: list[RouteLimit] = []
    providers: dict[str, ProviderSettings] = {}
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    journal: JournalSettings = msgspec.field(default_factory=JournalSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    dispatch: DispatchSettings = msgspec.field(default_factory=DispatchSettings)
    plugins: PluginSettings = msgspec.field(default_factory=PluginSettings)
    service: ServiceSettings = msgspec.field(default_factory=ServiceSettings)

    def __post_init__(self) -> None:
        _check_zone(self.default_timezone, "default_timezone")
        self.retention = parse_duration(self.retention, "retention")
        if not isinstance(self.max_pending, int) or self.max_pending < 1:
            raise ValueError(f"max_pending: must be a positive integer, got {self.max_pending!r}")
        for name in self.channels:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"channels.{name}: channel names are lowercase words")
        # The journal records the settings; an integer beyond 64 bits could not be written there.
        where = _out_of_range(msgspec.to_builtins(self), "")
        if where:
            raise ValueError(f"{where}: too large (integers must fit in 64 bits)")

    # Loading

    @classmethod
    def from_toml(cls, path: Union[str, Path]) -> Settings:
        """Load settings from a TOML file; raise ConfigError naming the file and key."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read settings file: {exc.strerror}") from None
        return cls.from_toml_bytes(data, source=str(p))

    @classmethod
    def from_toml_bytes(cls, data: Union[bytes, str], source: str = "<settings>") -> Settings:
        """Load settings from TOML text; raise ``ConfigError`` naming the source and the key's full path."""
        try:
            return msgspec.toml.decode(data, type=cls)
        except msgspec.ValidationError as exc:
            raw = msgspec.toml.decode(data)
            raise ConfigError(f"{source}: {explain(raw, cls, exc)}") from None
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build settings from plain Python values shaped like the TOML file."""
        try:
            return msgspec.convert(data, type=cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(explain(data, cls, exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for display and round trips."""
        return msgspec.to_builtins(self)

    # Resolved per-channel values

    def channel(self, name: str) -> ResolvedChannel:
        """The channel's settings with built-in defaults filled in."""
        base = _CHANNEL_DEFAULTS.get(name, _OTHER_CHANNEL)
        cs = self.channels.get(name) or ChannelSettings()
        window = cs.smart_sending_window if cs.smart_sending_window is not msgspec.UNSET else base["smart_sending_window"]
        quiet = cs.quiet_hours if cs.quiet_hours is not msgspec.UNSET else base["quiet_hours"]
        origins = cs.smart_sending_origins if cs.smart_sending_origins is not msgspec.UNSET else ["flow", "campaign"]
        ramp = cs.ramp if cs.ramp is not msgspec.UNSET else 600.0
        segments = cs.max_segments if cs.max_segments is not msgspec.UNSET else base.get("max_segments")
        body = cs.max_body_bytes if cs.max_body_bytes is not msgspec.UNSET else base["max_body_bytes"]
        return ResolvedChannel(
            name=name,
            smart_sending_window=float(window),
            smart_sending_origins=frozenset(origins),
            quiet_hours=quiet if isinstance(quiet, QuietWindow) else None,
            ramp=float(ramp),
            provider=cs.provider,
            max_segments=segments,
            max_body_bytes=int(body),
        )

    @property
    def channel_names(self) -> list[str]:
        """Channels known from the built-in defaults and the settings."""
        return sorted(set(_CHANNEL_DEFAULTS) | set(self.channels))


class ResolvedChannel(msgspec.Struct, kw_only=True, frozen=True):
    """A channel's effective settings (defaults applied)."""

    name: str
    smart_sending_window: float
    smart_sending_origins: frozenset[str]
    quiet_hours: Union[QuietWindow, None]
    ramp: float
    provider: Union[str, None]
    max_segments: Union[int, None] = None
    max_body_bytes: int = 1024 * 1024


def explain(raw: Any, tp: Any, exc: Exception) -> str:
    """The first problem of ``raw`` against type ``tp``, as "path.to.key: what is wrong".

    msgspec reports a table's key as ``$.channels[...]``; this walks the data
    again to name it (``channels.sms.smart_sending_windw``) and, for an
    unknown key, suggests the closest known one.
    """
    found = _locate(raw, tp, "")
    if found is None:
        return str(exc)
    path, message = found
    return f"{path}: {message}" if path else message


def _struct_fields(tp: Any) -> Union[dict[str, Any], None]:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return typing.get_type_hints(tp)
    return None


def _locate(value: Any, tp: Any, path: str) -> Union[tuple[str, str], None]:
    try:
        msgspec.convert(value, type=tp)
        return None
    except msgspec.ValidationError as exc:
        error = str(exc)
    fields = _struct_fields(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if fields is not None and isinstance(value, dict):
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                where = f"{path}.{key}" if path else str(key)
                return where, f"unknown key{hint}; known keys: {', '.join(fields)}"
        for key, sub in value.items():
            got = _locate(sub, fields[key], f"{path}.{key}" if path else key)
            if got is not None:
                return got
    elif origin is dict and isinstance(value, dict):
        for key, sub in value.items():
            got = _locate(sub, args[1], f"{path}.{key}" if path else str(key))
            if got is not None:
                return got
    elif origin is list and isinstance(value, list):
        for i, sub in enumerate(value):
            got = _locate(sub, args[0], f"{path}[{i}]")
            if got is not None:
                return got
    elif origin is Union:
        candidates = [a for a in args if _struct_fields(a) is not None or typing.get_origin(a) in (dict, list)]
        if len(candidates) == 1 and isinstance(value, (dict, list)):
            got = _locate(value, candidates[0], path)
            if got is not None:
                return got
    message = re.sub(r" - at `\$[^`]*`$", "", error)
    # A check in __post_init__ names its key ("routes.rate: ..."): attach it to the path found.
    m = re.match(r"^([\w.]+): (.*)$", message, re.S)
    if m and fields is not None and m.group(1).rsplit(".", 1)[-1] in fields:
        key = m.group(1).rsplit(".", 1)[-1]
        return (f"{path}.{key}" if path else key), m.group(2)
    return path, message
