"""The sandbox network's knobs: the ``[providers.sandbox.options]`` table, typed and checked.

Every key has a default, so an empty table gives a plausible carrier network;
unknown keys are errors (a typo never silently does nothing), and every error
names the key, like the rest of sendcore's settings.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import msgspec

from sendcore.errors import ConfigError
from sendcore.settings import parse_duration

__all__ = ["SandboxOptions", "DEFAULT_KEY"]

#: The key of the per-carrier tables that applies to carriers not named in them.
DEFAULT_KEY = "default"

Duration = Union[float, str]


def _check_rate(value: float, field: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{field}: expected a fraction between 0 and 1, got {value!r}")


def _check_per_carrier(table: dict[str, float], field: str) -> None:
    for carrier, value in table.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{field}.{carrier}: expected a number >= 0, got {value!r}")


class SandboxOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How the simulated carrier network behaves. All draws derive from ``seed``.

    - ``seed``: the root of every random draw; same seed, same network.
    - ``latency_ms``: median latency of one provider call, per carrier
      (``{"default" = 120, "Telstra" = 250}``); a call's latency is lognormal
      around that median with shape ``latency_sigma``. A median of 0 means
      no sleep at all (use it for tests on the real clock).
    - ``capacity``: messages per second each carrier takes (``"default"``
      applies to others; 0 = unlimited). Sends over it in the current second
      get ``RateLimited(retry_after)`` up to the next second.
    - ``temporary_error_rate``: chance that one attempt of a send fails with
      carrier congestion (``TemporaryFailure``); drawn per (send id, attempt).
    - ``permanent_error_rate``: fraction of addresses that do not exist,
      drawn per address; with ``invalid_suffixes`` (addresses ending so are
      always invalid) they answer ``PermanentFailure(suppress="all")``.
    - ``stop_rate``: fraction of addresses that reply STOP to their first
      marketing SMS (flow or campaign), ``stop_delay`` after it was accepted.
    - ``delivery_reports``/``delivery_rate``/``delivery_delay``: whether
      accepted sends get a report, the fraction delivered, and the median
      delay of the report (lognormal, shape ``latency_sigma``).
    - ``report_tick``: reports and STOP replies due within one tick share one
      timer and arrive at its end (never early, at most a tick late); a
      coarser tick means fewer timers for long simulations.
    """

    seed: int = 0
    latency_ms: dict[str, float] = msgspec.field(default_factory=lambda: {DEFAULT_KEY: 120.0})
    latency_sigma: float = 0.4
    capacity: dict[str, float] = {}
    temporary_error_rate: float = 0.01
    permanent_error_rate: float = 0.001
    invalid_suffixes: list[str] = msgspec.field(default_factory=lambda: ["0000", "@invalid.test"])
    stop_rate: float = 0.005
    stop_delay: Duration = "15m"
    delivery_reports: bool = True
    delivery_rate: float = 0.97
    delivery_delay: Duration = "8s"
    report_tick: Duration = "1s"

    def __post_init__(self) -> None:
        _check_per_carrier(self.latency_ms, "latency_ms")
        _check_per_carrier(self.capacity, "capacity")
        if not 0.0 <= self.latency_sigma <= 3.0:
            raise ValueError(f"latency_sigma: expected a lognormal shape between 0 and 3, got {self.latency_sigma!r}")
        for name in ("temporary_error_rate", "permanent_error_rate", "stop_rate", "delivery_rate"):
            _check_rate(getattr(self, name), name)
        # Frozen struct: normalise the durations to seconds through the back door,
        # so the rest of the plugin only ever sees floats.
        msgspec.structs.force_setattr(self, "stop_delay", parse_duration(self.stop_delay, "stop_delay"))
        msgspec.structs.force_setattr(self, "delivery_delay", parse_duration(self.delivery_delay, "delivery_delay"))
        tick = parse_duration(self.report_tick, "report_tick")
        if tick <= 0:
            raise ValueError(f"report_tick: must be longer than 0s, got {self.report_tick!r}")
        msgspec.structs.force_setattr(self, "report_tick", tick)

    @classmethod
    def from_mapping(cls, data: Union[Mapping[str, Any], None], source: str = "providers.sandbox.options") -> SandboxOptions:
        """Build options from a plain table; raise ``ConfigError`` naming ``source`` and the key."""
        try:
            return msgspec.convert(dict(data or {}), type=cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def latency_median(self, carrier: str) -> float:
        """Median call latency on ``carrier``, in seconds."""
        table = self.latency_ms
        return float(table.get(carrier, table.get(DEFAULT_KEY, 0.0))) / 1000.0

    def capacity_of(self, carrier: str) -> float:
        """Messages per second ``carrier`` takes; 0 means unlimited."""
        table = self.capacity
        return float(table.get(carrier, table.get(DEFAULT_KEY, 0.0)))
