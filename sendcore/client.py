"""``Client``: an asyncio client of ``sendcore serve``'s HTTP API (aiohttp).

Every call the API makes safe to repeat is retried on a lost connection, a
timeout, ``429`` or ``503`` (after ``Retry-After`` when given, else an
exponential backoff). That includes ``submit``: the send id is the
idempotency key, so a batch sent again after a lost answer gets
``duplicate`` for the items the first attempt stored (the engine rejects a
known id, pending or finished within retention, and never stores it twice)
and ``accepted`` for the rest; both mean the engine holds the send::

    async with Client("http://127.0.0.1:8787", token) as client:
        answer = await client.submit([{"id": "otp-1", "recipient": "u1", "channel": "sms",
                                       "to": "+33612345678", "origin": "transactional", "body": "1234"}])
        async for outcome in client.outcomes(after=0):
            ...
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator, Iterable, Mapping, Union

import aiohttp
import msgspec

__all__ = ["ApiError", "Client"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
#: Failures after which a call that is safe to repeat is tried again: the answer may never have come.
_TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


class ApiError(Exception):
    """The service answered with a problem (RFC 9457): ``status``, ``problem`` (type, title, detail...)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}".strip())
        self.status = status
        self.problem = problem

    @property
    def kind(self) -> str:
        """The last part of the problem's ``type`` URI (``max-pending``, ``unauthorized``...)."""
        return str(self.problem.get("type", "")).rsplit("/", 1)[-1]


