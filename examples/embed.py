"""Embedding sendcore: an abandoned-cart flow stopped by a conversion, on virtual time."""
import asyncio, tempfile
from sendcore import Engine, Send, Settings
from sendcore.testing import VirtualClock

async def main() -> None:
    clock = VirtualClock(1_800_000_000)                        # 2027-01-15 08:00 UTC
    journal = tempfile.mkdtemp()                               # a fresh journal: durable by default
    settings = Settings.from_dict({"channels": {"sms": {"smart_sending_window": "0s"}}, "journal": {"path": journal}})
    async with Engine(settings, clock=clock) as engine:        # loads the bundled sandbox provider
        t = clock.now()
        report = await engine.submit([Send(id=f"cart-{h}", recipient="p-42", channel="sms",
            to="+33612345678", origin="flow", origin_id="abandoned-cart", send_at=t + h * 3600,
            body="Votre panier vous attend") for h in (2, 24, 48)])
        await engine.run_until(t + 30 * 3600)                  # 30 hours, in milliseconds
        await engine.cancel(recipient="p-42", origin_id="abandoned-cart")  # the order arrived
        await engine.drain()
        for sid in report.accepted_ids:
            print(sid, engine.outcome(sid).status.value)       # sent, sent, cancelled

if __name__ == "__main__":
    asyncio.run(main())
