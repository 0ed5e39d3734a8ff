"""sendcore's bundled ``http`` provider: any JSON-over-HTTP batch API, configured entirely from its options.

Registered through the ``sendcore`` entry point (``http = "sendcore_http"``),
and only when ``[providers.http]`` is configured. One batch is one request;
its body is a list of items shaped by ``item`` (templates such as ``"{to}"``,
see ``shape.py``) placed at ``body_path``; the answer's items are matched to
the sends by id (or position) and read through ``accepted_values`` and the
``codes`` table (see ``codes.py``). Every key is described in ``HttpOptions``.
A complete example::

    [providers.http]
    rate = 500                              # the route's messages per second

    [providers.http.options]
    url = "https://api.example.com/v1/messages/batch"
    channels = ["sms"]
    max_batch = 100
    request_rate = 20                       # the API's own limit: requests per second
    request_timeout = "10s"
    auth_env = "EXAMPLE_API_KEY"            # sent as "Authorization: Bearer $EXAMPLE_API_KEY"
    headers = { "X-Account" = "acme" }
    body_path = "messages"                  # {"sender": ..., "messages": [item, ...]}; "" = bare array
    envelope = { sender = "{sender}" }
    sender = "ACME"                         # {sender} when a send names none

    [providers.http.options.item]           # one send
    id = "{id}"                             # matched against result_id_field in the answer
    to = "{to}"
    text = "{body}"
    type = "transactional"                  # not a template: copied as is
    meta = { subject = "{metadata.subject}" }

    # The answer: {"results": [{"id": "...", "status": "queued", "message_id": "...",
    #                           "error": {"code": "...", "message": "..."}}, ...]}
    [providers.http.options.codes]
    invalid_number = "suppress_all"
    unsubscribed = "suppress_marketing"
    handset_off = "temporary"
    throttled = "rate_limited"
    content_blocked = "permanent"

Those answer fields are the defaults (``results_path = "results"``,
``result_match = "id"``, ``result_id_field = "id"``, ``result_status_field =
"status"``, ``accepted_values = ["accepted", "queued", "sent"]``,
``result_provider_id_field = "message_id"``, ``result_code_field =
"error.code"``, ``result_message_field = "error.message"``). A batch request
carries ``Idempotency-Key``: the send id for a batch of one, else ``batch-``
and a hash of the batch's send ids; each item carries its own id, which is
what lets the API deduplicate a retried send.
"""

from __future__ import annotations

from typing import Any, Callable

from sendcore.hookspecs import hookimpl

from .codes import retry_after_seconds, status_kind
from .options import HttpOptions
from .provider import HttpProvider, idempotency_key
from .reports import sign

__all__ = [
    "HttpOptions",
    "HttpProvider",
    "idempotency_key",
    "retry_after_seconds",
    "sendcore_register_providers",
    "sign",
    "status_kind",
]


@hookimpl
def sendcore_register_providers(register: Callable[[Any], None], settings: Any) -> None:
    """Register the provider when ``[providers.http]`` is configured; its options are checked here."""
    conf = settings.providers.get("http")
    if conf is not None:
        register(HttpProvider.from_options(conf.options))
