"""Prometheus metrics of one service: the engine's counts read at scrape time, latencies observed live.

Counts (pending by state, outcomes by status and reason, journal figures,
route backlogs) come from ``Engine.stats()``, ``Engine.journal`` and the
core's routes when ``/metrics`` is scraped, so they cost nothing between
scrapes (``Service.stats`` reuses a reading for 20 times what it cost, which
bounds scrapes to about 5% of the loop whatever they cost). Latencies are histograms fed as things
happen: provider calls and dispatch lateness by wrapping each provider's
``send`` (the engine exposes neither), HTTP requests by the middleware.
Each service has its own registry, so several may run in one process (tests).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["ServiceMetrics"]

log = logging.getLogger("sendcore.service")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0)


class _EngineCollector(Collector):
    """Reads the engine's figures at each scrape."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def collect(self) -> Iterator[Any]:
        """The engine's figures as metric families, read now."""
        engine = self._service.engine
        if not engine.started:  # not started yet: nothing to report
            return
        s = self._service.stats()
        pending = GaugeMetricFamily("sendcore_pending_sends", "Sends accepted and not final, by state",
                                    labels=["state"])
        for state in ("scheduled", "queued", "in_flight"):
            pending.add_metric([state], getattr(s, state))
        yield pending
        yield CounterMetricFamily("sendcore_submitted_sends", "Sends accepted since the journal began",
                                  value=s.submitted)
        yield CounterMetricFamily("sendcore_rejected_sends", "Submitted items rejected (a field at fault)",
                                  value=s.rejected)
        final = CounterMetricFamily("sendcore_outcomes", "Final outcomes by status", labels=["status"])
        for status, n in sorted(s.final.items()):
            final.add_metric([status], n)
        yield final
        reasons = CounterMetricFamily("sendcore_outcome_reasons", "Final outcomes other than sent, by reason",
                                      labels=["reason"])
        for reason, n in sorted(s.reasons.items()):
            reasons.add_metric([reason], n)
        yield reasons
        events = CounterMetricFamily("sendcore_events", "Events that are not final, by status", labels=["status"])
        for status, n in sorted(s.events.items()):
            events.add_metric([status], n)
        yield events
        yield CounterMetricFamily("sendcore_unknown_delivery_reports",
                                  "Delivery reports naming no message sent within retention",
                                  value=s.unknown_reports)
        yield CounterMetricFamily("sendcore_isolated_errors", "Exceptions isolated to one send or batch",
                                  value=s.errors)
        backlog = GaugeMetricFamily("sendcore_route_backlog", "Sends queued in a route", labels=["route"])
        rate = GaugeMetricFamily("sendcore_route_rate_limit", "A route's configured rate (units/s; 0 = unlimited)",
                                 labels=["route"])
        sent = CounterMetricFamily("sendcore_route_sent_units",
                                   "Units (messages, SMS segments) a route let out; rate() of it is the current rate",
                                   labels=["route"])
        blocked = GaugeMetricFamily("sendcore_route_blocked", "1 while a route is held (daily cap, provider pushback)",
                                    labels=["route"])
        now = engine.clock.now()
        for route in list(engine.core.dispatch.routes.values()):
            name = route.name
            backlog.add_metric([name], route.size)
            interval = route.gcra.interval
            rate.add_metric([name], 1.0 / interval if interval else 0.0)
            sent.add_metric([name], route.sent_units)
            blocked.add_metric([name], 1.0 if route.blocked_until > now else 0.0)
        yield backlog
        yield rate
        yield sent
        yield blocked
        j = engine.journal
        if j is not None:
            yield CounterMetricFamily("sendcore_journal_frames", "Frames the journal wrote", value=j.frames)
            yield CounterMetricFamily("sendcore_journal_bytes", "Bytes the journal wrote", value=j.bytes)
            yield CounterMetricFamily("sendcore_journal_fsyncs", "fsyncs of the journal", value=j.fsyncs)
            yield CounterMetricFamily("sendcore_journal_fsync_seconds",
                                      "Time spent in journal fsyncs; divided by fsyncs, the mean fsync latency",
                                      value=j.fsync_seconds)
            yield GaugeMetricFamily("sendcore_journal_degraded", "1 when the journal cannot write",
                                    value=1.0 if j.degraded else 0.0)
        yield GaugeMetricFamily("sendcore_outcome_log_seq", "Last seq of the outcome log",
                                value=self._service.outcome_log.last_seq)


class ServiceMetrics:
    """The registry of one service and the live metrics the service feeds."""

    def __init__(self, service: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("sendcore_http_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.rejected_requests = Counter("sendcore_http_rejected_requests",
                                         "HTTP requests refused (4xx/5xx problem answers), by problem type",
                                         ["problem"], registry=r)
        self.request_seconds = Histogram("sendcore_http_request_seconds", "HTTP request latency, by route",
                                         ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.accepted_sends = Counter("sendcore_http_accepted_sends", "Sends accepted through POST /v1/sends",
                                      registry=r)
        self.provider_seconds = Histogram("sendcore_provider_call_seconds", "Provider call latency, by provider",
                                          ["provider"], buckets=_LATENCY_BUCKETS, registry=r)
        self.lateness = Histogram("sendcore_dispatch_lateness_seconds",
                                  "How long after its send_at a send was handed to its provider (sends with a "
                                  "send_at only; includes waits that rules imposed)",
                                  ["provider"], buckets=_LATENESS_BUCKETS, registry=r)
        r.register(_EngineCollector(service))

    def instrument(self, engine: Any) -> list[str]:
        """Time every provider call by wrapping each provider's ``send``; the providers instrumented."""
        done = []
        clock = engine.clock
        for name, provider in engine.providers.items():
            original = provider.send
            calls = self.provider_seconds.labels(name)
            late = self.lateness.labels(name)

            async def send(batch: Any, _original: Any = original, _calls: Any = calls, _late: Any = late) -> Any:
                """The provider's own ``send``, timed."""
                now = clock.now()
                for s in batch.sends:
                    at = s.send_at
                    if type(at) is float and math.isfinite(at):
                        _late.observe(max(0.0, now - at))
                try:
                    return await _original(batch)
                finally:
                    _calls.observe(clock.now() - now)

            try:
                provider.send = send
            except AttributeError:  # a provider with __slots__: its calls go untimed
                log.info("metrics: provider %r cannot be instrumented (no instance attributes)", name)
                continue
            done.append(name)
        return done