class Client:
    """A client of one service at ``base_url`` with bearer ``token``.

    ``retries`` is how many times a retryable failure is tried again
    (``backoff`` seconds doubling each time, with jitter, or the server's
    ``Retry-After``). Use it as an async context manager, or call ``close()``.
    """

    def __init__(self, base_url: str, token: Union[str, None] = None, *, retries: int = 5, backoff: float = 0.2,
                 timeout: float = 30.0, session: Union[aiohttp.ClientSession, None] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = retries
        self.backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own = session is None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (if the client made it)."""
        if self._session is not None and self._own:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own = True
        return self._session

    async def request(self, method: str, path: str, *, body: Union[bytes, None] = None,
                      content_type: str = "application/json", params: Union[Mapping[str, Any], None] = None,
                      retry: bool = True, ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        """One call, retried when ``retry`` and the failure is transient; (status, decoded JSON or None).

        Raises ``ApiError`` for a problem answer not retried (or still failing after the retries).
        """
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = content_type
        attempt = 0
        while True:
            wait: Union[float, None] = None
            try:
                async with self._http().request(method, self.base_url + path, data=body, headers=headers,
                                                params=params) as resp:
                    data = await resp.read()
                    if resp.status in ok:
                        return resp.status, (_decode(data) if data else None)
                    try:
                        problem = _decode(data) if data else {}
                    except msgspec.DecodeError:
                        problem = {"detail": data[:200].decode("utf-8", "replace")}
                    error = ApiError(resp.status, problem if isinstance(problem, dict) else {"detail": problem})
                    if resp.status not in (429, 502, 503, 504):
                        raise error
                    ra = resp.headers.get("Retry-After")
                    wait = float(ra) if ra and ra.isdigit() else None
            except _TRANSIENT as exc:
                error = exc  # type: ignore[assignment]
            if not retry or attempt >= self.retries:
                raise error
            attempt += 1
            if wait is None:  # exponential backoff with jitter, so retrying clients do not move in step
                wait = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
            await asyncio.sleep(wait)

    # ---------------------------------------------------------------- sends

    async def submit(self, sends: Iterable[Any]) -> dict[str, Any]:
        """POST /v1/sends: the answer (counts and one item per send: accepted, duplicate or rejected).

        ``sends`` are ``sendcore.Send`` objects or dicts with the same fields.
        Returns once the accepted sends are durable; raises ``ApiError``
        (kind ``max-pending``) when the engine stayed full through the retries.
        """
        body = _encode(list(sends))
        return (await self.request("POST", "/v1/sends", body=body))[1]

    async def get(self, send_id: str) -> dict[str, Any]:
        """GET /v1/sends/{id}: where it waits and why, or its outcome."""
        return (await self.request("GET", f"/v1/sends/{_quote(send_id)}"))[1]

    async def cancel(self, send_id: str) -> dict[str, Any]:
        """DELETE /v1/sends/{id}: cancel one pending send."""
        return (await self.request("DELETE", f"/v1/sends/{_quote(send_id)}"))[1]

    async def cancel_many(self, *, ids: Union[list[str], None] = None, recipient: Union[str, None] = None,
                          origin_id: Union[str, None] = None) -> dict[str, Any]:
        """POST /v1/cancellations: by ids, recipient and/or origin id."""
        spec = {k: v for k, v in (("ids", ids), ("recipient", recipient), ("origin_id", origin_id)) if v is not None}
        return (await self.request("POST", "/v1/cancellations", body=_encode(spec)))[1]

    # ---------------------------------------------------------------- suppressions, reports

    async def suppress(self, channel: str, address: str, scope: str = "marketing") -> dict[str, Any]:
        """PUT /v1/suppressions/{channel}/{address}."""
        return (await self.request("PUT", f"/v1/suppressions/{channel}/{_quote(address)}",
                                   body=_encode({"scope": scope})))[1]

    async def unsuppress(self, channel: str, address: str) -> None:
        """DELETE /v1/suppressions/{channel}/{address}."""
        await self.request("DELETE", f"/v1/suppressions/{channel}/{_quote(address)}", ok=(204,))

    async def delivery_report(self, provider: str, fields: Mapping[str, Any], *, form: bool = False,
                              headers: Union[Mapping[str, str], None] = None) -> Union[dict[str, Any], None]:
        """POST /v1/delivery-reports/{provider}: the event added, or None. Not retried (it is a webhook relay)."""
        from urllib.parse import urlencode

        body = urlencode(fields).encode() if form else _encode(dict(fields))
        ctype = "application/x-www-form-urlencoded" if form else "application/json"
        saved = self._headers
        if headers:
            self._headers = {**saved, **headers}
        try:
            return (await self.request("POST", f"/v1/delivery-reports/{provider}", body=body, content_type=ctype,
                                       retry=False))[1]["event"]
        finally:
            self._headers = saved

    # ---------------------------------------------------------------- outcomes and state

    async def outcomes(self, after: int = 0, *, follow: bool = False,
                       limit: Union[int, None] = None) -> AsyncIterator[dict[str, Any]]:
        """Outcomes with ``seq`` above ``after``, each a dict with its ``seq``.

        With ``follow`` the stream stays open and reconnects (from the last
        seq seen, so nothing is missed or repeated) until the caller stops.
        """
        params: dict[str, Any] = {"after": after, "follow": "true" if follow else "false"}
        left = limit
        attempt = 0
        while True:
            if left is not None:
                params["limit"] = left
            try:
                async with self._http().get(self.base_url + "/v1/outcomes", params=params,
                                            headers=self._headers, timeout=aiohttp.ClientTimeout(
                                                total=None, sock_read=None if follow else 60)) as resp:
                    if resp.status != 200:
                        raise ApiError(resp.status, _decode(await resp.read()))
                    attempt = 0
                    buf = b""
                    async for chunk in resp.content.iter_any():
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            if line:
                                item = _decode(line)
                                params["after"] = item["seq"]
                                yield item
                                if left is not None:
                                    left -= 1
                if not follow or (left is not None and left <= 0):
                    return
            except _TRANSIENT:
                if attempt >= self.retries:
                    raise
                attempt += 1
            await asyncio.sleep(self.backoff * attempt)

    async def status(self) -> dict[str, Any]:
        """GET /v1/status."""
        return (await self.request("GET", "/v1/status"))[1]

    async def ready(self) -> bool:
        """GET /readyz: True when the service is ready."""
        try:
            status, _ = await self.request("GET", "/readyz", retry=False, ok=(200, 503))
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
            return False
        return status == 200

    async def metrics(self) -> str:
        """GET /metrics: the Prometheus text."""
        async with self._http().get(self.base_url + "/metrics", headers=self._headers) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise ApiError(resp.status, _decode(text.encode()))
            return text


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")
