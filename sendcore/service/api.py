"""The HTTP API: routes, their handlers, and the middlewares (problems, tokens and scopes, rate limits, metrics).

Every route is registered in ``add_routes`` with a name; ``SCOPES`` says
which scope each name needs (``None``: open). Bodies are decoded and
encoded with msgspec; errors are RFC 9457 problems (``problems.py``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any, Awaitable, Callable, Union

import msgspec
from aiohttp import web

from ..errors import DeliveryReportError, InputError, JournalError, PendingLimitError
from ..routes import Gcra
from ..send import CancelReport, Send
from .outcome_log import CursorExpired
from .problems import ProblemError, problem_response

__all__ = ["ItemResult", "SCOPES", "SubmitAnswer", "TOKEN", "add_routes", "middlewares"]

#: Where the middleware keeps the verified token's record on the request (for the access log).
TOKEN: Any = web.RequestKey("sendcore.token", object) if hasattr(web, "RequestKey") else "sendcore.token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The scope each named route needs; None: open to anyone (subject to ``[service] open_*``).
SCOPES: dict[str, Union[str, None]] = {
    "submit_sends": "submit",
    "get_send": "read",
    "cancel_send": "submit",
    "cancellations": "submit",
    "put_suppression": "admin",
    "delete_suppression": "admin",
    "delivery_report": "submit",
    "outcomes": "read",
    "status": "read",
    "metrics": "read",
    "healthz": "read",
    "readyz": "read",
    "openapi": None,
    "status_page": None,
}


class ItemResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What happened to one submitted item: ``accepted``, ``duplicate`` (id already known) or ``rejected``."""

    index: int
    id: Union[str, None]
    status: str
    reason: str = ""


class SubmitAnswer(msgspec.Struct, kw_only=True):
    """The answer to ``POST /v1/sends``: counts and one ``ItemResult`` per item, in order.

    It is sent only once the accepted items are durable in the journal.
    """

    accepted: int
    duplicates: int
    rejected: int
    items: list[ItemResult]


class CancelBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/cancellations``: ids, and/or every pending send of a recipient or an origin id."""

    ids: Union[list[str], None] = None
    recipient: Union[str, None] = None
    origin_id: Union[str, None] = None


class SuppressionBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /v1/suppressions/{channel}/{address}``: the scope, ``marketing`` (default) or ``all``."""

    scope: str = "marketing"


_encode = msgspec.json.Encoder().encode
_decode_sends = msgspec.json.Decoder(list[Send]).decode
_decode_send = msgspec.json.Decoder(Send).decode
_decode_raws = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_any = msgspec.json.Decoder().decode
_decode_cancel = msgspec.json.Decoder(CancelBody).decode
_decode_suppression = msgspec.json.Decoder(SuppressionBody).decode
_MSGSPEC_PATH = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]*$")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(data), status=status, content_type="application/json")


