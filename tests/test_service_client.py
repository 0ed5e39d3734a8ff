"""``sendcore.client.Client`` against a service on 127.0.0.1: retried resubmits are idempotent.

A small TCP relay sits between the client and the service and loses the
first answer (it forwards the request, swallows the response and hangs up),
the way a dropped connection or a proxy timeout would.
"""

from __future__ import annotations

import asyncio
import time

from sendcore.client import ApiError, Client
from tests.service_helpers import email, make_tokens, served, settings


class LosingRelay:
    """Forwards connections to ``port``; the first ``lose`` answers are swallowed and the connection closed."""

    def __init__(self, port: int, lose: int = 1) -> None:
        self.port = port
        self.lose = lose
        self.server: asyncio.AbstractServer

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        losing = self.lose > 0
        self.lose -= losing

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if losing:
                    return  # the service answered: the client never hears it
                writer.write(data)
                await writer.drain()

        up = asyncio.ensure_future(upstream())
        try:
            await downstream()
        finally:
            up.cancel()
            writer.close()
            up_writer.close()


def test_a_submit_whose_answer_was_lost_is_retried_and_answers_duplicate_nothing_stored_twice(tmp_path):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, http):
            relay = LosingRelay(http.port)
            port = await relay.start()
            later = time.time() + 3600
            async with Client(f"http://127.0.0.1:{port}", tokens["submit"], backoff=0.01) as client:
                answer = await client.submit([email(i, send_at=later) for i in range(50)])
            assert relay.lose == 0  # the first answer was lost...
            assert answer["duplicates"] == 50 and answer["accepted"] == 0  # ...and the retry found them all stored
            assert all(i["reason"] == "id: duplicate of a pending send" for i in answer["items"])
            assert service.engine.pending == 50 and service.engine.stats().submitted == 50
            relay.server.close()

    asyncio.run(main())


def test_the_client_waits_out_max_pending_then_gives_up_with_the_problem(tmp_path):
    s = settings(tmp_path, extra="max_pending = 3")
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, http):
            url = f"http://127.0.0.1:{http.port}"
            later = time.time() + 3600
            async with Client(url, tokens["all"], retries=1, backoff=0.01) as client:
                await client.submit([email(i, send_at=later) for i in range(3)])
                t0 = time.monotonic()
                try:
                    await client.submit([email(9, send_at=later)])
                except ApiError as exc:
                    assert exc.status == 429 and exc.kind == "max-pending"
                else:
                    raise AssertionError("a full engine accepted a send")
                assert time.monotonic() - t0 >= 1.0  # it waited the Retry-After (1 s) before its one retry
                # Once room is made, the same call goes through.
                await client.cancel("e0")
                answer = await client.submit([email(9, send_at=later)])
                assert answer["accepted"] == 1
                assert (await client.get("e9"))["state"] == "scheduled"
                seen = [o async for o in client.outcomes(after=0, follow=True, limit=1)]  # logged a moment later
                assert [(o["seq"], o["send_id"], o["status"]) for o in seen] == [(1, "e0", "cancelled")]

    asyncio.run(main())


async def final(client: Client, send_id: str) -> dict:
    """What ``client.get`` answers for ``send_id`` once it is final (within 5 s)."""
    for _ in range(500):
        got = await client.get(send_id)
        if got["state"] == "final":
            return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"{send_id} is not final after 5 s: {got}")


def test_every_call_of_the_client_reaches_its_endpoint_and_returns_what_the_service_answered(tmp_path):
    s = settings(tmp_path)
    tokens = make_tokens(s)

    async def main():
        async with served(s) as (service, http):
            engine = service.engine
            later = time.time() + 3600
            async with Client(f"http://127.0.0.1:{http.port}", tokens["all"], backoff=0.01) as client:
                assert await client.ready()
                await client.submit([email(0, send_at=later), email(1, send_at=later, recipient="bob"),
                                     email(2, send_at=later, recipient="bob"),
                                     email(3, send_at=later, origin="flow", origin_id="f-9"), email(4, send_at=later),
                                     email(5)])
                got = await client.cancel_many(ids=["e0", "zz"])
                assert got["cancelled"] == ["e0"] and got["unknown"] == ["zz"]
                assert sorted((await client.cancel_many(recipient="bob"))["cancelled"]) == ["e1", "e2"]
                assert (await client.cancel_many(origin_id="f-9"))["cancelled"] == ["e3"]
                assert engine.outcome("e3").status.value == "cancelled"

                await client.suppress("email", "e9@example.com", "all")
                await client.submit([email(9)])
                assert (await final(client, "e9"))["outcome"]["reason"] == "suppressed"
                await client.unsuppress("email", "e9@example.com")
                await client.submit([email(10, to="e9@example.com")])
                assert (await final(client, "e10"))["outcome"]["status"] == "sent"

                # e5 was due at once: once sent, a delivery report for it is an event on its outcome.
                assert (await final(client, "e5"))["outcome"]["status"] == "sent"
                event = await client.delivery_report("sandbox", {"send_id": "e5", "status": "DELIVRD"})
                assert event is not None and event["status"] == "delivered" and event["send_id"] == "e5"

                assert (await client.status())["pending"]["scheduled"] == 1  # e4, the one left
                text = await client.metrics()
                assert 'sendcore_pending_sends{state="scheduled"} 1.0' in text
            async with Client(f"http://127.0.0.1:{http.port}", tokens["read"], retries=0) as reader:
                try:
                    await reader.cancel_many(ids=["e4"])
                except ApiError as exc:
                    assert exc.status == 403
                else:
                    raise AssertionError("a read-only token cancelled a send")
            assert engine.pending == 1

    asyncio.run(main())
