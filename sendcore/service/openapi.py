"""The OpenAPI 3.1 document of the service, served at ``GET /openapi.json``.

Written out path by path (not generated from the router), so the test that
compares it with the aiohttp routes checks two independent lists. The schemas
of the bodies come from the msgspec Structs the handlers decode and encode.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from ..send import CancelReport, Explanation, Outcome, Send
from .api import CancelBody, SubmitAnswer, SuppressionBody
from .problems import PROBLEM_TYPES, Problem

__all__ = ["document"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Any]:
    kinds = {s: [k for k, (st, _) in PROBLEM_TYPES.items() if st == s] for s in statuses}
    return {str(s): {"description": "Problem: " + ", ".join(kinds[s]),
                     "content": {"application/problem+json": {"schema": _ref("Problem")}}} for s in statuses}


_AUTH = [{"bearer": []}]


def _op(summary: str, scope: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if scope:
        op["security"] = _AUTH
        op["x-scope"] = scope  # the token scope it needs ([service] open_* may open it)
        op["responses"] = {**responses, **_problems(401, 403, 429)}
    return op


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


@functools.lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once)."""
    _, components = msgspec.json.schema_components(
        [Send, Outcome, Explanation, CancelReport, SubmitAnswer, Problem, CancelBody, SuppressionBody],
        ref_template="#/components/schemas/{name}")
    sends_body = {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": _ref("Send")}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one Send object a line"}}}}
    paths: dict[str, Any] = {
        "/v1/sends": {"post": _op(
            "Submit sends (JSON array or NDJSON); answered per item once the accepted ones are durable", "submit",
            {"200": _json(_ref("SubmitAnswer"), "Per-item answer: accepted, duplicate (id already known) or "
                                                "rejected with the field at fault"),
             **_problems(400, 413, 415, 503)},
            requestBody=sends_body)},
        "/v1/sends/{id}": {
            "parameters": [_path_param("id", "The send id")],
            "get": _op("Where a send waits and why, or how it ended", "read",
                       {"200": _json(_ref("Explanation"), "The explanation (with the outcome once final)"),
                        **_problems(404)}),
            "delete": _op("Cancel one pending send", "submit",
                          {"200": _json(_ref("CancelReport"), "Cancelled"), **_problems(404, 409, 503)}),
        },
        "/v1/cancellations": {"post": _op(
            "Cancel pending sends by ids, recipient and/or origin id", "submit",
            {"200": _json(_ref("CancelReport"), "What was cancelled, too late or unknown"),
             **_problems(400, 413, 503)},
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("CancelBody")}}})},
        "/v1/suppressions/{channel}/{address}": {
            "parameters": [_path_param("channel", "sms, email, push or another channel"),
                           _path_param("address", "The address (number, email, device token), URL-encoded")],
            "put": _op("Suppress an address on a channel", "admin",
                       {"200": _json({"type": "object"}, "Suppressed"), **_problems(400)},
                       requestBody={"required": False,
                                    "content": {"application/json": {"schema": _ref("SuppressionBody")}}}),
            "delete": _op("Lift a suppression", "admin", {"204": {"description": "Lifted (or there was none)"},
                                                          **_problems(400)}),
        },
        "/v1/delivery-reports/{provider}": {"post": _op(
            "A provider's delivery-report callback, handed to its parse_delivery_report (signatures checked there)",
            "submit",
            {"200": _json({"type": "object", "properties": {"event": {"oneOf": [_ref("Outcome"), {"type": "null"}]}}},
                          "The delivered/undelivered event added, or null"),
             **_problems(404, 422)},
            parameters=[_path_param("provider", "The provider name (twilio, http, sandbox...)")],
            requestBody={"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}}}})},
        "/v1/outcomes": {"get": _op(
            "NDJSON stream of outcomes after a durable cursor (each line an Outcome with its seq)", "read",
            {"200": {"description": "One JSON object a line: seq and the Outcome's fields",
                     "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
             **_problems(400, 410)},
            parameters=[
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0},
                 "description": "Cursor: the last seq already processed"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1},
                 "description": "End the stream after this many outcomes"},
                {"name": "follow", "in": "query", "schema": {"type": "boolean", "default": False},
                 "description": "Keep the stream open and send new outcomes as they are durable"}])},
        "/v1/status": {"get": _op("Counts for the status page", "read",
                                  {"200": _json({"type": "object"}, "Pending by state, per-minute sends, routes, "
                                                                    "latest outcomes")})},
        "/metrics": {"get": _op("Prometheus metrics (text exposition format)", "read",
                                {"200": {"description": "Metrics", "content": {"text/plain": {"schema":
                                                                                              {"type": "string"}}}}})},
        "/healthz": {"get": _op("Liveness", "read", {"200": _json({"type": "object"}, "Alive")})},
        "/readyz": {"get": _op("Readiness: journal recovered, providers started, not stopping", "read",
                               {"200": _json({"type": "object"}, "Ready"),
                                "503": _json({"type": "object"}, "Not ready, with the reason")})},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": _json({"type": "object"}, "OpenAPI 3.1")}}},
        "/": {"get": {"summary": "The status page (HTML; reads /v1/status with the token given in #token=...)",
                      "responses": {"200": {"description": "HTML",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "sendcore service", "version": "1",
                 "description": "Scheduling and send-rate engine over HTTP. Errors are RFC 9457 problem details."},
        "servers": [{"url": "http://127.0.0.1:8787"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from `sendcore token create`"}},
        },
    }