def field_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(field, "field: what is wrong") from a msgspec validation error (``Expected `str`, got `int` - at `$.to```)."""
    m = _MSGSPEC_PATH.match(str(exc))
    assert m is not None
    message, path = m.group(1), (m.group(2) or "").lstrip(".")
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    missing = re.match(r"Object missing required field `(.+)`", message)
    if unknown:
        field = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return field, f"{field}: unknown field"
    if missing:
        field = f"{path}.{missing.group(1)}" if path else missing.group(1)
        return field, f"{field}: required field missing"
    field = path or "body"
    text = message[0].lower() + message[1:] if message else "invalid"
    return field, f"{field}: {text.replace('`', '')}"


def _id_of(raw: bytes) -> Union[str, None]:
    try:
        obj = _decode_any(raw)
    except msgspec.DecodeError:
        return None
    sid = obj.get("id") if isinstance(obj, dict) else None
    return sid if isinstance(sid, str) else None


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class _Api:
    """The handlers, bound to one service."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.settings = service.settings.service

    # ---------------------------------------------------------------- sends

    async def _body(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ProblemError("body-too-large", f"the body is over the limit of {self.settings.max_body_bytes:,} "
                                                 "bytes ([service] max_body_bytes)") from None

    def _items(self, request: web.Request, body: bytes) -> tuple[list[Any], int]:
        """The items of a submit body: (Sends, plain JSON values the engine's intake will check and name, or
        (raw, reason) pairs for lines that are not JSON; count)."""
        ctype = request.content_type
        if ctype in ("application/x-ndjson", "application/jsonl", "application/ndjson"):
            raws: list[bytes] = [line for line in body.split(b"\n") if line.strip()]
            ndjson = True
        elif ctype in ("application/json", "application/octet-stream", "") or ctype.endswith("+json"):
            ndjson = False
            try:
                return _decode_sends(body), -1
            except msgspec.ValidationError:
                pass
            except msgspec.DecodeError as exc:
                raise ProblemError("malformed-body", f"body: not valid JSON ({exc})", field="body") from None
            try:
                raws = _decode_raws(body)
            except msgspec.ValidationError:
                raise ProblemError("invalid-request", "body: expected a JSON array of sends (or NDJSON with "
                                                      "Content-Type: application/x-ndjson)", field="body") from None
        else:
            raise ProblemError("unsupported-media-type", f"Content-Type {ctype!r}: send application/json (an array "
                                                         "of sends) or application/x-ndjson (one send a line)")
        out: list[Any] = []
        for raw in raws:
            try:
                out.append(_decode_send(raw))
            except msgspec.ValidationError:
                # The engine's own intake checks it and names the field, as for any dict submitted.
                out.append(_decode_any(raw))
            except msgspec.DecodeError as exc:
                out.append((raw, f"body: line is not valid JSON ({exc})" if ndjson else f"body: {exc}"))
        return out, len(out)

    async def submit_sends(self, request: web.Request) -> web.Response:
        """POST /v1/sends: a JSON array or NDJSON of sends; answers per item once the accepted are durable."""
        body = await self._body(request)
        items, _ = self._items(request, body)
        limit = self.settings.max_items
        if len(items) > limit:
            raise ProblemError("body-too-large", f"body: {len(items):,} items, over the limit of {limit:,} "
                                                 "([service] max_items); split the batch")
        results: list[Union[ItemResult, None]] = [None] * len(items)
        sends: list[Any] = []  # Sends, and the values that did not decode as one (intake names why)
        where: list[int] = []
        for i, item in enumerate(items):
            if type(item) is tuple:  # a line that is not JSON at all
                raw, reason = item
                results[i] = ItemResult(index=i, id=_id_of(raw), status="rejected", reason=reason)
            else:
                sends.append(item)
                where.append(i)
        engine = self.service.engine
        try:
            report = await engine.submit(sends) if sends else None
        except PendingLimitError as exc:
            raise ProblemError("max-pending", f"max_pending: {exc.pending:,} sends pending, {exc.requested:,} more "
                                              f"would pass the limit of {exc.limit:,}; nothing of this request was "
                                              "accepted, retry it later",
                               headers=_retry_after(float(self.settings.retry_after))) from None
        except JournalError as exc:
            raise ProblemError("not-ready", f"journal: {exc}; nothing of this request was accepted",
                               headers=_retry_after(float(self.settings.retry_after))) from None
        except RuntimeError as exc:
            raise ProblemError("not-ready", f"the engine is not accepting sends ({exc})",
                               headers=_retry_after(float(self.settings.retry_after))) from None
        duplicates = 0
        if report is not None:
            by_id: Union[dict[str, int], None] = None
            for rj in report.rejected:
                index = rj.index
                if 0 <= index < len(where):
                    i = where[index]
                else:  # rejected at accept time (index -1): find it by id
                    if by_id is None:
                        by_id = {s.id: where[k] for k, s in enumerate(sends) if type(s) is Send}
                    i = by_id.get(rj.id or "", -1)
                    if i < 0:
                        continue
                duplicate = rj.reason.startswith("id: duplicate")
                duplicates += duplicate
                results[i] = ItemResult(index=i, id=rj.id, status="duplicate" if duplicate else "rejected",
                                        reason=rj.reason)
        accepted = 0
        for k, i in enumerate(where):
            if results[i] is None:
                results[i] = ItemResult(index=i, id=sends[k].id, status="accepted")
                accepted += 1
        self.service.metrics.accepted_sends.inc(accepted)
        answer = SubmitAnswer(accepted=accepted, duplicates=duplicates,
                              rejected=len(items) - accepted - duplicates, items=results)  # type: ignore[arg-type]
        return _json(answer)

    async def get_send(self, request: web.Request) -> web.Response:
        """GET /v1/sends/{id}: where the send waits and why, or how it ended."""
        sid = request.match_info["id"]
        explanation = self.service.engine.explain(sid)
        if explanation is None:
            raise ProblemError("not-found", f"id: no send {sid!r} is pending or finished within retention", field="id")
        return _json(explanation)

    async def cancel_send(self, request: web.Request) -> web.Response:
        """DELETE /v1/sends/{id}: cancel one pending send."""
        sid = request.match_info["id"]
        report = await self._cancel(ids=[sid])
        if report.unknown:
            raise ProblemError("not-found", f"id: no pending send {sid!r}", field="id")
        if report.too_late:
            done = self.service.engine.outcome(sid)
            if done is not None and done.status.value == "cancelled":
                return _json(CancelReport(cancelled=[sid], too_late=[], unknown=[]))  # cancelled before: idempotent
            state = f"ended {done.status.value}" if done is not None else "was already handed to its provider"
            raise ProblemError("too-late", f"id: send {sid!r} {state}", field="id")
        return _json(report)

    async def _cancel(self, **kw: Any) -> Any:
        try:
            return await self.service.engine.cancel(**kw)
        except RuntimeError as exc:
            raise ProblemError("not-ready", f"the engine is not running ({exc})") from None

    async def cancellations(self, request: web.Request) -> web.Response:
        """POST /v1/cancellations: cancel by ids, recipient and/or origin id."""
        body = await self._body(request)
        try:
            spec = _decode_cancel(body)
        except msgspec.ValidationError as exc:
            field, reason = field_error(exc)
            raise ProblemError("invalid-request", reason, field=field) from None
        except msgspec.DecodeError as exc:
            raise ProblemError("malformed-body", f"body: not valid JSON ({exc})", field="body") from None
        if spec.ids is None and spec.recipient is None and spec.origin_id is None:
            raise ProblemError("invalid-request", "body: give ids, recipient or origin_id", field="body")
        if spec.ids is not None and len(spec.ids) > self.settings.max_items:
            raise ProblemError("body-too-large", f"ids: over the limit of {self.settings.max_items:,} ids")
        return _json(await self._cancel(ids=spec.ids, recipient=spec.recipient, origin_id=spec.origin_id))

    # ---------------------------------------------------------------- suppressions

    def _address(self, request: web.Request) -> tuple[str, str]:
        channel, address = request.match_info["channel"], request.match_info["address"]
        if not _CHANNEL.match(channel):
            raise ProblemError("invalid-request", f"channel: expected a lowercase channel name, got {channel!r}",
                               field="channel")
        if not address.strip():
            raise ProblemError("invalid-request", "address: empty", field="address")
        return channel, address

    async def put_suppression(self, request: web.Request) -> web.Response:
        """PUT /v1/suppressions/{channel}/{address}: suppress an address (scope marketing or all)."""
        channel, address = self._address(request)
        body = await self._body(request)
        scope = request.query.get("scope", "marketing")
        if body.strip():
            try:
                scope = _decode_suppression(body).scope
            except msgspec.ValidationError as exc:
                field, reason = field_error(exc)
                raise ProblemError("invalid-request", reason, field=field) from None
            except msgspec.DecodeError as exc:
                raise ProblemError("malformed-body", f"body: not valid JSON ({exc})", field="body") from None
        try:
            self.service.engine.suppress(channel, address, scope)
        except ValueError as exc:
            raise ProblemError("invalid-request", str(exc), field="scope") from None
        return _json({"channel": channel, "address": address, "scope": scope})

    async def delete_suppression(self, request: web.Request) -> web.Response:
        """DELETE /v1/suppressions/{channel}/{address}: lift a suppression."""
        channel, address = self._address(request)
        self.service.engine.unsuppress(channel, address)
        return web.Response(status=204)

    # ---------------------------------------------------------------- delivery reports

    def public_url(self, request: web.Request) -> str:
        """The URL the caller used: ``[service] public_url`` + path and query, else the request's own URL."""
        base = self.settings.public_url
        return base + request.path_qs if base else str(request.url)

    async def delivery_report(self, request: web.Request) -> web.Response:
        """POST /v1/delivery-reports/{provider}: hand a provider's callback to its parse_delivery_report."""
        provider = request.match_info["provider"]
        engine = self.service.engine
        if provider not in engine.providers:
            raise ProblemError("not-found", f"provider: no provider is named {provider!r}", field="provider")
        body = await self._body(request)
        url, headers = self.public_url(request), request.headers
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            payloads: list[Any] = [await request.post()]
        else:
            try:
                decoded = _decode_any(body)
            except msgspec.DecodeError:
                payloads = [body]
            else:
                # Decoded fields first; the raw body for providers that check a signature over it (http).
                payloads = [decoded, body]
        problem = ""
        for payload in payloads:
            try:
                event = await engine.report_delivery(provider, payload, url=url, headers=headers)
                break
            except DeliveryReportError as exc:
                problem = problem or str(exc)
        else:
            raise ProblemError("delivery-report-rejected", problem)
        return _json({"event": event})

    # ---------------------------------------------------------------- outcomes

    async def outcomes(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/outcomes?after=CURSOR: NDJSON of outcomes with seq above the cursor."""
        q = request.query
        after = _int_param(q, "after", 0)
        limit = _int_param(q, "limit", None)
        follow = _bool_param(q, "follow", False)
        if after < 0:
            raise ProblemError("invalid-request", "after: must be >= 0", field="after")
        if limit is not None and limit < 1:
            raise ProblemError("invalid-request", "limit: must be >= 1", field="limit")
        olog = self.service.outcome_log
        oldest = olog.oldest_seq
        if after + 1 < oldest:
            raise ProblemError("cursor-expired", f"after: outcomes up to seq {oldest - 1} are no longer kept "
                                                 f"([service] outcome_retention); resume from after={oldest - 1} "
                                                 "(what lies between is lost to this consumer)", field="after")
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                           "X-Outcome-Seq": str(olog.visible_seq)})
        await resp.prepare(request)
        try:
            async for chunk in olog.follow(after, limit=limit, wait=follow, stop=self.service.stopping):
                await resp.write(chunk)
        except CursorExpired:
            pass  # retention overtook a reader this slow: the stream ends; its next request says so
        await resp.write_eof()
        return resp

    # ---------------------------------------------------------------- status, metrics, health

    async def status(self, request: web.Request) -> web.Response:
        """GET /v1/status: what the status page shows."""
        return _json(self.service.status())

    async def metrics(self, request: web.Request) -> web.Response:
        """GET /metrics: Prometheus text exposition."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.service.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        """GET /healthz: the process answers."""
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """GET /readyz: the journal is recovered and the providers started, and the service is not stopping."""
        ready, why = self.service.readiness()
        return _json({"ready": ready, "detail": why}, status=200 if ready else 503)

    async def openapi(self, request: web.Request) -> web.Response:
        """GET /openapi.json: the OpenAPI 3.1 document of this API."""
        from .openapi import document

        return web.Response(body=_encode(document()), content_type="application/json")

    async def status_page(self, request: web.Request) -> web.Response:
        """GET /: the status page (plain HTML and a small script reading /v1/status)."""
        from .status_page import PAGE

        return web.Response(text=PAGE, content_type="text/html",
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _int_param(q: Any, name: str, default: Any) -> Any:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ProblemError("invalid-request", f"{name}: expected an integer, got {raw!r}", field=name) from None


def _bool_param(q: Any, name: str, default: bool) -> bool:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ProblemError("invalid-request", f"{name}: expected true or false, got {raw!r}", field=name)


def add_routes(app: web.Application, service: Any) -> None:
    """Register every route of the API on ``app``, each with the name ``SCOPES`` knows it by."""
    api = _Api(service)
    r = app.router
    r.add_post("/v1/sends", api.submit_sends, name="submit_sends")
    r.add_get("/v1/sends/{id}", api.get_send, name="get_send", allow_head=False)
    r.add_delete("/v1/sends/{id}", api.cancel_send, name="cancel_send")
    r.add_post("/v1/cancellations", api.cancellations, name="cancellations")
    r.add_put("/v1/suppressions/{channel}/{address}", api.put_suppression, name="put_suppression")
    r.add_delete("/v1/suppressions/{channel}/{address}", api.delete_suppression, name="delete_suppression")
    r.add_post("/v1/delivery-reports/{provider}", api.delivery_report, name="delivery_report")
    r.add_get("/v1/outcomes", api.outcomes, name="outcomes", allow_head=False)
    r.add_get("/v1/status", api.status, name="status", allow_head=False)
    r.add_get("/metrics", api.metrics, name="metrics", allow_head=False)
    r.add_get("/healthz", api.healthz, name="healthz", allow_head=False)
    r.add_get("/readyz", api.readyz, name="readyz", allow_head=False)
    r.add_get("/openapi.json", api.openapi, name="openapi", allow_head=False)
    r.add_get("/", api.status_page, name="status_page", allow_head=False)


# -------------------------------------------------------------------- middlewares


def middlewares(service: Any) -> list[Any]:
    """The middlewares, outermost first: problems and metrics, then tokens, scopes and rate limits."""
    settings = service.settings.service
    metrics = service.metrics
    buckets: dict[str, Gcra] = {}

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error as a problem response; count and time every request."""
        started = time.perf_counter()
        route = request.match_info.route.name or "unrouted"
        try:
            response = await handler(request)
        except ProblemError as exc:
            response = exc.response()
            metrics.rejected_requests.labels(exc.kind).inc()
        except web.HTTPRequestEntityTooLarge:
            response = problem_response("body-too-large", f"the body is over the limit of {settings.max_body_bytes:,} "
                                                          "bytes ([service] max_body_bytes)")
            metrics.rejected_requests.labels("body-too-large").inc()
        except web.HTTPException as exc:
            kind = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(exc.status,
                                                                                           "invalid-request")
            detail = f"{request.method} {request.path}: " + (
                "no such route" if exc.status == 404 else "method not allowed" if exc.status == 405 else exc.reason)
            response = problem_response(kind, detail)
            if exc.status == 405:
                response.headers["Allow"] = exc.headers.get("Allow", "")
            metrics.rejected_requests.labels(kind).inc()
        except (InputError, ValueError) as exc:
            response = problem_response("invalid-request", str(exc))
            metrics.rejected_requests.labels("invalid-request").inc()
        except asyncio.CancelledError:
            raise
        except Exception:
            import logging

            logging.getLogger("sendcore.service").exception("internal error on %s", route)
            response = problem_response("internal", "an internal error; the service logged it")
            metrics.rejected_requests.labels("internal").inc()
        metrics.requests.labels(route, str(response.status)).inc()
        metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
        return response

    opens = {"metrics": settings.open_metrics, "healthz": settings.open_health, "readyz": settings.open_health}

    @web.middleware
    async def tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
        """The bearer token, its scope and its request rate, for every route that needs a scope."""
        name = request.match_info.route.name
        scope = SCOPES.get(name or "", None) if name else None
        if scope is None or not settings.require_tokens or opens.get(name or "", False):
            return await handler(request)
        if name == "delivery_report" and request.match_info.get("provider") in settings.open_delivery_reports:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ProblemError("unauthorized", "Authorization: expected 'Bearer <token>'",
                               headers={"WWW-Authenticate": 'Bearer realm="sendcore"'})
        record = service.tokens.verify(token.strip())
        if record is None:
            raise ProblemError("unauthorized", "Authorization: the token is unknown or revoked",
                               headers={"WWW-Authenticate": 'Bearer realm="sendcore", error="invalid_token"'})
        request[TOKEN] = record
        if scope not in record.scopes and "admin" not in record.scopes:
            raise ProblemError("forbidden", f"token {record.name!r} has scopes {', '.join(record.scopes)}; "
                                            f"{request.method} {request.match_info.route.resource.canonical} "
                                            f"needs {scope!r}")
        if settings.token_rate > 0:
            bucket = buckets.get(record.id)
            if bucket is None:
                bucket = buckets[record.id] = Gcra(settings.token_rate, settings.token_burst)
            now = time.monotonic()
            if bucket.available(now) < 1:
                wait = bucket.ready_at(1) - now
                raise ProblemError("rate-limited", f"token {record.name!r}: over {settings.token_rate:g} requests/s "
                                                   f"(burst {settings.token_burst}); retry in {max(wait, 0):.2f}s",
                                   headers=_retry_after(wait))
            bucket.take(now, 1)
        return await handler(request)

    return [problems, tokens]
