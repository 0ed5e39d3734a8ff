"""The service's HTTP API, endpoint by endpoint, with good and bad input (in-process server on 127.0.0.1).

The engine runs on the real clock with a journal in the test's directory and
the bundled sandbox answering at once; requests go over loopback TCP. Each
test runs under asyncio's loop and uvloop (the ``run`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import msgspec
import sendcore_sandbox
import sendcore_twilio
from sendcore_twilio.signature import compute_signature

from sendcore import Send
from sendcore.service.logs import JsonFormatter, mask_path
from sendcore.service.tokens import TokenStore
from tests.service_helpers import auth, email, make_tokens, served, settings

PROBLEM = "application/problem+json"


async def _problem(resp, status, kind, field=None):
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    p = await resp.json(content_type=None)
    assert p["type"].endswith("/" + kind) and p["status"] == status and p["title"] and p["detail"], p
    if field is not None:
        assert p.get("field") == field, p
    return p


async def _until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- POST /v1/sends


def test_a_mixed_batch_accepts_the_good_items_and_names_the_field_of_each_bad_one(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            later = time.time() + 3600
            batch = [
                email(0, send_at=later),
                {**email(1), "to": 5},                                       # wrong type
                {k: v for k, v in email(2).items() if k != "channel"},       # missing field
                {**email(3), "colour": "red"},                               # unknown field
                email(0, send_at=later),                                     # duplicate id in the batch
                {**email(5), "channel": "sms", "to": "+331"},                # not a phone number
                email(6, send_at=later),
                {**email(7), "origin": "spam"},                              # not an origin
            ]
            resp = await client.post("/v1/sends", json=batch, headers=auth(tokens["submit"]))
            assert resp.status == 200
            answer = await resp.json()
            items = answer["items"]
            assert [i["index"] for i in items] == list(range(8))
            assert [i["status"] for i in items] == ["accepted", "rejected", "rejected", "rejected", "duplicate",
                                                   "rejected", "accepted", "rejected"]
            assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 1, 5)
            reasons = [i.get("reason", "") for i in items]
            assert reasons[1].startswith("to: expected str, got int")
            assert reasons[2] == "channel: required, missing"
            assert reasons[3].startswith("colour: unknown key; a send's keys are id, recipient, channel")
            assert reasons[4].startswith("id: duplicate")
            assert reasons[5].startswith("to:")
            assert reasons[7].startswith("origin:")
            assert [i["id"] for i in items] == ["e0", "e1", "e2", "e3", "e0", "e5", "e6", "e7"]
            # The accepted are in the engine, the rejected are not.
            assert service.engine.explain("e0").state == "scheduled"
            assert service.engine.explain("e6").state == "scheduled"
            assert service.engine.explain("e1") is None and service.engine.pending == 2

    run(main())


def test_ndjson_sends_with_a_malformed_line_keep_the_good_lines(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            later = time.time() + 3600
            body = b"\n".join([msgspec.json.encode(email(0, send_at=later)), b'{"id": "x1", "recipient":',
                               b"", msgspec.json.encode(email(2, send_at=later))]) + b"\n"
            resp = await client.post("/v1/sends", data=body, headers={**auth(tokens["submit"]),
                                                                     "Content-Type": "application/x-ndjson"})
            answer = await resp.json()
            assert [i["status"] for i in answer["items"]] == ["accepted", "rejected", "accepted"]
            assert answer["items"][1]["reason"].startswith("body: line is not valid JSON")
            assert service.engine.pending == 2

    run(main())


def test_a_body_that_is_not_a_json_array_of_sends_is_a_problem(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = {**auth(tokens["submit"]), "Content-Type": "application/json"}
            await _problem(await client.post("/v1/sends", data=b"[{", headers=h), 400, "malformed-body", "body")
            await _problem(await client.post("/v1/sends", data=b'{"id": "a"}', headers=h), 400, "invalid-request",
                           "body")
            await _problem(await client.post("/v1/sends", data=b"<xml/>", headers={
                **auth(tokens["submit"]), "Content-Type": "text/xml"}), 415, "unsupported-media-type")
            assert service.engine.stats().submitted == 0

    run(main())


def test_over_the_body_or_item_limit_is_413_and_nothing_is_accepted(tmp_path, run):
    s = settings(tmp_path, "max_body_bytes = 4096\nmax_items = 3")
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            big = [email(i, body="x" * 100) for i in range(40)]
            p = await _problem(await client.post("/v1/sends", json=big, headers=auth(tokens["submit"])),
                               413, "body-too-large")
            assert "max_body_bytes" in p["detail"]
            p = await _problem(await client.post("/v1/sends", json=[email(i) for i in range(4)],
                                                 headers=auth(tokens["submit"])), 413, "body-too-large")
            assert "max_items" in p["detail"]
            assert service.engine.stats().submitted == 0
            resp = await client.post("/v1/sends", json=[email(i) for i in range(3)], headers=auth(tokens["submit"]))
            assert (await resp.json())["accepted"] == 3

    run(main())


def test_max_pending_answers_429_with_retry_after_and_accepts_nothing(tmp_path, run):
    s = settings(tmp_path, 'retry_after = "3s"', extra="max_pending = 5")
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            later = time.time() + 3600
            h = auth(tokens["submit"])
            resp = await client.post("/v1/sends", json=[email(i, send_at=later) for i in range(4)], headers=h)
            assert (await resp.json())["accepted"] == 4
            resp = await client.post("/v1/sends", json=[email(i, prefix="f", send_at=later) for i in range(2)],
                                     headers=h)
            p = await _problem(resp, 429, "max-pending")
            assert resp.headers["Retry-After"] == "3" and "max_pending" in p["detail"]
            assert service.engine.pending == 4 and service.engine.explain("f0") is None

    run(main())


# --------------------------------------------------------------------------- tokens and scopes


def test_tokens_missing_wrong_revoked_or_without_the_scope_are_refused(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            body = [email(0)]
            resp = await client.post("/v1/sends", json=body)
            await _problem(resp, 401, "unauthorized")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            await _problem(await client.post("/v1/sends", json=body, headers={"Authorization": "Basic abc"}),
                           401, "unauthorized")
            wrong = tokens["submit"][:-4] + "AAAA"
            await _problem(await client.post("/v1/sends", json=body, headers=auth(wrong)), 401, "unauthorized")
            p = await _problem(await client.post("/v1/sends", json=body, headers=auth(tokens["read"])),
                               403, "forbidden")
            assert "'submit'" in p["detail"]
            await _problem(await client.get("/v1/status", headers=auth(tokens["submit"])), 403, "forbidden")
            await _problem(await client.put("/v1/suppressions/sms/+33612345678", headers=auth(tokens["read"])),
                           403, "forbidden")
            assert (await client.get("/v1/status", headers=auth(tokens["admin"]))).status == 200  # admin has all
            assert service.engine.stats().submitted == 0
            # Revoked in the file (as `sendcore token revoke` does): refused within a second, no restart.
            assert TokenStore(s.service.tokens_file).revoke("read")
            service.tokens._checked = 0.0
            await _problem(await client.get("/v1/status", headers=auth(tokens["read"])), 401, "unauthorized")

    run(main())


def test_a_token_over_its_request_rate_gets_429_with_retry_after(tmp_path, run):
    s = settings(tmp_path, "token_rate = 1\ntoken_burst = 3")
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            codes = [(await client.get("/v1/status", headers=auth(tokens["read"]))).status for _ in range(3)]
            assert codes == [200, 200, 200]
            resp = await client.get("/v1/status", headers=auth(tokens["read"]))
            await _problem(resp, 429, "rate-limited")
            assert int(resp.headers["Retry-After"]) >= 1
            # Another token has its own budget.
            assert (await client.get("/v1/status", headers=auth(tokens["all"]))).status == 200

    run(main())


def test_metrics_and_health_can_be_open_and_are_closed_otherwise(tmp_path, run):
    closed = settings(tmp_path / "a", "open_health = false")
    opened = settings(tmp_path / "b", "open_metrics = true")
    make_tokens(closed)
    make_tokens(opened)

    async def main():
        async with served(closed) as (service, client):
            for path in ("/metrics", "/healthz", "/readyz"):
                await _problem(await client.get(path), 401, "unauthorized")
            assert (await client.get("/openapi.json")).status == 200 and (await client.get("/")).status == 200
        async with served(opened) as (service, client):
            for path in ("/metrics", "/healthz", "/readyz"):
                assert (await client.get(path)).status == 200, path
            await _problem(await client.get("/v1/status"), 401, "unauthorized")

    run(main())


# --------------------------------------------------------------------------- sends, cancels, suppressions


def test_get_and_delete_one_send(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            later = time.time() + 3600
            await client.post("/v1/sends", json=[email(0, send_at=later), email(1)], headers=h)
            resp = await client.get("/v1/sends/e0", headers=h)
            got = await resp.json()
            assert resp.status == 200 and got["state"] == "scheduled" and got["earliest"] >= later
            await _until(lambda: service.engine.outcome("e1") is not None)
            got = await (await client.get("/v1/sends/e1", headers=h)).json()
            assert got["state"] == "final" and got["outcome"]["status"] == "sent"
            await _problem(await client.get("/v1/sends/nope", headers=h), 404, "not-found", "id")
            resp = await client.delete("/v1/sends/e0", headers=h)
            assert resp.status == 200 and (await resp.json())["cancelled"] == ["e0"]
            assert service.engine.outcome("e0").status.value == "cancelled"
            resp = await client.delete("/v1/sends/e0", headers=h)  # again: already cancelled, idempotent
            assert resp.status == 200 and (await resp.json())["cancelled"] == ["e0"]
            await _problem(await client.delete("/v1/sends/e1", headers=h), 409, "too-late", "id")
            await _problem(await client.delete("/v1/sends/nope", headers=h), 404, "not-found", "id")

    run(main())


def test_cancellations_by_ids_recipient_and_origin_id(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            later = time.time() + 3600
            batch = [email(0, send_at=later), email(1, send_at=later, recipient="bob"),
                     email(2, send_at=later, recipient="bob"), email(3, send_at=later, origin="flow", origin_id="f-9"),
                     email(4, send_at=later)]
            await client.post("/v1/sends", json=batch, headers=h)
            r = await (await client.post("/v1/cancellations", json={"ids": ["e0", "zz"]}, headers=h)).json()
            assert r["cancelled"] == ["e0"] and r["unknown"] == ["zz"]
            r = await (await client.post("/v1/cancellations", json={"recipient": "bob"}, headers=h)).json()
            assert sorted(r["cancelled"]) == ["e1", "e2"]
            r = await (await client.post("/v1/cancellations", json={"origin_id": "f-9"}, headers=h)).json()
            assert r["cancelled"] == ["e3"]
            assert service.engine.pending == 1
            await _problem(await client.post("/v1/cancellations", json={"ids": "e4"}, headers=h),
                           400, "invalid-request", "ids")
            await _problem(await client.post("/v1/cancellations", json={}, headers=h), 400, "invalid-request")
            await _problem(await client.post("/v1/cancellations", data=b"{", headers=h), 400, "malformed-body")
            assert service.engine.pending == 1

    run(main())


def test_suppressions_put_and_delete_and_a_suppressed_address_is_skipped(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            resp = await client.put("/v1/suppressions/email/e0@example.com", json={"scope": "all"}, headers=h)
            assert resp.status == 200 and (await resp.json())["scope"] == "all"
            await client.post("/v1/sends", json=[email(0)], headers=h)
            await _until(lambda: service.engine.outcome("e0") is not None)
            o = service.engine.outcome("e0")
            assert (o.status.value, o.reason.value) == ("skipped", "suppressed")
            assert (await client.delete("/v1/suppressions/email/e0@example.com", headers=h)).status == 204
            await client.post("/v1/sends", json=[email(0, prefix="g", to="e0@example.com")], headers=h)
            await _until(lambda: service.engine.outcome("g0") is not None)
            assert service.engine.outcome("g0").status.value == "sent"
            await _problem(await client.put("/v1/suppressions/email/a@b.c", json={"scope": "some"}, headers=h),
                           400, "invalid-request", "scope")
            await _problem(await client.put("/v1/suppressions/email/a@b.c", json={"scop": "all"}, headers=h),
                           400, "invalid-request", "scop")
            await _problem(await client.put("/v1/suppressions/E-Mail/a@b.c", headers=h), 400, "invalid-request",
                           "channel")

    run(main())


# --------------------------------------------------------------------------- delivery reports


def test_a_sandbox_delivery_report_adds_the_event_and_a_bad_one_is_422(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            await client.post("/v1/sends", json=[email(0)], headers=h)
            await _until(lambda: service.engine.outcome("e0") is not None)
            resp = await client.post("/v1/delivery-reports/sandbox", json={"send_id": "e0", "status": "DELIVRD"},
                                     headers=h)
            assert resp.status == 200
            event = (await resp.json())["event"]
            assert (event["send_id"], event["status"]) == ("e0", "delivered")
            await _problem(await client.post("/v1/delivery-reports/sandbox", json=["e0"], headers=h),
                           422, "delivery-report-rejected")
            await _problem(await client.post("/v1/delivery-reports/nobody", json={}, headers=h),
                           404, "not-found", "provider")
            await _problem(await client.post("/v1/delivery-reports/sandbox", json={"send_id": "e0"},
                                             headers=auth(tokens["read"])), 403, "forbidden")

    run(main())


def test_twilio_callbacks_are_checked_against_the_public_url_and_may_come_without_a_token(tmp_path, monkeypatch, run):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "12345")
    s = settings(tmp_path, 'public_url = "https://hooks.example.com/"\nopen_delivery_reports = ["twilio"]',
                 extra='[providers.twilio.options]\naccount_sid = "AC1"\nfrom = "+15005550006"\n'
                       '[channels.sms]\nprovider = "twilio"')
    make_tokens(s)

    async def main():
        async with served(s, plugins=(sendcore_sandbox, sendcore_twilio)) as (service, client):
            fields = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": "AC1"}
            url = "https://hooks.example.com/v1/delivery-reports/twilio?x=1"
            good = compute_signature("12345", url, sorted(fields.items()))
            resp = await client.post("/v1/delivery-reports/twilio?x=1", data=fields,
                                     headers={"X-Twilio-Signature": good})
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["event"] is None  # signed right, names no message we sent
            assert service.engine.stats().unknown_reports == 1
            bad = compute_signature("12345", "http://127.0.0.1/v1/delivery-reports/twilio?x=1", fields.items())
            p = await _problem(await client.post("/v1/delivery-reports/twilio?x=1", data=fields,
                                                 headers={"X-Twilio-Signature": bad}),
                               422, "delivery-report-rejected")
            assert "X-Twilio-Signature" in p["detail"]
            await _problem(await client.post("/v1/delivery-reports/twilio?x=1", data=fields), 422,
                           "delivery-report-rejected")
            # Only the providers named in open_delivery_reports skip the token.
            await _problem(await client.post("/v1/delivery-reports/sandbox", json={}), 401, "unauthorized")
            assert service.engine.stats().unknown_reports == 1

    run(main())


# --------------------------------------------------------------------------- outcomes


def test_outcomes_resume_after_a_cursor_and_follow_new_ones(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            await client.post("/v1/sends", json=[email(i) for i in range(30)], headers=h)
            await _until(lambda: service.outcome_log.visible_seq >= 30)
            lines = (await (await client.get("/v1/outcomes", headers=h)).read()).splitlines()
            got = [json.loads(x) for x in lines]
            assert [o["seq"] for o in got] == list(range(1, 31))
            assert sorted(o["send_id"] for o in got) == sorted(f"e{i}" for i in range(30))
            resp = await client.get("/v1/outcomes", params={"after": "12", "limit": "5"}, headers=h)
            assert [json.loads(x)["seq"] for x in (await resp.read()).splitlines()] == [13, 14, 15, 16, 17]
            assert (await (await client.get("/v1/outcomes?after=30", headers=h)).read()) == b""
            # follow: the stream waits for the next durable outcome.
            resp = await client.get("/v1/outcomes", params={"after": "30", "follow": "true", "limit": "1"},
                                    headers=h)
            await client.post("/v1/sends", json=[email(99)], headers=h)
            line = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
            assert (line["seq"], line["send_id"]) == (31, "e99")
            await _problem(await client.get("/v1/outcomes?after=x", headers=h), 400, "invalid-request", "after")
            await _problem(await client.get("/v1/outcomes?after=-1", headers=h), 400, "invalid-request", "after")
            await _problem(await client.get("/v1/outcomes?follow=maybe", headers=h), 400, "invalid-request",
                           "follow")

    run(main())


# --------------------------------------------------------------------------- metrics, health, status


def test_metrics_show_the_engine_counts_and_rejected_requests(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            later = time.time() + 3600
            await client.post("/v1/sends", json=[email(i, send_at=later) for i in range(7)] + [email(50)], headers=h)
            await _until(lambda: service.engine.outcome("e50") is not None)
            await client.post("/v1/sends", data=b"[", headers=h)
            await client.get("/v1/status")
            resp = await client.get("/metrics", headers=h)
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
            values = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    values[name] = float(value)
            assert values['sendcore_pending_sends{state="scheduled"}'] == 7
            assert values['sendcore_outcomes_total{status="sent"}'] == 1
            assert values['sendcore_http_rejected_requests_total{problem="malformed-body"}'] == 1
            assert values['sendcore_http_rejected_requests_total{problem="unauthorized"}'] == 1
            assert values['sendcore_route_backlog{route="sandbox/email/-/-"}'] == 0
            assert values['sendcore_provider_call_seconds_count{provider="sandbox"}'] >= 1
            assert values["sendcore_journal_fsyncs_total"] >= 1
            assert values["sendcore_http_accepted_sends_total"] == 8
            assert "sendcore_dispatch_lateness_seconds_bucket" in text

    run(main())


def test_healthz_readyz_and_the_status_json(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
            resp = await client.get("/readyz")
            assert resp.status == 200 and (await resp.json())["ready"] is True
            await client.post("/v1/sends", json=[email(0, send_at=time.time() + 600), email(1)],
                              headers=auth(tokens["all"]))
            await _until(lambda: service.outcome_log.visible_seq >= 1)
            st = await (await client.get("/v1/status", headers=auth(tokens["read"]))).json()
            assert st["pending"] == {"total": 1, "scheduled": 1, "queued": 0, "in_flight": 0}
            assert st["final"] == {"sent": 1} and st["per_minute"] == {"email": 1}
            assert st["latest"][0]["send_id"] == "e1" and st["outcome_seq"] == 1
            service.stopping.set()
            resp = await client.get("/readyz")
            assert resp.status == 503 and (await resp.json())["detail"] == "stopping"

    run(main())


def test_unknown_routes_and_methods_are_problems(tmp_path, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            await _problem(await client.get("/v2/nothing", headers=auth(tokens["all"])), 404, "not-found")
            resp = await client.patch("/v1/sends", headers=auth(tokens["all"]))
            await _problem(resp, 405, "method-not-allowed")
            assert "POST" in resp.headers["Allow"]
            # A header over max_field_size is refused by the HTTP parser itself.
            resp = await client.get("/healthz", headers={"X-Big": "x" * 9000})
            assert resp.status == 400

    run(main())


# --------------------------------------------------------------------------- OpenAPI


def test_the_openapi_document_lists_exactly_the_routes_served(tmp_path, run):
    s = settings(tmp_path)

    async def main():
        async with served(s) as (service, client):
            resp = await client.get("/openapi.json")
            doc = await resp.json()
            assert doc["openapi"].startswith("3.1")
            documented = {(path, method.upper()) for path, item in doc["paths"].items()
                          for method in item if method in ("get", "post", "put", "delete", "patch")}
            routed = {(r.resource.canonical, r.method) for r in client.app.router.routes()
                      if r.method != "HEAD" and r.resource is not None}
            assert documented == routed, (documented - routed, routed - documented)
            for path, item in doc["paths"].items():
                for name in (p["name"] for p in item.get("parameters", []) if p["in"] == "path"):
                    assert "{" + name + "}" in path
            for ref in _refs(doc):
                assert ref.split("/")[-1] in doc["components"]["schemas"], ref

    run(main())


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


# --------------------------------------------------------------------------- logs


def test_logs_hold_no_token_no_body_and_no_full_number(tmp_path, caplog, run):
    s = settings(tmp_path)
    tokens = make_tokens(s)
    assert mask_path("/v1/suppressions/sms/+33612345678?scope=all") == "/v1/suppressions/sms/+33*******78"
    assert mask_path("/v1/suppressions/email/alice@example.com") == "/v1/suppressions/email/al***@example.com"

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            await client.put("/v1/suppressions/sms/+33612345678", headers=h)
            await client.post("/v1/sends", json=[email(0, body="secret-body-text", to="alice@example.com")],
                              headers=h)
            await asyncio.sleep(0.05)

    with caplog.at_level(logging.INFO):
        run(main())
    lines = [JsonFormatter().format(r) for r in caplog.records]
    text = "\n".join(lines)
    assert "sendcore.access" in text and "+33*******78" in text
    for secret in (tokens["all"], "secret-body-text", "+33612345678", "alice@example.com"):
        assert secret not in text
    access = [json.loads(line) for line in lines if '"sendcore.access"' in line]
    assert access[0]["token"] == "all" and access[0]["status"] == 200


def test_a_cursor_older_than_the_outcome_retention_is_410(tmp_path, run):
    s = settings(tmp_path, 'outcome_segment_bytes = 4096\noutcome_retention = "0s"')
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, client):
            h = auth(tokens["all"])
            for k in range(4):
                await client.post("/v1/sends", json=[email(i, prefix=f"b{k}-") for i in range(30)], headers=h)
                await _until(lambda: service.outcome_log.visible_seq >= 30 * (k + 1))
            oldest = service.outcome_log.oldest_seq
            assert oldest > 1  # segments past retention were deleted
            p = await _problem(await client.get("/v1/outcomes?after=0", headers=h), 410, "cursor-expired", "after")
            assert f"after={oldest - 1}" in p["detail"]
            lines = (await (await client.get(f"/v1/outcomes?after={oldest - 1}", headers=h)).read()).splitlines()
            assert [json.loads(x)["seq"] for x in lines] == list(range(oldest, 121))

    run(main())


def test_every_route_refuses_a_missing_token_and_a_token_without_its_documented_scope(tmp_path, run):
    """Each scope comes from the OpenAPI document's x-scope, written apart from the middleware's table."""
    s = settings(tmp_path, "open_health = false")
    tokens = make_tokens(s)
    other = {"submit": "read", "read": "submit", "admin": "read"}
    samples = {"{id}": "e0", "{channel}": "email", "{address}": "a@example.com", "{provider}": "sandbox"}

    async def main():
        async with served(s) as (service, client):
            doc = await (await client.get("/openapi.json")).json()
            checked = 0
            for template, item in doc["paths"].items():
                path = template
                for k, v in samples.items():
                    path = path.replace(k, v)
                for method, op in item.items():
                    if method not in ("get", "post", "put", "delete"):
                        continue
                    scope = op.get("x-scope")
                    if scope is None:  # documented as open: no token needed
                        assert (await client.request(method, path)).status == 200, path
                        continue
                    await _problem(await client.request(method, path), 401, "unauthorized")
                    await _problem(await client.request(method, path, headers=auth(tokens[other[scope]])),
                                   403, "forbidden")
                    resp = await client.request(method, path, headers=auth(tokens[scope]), json=None)
                    assert resp.status not in (401, 403), (method, path, resp.status)
                    checked += 1
            assert checked >= 12

    run(main())


def test_require_tokens_false_opens_every_endpoint(tmp_path, run):
    s = settings(tmp_path, "require_tokens = false")

    async def main():
        async with served(s) as (service, client):
            resp = await client.post("/v1/sends", json=[email(0)])
            assert resp.status == 200 and (await resp.json())["accepted"] == 1
            assert (await client.get("/v1/status")).status == 200
            assert (await client.get("/metrics")).status == 200

    run(main())


def test_status_and_metrics_reuse_a_stats_reading_for_twenty_times_its_cost(tmp_path, run):
    """stats() walks every pending send: a reading is reused while younger than 20x its cost, then read again."""
    s = settings(tmp_path)

    async def main():
        async with served(s) as (service, client):
            later = time.time() + 3600
            await service.engine.submit([msgspec.convert(email(i, send_at=later), type=Send) for i in range(3)])
            first = service.stats()
            assert first.pending == 3
            service._stats_until = time.monotonic() + 60  # as if the reading had cost 3 s
            await service.engine.submit([msgspec.convert(email(9, send_at=later), type=Send)])
            reused = service.stats()
            service._stats_until = 0.0  # its reuse window over
            fresh = service.stats()
            return first, reused, fresh

    first, reused, fresh = run(main())
    assert reused is first and fresh.pending == 4
