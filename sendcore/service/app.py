"""The service: one engine on the real clock with its journal, the outcome log, tokens, metrics and the aiohttp app.

``Service`` owns the lifecycle (``start``, ``close``); ``build_app`` makes
the aiohttp application around a started service; ``serve`` runs both until
SIGTERM or SIGINT and stops gracefully: stop accepting connections, end the
outcome streams, let in-flight requests finish, close the engine (in-flight
provider calls finish or time out, the journal is fsynced), then return.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any, Iterable, Union

from aiohttp import web

from ..engine import Engine
from ..settings import Settings
from .api import add_routes, middlewares
from .logs import AccessLog
from .metrics import ServiceMetrics
from .outcome_log import OutcomeLog, OutcomeRecorder
from .tokens import TokenStore

__all__ = ["Service", "build_app", "serve"]

log = logging.getLogger("sendcore.service")


class Service:
    """One engine and what the HTTP API needs around it.

    ``plugins`` and ``load_entrypoints`` go to the ``Engine`` (tests pass the
    bundled sandbox explicitly). The engine always runs on the real clock.
    """

    def __init__(self, settings: Settings, *, plugins: Union[Iterable[Any], None] = None,
                 load_entrypoints: Union[bool, None] = None) -> None:
        self.settings = settings
        self.engine = Engine(settings, plugins=plugins, load_entrypoints=load_entrypoints)
        s = settings.service
        self.outcome_log = OutcomeLog(Path(s.state_dir), segment_bytes=s.outcome_segment_bytes,
                                      retention=float(s.outcome_retention))
        self.tokens = TokenStore(settings.service.tokens_file)
        self.metrics = ServiceMetrics(self)
        self.recorder: Union[OutcomeRecorder, None] = None
        self.stopping = asyncio.Event()
        self._ready = False
        self._stats: Any = None
        self._stats_until = 0.0

    #: A stats reading is reused for this many times what it cost, so status pages and scrapes take at
    #: most about 1/20 of the loop (the engine keeps its counts, so a reading is cheap and stays fresh).
    STATS_REUSE = 20.0

    def stats(self) -> Any:
        """``engine.stats()``, reused while younger than ``STATS_REUSE`` times its own cost (fresh when cheap)."""
        now = time.monotonic()
        if self._stats is None or now >= self._stats_until:
            self._stats = self.engine.stats()
            done = time.monotonic()
            self._stats_until = done + self.STATS_REUSE * (done - now)
        return self._stats

    async def start(self) -> None:
        """Open the outcome log, start the engine (journal recovery, providers), append what the log missed."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.outcome_log.open)
        self.recorder = OutcomeRecorder(self.engine, self.outcome_log)
        try:
            await self.engine.start()
        except BaseException:
            self.outcome_log.close()  # and its lock: a later start in this process may try again
            raise
        await self.recorder.reconcile()
        self.recorder.start()
        self.metrics.instrument(self.engine)
        self._ready = True
        j = self.engine.journal
        log.info("engine started: %d pending, outcome log at seq %d", self.engine.pending, self.outcome_log.last_seq,
                 extra={"pending": self.engine.pending, "outcome_seq": self.outcome_log.last_seq,
                        "journal": j.path if j is not None else None})

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): the journal recovered, providers started, not stopping, the engine healthy."""
        if not self._ready:
            return False, "starting"
        if self.stopping.is_set():
            return False, "stopping"
        engine = self.engine
        if engine.failure is not None:
            return False, f"the engine failed: {engine.failure!r}"
        j = engine.journal
        if j is not None and j.degraded:
            return False, f"journal degraded: {j.degraded}"
        return True, "ok"

    def status(self) -> dict[str, Any]:
        """What ``GET /v1/status`` answers (and the status page shows)."""
        engine = self.engine
        s = self.stats()
        now = engine.clock.now()
        routes = []
        for route in list(engine.core.dispatch.routes.values()):
            interval = route.gcra.interval
            routes.append({"route": route.name, "queued": route.size, "rate": 1.0 / interval if interval else 0.0,
                           "blocked": route.blocked_until > now, "sent_units": route.sent_units})
        routes.sort(key=lambda r: (-r["queued"], r["route"]))
        rec = self.recorder
        latest = [{"send_id": o.send_id, "status": o.status.value, "reason": o.reason.value, "at": o.at,
                   "channel": o.channel, "provider": o.provider} for o in reversed(rec.latest)] if rec else []
        return {
            "now": now,
            "pending": {"total": s.pending, "scheduled": s.scheduled, "queued": s.queued, "in_flight": s.in_flight},
            "submitted": s.submitted,
            "final": s.final,
            "per_minute": rec.per_minute(now) if rec else {},
            "routes": routes[:50],
            "latest": latest,
            "outcome_seq": self.outcome_log.visible_seq,
        }

    async def close(self, grace: Union[float, None] = None) -> None:
        """Close the engine (in-flight calls finish or time out, journal fsynced), then the outcome log."""
        self.stopping.set()
        grace = float(self.settings.service.shutdown_grace) if grace is None else grace
        # A snapshot at a graceful stop: the next start replays nothing, so a stop, upgrade and start
        # works whatever the new version decides differently (a journal's tail replays only with the
        # version that wrote it).
        await self.engine.close(grace=grace, snapshot=self.settings.service.snapshot_on_stop)
        if self.recorder is not None:
            await self.recorder.wait_closed()
        self.outcome_log.close()
        self._ready = False


def build_app(service: Service) -> web.Application:
    """The aiohttp application of a service: routes, middlewares and body limits."""
    app = web.Application(client_max_size=service.settings.service.max_body_bytes,
                          middlewares=middlewares(service))
    add_routes(app, service)

    async def end_streams(app: web.Application) -> None:
        """At shutdown: end the following outcome streams."""
        service.stopping.set()  # following outcome streams end, so shutdown does not wait on them

    app.on_shutdown.append(end_streams)
    return app


def runner_kwargs(settings: Settings) -> dict[str, Any]:
    """The ``AppRunner`` options from ``[service]``: header limits, shutdown timeout, the masked access log."""
    s = settings.service
    return {"access_log_class": AccessLog, "max_line_size": s.max_line_size, "max_field_size": s.max_field_size,
            "shutdown_timeout": float(s.shutdown_grace)}


async def serve(settings: Settings, host: str, port: int, *, ready_file: Union[str, None] = None) -> int:
    """Run the service on ``host:port`` until SIGTERM or SIGINT; the exit status (0 after a clean stop)."""
    service = Service(settings)
    await service.start()
    runner = web.AppRunner(build_app(service), **runner_kwargs(settings))
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
    except BaseException:  # a busy port: close the engine (and its journal lock) before reporting it
        await runner.cleanup()
        await service.close()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    url = f"http://{host}:{bound}"
    log.info("listening on %s", url, extra={"url": url})
    if ready_file:
        Path(ready_file).write_text(url + "\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    got: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (got.append(s), stop.set()))
    await stop.wait()
    log.info("stopping on %s: no new connections, finishing requests and provider calls",
             signal.Signals(got[0]).name if got else "request")
    service.stopping.set()
    await runner.cleanup()  # stop listening, end streams, wait for in-flight requests
    await service.close()
    j = service.engine.journal
    log.info("stopped: %d pending kept in the journal, outcome log at seq %d", service.engine.pending,
             service.outcome_log.last_seq, extra={"journal_fsyncs": j.fsyncs if j is not None else None})
    return 0
