"""A provider plugin for a Twilio-like REST API: one message per request, 1 msg/s (a long code)."""
import aiohttp
from sendcore import Accepted, PermanentFailure, Provider, RateLimited, TemporaryFailure, hookimpl

class AcmeSms(Provider):
    name, channels, max_batch, rate, burst, timeout = "acme", ("sms",), 1, 1.0, 1, 10.0

    def __init__(self, url=None):
        self.url = url  # or [providers.acme.options] url

    async def start(self, context):
        self.http = aiohttp.ClientSession(self.url or context.settings.get("url", "https://api.acme.test"))

    async def send(self, batch):
        s = batch.sends[0]  # the send id is the idempotency key: a retry after a crash is not sent twice
        async with self.http.post("/messages", json={"to": s.to, "body": s.body}, headers={"Idempotency-Key": s.id}) as r:
            if r.status == 201:
                return [Accepted((await r.json())["sid"])]
            if r.status == 429:
                return [RateLimited(float(r.headers.get("Retry-After", "1")))]
            if r.status >= 500:
                return [TemporaryFailure(str(r.status), await r.text())]
            return [PermanentFailure(str(r.status), await r.text(), suppress="all" if r.status == 404 else None)]

    async def close(self):
        await self.http.close()

@hookimpl
def sendcore_register_providers(register):
    register(AcmeSms())
